"""The temporal search graph: a policy searches one video until it can answer.

Nodes (see :func:`build_temporal_graph`)::

    START -> preview -> policy -+-> seek -> policy ...        (a tool call)
                                +-> policy                   (malformed reply: corrective tool message)
                                +-> answer -> [verify] -> END (an answer, or the turn budget spent)

- ``preview`` reads the video's duration and puts evenly spaced preview frames (as
  references, each after its timestamp) and the question in the first user turn.
- ``policy`` renders the conversation for the policy, which fetches the frames it needs,
  and parses its reply (:func:`agent_tools.protocol.parse_action`).
- ``seek`` runs ``searcher.seek`` with the coerced arguments; its result goes back as a tool
  message of timestamp texts and frame references; search errors go back as error tool
  messages the policy can correct. The first search in a new video embeds it; its progress
  streams as ``custom`` events ``{"event": "embedding", "done", "total"}``.
- ``answer`` finalises the status (``answered`` / ``budget_exhausted``), optionally asking
  for a last answer when the budget ran out (``force_answer``).
- ``verify`` (optional) is the completeness self-verification: the same policy re-answers
  from the searched frames alone, and the result says whether that evidence sufficed (with
  no searched frames it is insufficient and there is no re-answer: ``answer`` is None).

The node bodies are also public, so another rollout loop (``training.csv_env``'s TRL
environment) builds the same turns: :func:`preview_turn`, :func:`seek_turn`,
:func:`verify_frames` (and its prompt, :func:`verify_messages`), :func:`frame_cap`.

The builder returns an uncompiled ``StateGraph``; compile it with your own checkpointer, or
add it to your graph as a subgraph (its input is :class:`TemporalInput`, its output
:class:`TemporalOutput`, so a parent's ``messages`` are never touched).

Usage::

    graph = build_temporal_graph(policy, searcher, max_turns=8, verify=True).compile()
    out = graph.invoke({"question": "What does the chef cut?", "video": "/videos/cooking.mp4"})
    out["answer"], out["frames"]
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Optional

from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage, ToolMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.types import Overwrite

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError, VideoseekError
from agent_tools.graphs.state import FrameRef, TemporalInput, TemporalOutput, TemporalState
from agent_tools.policies.base import (
    CachingResolver,
    FrameResolver,
    Policy,
    frame_block,
    text_block,
)

__all__ = [
    "build_temporal_graph",
    "recursion_limit_for",
    "generation_metadata",
    "frame_cap",
    "preview_turn",
    "seek_turn",
    "said_block",
    "verify_frames",
    "verify_messages",
]


def recursion_limit_for(max_turns: int) -> int:
    """Steps a run of ``max_turns`` turns can take (with verify): a sufficient ``recursion_limit``.

    LangGraph 1.x defaults to 10 000 steps; older releases default to 25, which 8 turns fit
    but more do not.
    """
    return 2 * max_turns + 8


def generation_metadata(gen: Any, turn: int, action: protocol.Action) -> dict[str, Any]:
    """What an assistant message records about its generation (for trainers and logs)."""
    meta: dict[str, Any] = {
        "turn": turn,
        "action": action.kind,
        "raw_text": gen.text,
        "finish_reason": gen.finish_reason,
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "seconds": round(float(gen.seconds), 4),
    }
    if gen.completion_ids is not None:
        meta["completion_ids"] = list(gen.completion_ids)
    if action.error:
        meta["error"] = action.error
    return meta


def _normalise(text: Optional[str]) -> str:
    return re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).strip()


# The node bodies below are module-level so that other rollout loops (``training.csv_env``'s
# TRL environment) build the same prompt, tool result and completeness check as this graph.


def frame_cap(searcher: Any) -> int:
    """Most frames one search or preview may return with ``searcher`` (its ``max_frames``, else 8)."""
    return int(
        getattr(searcher, "max_frames", protocol.MAX_FRAMES_PER_SEARCH) or protocol.MAX_FRAMES_PER_SEARCH
    )


def preview_turn(
    searcher: Any,
    video: str,
    question: str,
    *,
    max_turns: int,
    preview_frames: int,
    window: Optional[tuple[float, float]] = None,
    speech: Any = None,
) -> tuple[float, list[dict[str, Any]]]:
    """The first user turn: ``(duration, content blocks)`` (preview frame references + the prompt).

    With ``speech``, the sentences said around the preview frames come before the prompt.

    Raises:
        InvalidArgumentError: On an empty question or video.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidArgumentError("the graph input needs a non-empty 'question' string")
    if not isinstance(video, str) or not video:
        raise InvalidArgumentError("the graph input needs 'video': a video path or id")
    duration = float(searcher.info(video).duration)
    blocks: list[dict[str, Any]] = []
    if preview_frames:
        sel = searcher.preview(video, num_frames=min(preview_frames, frame_cap(searcher)))
        for t in sel.timestamps:
            blocks += [text_block(protocol.format_timestamp(t)), frame_block(video, t)]
        said = said_block(speech, video, sel.timestamps) if speech is not None else None
        if said is not None:
            blocks.append(said)
    blocks.append(text_block(protocol.user_prompt(question, duration, max_turns, window=window)))
    return duration, blocks


