"""The text protocol between a search policy and the video tools.

Everything a policy reads or writes as text lives here, as data and small pure
functions, so the graphs, the CLI, the trainer and the tests share one definition:

- Tool schemas: :data:`SEEK_TOOL` (``seek_video_frames(query, start_time, end_time,
  num_frames)``, the temporal search of TimeSearch-R's tool) and :data:`MOMENT_TOOL`
  (``search_moments(query, top_k)``, corpus search), both in the OpenAI ``function`` format.
- Prompts: :func:`system_prompt`, :func:`user_prompt`, :func:`search_response_text`,
  :func:`corrective_text`, :func:`budget_text`, :func:`format_timestamp`, :func:`format_timestamps`,
  the completeness check (:data:`VERIFY_SYSTEM_PROMPT`,
  :func:`verify_user_text`, :func:`is_insufficient`) and the corpus verification
  (:data:`CORPUS_SYSTEM_PROMPT`, :func:`corpus_user_text`).
- Parsing: :func:`cleanup_response` (cut after the first closing tag of :data:`STOP_STRINGS`),
  :func:`close_open_block` (re-add a closing tag a stop string removed) and
  :func:`parse_action` (the first ``<tool_call>`` or ``<answer>`` block, with lenient JSON
  repair by :func:`repair_json`, which uses ``json-repair``); :func:`extract_answer`;
  :func:`parse_verification` for corpus verdicts.
- :data:`REFINE_TOKEN` - the soft-query-refinement token (VideoSearch-R1's output format), shared
  by :mod:`agent_tools.policies.soft_refine` and the trainer's rewards.
- Argument coercion: :func:`coerce_seek_arguments`.

A policy turn is ``<think>...</think>`` followed by exactly one of
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` or ``<answer>...</answer>``.

Usage::

    from agent_tools.protocol import parse_action, format_timestamp
    action = parse_action('<think>look</think><tool_call>{"name": "seek_video_frames", '
                          '"arguments": {"query": "a red car"}}</tool_call>')
    action.kind, action.arguments      # ('tool_call', {'query': 'a red car'})
    format_timestamp(12.5)             # '12.5s'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence

__all__ = [
    "PROMPT_FORMAT",
    "SEEK_TOOL_NAME",
    "MOMENT_TOOL_NAME",
    "MAX_FRAMES_PER_SEARCH",
    "REFINE_TOKEN",
    "STOP_STRINGS",
    "SEEK_TOOL",
    "MOMENT_TOOL",
    "TOOLS",
    "Action",
    "Verdict",
    "format_timestamp",
    "format_timestamps",
    "system_prompt",
    "user_prompt",
    "search_response_text",
    "corrective_text",
    "budget_text",
    "VERIFY_SYSTEM_PROMPT",
    "verify_user_text",
    "is_insufficient",
    "CORPUS_SYSTEM_PROMPT",
    "corpus_user_text",
    "cleanup_response",
    "close_open_block",
    "repair_json",
    "parse_action",
    "parse_verification",
    "coerce_seek_arguments",
    "extract_answer",
]

#: Name of the prompt/answer format; stored in policy manifests and checked on load.
PROMPT_FORMAT = "videoseek-think-tool-v1"
SEEK_TOOL_NAME = "seek_video_frames"
MOMENT_TOOL_NAME = "search_moments"
#: Most frames one search may return (TimeSearch-R's ``MAX_NUM_KEY_FRAMES``).
MAX_FRAMES_PER_SEARCH = 8
#: Closing tags that end a policy turn: generation stops at them (stop strings) and
#: :func:`cleanup_response` cuts after the first.
STOP_STRINGS = ("</tool_call>", "</answer>")
#: The soft-query-refinement token (VideoSearch-R1): the policy's hidden state there is projected.
REFINE_TOKEN = "<REFINE>"
#: End time used when a call gives none: far past any video, i.e. "to the end".
_OPEN_END = 65535.0

SEEK_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": SEEK_TOOL_NAME,
        "description": (
            "Find the frames of the video that best match a text description, inside an optional "
            "time window, and return them with their times. Times are in seconds from the start."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "What to look for: the object, person, scene or event, described "
                    "concretely and in full.",
                },
                "start_time": {"type": "number", "description": "Window start in seconds (default 0)."},
                "end_time": {
                    "type": "number",
                    "description": "Window end in seconds (default: the end of the video).",
                },
                "num_frames": {
                    "type": "integer",
                    "description": f"How many frames to return, 1 to {MAX_FRAMES_PER_SEARCH} "
                    f"(default {MAX_FRAMES_PER_SEARCH}).",
                },
            },
            "required": ["query"],
        },
    },
}

MOMENT_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": MOMENT_TOOL_NAME,
        "description": (
            "Search every indexed video for the moments that match a text description; returns "
            "ranked moments as (video, start, end, score), times in seconds."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Description of the moment to find."},
                "top_k": {"type": "integer", "description": "How many moments to return (default 5)."},
            },
            "required": ["query"],
        },
    },
}

#: Tools by name.
TOOLS: dict[str, dict[str, Any]] = {SEEK_TOOL_NAME: SEEK_TOOL, MOMENT_TOOL_NAME: MOMENT_TOOL}


# --------------------------------------------------------------------------- prompts


def format_timestamp(t: float) -> str:
    """Timestamp text shown next to a frame: one decimal and an ``s`` (``12.5s``)."""
    return f"{float(t):.1f}s"


def format_timestamps(ts: Sequence[float]) -> str:
    """Comma-separated timestamps (``12.5s, 13.0s``)."""
    return ", ".join(format_timestamp(t) for t in ts)


def system_prompt(tools: Sequence[dict[str, Any]] = (SEEK_TOOL,)) -> str:
    """System prompt for the temporal search policy, with the tool schemas embedded as JSON.

    Args:
        tools: Tool schemas in the OpenAI ``function`` format.

    Returns:
        The prompt text.
    """
    schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You answer questions about a long video that you cannot watch in full. You see a few "
        "preview frames; to look closer, use the tool below, which returns the frames of a time "
        "window that best match a description, each labelled with its time in seconds.\n\n"
        "Tool schemas:\n<tools>\n" + schemas + "\n</tools>\n\n"
        "Every reply starts with your reasoning inside <think></think>, followed by exactly one of:\n"
        '- one tool call: <tool_call>{"name": "<tool name>", "arguments": {<JSON arguments>}}'
        "</tool_call>\n"
        "- the final answer: <answer>...</answer>\n"
        "Write nothing after the closing tag."
    )


def user_prompt(
    question: str,
    duration: float,
    max_turns: int,
    *,
    window: Optional[tuple[float, float]] = None,
) -> str:
    """Text of the first user turn, placed after the preview frames.

    Args:
        question: The user's question (options included, if any).
        duration: Video length in seconds.
        max_turns: Reply budget, searches included.
        window: Optional ``(start, end)`` hint, e.g. a moment found by corpus search.

    Returns:
        The prompt text.
    """
    hint = ""
    if window is not None:
        hint = (
            f"The part most likely to matter lies between {format_timestamp(window[0])} and "
            f"{format_timestamp(window[1])}.\n"
        )
    return (
        f"The frames above are an evenly spaced preview of the video.\n"
        f"Video length: {duration:.1f} seconds.\n{hint}"
        f"You have at most {max_turns} replies, searches included. Search until the frames you "
        "have seen support an answer, then give it inside <answer></answer>, based on what the "
        "frames show.\n"
        f"Question: {question}"
    )


def search_response_text(timestamps: Sequence[float]) -> str:
    """Text that follows the frames a search returned."""
    if not timestamps:
        return (
            "The search returned no frames. Try another query or a wider time window, or answer "
            "inside <answer></answer>."
        )
    return (
        f"These frames are at {format_timestamps(timestamps)}. If they are enough to answer the "
        "question, give the answer inside <answer></answer>; otherwise call the tool again with a "
        "different query or time window."
    )


def corrective_text(reason: str) -> str:
    """Message sent back when a reply could not be parsed or its call was invalid."""
    return (
        f"Your last reply could not be used: {reason}. Reply with <think>...</think> followed by "
        'either <tool_call>{"name": "' + SEEK_TOOL_NAME + '", "arguments": {"query": "...", '
        '"start_time": 0, "end_time": 60}}</tool_call> or <answer>...</answer>.'
    )


def budget_text() -> str:
    """Message asking for an answer once the reply budget is spent."""
    return (
        "No searches are left. Give your best answer now inside <answer></answer>, based on the "
        "frames you have seen."
    )


VERIFY_SYSTEM_PROMPT = (
    "Answer the question using only the video frames shown, as briefly as possible. If the frames "
    "do not show enough to answer, reply exactly: I don't know."
)

_UNKNOWN_PATTERNS = (
    "i don't know",
    "i do not know",
    "i dont know",
    "don't know",
    "cannot be determined",
    "can't tell",
    "cannot tell",
    "not enough information",
)


def verify_user_text(question: str) -> str:
    """Text after the searched frames in the completeness check."""
    return f"Question: {question}"


def is_insufficient(answer: Optional[str]) -> bool:
    """True when a (verification) answer says the evidence was not enough."""
    if answer is None:
        return True
    text = answer.strip().lower().replace("\u2019", "'")
    if not text:
        return True
    return any(p in text for p in _UNKNOWN_PATTERNS)


CORPUS_SYSTEM_PROMPT = (
    "You check whether a moment retrieved from a video collection matches a search query. You see "
    "frames of the retrieved moment, each labelled with its time in seconds. Start with your "
    "reasoning inside <think></think>. Then, if the moment matches, write "
    "<answer>matched</answer><start>S</start><end>E</end> with the start and end in seconds of the "
    "part that matches; if it does not, write <answer>not_matched</answer><query>...</query> with "
    "a rewritten query that is more likely to find the right moment. Write nothing else."
)


def corpus_user_text(query: str, video_id: str, start: float, end: float) -> str:
    """Text after the moment's frames in the corpus verification turn."""
    return (
        f"Query: {query}\nRetrieved moment: video {video_id}, from {format_timestamp(start)} to "
        f"{format_timestamp(end)}."
    )


