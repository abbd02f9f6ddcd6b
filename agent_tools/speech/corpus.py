"""Speech beside frames in a corpus index, and one ranking for visual and speech hits.

:func:`update_speech` brings ``<index_dir>/speech.sqlite`` up to date with the corpus
catalog: each indexed video whose transcript is missing or stale (new content fingerprint)
is transcribed (or its subtitles read) and its sentences embedded; videos the catalog no
longer lists are dropped. A video whose audio cannot be decoded is recorded as failed for
speech (one line, the reason) and the run goes on; its frames stay searchable.

:func:`fuse_moments` merges visual and speech moments into one ranking: each source's scores
are standardised over its own candidates (so a sentence that stands out among sentences and a
frame that stands out among frames compare fairly), and a speech moment that overlaps a visual
moment of the same video becomes one ``source="both"`` moment with the transcript's start/end
and the quoted text, its evidence added. The fused evidence is in ``video_score``; ``score``
stays the similarity of the best matching source.

- :class:`SpeechBuildReport`, :func:`update_speech`, :func:`open_speech_index`, :func:`fuse_moments`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from ..errors import VideoseekError
from ..types import Moment, SpeechBuildReport
import numpy as np

from .index import SPEECH_DB, SpeechIndex

__all__ = ["update_speech", "open_speech_index", "fuse_moments", "BOTH_BONUS"]

log = logging.getLogger(__name__)

#: Share of the weaker source's evidence added when a visual and a speech moment agree.
BOTH_BONUS = 0.5


def open_speech_index(index_dir: str | Path, encoder, read_only: bool = False) -> SpeechIndex:
    """The speech index beside a corpus index (created unless ``read_only``)."""
    return SpeechIndex(Path(index_dir) / SPEECH_DB, encoder, read_only=read_only)


def update_speech(
    records,
    speech: SpeechIndex,
    store,
    on_event: Optional[Callable[[str, str, str], None]] = None,
    path_of: Optional[Callable[[str], str]] = None,
) -> SpeechBuildReport:
    """Transcribe and index the speech of every indexed video that needs it.

    Args:
        records: The catalog's indexed :class:`~agent_tools.types.VideoRecord` rows.
        speech: The corpus's :class:`SpeechIndex`.
        store: A :class:`~agent_tools.speech.transcripts.TranscriptStore`.
        on_event: ``on_event(kind, video_id, detail)`` with kind ``start`` / ``done`` / ``failed``.
        path_of: ``video_id -> path that opens`` (``CorpusIndex.video_path``); a record's ``path``
            is for showing (a name that is not UTF-8 is escaped there). Default: the record's path.

    Returns:
        What was done.
    """
    import time

    t0 = time.perf_counter()
    report = SpeechBuildReport()
    records = list(records)
    report.removed = speech.reconcile([r.video_id for r in records])
    have = speech.videos()
    for rec in records:
        row = have.get(rec.video_id)
        if row is not None and row["fingerprint"] == rec.fingerprint and row["encoder"] == speech.encoder.name:
            if row["source"] != "failed":
                report.unchanged += 1
                continue
        if on_event:
            on_event("start", rec.video_id, rec.path)
        try:
            transcript = store.get(path_of(rec.video_id) if path_of else rec.path)
            transcript = transcript.model_copy(update={"path": rec.path})
        except VideoseekError as exc:
            reason = str(exc)
            speech.mark_failed(rec.video_id, rec.path, rec.fingerprint, reason)
            report.failed[rec.video_id] = reason
            if on_event:
                on_event("failed", rec.video_id, reason)
            continue
        except Exception as exc:  # noqa: BLE001 - one odd file never stops the pass
            reason = f"{type(exc).__name__}: {exc}"
            speech.mark_failed(rec.video_id, rec.path, rec.fingerprint, reason)
            report.failed[rec.video_id] = reason
            if on_event:
                on_event("failed", rec.video_id, reason)
            continue
        n = speech.add_video(rec.video_id, transcript, fingerprint=rec.fingerprint)
        report.num_passages += n
        report.seconds_audio += transcript.duration or 0.0
        if transcript.source == "none":
            report.without_audio.append(rec.video_id)
        else:
            report.transcribed.append(rec.video_id)
        if on_event:
            on_event("done", rec.video_id, f"{n} sentences ({transcript.source})")
    report.seconds = time.perf_counter() - t0
    return report


def _overlap(a: Moment, b: Moment, slack: float) -> bool:
    return a.video_id == b.video_id and a.start <= b.end + slack and b.start <= a.end + slack


def _zscores(moments: list[Moment]) -> list[float]:
    """Each moment's score as standard deviations above its own list's mean (0 for < 3 moments)."""
    if len(moments) < 3:
        return [0.0] * len(moments)
    s = np.array([m.score for m in moments], np.float64)
    sd = s.std()
    return list((s - s.mean()) / sd) if sd > 1e-9 else [0.0] * len(moments)


def fuse_moments(
    visual: list[Moment],
    speech: list[Moment],
    top_k: int = 10,
    speech_weight: float = 1.0,
    slack: float = 2.0,
) -> list[Moment]:
    """One ranking of visual and speech moments.

    The two sources score on different scales (an image-text cosine near 0.1 can be a strong
    match, a sentence-embedding cosine near 0.7), and reciprocal-rank fusion would tie their
    first hits whatever they are. So each source's scores are standardised over its own
    candidate list (how far a hit stands out from that source's other candidates). A speech
    moment that overlaps a visual moment of the same video merges with it (``source="both"``):
    the stronger source's evidence decides, plus :data:`BOTH_BONUS` of the weaker one's when
    both are positive (so a source that is only noise for this query cannot outvote a clear
    hit of the other). Pass each source's top ~20 candidates, not just ``top_k``.

    Args:
        visual: Visual candidate moments, best first.
        speech: Speech candidate moments, best first.
        top_k: Moments to return.
        speech_weight: Multiplier of the speech evidence.
        slack: Seconds of gap still counted as overlap when merging into ``both``.

    Returns:
        Fused moments, best first; ``video_score`` holds the fused evidence.
    """
    entries: list[dict] = []
    for m, z in zip(visual, _zscores(visual)):
        entries.append({"m": m, "fused": z, "zv": z, "visual": m, "speech": None})
    for s, z in zip(speech, _zscores(speech)):
        z = speech_weight * z
        for e in entries:
            if e["speech"] is None and e["visual"] is not None and _overlap(e["visual"], s, slack):
                zv = e["zv"]
                # the stronger source decides; agreement of the other adds a little
                e["speech"], e["fused"] = s, max(zv, z) + BOTH_BONUS * max(min(zv, z), 0.0)
                break
        else:
            entries.append({"m": s, "fused": z, "zv": None, "visual": None, "speech": s})
    out = []
    for e in sorted(entries, key=lambda e: -e["fused"])[:top_k]:
        v, s = e["visual"], e["speech"]
        if v is not None and s is not None:
            m = v.model_copy(
                update={"start": s.start, "end": s.end, "source": "both", "text": s.text,
                        "score": max(v.score, s.score), "video_score": e["fused"]}
            )
        else:
            m = e["m"].model_copy(update={"video_score": e["fused"]})
        out.append(m)
    return out