def seek_turn(
    searcher: Any,
    video: str,
    arguments: dict[str, Any],
    duration: Optional[float],
    *,
    turn: int = 0,
    speech: Any = None,
    **seek_kwargs: Any,
) -> tuple[Any, list[FrameRef], Any]:
    """Run one ``seek_video_frames`` call: ``(tool message content, frame refs, selection or None)``.

    The content is a list of blocks (timestamp text + frame reference per frame, then
    :func:`~agent_tools.protocol.search_response_text`); a search error becomes the text
    ``"The search failed: ..."`` (no refs, selection None) that the policy can correct. With
    ``speech`` (a :class:`~agent_tools.speech.searcher.SpeechSearcher`) the sentences said
    around the chosen frames follow (:func:`said_block`).
    """
    args = protocol.coerce_seek_arguments(arguments, duration)
    args["num_frames"] = min(args["num_frames"], frame_cap(searcher))
    try:
        sel = searcher.seek(video, **args, **seek_kwargs)
    except VideoseekError as exc:
        return f"The search failed: {exc}", [], None
    blocks: list[dict[str, Any]] = []
    refs: list[FrameRef] = []
    for f in sel.frames:
        # the search score travels with the reference (text observations show it; image policies ignore it)
        ref = {**frame_block(video, f.timestamp), "score": f.score}
        blocks += [text_block(protocol.format_timestamp(f.timestamp)), ref]
        refs.append(
            {
                "video": video,
                "timestamp": float(f.timestamp),
                "score": f.score,
                "turn": turn,
                "query": args["query"],
            }
        )
    blocks.append(text_block(protocol.search_response_text(sel.timestamps)))
    if speech is not None:
        said = said_block(speech, video, sel.timestamps)
        if said is not None:
            blocks.append(said)
    return blocks, refs, sel


def said_block(speech: Any, video: str, timestamps: list[float], radius: float = 3.0) -> Optional[dict[str, Any]]:
    """A text block quoting what is said within ``radius`` s of ``timestamps`` (``None`` when nothing).

    A video whose audio cannot be read adds nothing (the frames still answer).
    """
    try:
        said = speech.said_near(video, timestamps, radius=radius)
    except VideoseekError:
        return None
    if not said:
        return None
    lines = [
        f"[{protocol.format_timestamp(a)}-{protocol.format_timestamp(b)}] \"{text}\"" for a, b, text in said
    ]
    return text_block("Said near these frames:\n" + "\n".join(lines))


def verify_frames(
    policy: Policy,
    question: str,
    frames_seen: list[FrameRef],
    answer: Optional[str],
    *,
    frames: Optional[FrameResolver] = None,
    max_new_tokens: Optional[int] = None,
) -> dict[str, Any]:
    """Completeness self-verification: ``policy`` re-answers ``question`` from ``frames_seen`` alone.

    With no searched frames the evidence is insufficient and the policy is not asked.

    Returns:
        ``{"answer", "sufficient", "agrees", "num_frames", "reply"}`` (the graph's ``verification``).
    """
    if not frames_seen:  # nothing was searched: insufficient by definition, the policy is not asked
        return {"answer": None, "sufficient": False, "agrees": False, "num_frames": 0, "reply": None}
    convo = verify_messages(question, frames_seen)
    gen = policy.generate_details(convo, max_new_tokens=max_new_tokens, frames=frames)
    re_answer = protocol.extract_answer(gen.text)
    if re_answer is None:
        re_answer = re.sub(r"<think>.*?(</think>|$)", "", gen.text, flags=re.DOTALL).strip()
    sufficient = not protocol.is_insufficient(re_answer)
    agrees = bool(answer) and sufficient and _normalise(re_answer) == _normalise(answer)
    return {
        "answer": re_answer,
        "sufficient": sufficient,
        "agrees": agrees,
        "num_frames": len(frames_seen),
        "reply": gen.text,
    }