# --------------------------------------------------------------------------- parsing


@dataclass
class Action:
    """One parsed policy reply.

    Attributes:
        kind: ``"tool_call"``, ``"answer"`` or ``"invalid"``.
        text: The cleaned reply (see :func:`cleanup_response`).
        think: Reasoning inside ``<think>``, if any.
        name: Tool name of a call.
        arguments: Tool arguments of a call (a dict).
        answer: Answer text.
        error: Why the reply is invalid (for the corrective message).
    """

    kind: Literal["tool_call", "answer", "invalid"]
    text: str
    think: Optional[str] = None
    name: Optional[str] = None
    arguments: dict[str, Any] = field(default_factory=dict)
    answer: Optional[str] = None
    error: Optional[str] = None


@dataclass
class Verdict:
    """A parsed corpus verification reply.

    Attributes:
        matched: True / False, or None when the reply had no usable verdict.
        start: Start of the matching part (seconds), if given.
        end: End of the matching part (seconds), if given.
        query: Rewritten query, if given.
        think: Reasoning.
        error: Why the reply could not be used, if it could not.
    """

    matched: Optional[bool]
    start: Optional[float] = None
    end: Optional[float] = None
    query: Optional[str] = None
    think: Optional[str] = None
    error: Optional[str] = None


_CLOSERS = re.compile("|".join(re.escape(s) for s in STOP_STRINGS), re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.IGNORECASE | re.DOTALL)
_BLOCK = re.compile(r"<(tool_call|answer)>(.*?)(?:</\1>|$)", re.IGNORECASE | re.DOTALL)


