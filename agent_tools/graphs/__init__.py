"""LangGraph graphs over the video tools, driven by a :class:`~agent_tools.policies.Policy`.

- :func:`build_temporal_graph` - search inside one video until the policy can answer
  (preview -> policy <-> seek -> answer -> optional completeness verification).
- :func:`build_corpus_graph` - search the corpus for a moment, verify it with the policy,
  refine the query, repeat; optionally answer a question inside the found video.
  :func:`verification_messages` is the conversation a moment is verified in; :func:`moment_key`.
- :func:`recursion_limit_for` - a sufficient ``recursion_limit`` for a temporal graph of ``max_turns``.
- :class:`AgentRunner` - drive a compiled temporal graph turn by turn (CLI, users, RL rollouts);
  :class:`Turn`, :class:`Rollout`.
- ``state`` - the state schemas (references only, never pixels), the ``frames`` reducer
  :func:`merge_frames`, and :func:`contains_pixel_data`.

Builders return uncompiled ``StateGraph`` objects: compile them with your own checkpointer,
or add them to your own graph as subgraphs.

Usage::

    from langgraph.checkpoint.sqlite import SqliteSaver
    graph = build_temporal_graph(policy, searcher, verify=True).compile(checkpointer=saver)
    for update in graph.stream({"question": q, "video": path}, config, stream_mode="updates"):
        ...
"""

from agent_tools.graphs.corpus import build_corpus_graph, moment_key, verification_messages
from agent_tools.graphs.runner import AgentRunner, Rollout, Turn
from agent_tools.graphs.state import (
    CorpusInput,
    CorpusOutput,
    CorpusState,
    FrameRef,
    TemporalInput,
    TemporalOutput,
    TemporalState,
    contains_pixel_data,
    merge_frames,
)
from agent_tools.graphs.temporal import build_temporal_graph, recursion_limit_for

__all__ = [
    "build_temporal_graph",
    "build_corpus_graph",
    "recursion_limit_for",
    "moment_key",
    "verification_messages",
    "AgentRunner",
    "Turn",
    "Rollout",
    "FrameRef",
    "merge_frames",
    "TemporalInput",
    "TemporalState",
    "TemporalOutput",
    "CorpusInput",
    "CorpusState",
    "CorpusOutput",
    "contains_pixel_data",
]
