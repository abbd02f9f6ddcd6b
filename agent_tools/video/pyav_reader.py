"""PyAV (FFmpeg) backend: the default for sequential sampling and a sparse reader with seeking.

PyAV wheels bundle FFmpeg, so this backend needs nothing from the system. Sparse access
(:meth:`PyAVReader.frames_at`) seeks to the keyframe before each target and decodes
forward; targets close to the current position are reached by decoding on instead of
seeking again.
"""

from __future__ import annotations

import math
import os
import threading
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
# On the way to a sparse target, non-reference frames presented more than this much
# earlier are skipped by the decoder (decode order runs at most a few frames ahead of pts).
_SKIP_MARGIN_SECONDS = 0.5


def _reason(exc: Exception) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return f"not a readable video ({msg})"


class PyAVReader(VideoReader):
    """Video reader backed by PyAV."""

    backend = "pyav"

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int = 0,
        parallel: Optional[bool] = None,
        thread_type: str = "AUTO",
    ):
        """Open ``path``.

        Args:
            path: The video file.
            threads: FFmpeg decoder threads (0: FFmpeg's choice).
            parallel: Split sparse reads of 4+ far-apart frames between this reader and a
                second one in a thread (default: on multi-core machines).
            thread_type: FFmpeg threading: ``"AUTO"`` (frame + slice; best for one long walk),
                ``"SLICE"``, or ``"NONE"`` (best when the caller already runs decoders in
                parallel, and after seeks, where frame threading only adds latency).
        """
        super().__init__(path)
        self._parallel = (os.cpu_count() or 1) > 1 if parallel is None else parallel
        try:
            self._container = av.open(str(self.path), "r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise VideoReadError(self.path, _reason(exc)) from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoReadError(self.path, "the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = thread_type
        if threads:
            self._stream.thread_count = threads
        self._info: Optional[VideoInfo] = None
        self._dec: Optional[Iterator] = None
        self._skip_until: Optional[float] = None
        self._sample_step: Optional[float] = None
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

    def _decode_from_here(self) -> Iterator:
        """Decode forward, letting the decoder drop non-reference frames nobody will look at.

        ``self._skip_until`` (seconds): packets presented before it are decoded with
        ``skip_frame=NONREF`` (used on the way to a sparse target). ``self._sample_step``: in a
        sampling pass, a packet whose display span holds no sample time is decoded with
        ``NONREF`` too. Reference frames are always decoded, so later frames stay exact.
        """
        cc = self._stream.codec_context
        tb = self._stream.time_base
        for packet in self._container.demux(self._stream):
            skip = False
            if packet.pts is not None:
                t = float(packet.pts * tb)
                if self._skip_until is not None and t < self._skip_until:
                    skip = True
                elif self._sample_step and packet.duration:
                    step = self._sample_step
                    nxt = math.ceil(t / step - _EPS) * step  # first sample time at or after t
                    skip = nxt >= t + float(packet.duration * tb) - _EPS
            cc.skip_frame = "NONREF" if skip else "DEFAULT"
            yield from packet.decode()
        cc.skip_frame = "DEFAULT"

    def _seek(self, t: float) -> None:
        target = int(max(0.0, t) / self._stream.time_base)
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise VideoReadError(self.path, f"seek to {t:.3f}s failed ({exc})") from exc
        self._dec = self._decode_from_here()
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
        self._skip_until = t - _SKIP_MARGIN_SECONDS
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
        self._sample_step = None
        ts = self._check_times(timestamps)
        uniq = np.unique(ts)
        if self._parallel and len(uniq) >= 4 and uniq[-1] - uniq[0] > 2 * _FORWARD_DECODE_SECONDS:
            return self._frames_at_parallel(ts, uniq, size)
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

    def _frames_at_parallel(self, ts: np.ndarray, uniq: np.ndarray, size) -> list[Frame]:
        """Split sorted targets between this reader and a second one decoding in a thread."""
        half = len(uniq) // 2
        result: dict[int, list[Frame]] = {}
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with PyAVReader(self.path, parallel=False, thread_type=self._stream.thread_type) as other:
                    result[1] = other.frames_at(uniq[half:].tolist(), size=size)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=second, name="videoseek-fetch", daemon=True)
        worker.start()
        try:
            saved, self._parallel = self._parallel, False
            result[0] = self.frames_at(uniq[:half].tolist(), size=size)
        finally:
            self._parallel = saved
            worker.join()
        if errors:
            raise errors[0]
        lookup = dict(zip(uniq.tolist(), result[0] + result[1]))
        return [lookup[float(t)] for t in ts]

    def iter_sampled(
        self,
        fps: float,
        size: Optional[tuple[int, int]] = None,
        start: float = 0.0,
        end: Optional[float] = None,
    ) -> Iterator[Frame]:
        """See :meth:`VideoReader.iter_sampled`; ``start``/``end`` restrict the sample times to
        ``[start, end)`` so that several readers can walk segments of one file in parallel."""
        if fps <= 0:
            raise ValueError("fps must be > 0")
        step = 1.0 / fps
        stop = self._info.duration if end is None else min(end, self._info.duration)
        k = max(0, math.ceil(start / step - _EPS))  # the next sample time is k * step
        if k * step >= stop - _EPS:
            return
        self._skip_until = None
        self._sample_step = step
        self._seek(k * step)
        prev = None
        try:
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
                    if k * step >= stop - _EPS:
                        prev = None
                        break
                prev = frame
            if prev is not None and k * step < stop - _EPS:
                yield self._frame_time(prev), self._to_rgb(prev, size)
        finally:
            self._dec = None
            self._sample_step = None
            self._prev = self._pending = None

    def close(self) -> None:
        try:
            self._container.close()
        except Exception:  # pragma: no cover
            pass
