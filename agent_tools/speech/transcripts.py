"""Transcripts of videos, computed once and cached like frame embeddings.

Where the text comes from, in order: a subtitle file beside the video (``talk.srt``,
``talk.en.vtt``), a text subtitle stream inside the container, else ASR on the audio track
(faster-whisper with voice-activity detection and word timestamps). A video without an audio
stream has an empty transcript (``source="none"``), not an error; an audio stream that cannot
be decoded raises :class:`~agent_tools.errors.VideoReadError` naming the file, so an index
build records that one file and goes on.

ASR output is re-cut into sentences on word times (a Whisper segment often spans several
sentences): a sentence ends at ``.``/``?``/``!`` or at a pause of ``pause_s`` seconds, and starts
at its first word, which is what a search hit points at.

Cache layout (keyed by the file's content fingerprint and the model)::

    <cache_dir>/speech/<fp[:2]>/<fp>/<model-key>.json      Transcript JSON + a BLAKE2b of its body

Writes are atomic (temporary file, fsync, rename) under a per-entry file lock shared by
processes; an entry whose checksum does not match is recomputed with one warning.

- :class:`TranscriptStore` - ``get(path) -> Transcript``, ``has(path)``.
- :func:`load_audio` - 16 kHz mono float32 samples of a file's first audio stream (or ``None``).
- :func:`split_sentences` - ASR segments re-cut into sentence segments on word times.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..corpus._io import atomic_write
from ..errors import VideoReadError
from ..display import display_path
from ..types import Transcript, TranscriptSegment, TranscriptWord
from .subtitles import find_sidecar, parse_subtitles, read_embedded

__all__ = ["TranscriptStore", "load_audio", "split_sentences", "TRANSCRIPT_VERSION"]

log = logging.getLogger(__name__)

TRANSCRIPT_VERSION = 1
SAMPLE_RATE = 16000
_END = re.compile(r"[.?!]['\")\]]*$")


def load_audio(path: Path) -> Optional[np.ndarray]:
    """Decode the first audio stream of ``path`` to 16 kHz mono float32.

    Returns:
        The samples, or ``None`` when the file has no audio stream.

    Raises:
        VideoReadError: The container or its audio stream cannot be decoded.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise VideoReadError(path, f"cannot decode the audio stream ({exc})") from exc
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def split_sentences(
    segments: list[TranscriptSegment], pause_s: float = 0.8, max_words: int = 40
) -> list[TranscriptSegment]:
    """Re-cut ASR segments into sentences on their word times.

    Args:
        segments: ASR segments with words (segments without words are kept as they are).
        pause_s: A silence at least this long between two words ends a sentence.
        max_words: Longest sentence, in words.

    Returns:
        Sentence segments in time order, each starting at its first word.
    """
    out: list[TranscriptSegment] = []
    cur: list[TranscriptWord] = []

    def flush() -> None:
        if cur:
            text = " ".join(w.word for w in cur).strip()
            text = re.sub(r"\s+([,.?!;:])", r"\1", text)
            out.append(TranscriptSegment(start=cur[0].start, end=cur[-1].end, text=text, words=list(cur)))
            cur.clear()

    for seg in segments:
        if not seg.words:
            flush()
            out.append(seg)
            continue
        for w in seg.words:
            if cur and (w.start - cur[-1].end >= pause_s or len(cur) >= max_words):
                flush()
            cur.append(w)
            if _END.search(w.word):
                flush()
        # a Whisper segment boundary is a weak hint; only punctuation or a pause splits
    flush()
    return out


def _digest(body: str) -> str:
    return hashlib.blake2b(body.encode("utf-8"), digest_size=16).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]


