"""The reader interface every video backend implements, plus shared helpers.

- :class:`VideoReader` - ``info``, ``frames_at(timestamps)``, ``iter_sampled(fps)``,
  ``preview(n)``, ``close()``; frames are ``(exact_timestamp_seconds, HxWx3 uint8 RGB)``.
- :func:`check_path` - the checks every backend runs before opening (missing, directory, empty).
- :func:`sample_times` / :func:`uniform_times` - the timestamps a sampling pass asks for.

Frame semantics (all backends): the frame *at* time ``t`` is the last frame whose
presentation time is ``<= t``, i.e. the frame on screen at ``t``; its own presentation
time is returned as the exact timestamp.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import InvalidArgumentError, VideoReadError
from ..types import VideoInfo

__all__ = ["VideoReader", "Frame", "check_path", "sample_times", "uniform_times", "fit_size"]

Frame = tuple[float, np.ndarray]

_EPS = 1e-6


def check_path(path: str | os.PathLike) -> Path:
    """Return the absolute path of an existing, non-empty regular file, or raise VideoReadError."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoReadError(p, "file does not exist")
    if p.is_dir():
        raise VideoReadError(p, "is a directory, not a video file")
    try:
        size = p.stat().st_size
    except OSError as exc:  # pragma: no cover - permissions
        raise VideoReadError(p, f"cannot stat file ({exc.strerror})") from exc
    if size == 0:
        raise VideoReadError(p, "file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise VideoReadError(p, "file is not readable (permission denied)")
    return p.resolve()


def sample_times(duration: float, fps: float, start: float = 0.0) -> np.ndarray:
    """Timestamps ``start, start+1/fps, ...`` strictly before ``duration``."""
    if fps <= 0:
        raise InvalidArgumentError(f"sample fps must be > 0, got {fps}")
    n = max(1, int(np.ceil((duration - start) * fps - _EPS)))
    return start + np.arange(n, dtype=np.float64) / fps


def uniform_times(start: float, end: float, n: int) -> np.ndarray:
    """``n`` timestamps spread evenly over ``[start, end)``, each at the centre of its slot."""
    if n < 1:
        raise InvalidArgumentError(f"number of frames must be >= 1, got {n}")
    step = (end - start) / n
    return start + step * (np.arange(n) + 0.5)


def fit_size(width: int, height: int, short_side: Optional[int], max_side: Optional[int] = None) -> tuple[int, int]:
    """Output ``(w, h)`` keeping aspect: shortest side ``short_side`` and/or longest ``max_side``.

    Sizes are rounded to even numbers (what swscale and JPEG encoders like best).
    """
    scale = 1.0
    if short_side:
        scale = short_side / min(width, height)
    if max_side and max(width, height) * scale > max_side:
        scale = max_side / max(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


class VideoReader(abc.ABC):
    """A decoded view of one video file. Use as a context manager or call :meth:`close`."""

    backend: str = "base"

    def __init__(self, path: str | os.PathLike):
        self.path = check_path(path)

    @property
    @abc.abstractmethod
    def info(self) -> VideoInfo:
        """Container facts: duration, fps, frame count, size."""

    @abc.abstractmethod
    def frames_at(self, timestamps: Sequence[float], size: Optional[tuple[int, int]] = None) -> list[Frame]:
        """Frames on screen at the given times, in the order asked, with their exact timestamps.

        Args:
            timestamps: Seconds; each must lie in ``[0, duration]``.
            size: Optional ``(width, height)`` to scale frames to.

        Returns:
            ``[(exact_timestamp, rgb_uint8_HxWx3), ...]``, one per requested time.

        Raises:
            InvalidArgumentError: A timestamp outside ``[0, duration]``.
            VideoReadError: The file fails to decode.
        """

    @abc.abstractmethod
    def iter_sampled(
        self,
        fps: float,
        size: Optional[tuple[int, int]] = None,
        start: float = 0.0,
        end: Optional[float] = None,
    ) -> Iterator[Frame]:
        """Walk the video once, yielding the frame on screen every ``1/fps`` seconds.

        Sample times are ``k / fps`` inside ``[start, end)`` (default: the whole video). A frame
        is yielded at most once per call (when ``fps`` exceeds the video's rate the output is
        the video's own frames).
        """

    def preview(self, n: int, size: Optional[tuple[int, int]] = None) -> list[Frame]:
        """``n`` uniformly spaced frames (slot centres) across the whole video."""
        return self.frames_at(uniform_times(0.0, self.info.duration, n).tolist(), size=size)

    def _check_times(self, timestamps: Sequence[float]) -> np.ndarray:
        ts = np.asarray(list(timestamps), dtype=np.float64)
        dur = self.info.duration
        bad = ts[(ts < -_EPS) | (ts > dur + _EPS) | ~np.isfinite(ts)]
        if bad.size:
            raise InvalidArgumentError(
                f"timestamp {float(bad[0])!r} is outside the video {self.path.name!r}; "
                f"valid timestamps are 0 to {dur:.3f} seconds"
            )
        return np.clip(ts, 0.0, dur)

    def close(self) -> None:  # noqa: D401
        """Release the decoder."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