def cleanup_response(text: str) -> str:
    """Cut a raw generation after its first ``</tool_call>`` or ``</answer>``.

    Anything a model writes after the closing tag (a second call, an invented tool response)
    is dropped, so the conversation and the trainer see exactly the turn that was acted on.
    """
    m = _CLOSERS.search(text)
    return text[: m.end()] if m else text


def close_open_block(text: str) -> str:
    """Re-add a closing tag that a server's stop strings removed (``<answer>B`` -> ``<answer>B</answer>``)."""
    for tag in ("tool_call", "answer"):
        opened, closed = text.rfind(f"<{tag}>"), text.rfind(f"</{tag}>")
        if opened >= 0 and closed < opened:
            return text + f"</{tag}>"
    return text


def extract_answer(text: str) -> Optional[str]:
    """Content of the first ``<answer>`` block (closing tag optional), stripped, or None."""
    m = re.search(r"<answer>(.*?)(?:</answer>|$)", text, re.IGNORECASE | re.DOTALL)
    return m.group(1).strip() if m else None


def parse_action(text: str, tool_names: Sequence[str] = (SEEK_TOOL_NAME,)) -> Action:
    """Parse one policy reply into an :class:`Action`; never raises.

    The first ``<tool_call>`` or ``<answer>`` block wins (a missing closing tag is tolerated,
    since stop strings and token budgets cut it off). Call JSON is repaired leniently, and
    ``arguments`` given as a JSON string is parsed again.

    Args:
        text: The raw or cleaned reply.
        tool_names: Names the call may use.

    Returns:
        The action; ``kind == "invalid"`` with an ``error`` when nothing usable was found.
    """
    cleaned = cleanup_response(text)
    think_m = _THINK.search(cleaned)
    think = think_m.group(1).strip() if think_m else None
    # look for blocks outside the reasoning
    body = cleaned[think_m.end() :] if think_m and think_m.group(0).lower().endswith("</think>") else cleaned
    block = _BLOCK.search(body) or _BLOCK.search(cleaned)
    if block is None:
        return Action(
            "invalid", cleaned, think=think, error="it has neither a <tool_call> nor an <answer> block"
        )
    tag, inner = block.group(1).lower(), block.group(2).strip()
    if tag == "answer":
        if not inner:
            return Action("invalid", cleaned, think=think, error="the <answer> block is empty")
        return Action("answer", cleaned, think=think, answer=inner)
    try:
        call = repair_json(inner)
    except ValueError as exc:
        return Action("invalid", cleaned, think=think, error=f"the tool call is not valid JSON ({exc})")
    if not isinstance(call, dict):
        return Action("invalid", cleaned, think=think, error="the tool call must be a JSON object")
    if "function" in call and isinstance(call["function"], dict):  # OpenAI-style nesting
        call = call["function"]
    name = call.get("name")
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = repair_json(args) if args.strip() else {}
        except ValueError as exc:
            return Action(
                "invalid", cleaned, think=think, name=name, error=f"'arguments' is not valid JSON ({exc})"
            )
    if args is None:
        args = {}
    if not isinstance(name, str) or not name:
        return Action("invalid", cleaned, think=think, error='the tool call has no "name"')
    if name not in tool_names:
        valid = ", ".join(tool_names)
        return Action(
            "invalid", cleaned, think=think, name=name, error=f"unknown tool {name!r}; valid tools: {valid}"
        )
    if not isinstance(args, dict):
        return Action("invalid", cleaned, think=think, name=name, error='"arguments" must be a JSON object')
    return Action("tool_call", cleaned, think=think, name=name, arguments=args)