def verify_messages(question: str, frames_seen: list[FrameRef]) -> list[dict[str, Any]]:
    """The completeness check's prompt: the searched frames (time order, each after its timestamp), then the question.

    :func:`verify_frames` asks the policy this; trainers use it to demonstrate the re-answer.

    Args:
        question: The episode's question.
        frames_seen: Frame references (``{"video", "timestamp"}``) the episode searched.

    Returns:
        System and user chat messages (frames as references).
    """
    blocks: list[dict[str, Any]] = []
    for f in sorted(frames_seen, key=lambda f: (f["video"], f["timestamp"])):
        blocks += [
            text_block(protocol.format_timestamp(f["timestamp"])),
            frame_block(f["video"], f["timestamp"]),
        ]
    blocks.append(text_block(protocol.verify_user_text(question)))
    return [
        {"role": "system", "content": protocol.VERIFY_SYSTEM_PROMPT},
        {"role": "user", "content": blocks},
    ]


def build_temporal_graph(
    policy: Policy,
    searcher: Any,
    *,
    max_turns: int = 8,
    verify: bool = False,
    max_new_tokens: Optional[int] = None,
    preview_frames: int = 8,
    force_answer: bool = False,
    frames: Optional[FrameResolver] = None,
    observation: Optional[str] = None,
    tagger: Any = None,
    speech: Any = None,
) -> StateGraph:
    """Build the temporal search graph (uncompiled).

    Args:
        policy: The search policy.
        searcher: A ``TemporalSearcher`` (``info``, ``preview``, ``seek``, ``frames``).
        max_turns: Assistant turns allowed, searches and corrections included (default 8).
        verify: Add the completeness self-verification node.
        max_new_tokens: Tokens per turn (default: the policy's).
        preview_frames: Frames in the first user turn (0 for none; capped at the searcher's
            ``max_frames``).
        force_answer: When the budget runs out without an answer, ask once more for one.
        frames: Frame resolver for the policy (default ``searcher.frames``).
        observation: ``"images"`` (frame references, resolved to pixels by the policy) or
            ``"text"``: preview and tool results hold each frame as a text line (timestamp, search
            score, zero-shot tags; :func:`agent_tools.observations.text_blocks`), for text-only policies.
            Default: ``"text"`` for a ``text_only`` policy, else ``"images"``.
        tagger: The :class:`~agent_tools.observations.FrameTagger` of text observations (default:
            the policy's ``tagger``; else, when the policy's manifest has a ``tag_vocabulary``, an
            :class:`~agent_tools.observations.EncoderTagger` over ``searcher`` with that vocabulary
            and ``tag_top_k`` - the tags it was trained to read; else none: timestamps and scores).
        speech: A :class:`~agent_tools.speech.searcher.SpeechSearcher`: the policy also reads the
            sentences said within 3 s of the frames it is shown (preview and each search).

    Returns:
        A ``StateGraph`` over :class:`TemporalState`; call ``.compile(checkpointer=...)``.

    Raises:
        InvalidArgumentError: On a non-positive ``max_turns``, negative ``preview_frames`` or an
            unknown ``observation``.
    """
    if observation is None:
        observation = "text" if getattr(policy, "text_only", False) else "images"
    if observation not in ("images", "text"):
        raise InvalidArgumentError(f"observation must be 'images' or 'text', got {observation!r}")
    if observation == "text" and tagger is None:
        tagger = getattr(policy, "tagger", None)
        vocabulary = getattr(getattr(policy, "manifest", None), "tag_vocabulary", None)
        if tagger is None and vocabulary and getattr(searcher, "encoder", None) is not None:
            from agent_tools.observations import EncoderTagger

            tagger = EncoderTagger(searcher, vocabulary, top_k=policy.manifest.tag_top_k)

    def observe(blocks: Any) -> Any:
        """Tool/preview content as the policy will read it (text lines in text mode)."""
        if observation != "text" or isinstance(blocks, str):
            return blocks
        from agent_tools.observations import text_blocks

        return text_blocks(blocks, tagger)

    if max_turns < 1:
        raise InvalidArgumentError(f"max_turns must be >= 1, got {max_turns}")
    if preview_frames < 0:
        raise InvalidArgumentError(f"preview_frames must be >= 0, got {preview_frames}")
    base_resolver = frames if frames is not None else getattr(searcher, "frames", None)
    resolver = CachingResolver(base_resolver) if base_resolver is not None else None

    try:
        takes_progress = "progress" in inspect.signature(searcher.seek).parameters
    except (TypeError, ValueError):
        takes_progress = False

    def progress_kwargs() -> dict[str, Any]:
        """Embedding progress of a first search in a new video, as ``custom`` stream events."""
        if not takes_progress:
            return {}
        writer = get_stream_writer()

        def report(done: int, total: int) -> None:
            writer({"event": "embedding", "done": int(done), "total": int(total)})

        return {"progress": report}

    def preview(state: TemporalState) -> dict[str, Any]:
        window = state.get("window")
        win = (float(window[0]), float(window[1])) if window else None
        duration, blocks = preview_turn(
            searcher,
            state.get("video"),
            state.get("question"),
            max_turns=max_turns,
            preview_frames=preview_frames,
            window=win,
            speech=speech,
        )
        return {
            "duration": duration,
            "messages": [
                RemoveMessage(id=REMOVE_ALL_MESSAGES),
                SystemMessage(content=protocol.system_prompt([protocol.SEEK_TOOL])),
                HumanMessage(content=observe(blocks)),
            ],
            "frames": Overwrite([]),
            "turn": 0,
            "answer": None,
            "status": "running",
            "verification": None,
        }

    def policy_node(state: TemporalState) -> dict[str, Any]:
        turn = int(state.get("turn", 0)) + 1
        # LangChain messages go in as they are: the policy converts them once, in ``prepare``
        gen = policy.generate_details(state["messages"], max_new_tokens=max_new_tokens, frames=resolver)
        text = protocol.cleanup_response(gen.text)
        action = protocol.parse_action(text)
        meta = generation_metadata(gen, turn, action)
        update: dict[str, Any] = {"turn": turn}
        if action.kind == "tool_call":
            call_id = f"call_{turn}"
            ai = AIMessage(
                content=text,
                tool_calls=[
                    {"name": action.name, "args": action.arguments, "id": call_id, "type": "tool_call"}
                ],
                response_metadata=meta,
            )
            update["messages"] = [ai]
        elif action.kind == "answer":
            update["messages"] = [AIMessage(content=text, response_metadata=meta)]
            update["answer"] = action.answer
        else:
            update["messages"] = [
                AIMessage(content=text, response_metadata=meta),
                ToolMessage(
                    content=protocol.corrective_text(action.error or "unreadable reply"),
                    name="parse_error",
                    tool_call_id=f"parse_error_{turn}",
                    status="error",
                ),
            ]
        return update

    def seek(state: TemporalState) -> dict[str, Any]:
        ai = state["messages"][-1]
        call = ai.tool_calls[0]
        turn = int(state.get("turn", 0))
        video = state["video"]
        blocks, refs, sel = seek_turn(
            searcher, video, call["args"], state.get("duration"), turn=turn, speech=speech, **progress_kwargs()
        )
        if sel is None:
            return {
                "messages": [
                    ToolMessage(content=blocks, name=call["name"], tool_call_id=call["id"], status="error")
                ]
            }
        msg = ToolMessage(
            content=observe(blocks),
            name=call["name"],
            tool_call_id=call["id"],
            artifact=sel.model_dump(mode="json"),
        )
        return {"messages": [msg], "frames": refs}

    def answer(state: TemporalState) -> dict[str, Any]:
        if state.get("answer"):
            return {"status": "answered"}
        update: dict[str, Any] = {"status": "budget_exhausted"}
        if force_answer:
            ask = HumanMessage(content=protocol.budget_text())
            convo = list(state["messages"]) + [ask]
            gen = policy.generate_details(convo, max_new_tokens=max_new_tokens, frames=resolver)
            text = protocol.cleanup_response(gen.text)
            action = protocol.parse_action(text)
            turn = int(state.get("turn", 0)) + 1
            meta = generation_metadata(gen, turn, action)
            meta["forced"] = True
            update["messages"] = [ask, AIMessage(content=text, response_metadata=meta)]
            update["turn"] = turn
            if action.kind == "answer":
                update["answer"] = action.answer
        return update

    def verify_node(state: TemporalState) -> dict[str, Any]:
        return {
            "verification": verify_frames(
                policy,
                state["question"],
                state.get("frames") or [],
                state.get("answer"),
                frames=resolver,
                max_new_tokens=max_new_tokens,
            )
        }

    def after_policy(state: TemporalState) -> str:
        last = state["messages"][-1]
        if state.get("answer"):
            return "answer"
        if isinstance(last, AIMessage) and last.tool_calls:
            return "seek"
        return "answer" if int(state.get("turn", 0)) >= max_turns else "policy"

    def after_seek(state: TemporalState) -> str:
        return "answer" if int(state.get("turn", 0)) >= max_turns else "policy"

    g = StateGraph(TemporalState, input_schema=TemporalInput, output_schema=TemporalOutput)
    g.add_node("preview", preview)
    g.add_node("policy", policy_node)
    g.add_node("seek", seek)
    g.add_node("answer", answer)
    g.add_edge(START, "preview")
    g.add_edge("preview", "policy")
    g.add_conditional_edges("policy", after_policy, ["seek", "policy", "answer"])
    g.add_conditional_edges("seek", after_seek, ["policy", "answer"])
    if verify:
        g.add_node("verify", verify_node)
        g.add_edge("answer", "verify")
        g.add_edge("verify", END)
    else:
        g.add_edge("answer", END)
    return g
