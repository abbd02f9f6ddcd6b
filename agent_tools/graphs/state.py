"""Graph state: references only (video, timestamps, scores), never pixels or base64.

A checkpointer writes every channel at every step, so state that held images would grow
by megabytes per turn. Frames therefore live in state as :class:`FrameRef` dicts and as
``{"type": "frame", "video": ..., "timestamp": ...}`` blocks inside messages; policies fetch
the pixels from the video while building their input.

- :class:`FrameRef` - one searched frame (video, timestamp, score, turn, query).
- :func:`merge_frames` - reducer: union of frame references, first occurrence kept, in order.
- :class:`TemporalInput`, :class:`TemporalState`, :class:`TemporalOutput` - the temporal graph.
- :class:`CorpusInput`, :class:`CorpusState`, :class:`CorpusOutput` - the corpus graph.
- :func:`contains_pixel_data` - test helper: does a (serialised) state hold image bytes/base64?
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Optional

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import NotRequired, TypedDict

__all__ = [
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


class FrameRef(TypedDict):
    """A frame the policy searched and saw: a reference, not the picture."""

    video: str
    timestamp: float
    score: NotRequired[Optional[float]]
    turn: NotRequired[int]
    query: NotRequired[Optional[str]]


def merge_frames(left: Optional[list[FrameRef]], right: Optional[list[FrameRef]]) -> list[FrameRef]:
    """Reducer for ``frames``: keep every distinct (video, timestamp) once, in discovery order."""
    out = list(left or [])
    seen = {(f["video"], round(float(f["timestamp"]), 3)) for f in out}
    for f in right or []:
        key = (f["video"], round(float(f["timestamp"]), 3))
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


class TemporalInput(TypedDict):
    """What the temporal graph needs: a question and a video (path or id)."""

    question: str
    video: str
    window: NotRequired[Optional[list[float]]]


class TemporalState(TypedDict, total=False):
    """State of the temporal search graph.

    Keys:
        question: The question about the video.
        video: Video path or id (what the searcher accepts).
        window: Optional ``[start, end]`` hint shown to the policy (e.g. from corpus search).
        duration: Video length in seconds.
        messages: The conversation (system, user with preview frame refs, assistant turns,
            tool results with frame refs and timestamps).
        frames: Every frame returned by a search, as :class:`FrameRef`.
        turn: Assistant turns generated so far.
        answer: Final answer text, or None.
        status: ``running``, ``answered`` or ``budget_exhausted``.
        verification: Completeness check result: ``answer``, ``sufficient``, ``agrees``,
            ``num_frames``, ``reply``.
    """

    question: str
    video: str
    window: Optional[list[float]]
    duration: float
    messages: Annotated[list[AnyMessage], add_messages]
    frames: Annotated[list[FrameRef], merge_frames]
    turn: int
    answer: Optional[str]
    status: str
    verification: Optional[dict[str, Any]]


class TemporalOutput(TypedDict, total=False):
    """What the temporal graph returns to a caller or parent graph (no conversation)."""

    question: str
    video: str
    duration: float
    frames: list[FrameRef]
    turn: int
    answer: Optional[str]
    status: str
    verification: Optional[dict[str, Any]]


class CorpusInput(TypedDict):
    """What the corpus graph needs: a moment query, optionally a question to answer in the video."""

    query: str
    question: NotRequired[Optional[str]]


class CorpusState(TypedDict, total=False):
    """State of the corpus search graph.

    Keys:
        query: The user's description of the moment.
        question: Optional question answered inside the found video (temporal graph).
        current_query: The query of the current round (rewritten by refinement).
        query_vector: Soft-refined query embedding, when the policy provides one.
        round: Verification rounds done.
        rounds: One record per round (query, moment, verdict, start/end, refined query, reply).
        rejected: Keys (``video_id@start-end``) of moments judged not matching.
        moment: The moment under verification.
        answer: ``{"video_id", "path", "start", "end", "score"}`` once matched.
        status: ``running``, ``matched`` or ``not_found``.
        messages: Log of the verification turns.
        temporal: Result of the temporal graph inside the matched video.
    """

    query: str
    question: Optional[str]
    current_query: str
    query_vector: Optional[list[float]]
    round: int
    rounds: Annotated[list[dict[str, Any]], operator.add]
    rejected: Annotated[list[str], operator.add]
    moment: Optional[dict[str, Any]]
    answer: Optional[dict[str, Any]]
    status: str
    messages: Annotated[list[AnyMessage], add_messages]
    temporal: Optional[dict[str, Any]]


class CorpusOutput(TypedDict, total=False):
    """What the corpus graph returns (no conversation)."""

    query: str
    question: Optional[str]
    round: int
    rounds: list[dict[str, Any]]
    answer: Optional[dict[str, Any]]
    status: str
    temporal: Optional[dict[str, Any]]


_JPEG = (b"\xff\xd8\xff", b"/9j/")
_PNG = (b"\x89PNG", b"iVBORw0KGgo")
_B64_RUN = re.compile(rb"[A-Za-z0-9+/]{400,}={0,2}")


def contains_pixel_data(blob: bytes | str) -> bool:
    """True if ``blob`` holds JPEG/PNG bytes, their base64, a data URL or any long base64 run.

    Used by the tests on raw checkpoint rows; cheap and conservative.
    """
    data = blob.encode("latin-1", "ignore") if isinstance(blob, str) else bytes(blob)
    if any(sig in data for sig in _JPEG + _PNG):
        return True
    if b"data:image/" in data:
        return True
    return _B64_RUN.search(data) is not None