class TranscriptStore:
    """Transcripts on disk, one per (video content, model).

    Args:
        cache_dir: The cache root (``Settings.cache_dir``); transcripts go under ``speech/``.
        asr_model: ASR model name (registry name, faster-whisper name or folder).
        use_subtitles: Prefer sidecar / embedded subtitles over ASR when present.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` for the ASR model.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        asr_model: str = "whisper-tiny.en",
        use_subtitles: bool = True,
        device: str = "auto",
    ):
        self.root = Path(cache_dir).expanduser() / "speech"
        self.asr_model = asr_model
        self.use_subtitles = use_subtitles
        self.device = device
        self._asr = None

    def _entry(self, fingerprint: str, key: str) -> Path:
        return self.root / fingerprint[:2] / fingerprint / f"{_safe(key)}.json"

    def _key_for(self, path: Path) -> tuple[str, Optional[Path]]:
        if self.use_subtitles:
            side = find_sidecar(path)
            if side is not None:
                return f"subs-{_digest(side.read_text('utf-8', 'replace'))}", side
        return f"asr-{self.asr_model}-v{TRANSCRIPT_VERSION}", None

    def has(self, path: str | os.PathLike) -> bool:
        """True when the transcript of ``path`` is cached (or comes from a sidecar file)."""
        from ..store import fingerprint_file

        p = Path(path)
        key, side = self._key_for(p)
        return side is not None or self._read(self._entry(fingerprint_file(p), key)) is not None

    def _read(self, entry: Path) -> Optional[Transcript]:
        try:
            raw = json.loads(entry.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("transcript cache entry %s is unreadable (%s); recomputing", entry, exc)
            return None
        body = raw.get("transcript")
        if not isinstance(body, str) or raw.get("blake2b") != _digest(body):
            log.warning("transcript cache entry %s fails its checksum; recomputing", entry)
            return None
        return Transcript.model_validate_json(body)

    def get(
        self, path: str | os.PathLike, progress: Optional[Callable[[str], None]] = None
    ) -> Transcript:
        """The transcript of ``path``, computed on first use.

        Args:
            path: Video file.
            progress: Called with a short status line before slow work (ASR).

        Returns:
            The :class:`~agent_tools.types.Transcript`; ``source="none"`` and no segments when the
            file has no audio stream.

        Raises:
            VideoReadError: Missing file, or an audio stream that cannot be decoded.
            EncoderUnavailableError: ASR is needed and its model cannot be loaded here.
        """
        from filelock import FileLock

        from ..store import fingerprint_file
        from ..video import check_path

        p = check_path(path)
        fp = fingerprint_file(p)
        key, side = self._key_for(p)
        if side is not None:
            segs = parse_subtitles(side.read_text("utf-8", "replace"))
            return Transcript(path=display_path(str(p)), fingerprint=fp, source="subtitles", model=side.name, segments=segs)
        entry = self._entry(fp, key)
        hit = self._read(entry)
        if hit is not None:
            return hit.model_copy(update={"path": display_path(str(p))})
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            hit = self._read(entry)
            if hit is not None:
                return hit.model_copy(update={"path": display_path(str(p))})
            transcript = self._compute(p, fp, progress)
            body = transcript.model_dump_json()
            payload = json.dumps({"version": TRANSCRIPT_VERSION, "blake2b": _digest(body), "transcript": body})
            atomic_write(entry, lambda tmp: Path(tmp).write_text(payload, "utf-8"))
        return transcript

    def _compute(self, p: Path, fp: str, progress) -> Transcript:
        shown = display_path(str(p))
        if self.use_subtitles:
            embedded = read_embedded(p)
            if embedded is not None:
                segs, label = embedded
                return Transcript(path=shown, fingerprint=fp, source="embedded-subtitles", model=label, segments=segs)
        audio = load_audio(p)
        if audio is None:
            return Transcript(path=shown, fingerprint=fp, source="none", segments=[])
        if progress:
            progress(f"transcribing {len(audio) / SAMPLE_RATE:.0f} s of audio with {self.asr_model}")
        if self._asr is None:
            from .models import load_asr

            self._asr = load_asr(self.asr_model, self.device)
        if audio.size == 0:
            segs, lang = [], None
        else:
            segs, lang = self._asr.transcribe(audio)
        return Transcript(
            path=shown,
            fingerprint=fp,
            source="asr",
            model=self.asr_model,
            language=lang,
            duration=len(audio) / SAMPLE_RATE,
            segments=split_sentences(segs),
        )
