"""PyAV (FFmpeg) backend: the default for sequential sampling and a sparse reader with seeking.

PyAV wheels bundle FFmpeg, so this backend needs nothing from the system. Sparse access
(:meth:`PyAVReader.frames_at`) seeks to the keyframe before each target and decodes
forward; targets close to the current position are reached by decoding on instead of
seeking again.
"""

from __future__ import annotations

import bisect
import os
from typing import Iterator, Optional, Sequence

import av
import numpy as np

from ..errors import VideoReadError
from ..types import VideoInfo
from .base import Frame, VideoReader

__all__ = ["PyAVReader"]

# Decode forward instead of seeking when the next target is at most this far ahead.
_FORWARD_DECODE_SECONDS = 2.0
_EPS = 1e-6


def _reason(exc: Exception) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return f"not a readable video ({msg})"


class PyAVReader(VideoReader):
    """Video reader backed by PyAV."""

    backend = "pyav"

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        super().__init__(path)
        try:
            self._container = av.open(str(self.path), "r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise VideoReadError(self.path, _reason(exc)) from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoReadError(self.path, "the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        if threads:
            self._stream.thread_count = threads
        self._info: Optional[VideoInfo] = None
        self._dec: Optional[Iterator] = None
        self._prev = None  # last frame decoded with time <= the last target
        self._pending = None  # one frame of look-ahead
        self._info = self._read_info()

    # -- metadata -----------------------------------------------------------------
    def _read_info(self) -> VideoInfo:
        s, c = self._stream, self._container
        fps = float(s.average_rate or s.guessed_rate or s.base_rate or 0) or 0.0
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        if not duration and c.duration:
            duration = c.duration / 1_000_000
        frames = int(s.frames or 0)
        if not duration and frames and fps:
            duration = frames / fps
        if not duration or duration <= 0:
            raise VideoReadError(self.path, "cannot determine the video's duration (corrupt or truncated?)")
        if not fps:
            fps = frames / duration if frames else 25.0
        if not frames:
            frames = int(round(duration * fps))
        cc = s.codec_context
        if not cc.width or not cc.height:
            raise VideoReadError(self.path, "video stream has no frame size (corrupt header?)")
        return VideoInfo(
            path=str(self.path),
            duration=duration,
            fps=fps,
            frame_count=frames,
            width=int(cc.width),
            height=int(cc.height),
            codec=cc.name,
            backend=self.backend,
        )

    @property
    def info(self) -> VideoInfo:
        return self._info

    # -- decoding -----------------------------------------------------------------
    def _frame_time(self, frame) -> float:
        if frame.pts is None:
            return float(frame.time or 0.0)
        return float(frame.pts * self._stream.time_base)

    def _next_frame(self):
        try:
            return next(self._dec)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise VideoReadError(self.path, f"decoding failed ({exc}); the file may be corrupt or truncated") from exc

    def _seek(self, t: float) -> None:
        target = int(max(0.0, t) / self._stream.time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise VideoReadError(self.path, f"seek to {t:.3f}s failed ({exc})") from exc
        self._dec = self._container.decode(self._stream)
        self._prev = None
        self._pending = None

    def _to_rgb(self, frame, size):
        if size is not None:
            return frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
        return frame.to_ndarray(format="rgb24")

    def _frame_on_screen(self, t: float):
        """Advance the decoder to the frame on screen at ``t`` (assumes a sorted walk)."""
        cur = self._prev if self._prev is not None else self._pending
        need_seek = (
            self._dec is None
            or cur is None
            or self._frame_time(cur) > t + _EPS
            or t - self._frame_time(cur) > _FORWARD_DECODE_SECONDS
        )
        if need_seek:
            self._seek(t)
        while True:
            if self._pending is None:
                self._pending = self._next_frame()
                if self._pending is None:  # end of stream: the last frame stays on screen
                    break
            if self._frame_time(self._pending) <= t + _EPS:
                self._prev, self._pending = self._pending, None
            else:
                break
        if self._prev is not None:
            return self._prev
        if self._pending is not None:  # t before the first frame's pts
            return self._pending
        raise VideoReadError(self.path, f"no frame could be decoded near {t:.3f}s (corrupt or truncated file?)")

    def frames_at(self, timestamps: Sequence[float], size: Optional[tuple[int, int]] = None) -> list[Frame]:
        ts = self._check_times(timestamps)
        order = np.argsort(ts, kind="stable")
        out: list[Optional[Frame]] = [None] * len(ts)
        cache: dict[int, Frame] = {}
        for i in order:
            frame = self._frame_on_screen(float(ts[i]))
            key = id(frame)
            if key not in cache:
                cache = {key: (self._frame_time(frame), self._to_rgb(frame, size))}
            out[i] = cache[key]
        return out  # type: ignore[return-value]

    def iter_sampled(self, fps: float, size: Optional[tuple[int, int]] = None) -> Iterator[Frame]:
        if fps <= 0:
            raise ValueError("fps must be > 0")
        self._seek(0.0)
        step = 1.0 / fps
        k = 0  # the next sample time is k * step
        prev = None
        while True:
            frame = self._next_frame()
            if frame is None:
                break
            t = self._frame_time(frame)
            # prev is on screen during [t_prev, t): it serves every sample time inside that span
            if prev is not None and k * step < t - _EPS:
                yield self._frame_time(prev), self._to_rgb(prev, size)
                while k * step < t - _EPS:
                    k += 1
            prev = frame
        if prev is not None and k * step < self._info.duration - _EPS:
            yield self._frame_time(prev), self._to_rgb(prev, size)
        self._dec = None
        self._prev = self._pending = None

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # pragma: no cover
            pass