def _tag(text: str, name: str) -> Optional[str]:
    m = re.search(rf"<{name}>(.*?)(?:</{name}>|$)", text, re.IGNORECASE | re.DOTALL)
    return m.group(1).strip() if m else None


def _number(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(m.group(0)) if m else None


def parse_verification(text: str) -> Verdict:
    """Parse a corpus verification reply (matched with start/end, or not matched with a query).

    Never raises; an unusable reply gives ``Verdict(matched=None, error=...)``.
    """
    think_m = _THINK.search(text)
    think = think_m.group(1).strip() if think_m else None
    ans = _tag(text, "answer")
    if ans is None:
        return Verdict(None, think=think, error="no <answer> block")
    verdict = ans.strip().lower().replace(" ", "_").replace("-", "_")
    query = _tag(text, "query") or None
    if verdict.startswith("not") or verdict in {"no", "false", "unmatched", "mismatch"}:
        return Verdict(False, query=query, think=think)
    if verdict.startswith("match") or verdict in {"yes", "true"}:
        start, end = _number(_tag(text, "start")), _number(_tag(text, "end"))
        if start is not None and end is not None and end < start:
            start, end = end, start
        return Verdict(True, start=start, end=end, query=query, think=think)
    return Verdict(None, think=think, error=f"the answer must be matched or not_matched, got {ans!r}")


def coerce_seek_arguments(args: dict[str, Any], duration: Optional[float] = None) -> dict[str, Any]:
    """Turn a model's ``seek_video_frames`` arguments into the searcher's keyword arguments.

    Lenient like TimeSearch-R's tool: a missing query becomes ``""`` (uniform sampling), an
    unparsable ``start_time`` becomes 0, an unparsable ``end_time`` becomes the end of the
    video, ``num_frames`` is clamped to ``[1, 8]``. Times are clamped into ``[0, duration]``;
    a window that is still empty is left for the searcher to reject with its own message.

    Args:
        args: Parsed ``arguments`` of the call.
        duration: Video length in seconds, if known.

    Returns:
        ``{"query", "start_time", "end_time", "num_frames"}``.
    """

    def num(value: Any, default: float) -> float:
        if isinstance(value, bool):
            return default
        try:
            if isinstance(value, str):
                value = value.strip().rstrip("sS")
            out = float(value)
        except (TypeError, ValueError):
            return default
        return out if out == out else default  # NaN

    end_default = duration if duration is not None else _OPEN_END
    query = args.get("query", "")
    if query is None:
        query = ""
    if not isinstance(query, str):
        query = json.dumps(query) if isinstance(query, (list, dict)) else str(query)
    start = max(0.0, num(args.get("start_time"), 0.0))
    end = num(args.get("end_time"), end_default)
    if duration is not None:
        start = min(start, duration)
        end = min(end, duration)
    k = int(num(args.get("num_frames"), MAX_FRAMES_PER_SEARCH))
    k = max(1, min(MAX_FRAMES_PER_SEARCH, k))
    return {"query": query.strip(), "start_time": start, "end_time": end, "num_frames": k}


# --------------------------------------------------------------------------- JSON repair

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def repair_json(text: str) -> Any:
    """Parse JSON the way a model tends to write it (``json_repair`` does the repairs).

    Code fences and the text before the first ``{`` are dropped (a text starting with ``[`` is
    kept as an array); then ``json.loads``, and on failure :func:`json_repair.loads`, which
    fixes single-quoted strings, unquoted keys, Python ``True``/``False``/``None``, trailing
    commas, unclosed strings, objects and arrays, and ignores trailing words. When an object is
    followed by more JSON (an invented ``<tool_response>``), the first object is the value.

    Args:
        text: Candidate JSON text.

    Returns:
        The parsed value (an object or an array).

    Raises:
        ValueError: If the text holds no JSON object or array, or cannot be repaired into one.
    """
    import json_repair

    s = _FENCE.sub("", text.strip())
    try:
        return json.loads(s)
    except ValueError:
        pass
    start = s.find("{")
    if s.startswith("["):
        start = 0
    if start < 0:
        raise ValueError("no JSON object found")
    s = s[start:]
    try:
        value = json_repair.loads(s)
    except (ValueError, TypeError, RecursionError) as exc:  # json_repair raises on very broken input
        raise ValueError(str(exc).split("\n")[0] or "unparsable") from None
    if s.startswith("{") and isinstance(value, list) and value and isinstance(value[0], dict):
        value = value[0]  # more JSON after the object: the first one counts
    if not isinstance(value, (dict, list)):
        raise ValueError("no JSON object found")
    return value
