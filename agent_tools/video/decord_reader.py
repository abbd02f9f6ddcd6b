"""decord backend: random access by frame index over a prebuilt frame index.

decord is fast at gathering many scattered frames (``get_batch``), but it is
unmaintained since 2021 and ships Linux x86_64 wheels only, so it is optional: when it
does not import, :func:`agent_tools.video.open_video` uses PyAV.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional, Sequence

import numpy as np

from ..errors import VideoReadError
from ..types import VideoInfo
from .base import Frame, VideoReader

__all__ = ["DecordReader", "decord_available"]

_EPS = 1e-6
_BATCH = 64


def decord_available() -> bool:
    """Whether the decord package imports on this machine."""
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


class DecordReader(VideoReader):
    """Video reader backed by decord (frames addressed by index)."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        super().__init__(path)
        import decord

        self._decord = decord
        self._threads = threads
        self._readers: dict[Optional[tuple[int, int]], object] = {}
        vr = self._reader(None)
        try:
            n = len(vr)
            if n == 0:
                raise VideoReadError(self.path, "the video stream holds no frames")
            # start time of every frame, from the demuxed packet index (no decoding)
            self._starts = np.asarray(vr.get_frame_timestamp(range(n)))[:, 0].astype(np.float64)
            fps = float(vr.get_avg_fps() or 0.0)
            last_end = float(vr.get_frame_timestamp(n - 1)[1])
            h, w = vr[0].shape[:2]
        except VideoReadError:
            raise
        except Exception as exc:  # decord raises bare RuntimeError/DECORDError on broken files
            raise VideoReadError(self.path, f"not a readable video ({str(exc).splitlines()[0]})") from exc
        self._info = VideoInfo(
            path=str(self.path),
            duration=max(last_end, self._starts[-1]),
            fps=fps or n / max(last_end, _EPS),
            frame_count=n,
            width=int(w),
            height=int(h),
            codec=None,
            backend=self.backend,
        )

    def _reader(self, size):
        if size not in self._readers:
            kwargs = {"ctx": self._decord.cpu(0), "num_threads": self._threads}
            if size is not None:
                kwargs.update(width=size[0], height=size[1])
            try:
                self._readers[size] = self._decord.VideoReader(str(self.path), **kwargs)
            except Exception as exc:  # decord raises DECORDError / RuntimeError
                raise VideoReadError(self.path, f"not a readable video ({str(exc).splitlines()[0]})") from exc
        return self._readers[size]

    @property
    def info(self) -> VideoInfo:
        return self._info

    def _index_at(self, ts: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self._starts, ts + _EPS, side="right") - 1
        return np.clip(idx, 0, len(self._starts) - 1)

    def _batch(self, idx: np.ndarray, size) -> np.ndarray:
        try:
            return self._reader(size).get_batch(list(map(int, idx))).asnumpy()
        except VideoReadError:
            raise
        except Exception as exc:
            raise VideoReadError(self.path, f"decoding failed ({str(exc).splitlines()[0]})") from exc

    def frames_at(self, timestamps: Sequence[float], size: Optional[tuple[int, int]] = None) -> list[Frame]:
        ts = self._check_times(timestamps)
        idx = self._index_at(ts)
        uniq, inverse = np.unique(idx, return_inverse=True)
        arrays = self._batch(uniq, size)
        return [(float(self._starts[uniq[j]]), arrays[j]) for j in inverse]

    def iter_sampled(
        self,
        fps: float,
        size: Optional[tuple[int, int]] = None,
        start: float = 0.0,
        end: Optional[float] = None,
    ) -> Iterator[Frame]:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        stop = self._info.duration if end is None else min(end, self._info.duration)
        k0 = max(0, int(np.ceil(start * fps - _EPS)))
        k1 = max(k0, int(np.ceil(stop * fps - _EPS)))
        idx = np.unique(self._index_at(np.arange(k0, k1) / fps))
        for lo in range(0, len(idx), _BATCH):
            chunk = idx[lo : lo + _BATCH]
            arrays = self._batch(chunk, size)
            for j, i in enumerate(chunk):
                yield float(self._starts[i]), arrays[j]

    def close(self) -> None:
        self._readers.clear()
