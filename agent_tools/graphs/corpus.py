"""The corpus search graph: find the moment, let the policy verify it, refine, repeat.

Nodes (see :func:`build_corpus_graph`)::

    START -> search -> verify -+-> [temporal] -> END            (matched: grounded answer)
                               +-> refine -> search ...         (not matched, rounds left)
                               +-> give_up -> END               (rounds spent, or no new moment)

- ``search`` runs ``moment_searcher.search`` on the current query (text, or a soft-refined
  vector once a policy provides one) and takes the best moment not yet rejected.
- ``verify`` shows the policy frames of that moment (references, each after its timestamp)
  and the original query (:func:`verification_messages`); the policy answers ``matched`` with
  the start and end of the matching part, or ``not_matched`` with a rewritten query
  (VideoSearch-R1's verification step, with text refinement); a reply with no usable verdict
  rejects the moment too, and its round record says why (``error``).
- ``refine`` adopts the rewritten query; if the policy's manifest says ``soft_refinement: true``,
  the vector of ``policy.refine_query_vector(messages, frames=..., completion_ids=...)`` - the
  hidden state after the policy's own reply, as VideoSearch-R1's ``<REFINE>`` - is used instead (a policy
  claiming it without providing that method is rejected when the graph is built).
- ``temporal`` (optional) runs the temporal graph inside the matched video to answer
  ``question``, with the matched window as a hint.

Usage::

    graph = build_corpus_graph(policy, moment_searcher, max_rounds=3, temporal=searcher).compile()
    out = graph.invoke({"query": "a dog catches a frisbee", "question": "What colour is the dog?"})
    out["answer"]        # {"video_id", "path", "start", "end", "score"} or None
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs.state import CorpusInput, CorpusOutput, CorpusState
from agent_tools.graphs.temporal import build_temporal_graph
from agent_tools.policies.base import (
    CachingResolver,
    ChatMessage,
    FrameResolver,
    Policy,
    frame_block,
    text_block,
)

__all__ = ["build_corpus_graph", "moment_key", "verification_messages", "video_frame_resolver"]


def moment_key(m: dict[str, Any]) -> str:
    """Stable key of a moment: ``video_id@start-end``."""
    return f"{m['video_id']}@{float(m['start']):.2f}-{float(m['end']):.2f}"


def video_frame_resolver(video: str, timestamps, max_side: Optional[int] = None) -> list:
    """Frame resolver that decodes straight from the file (``agent_tools.video``)."""
    from PIL import Image

    from agent_tools.video import open_video

    reader = open_video(video)
    try:
        frames = reader.frames_at(list(timestamps))
    finally:
        reader.close()
    out = []
    for _, rgb in frames:
        img = Image.fromarray(rgb)
        if max_side:
            img.thumbnail((max_side, max_side))
        out.append(img)
    return out


def _moment_times(start: float, end: float, n: int) -> list[float]:
    if end <= start or n <= 1:
        return [round((start + end) / 2, 3)]
    step = (end - start) / n
    return [round(start + step * (i + 0.5), 3) for i in range(n)]


def verification_messages(
    query: str,
    video: str,
    start: float,
    end: float,
    *,
    num_frames: int = 4,
    video_id: Optional[str] = None,
) -> list[ChatMessage]:
    """The conversation the policy verifies one moment in (the ``verify`` node's, and ``training.sqr``'s).

    Args:
        query: The user's query (always the original one).
        video: The moment's video path (frames are references into it).
        start: Moment start in seconds.
        end: Moment end in seconds.
        num_frames: Evenly spaced frames of the moment, each after its timestamp text.
        video_id: Id shown to the policy (default: the file's stem).

    Returns:
        ``[system, user]`` chat messages, frames as references.
    """
    blocks: list[dict[str, Any]] = []
    for t in _moment_times(float(start), float(end), num_frames):
        blocks += [text_block(protocol.format_timestamp(t)), frame_block(video, t)]
    shown_id = video_id if video_id is not None else Path(video).stem
    blocks.append(text_block(protocol.corpus_user_text(query, shown_id, float(start), float(end))))
    return [
        {"role": "system", "content": protocol.CORPUS_SYSTEM_PROMPT},
        {"role": "user", "content": blocks},
    ]


def _reply_kwargs(refiner: Callable[..., Any], gen: Any) -> dict[str, Any]:
    """The verification reply, for a refiner that accepts it (``completion_ids`` / ``reply``)."""
    import inspect

    try:
        params = inspect.signature(refiner).parameters
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    if "completion_ids" in params and getattr(gen, "completion_ids", None) is not None:
        out["completion_ids"] = gen.completion_ids
    if "reply" in params:
        out["reply"] = gen.text
    return out


def build_corpus_graph(
    policy: Policy,
    moment_searcher: Any,
    *,
    max_rounds: int = 3,
    temporal: Any = None,
    top_k: int = 5,
    verify_frames: int = 4,
    max_new_tokens: Optional[int] = None,
    frames: Optional[FrameResolver] = None,
    temporal_kwargs: Optional[dict[str, Any]] = None,
) -> StateGraph:
    """Build the corpus search graph (uncompiled).

    Args:
        policy: The policy that verifies hits and rewrites queries.
        moment_searcher: A ``MomentSearcher`` (``search(query, top_k=..., video=None)``).
        max_rounds: Verification rounds allowed (default 3).
        temporal: Optional follow-up inside the matched video: a ``TemporalSearcher`` (the
            temporal graph is built over it with the same policy), a ``StateGraph``, or a
            compiled graph with the temporal graph's input.
        top_k: Moments retrieved per search.
        verify_frames: Frames of the moment shown to the policy.
        max_new_tokens: Tokens per verification turn (default: the policy's).
        frames: Frame resolver (default: the temporal searcher's ``frames`` if given, else
            decoding from the moment's file).
        temporal_kwargs: Extra :func:`build_temporal_graph` arguments (``max_turns``, ``verify``…).

    Returns:
        A ``StateGraph`` over :class:`CorpusState`.

    Raises:
        InvalidArgumentError: On ``max_rounds``, ``verify_frames`` or ``top_k`` below 1, or a policy whose
            manifest claims soft refinement but that has no ``refine_query_vector``.
    """
    if max_rounds < 1:
        raise InvalidArgumentError(f"max_rounds must be >= 1, got {max_rounds}")
    if verify_frames < 1:
        raise InvalidArgumentError(f"verify_frames must be >= 1, got {verify_frames}")
    if top_k < 1:
        raise InvalidArgumentError(f"top_k must be >= 1, got {top_k}")
    base = frames or getattr(temporal, "frames", None) or video_frame_resolver
    resolver = CachingResolver(base)
    soft: Optional[Callable[..., Any]] = None
    manifest = getattr(policy, "manifest", None)
    if getattr(manifest, "soft_refinement", False):
        soft = getattr(policy, "refine_query_vector", None)
        if not callable(soft):  # never fall back to text refinement behind the user's back
            raise InvalidArgumentError(
                f"policy {getattr(policy, 'name', policy)!r} has soft_refinement: true in its manifest but "
                "no refine_query_vector; load it with agent_tools.policies.load_policy (which attaches "
                "the training.sqr projector), or set soft_refinement to false"
            )
        use_encoder = getattr(soft, "use_encoder", None)  # the index's encoder; another one is refused
        if callable(use_encoder) and getattr(moment_searcher, "encoder", None) is not None:
            use_encoder(moment_searcher.encoder)

    inner = None
    tkw = dict(temporal_kwargs or {})
    if temporal is not None:
        if isinstance(temporal, StateGraph):
            inner = temporal.compile()
        elif hasattr(temporal, "seek"):
            inner = build_temporal_graph(policy, temporal, **tkw).compile()
        elif hasattr(temporal, "invoke"):
            inner = temporal
        else:
            raise InvalidArgumentError(
                "temporal must be a TemporalSearcher, a StateGraph or a compiled graph, "
                f"got {type(temporal).__name__}"
            )

    def search(state: CorpusState) -> dict[str, Any]:
        query = state.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgumentError("the graph input needs a non-empty 'query' string")
        current = state.get("current_query") or query
        vector = state.get("query_vector")
        q: Any = np.asarray(vector, dtype=np.float32) if vector else current
        result = moment_searcher.search(q, top_k=top_k)
        rejected = set(state.get("rejected") or [])
        for m in result.moments:
            d = m.model_dump(mode="json")
            if moment_key(d) not in rejected:
                return {
                    "current_query": current,
                    "moment": d,
                    "status": "running",
                    "round": int(state.get("round", 0)),
                }
        return {
            "current_query": current,
            "moment": None,
            "status": "running",
            "round": int(state.get("round", 0)),
        }

    def verify(state: CorpusState) -> dict[str, Any]:
        m = state["moment"]
        convo = verification_messages(
            state["query"], m["path"], m["start"], m["end"], num_frames=verify_frames, video_id=m["video_id"]
        )
        user = HumanMessage(content=convo[1]["content"])
        gen = policy.generate_details(convo, max_new_tokens=max_new_tokens, frames=resolver)
        verdict = protocol.parse_verification(gen.text)
        rnd = int(state.get("round", 0)) + 1
        record = {
            "round": rnd,
            "query": state.get("current_query"),
            "moment": m,
            "matched": verdict.matched,
            "start": verdict.start,
            "end": verdict.end,
            "refined_query": verdict.query,
            "think": verdict.think,
            "error": verdict.error,
            "reply": gen.text,
            "completion_ids": gen.completion_ids,
        }
        update: dict[str, Any] = {
            "round": rnd,
            "rounds": [record],
            "messages": [user, AIMessage(content=gen.text, response_metadata={"round": rnd})],
        }
        if verdict.matched:
            start = verdict.start if verdict.start is not None else float(m["start"])
            end = verdict.end if verdict.end is not None else float(m["end"])
            if end <= start:  # an unusable window: fall back to the retrieved one
                start, end = float(m["start"]), float(m["end"])
            update["answer"] = {
                "video_id": m["video_id"],
                "path": m["path"],
                "start": max(0.0, start),
                "end": end,
                "score": m.get("score"),
            }
            update["status"] = "matched"
        else:
            update["rejected"] = [moment_key(m)]
            if soft is not None:
                # the refiner reads the policy's own reasoning and verdict (VideoSearch-R1's <REFINE>)
                vec = soft(convo, frames=resolver, **_reply_kwargs(soft, gen))
                update["query_vector"] = [float(x) for x in np.asarray(vec, dtype=np.float32).ravel()]
        return update

    def refine(state: CorpusState) -> dict[str, Any]:
        last = (state.get("rounds") or [{}])[-1]
        rewritten = (last.get("refined_query") or "").strip()
        return {"current_query": rewritten or state.get("current_query") or state["query"]}

    def give_up(state: CorpusState) -> dict[str, Any]:
        return {"status": "not_found", "answer": None}

    def run_temporal(state: CorpusState) -> dict[str, Any]:
        a = state["answer"]
        out = inner.invoke(
            {"question": state["question"], "video": a["path"], "window": [a["start"], a["end"]]}
        )
        keep = ("answer", "status", "frames", "turn", "verification", "duration")
        return {"temporal": {k: out.get(k) for k in keep if k in out}}

    def after_search(state: CorpusState) -> str:
        return "verify" if state.get("moment") else "give_up"

    def after_verify(state: CorpusState) -> str:
        if state.get("status") == "matched":
            return "temporal" if inner is not None and state.get("question") else END
        return "give_up" if int(state.get("round", 0)) >= max_rounds else "refine"

    g = StateGraph(CorpusState, input_schema=CorpusInput, output_schema=CorpusOutput)
    g.add_node("search", search)
    g.add_node("verify", verify)
    g.add_node("refine", refine)
    g.add_node("give_up", give_up)
    g.add_edge(START, "search")
    g.add_conditional_edges("search", after_search, ["verify", "give_up"])
    targets = ["refine", "give_up", END]
    if inner is not None:
        g.add_node("temporal", run_temporal)
        g.add_edge("temporal", END)
        targets.append("temporal")
    g.add_conditional_edges("verify", after_verify, targets)
    g.add_edge("refine", "search")
    g.add_edge("give_up", END)
    return g
