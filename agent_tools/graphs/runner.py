"""Drive a compiled temporal graph turn by turn: for the CLI, for users, and for RL rollouts.

:class:`AgentRunner` streams the graph (``stream_mode="updates"``) and turns node updates
into :class:`Turn` records as they happen; when the run ends it yields a :class:`Rollout`
with everything a trainer needs to score and train on it:

- ``rollout.messages`` - the full conversation in the chat format (frames as references;
  resolve them with :func:`agent_tools.policies.resolve_frames` to rebuild model inputs);
- ``rollout.turns[i].text`` / ``rollout.generated`` - each generated turn exactly as it entered
  the conversation, plus ``raw_text``, ``completion_ids`` and token counts when the backend
  gives them;
- ``rollout.answer``, ``rollout.status``, ``rollout.frames`` (searched timestamps) and
  ``rollout.verification`` (completeness check) - the inputs of format, accuracy and
  completeness rewards.

Usage::

    runner = AgentRunner(build_temporal_graph(policy, searcher, verify=True))
    for event in runner.stream("What is cut?", "/videos/cooking.mp4"):
        print(event)                 # Turn ..., then the Rollout
    rollout = runner.run("What is cut?", "/videos/cooking.mp4")
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional, Union

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import StateGraph
from langgraph.graph.message import add_messages

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs.temporal import recursion_limit_for
from agent_tools.policies.base import to_chat_messages

__all__ = ["Turn", "Rollout", "AgentRunner"]


@dataclass
class Turn:
    """One assistant turn and what came back.

    Attributes:
        index: 1-based turn number.
        text: The turn as it entered the conversation (cut after the first closing tag).
        action: ``tool_call``, ``answer`` or ``invalid``.
        think: The reasoning text.
        tool: Tool name of a call.
        arguments: Call arguments as the model wrote them.
        answer: Answer text of an answer turn.
        error: Why the reply was invalid, or the search error.
        window: ``(start, end)`` the search ran over (from the tool result).
        timestamps: Timestamps of the frames the search returned.
        observation: Text of the tool or corrective message.
        generation: Generation metadata (``raw_text``, ``completion_ids``, token counts, seconds).
    """

    index: int
    text: str
    action: str
    think: Optional[str] = None
    tool: Optional[str] = None
    arguments: dict[str, Any] = field(default_factory=dict)
    answer: Optional[str] = None
    error: Optional[str] = None
    window: Optional[tuple[float, float]] = None
    timestamps: list[float] = field(default_factory=list)
    observation: Optional[str] = None
    generation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class Rollout:
    """A finished run of the temporal graph."""

    question: str
    video: str
    answer: Optional[str]
    status: str
    turns: list[Turn]
    frames: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    verification: Optional[dict[str, Any]] = None
    duration: Optional[float] = None
    thread_id: Optional[str] = None

    @property
    def generated(self) -> list[str]:
        """Per-turn generated text, in order (the policy's tokens, nothing else)."""
        return [t.text for t in self.turns]

    @property
    def searched_timestamps(self) -> list[float]:
        """Distinct searched timestamps, sorted."""
        return sorted({float(f["timestamp"]) for f in self.frames})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["generated"] = self.generated
        return d


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def _final(events: Iterator[Union[Turn, Rollout]]) -> Rollout:
    """Drain :meth:`AgentRunner.stream` and return its last event, the :class:`Rollout`."""
    *_, last = events
    return last


class AgentRunner:
    """Runs a temporal graph and reports turns.

    Args:
        graph: An uncompiled ``StateGraph`` (compiled here with ``checkpointer``) or a compiled one.
        checkpointer: Checkpointer for an uncompiled graph (needed for :meth:`resume`).
        max_turns: The graph's turn budget (only used to size ``recursion_limit``).
    """

    def __init__(self, graph: Any, *, checkpointer: Any = None, max_turns: int = 8):
        if isinstance(graph, StateGraph):
            graph = graph.compile(checkpointer=checkpointer)
        elif checkpointer is not None:
            raise InvalidArgumentError("pass checkpointer only with an uncompiled StateGraph")
        self.graph = graph
        self.max_turns = max_turns

    def _config(self, thread_id: Optional[str], config: Optional[dict[str, Any]]) -> dict[str, Any]:
        cfg = dict(config or {})
        # the graph ends itself through its turn budget; older LangGraph defaults (25) are too low
        cfg.setdefault("recursion_limit", max(10_000, recursion_limit_for(self.max_turns)))
        if getattr(self.graph, "checkpointer", None) is not None:
            conf = dict(cfg.get("configurable") or {})
            conf.setdefault("thread_id", thread_id or uuid.uuid4().hex)
            cfg["configurable"] = conf
        return cfg

    def stream(
        self,
        question: Optional[str],
        video: Optional[str],
        *,
        window: Optional[tuple[float, float]] = None,
        thread_id: Optional[str] = None,
        config: Optional[dict[str, Any]] = None,
    ) -> Iterator[Union[Turn, Rollout]]:
        """Run the graph, yielding each :class:`Turn` when it completes, then the :class:`Rollout`.

        Args:
            question: The question (None together with ``video=None`` resumes ``thread_id``).
            video: Video path or id.
            window: Optional ``(start, end)`` hint for the policy.
            thread_id: Checkpointer thread (a new one by default).
            config: Extra LangGraph config.

        Yields:
            Turns, then one Rollout.
        """
        cfg = self._config(thread_id, config)
        if question is None and video is None:
            inputs = None
        else:
            inputs = {"question": question, "video": video}
            if window is not None:
                inputs["window"] = [float(window[0]), float(window[1])]
        messages: list[Any] = []
        values: dict[str, Any] = {}
        pending: Optional[Turn] = None
        for mode, chunk in self.graph.stream(inputs, cfg, stream_mode=["updates", "values"]):
            if mode == "values":  # the graph's output keys after each step (no conversation)
                values = dict(chunk) if isinstance(chunk, dict) else values
                continue
            for update in chunk.values():
                if not isinstance(update, dict):
                    continue
                new = update.get("messages") or []
                if new:
                    messages = add_messages(messages, new)
                for msg in new:
                    if isinstance(msg, AIMessage):
                        if pending is not None:
                            yield pending
                        pending = self._turn_from_ai(msg)
                        if pending.action == "answer":
                            yield pending
                            pending = None
                    elif isinstance(msg, ToolMessage) and pending is not None:
                        self._attach_observation(pending, msg)
                        yield pending
                        pending = None
        if pending is not None:
            yield pending
        state: dict[str, Any] = {}
        if getattr(self.graph, "checkpointer", None) is not None:
            state = dict(self.graph.get_state(cfg).values)
        if not state:
            state = dict(values, messages=messages)
        all_msgs = state.get("messages") or messages
        turns = [self._turn_from_ai(m) for m in all_msgs if isinstance(m, AIMessage)]
        by_id = {m.tool_call_id: m for m in all_msgs if isinstance(m, ToolMessage)}
        for t, m in zip(turns, [m for m in all_msgs if isinstance(m, AIMessage)]):
            call_id = m.tool_calls[0]["id"] if m.tool_calls else f"parse_error_{t.index}"
            if call_id in by_id:
                self._attach_observation(t, by_id[call_id])
        yield Rollout(
            question=state.get("question", question or ""),
            video=state.get("video", video or ""),
            answer=state.get("answer"),
            status=state.get("status", "unknown"),
            turns=turns,
            frames=[dict(f) for f in state.get("frames") or []],
            messages=to_chat_messages(all_msgs),
            verification=state.get("verification"),
            duration=state.get("duration"),
            thread_id=(cfg.get("configurable") or {}).get("thread_id"),
        )

    def run(self, question: str, video: str, **kwargs: Any) -> Rollout:
        """Run to the end and return the :class:`Rollout` (see :meth:`stream`)."""
        return _final(self.stream(question, video, **kwargs))

    def resume(self, thread_id: str, **kwargs: Any) -> Rollout:
        """Continue an interrupted run from its last checkpoint and return its Rollout.

        Raises:
            InvalidArgumentError: If the graph has no checkpointer.
        """
        if getattr(self.graph, "checkpointer", None) is None:
            raise InvalidArgumentError("resume needs a graph compiled with a checkpointer")
        return _final(self.stream(None, None, thread_id=thread_id, **kwargs))

    @staticmethod
    def _turn_from_ai(msg: AIMessage) -> Turn:
        meta = dict(msg.response_metadata or {})
        text = _content_text(msg.content)
        action = protocol.parse_action(text)
        return Turn(
            index=int(meta.get("turn", 0)),
            text=text,
            action=action.kind,
            think=action.think,
            tool=action.name,
            arguments=dict(action.arguments),
            answer=action.answer,
            error=action.error,
            generation={k: v for k, v in meta.items() if k not in ("turn", "action")},
        )

    @staticmethod
    def _attach_observation(turn: Turn, msg: ToolMessage) -> None:
        turn.observation = _content_text(msg.content)
        if msg.status == "error" and turn.error is None:
            turn.error = turn.observation
        art = msg.artifact if isinstance(msg.artifact, dict) else None
        if art:
            turn.window = (float(art.get("start_time", 0.0)), float(art.get("end_time", 0.0)))
            turn.timestamps = [float(f["timestamp"]) for f in art.get("frames", [])]
        elif isinstance(msg.content, list):
            turn.timestamps = [
                float(b["timestamp"]) for b in msg.content if isinstance(b, dict) and b.get("type") == "frame"
            ]
