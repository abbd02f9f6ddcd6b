"""Subtitles: read ``.srt`` / ``.vtt`` files and embedded subtitle streams, write SRT / VTT.

When a video already carries what is said, ASR is not needed: a sidecar file with the video's
stem (``talk.srt``, ``talk.en.vtt``) or a text subtitle stream inside the container is used
instead, with its own cue times.

- :func:`find_sidecar` - the subtitle file beside a video, if any.
- :func:`parse_subtitles` - cues of an SRT or WebVTT text as :class:`~agent_tools.types.TranscriptSegment`.
- :func:`read_embedded` - cues of the first text subtitle stream of a container (PyAV), or ``None``.
- :func:`to_srt` / :func:`to_vtt` - a transcript's segments as subtitle text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

from ..types import TranscriptSegment

__all__ = ["find_sidecar", "parse_subtitles", "read_embedded", "to_srt", "to_vtt", "SIDECAR_SUFFIXES"]

SIDECAR_SUFFIXES = (".srt", ".vtt")
_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")


def find_sidecar(video: Path) -> Optional[Path]:
    """The subtitle file beside ``video``: ``<stem>.srt|vtt`` first, then ``<stem>.<lang>.srt|vtt``.

    Args:
        video: Path of the video file.

    Returns:
        The subtitle path, or ``None`` when there is none.
    """
    video = Path(video)
    for suffix in SIDECAR_SUFFIXES:
        p = video.with_suffix(suffix)
        if p.is_file():
            return p
    try:
        siblings = sorted(video.parent.glob(f"{glob_escape(video.stem)}.*"))
    except OSError:
        return None
    for p in siblings:
        if p.suffix.lower() in SIDECAR_SUFFIXES and p.is_file() and p.name.count(".") >= 2:
            return p
    return None


def glob_escape(text: str) -> str:
    """Escape glob metacharacters in a file stem."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _seconds(match: re.Match) -> float:
    h, m, s, frac = match.groups()
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")[:3]) / 1000.0


def _clean(lines: Iterable[str]) -> str:
    text = " ".join(_TAGS.sub("", ln).strip() for ln in lines)
    return re.sub(r"\s+", " ", text).strip()


def parse_subtitles(text: str) -> list[TranscriptSegment]:
    """Parse SRT or WebVTT text into segments (cue times, markup removed, empty cues dropped).

    Args:
        text: The file's content.

    Returns:
        Segments sorted by start time.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    segments: list[TranscriptSegment] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        for i, line in enumerate(lines):
            if "-->" not in line:
                continue
            left, _, right = line.partition("-->")
            a, b = _TIME.search(left), _TIME.search(right)
            if not a or not b:
                break
            start, end = _seconds(a), _seconds(b)
            body = _clean(lines[i + 1 :])
            if body and end >= start:
                segments.append(TranscriptSegment(start=start, end=end, text=body))
            break
    segments.sort(key=lambda s: (s.start, s.end))
    return segments


def read_embedded(path: Path) -> Optional[tuple[list[TranscriptSegment], str]]:
    """Cues of the first text subtitle stream inside a container.

    Args:
        path: Path of the video file.

    Returns:
        ``(segments, label)`` or ``None`` when the file has no text subtitle stream (bitmap
        subtitles such as DVD/PGS are not text and are ignored).
    """
    import av

    try:
        container = av.open(str(path))
    except Exception:  # noqa: BLE001 - not readable as a container: no embedded subtitles
        return None
    try:
        streams = [s for s in container.streams if s.type == "subtitle"]
        if not streams:
            return None
        stream = streams[0]
        segments: list[TranscriptSegment] = []
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            try:
                subs = packet.decode()
            except Exception:  # noqa: BLE001 - one bad cue does not lose the others
                continue
            tb = float(packet.time_base or stream.time_base)
            start = float(packet.pts) * tb
            end = start + float(packet.duration or 0) * tb
            for sub_set in subs:
                # PyAV < 14 yields a SubtitleSet of rects; newer versions yield the rects themselves
                rects = sub_set if hasattr(sub_set, "__iter__") else [sub_set]
                for rect in rects:
                    raw = getattr(rect, "dialogue", None) or getattr(rect, "text", None) or getattr(rect, "ass", None)
                    if isinstance(raw, bytes):
                        raw = raw.decode("utf-8", "replace")
                    if not raw:
                        continue
                    if "," in raw and raw.count(",") >= 8:  # ASS event line: text after the 8th comma
                        raw = raw.split(",", 8)[8]
                    body = _clean(raw.replace("\\N", " ").split("\n"))
                    if body:
                        segments.append(TranscriptSegment(start=start, end=max(end, start), text=body))
        if not segments:
            return None
        lang = stream.metadata.get("language") if stream.metadata else None
        return sorted(segments, key=lambda s: s.start), f"stream:{stream.index}" + (f":{lang}" if lang else "")
    finally:
        container.close()


def _stamp(t: float, sep: str) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segments: Iterable[TranscriptSegment]) -> str:
    """Segments as SubRip text."""
    out = []
    for i, seg in enumerate(segments, 1):
        out.append(f"{i}\n{_stamp(seg.start, ',')} --> {_stamp(seg.end, ',')}\n{seg.text}\n")
    return "\n".join(out)


def to_vtt(segments: Iterable[TranscriptSegment]) -> str:
    """Segments as WebVTT text."""
    out = ["WEBVTT\n"]
    for seg in segments:
        out.append(f"{_stamp(seg.start, '.')} --> {_stamp(seg.end, '.')}\n{seg.text}\n")
    return "\n".join(out)
