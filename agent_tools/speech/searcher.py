"""Speech inside one video: the engine every surface calls (CLI, MCP, LangChain, graphs).

:class:`SpeechSearcher` pairs a :class:`~agent_tools.speech.transcripts.TranscriptStore` with a
sentence encoder and answers three questions about one video:

- ``transcript(video, start, end)`` - what is said in a time range (a :class:`~agent_tools.types.Transcript`);
- ``search(video, query, ...)`` - where something is said (a :class:`~agent_tools.types.MomentSearchResult`
  of ``source="speech"`` moments, each quoting its sentence);
- ``said_near(video, timestamps)`` - the sentences spoken around given frames, so a policy that
  looks at frames also hears what is said there.

Usage::

    speech = SpeechSearcher.from_settings()
    speech.search("talk.mp4", "when were travel costs reduced").moments[0].start
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from ..errors import InvalidArgumentError, InvalidWindowError
from ..types import MomentSearchResult, Transcript

__all__ = ["SpeechSearcher"]


class SpeechSearcher:
    """Transcripts and transcript search for single videos.

    Args:
        store: Where transcripts come from (cached).
        encoder: A sentence encoder (``encode``, ``name``); loaded lazily when a ``LazyTextEncoder``.
    """

    def __init__(self, store, encoder):
        self.store = store
        self.encoder = encoder

    @classmethod
    def from_settings(cls, settings=None) -> "SpeechSearcher":
        """Build from :class:`~agent_tools.config.Settings` (``asr_model``, ``text_encoder``, ``cache_dir``)."""
        from ..config import get_settings
        from .models import LazyTextEncoder
        from .transcripts import TranscriptStore

        s = settings or get_settings()
        return cls(TranscriptStore(s.cache_dir, s.asr_model, device=s.device), LazyTextEncoder(s.text_encoder, s.device))

    def transcript(
        self, video: str | os.PathLike, start: Optional[float] = None, end: Optional[float] = None
    ) -> Transcript:
        """What is said in ``video`` between ``start`` and ``end`` (whole video by default).

        Raises:
            InvalidWindowError: ``start`` after ``end`` or negative.
            VideoReadError: The file or its audio cannot be read.
        """
        lo, hi = _window(start, end)
        t = self.store.get(video)
        return t.model_copy(update={"segments": [s for s in t.segments if s.end >= lo and s.start <= hi]})

    def search(
        self,
        video: str | os.PathLike,
        query: str,
        top_k: int = 5,
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
    ) -> MomentSearchResult:
        """Where ``query`` is said in ``video`` (dense + all-words lexical match).

        Returns:
            Speech moments, best first; empty when nothing is said in the window.

        Raises:
            InvalidArgumentError: Empty query.
            InvalidWindowError: Bad window.
        """
        from .index import search_transcript

        if not query or not query.strip():
            raise InvalidArgumentError("a transcript search needs a non-empty text query")
        t = self.transcript(video, start_time, end_time)
        hits = search_transcript(t, query, self.encoder, top_k=top_k, video_id=str(video)) if t.segments else []
        return MomentSearchResult(
            query=query, query_kind="text", encoder=self.encoder.name, encoder_trained=True, moments=hits,
            num_videos_searched=1,
        )

    def said_near(
        self, video: str | os.PathLike, timestamps: Sequence[float], radius: float = 3.0
    ) -> list[tuple[float, float, str]]:
        """Sentences spoken within ``radius`` seconds of any of ``timestamps``, in time order.

        Returns:
            ``(start, end, text)`` triples, each sentence once.
        """
        t = self.store.get(video)
        out = []
        for s in t.segments:
            if any(s.start - radius <= ts <= s.end + radius for ts in timestamps):
                out.append((s.start, s.end, s.text))
        return out


def _window(start: Optional[float], end: Optional[float]) -> tuple[float, float]:
    lo = 0.0 if start is None else float(start)
    hi = float("inf") if end is None else float(end)
    if lo < 0 or hi < lo:
        raise InvalidWindowError(
            f"transcript window [{lo}, {hi}] is invalid: start_time must be >= 0 and <= end_time"
        )
    return lo, hi
