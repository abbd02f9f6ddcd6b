"""Video reading behind one small interface, with a PyAV and a decord backend.

- :func:`open_video` - open a file with the backend best suited to the access pattern.
- :func:`probe` - container facts (:class:`agent_tools.types.VideoInfo`) of a file.
- :class:`VideoReader` - ``info``, ``frames_at``, ``iter_sampled``, ``preview``.

Which backend is the default (measured in ``benchmarks/bench_video.py``):

- ``access="sequential"`` (the embedding pass walks the whole file): PyAV.
- ``access="sparse"`` (a few frames at given times): PyAV too, its targets split between two
  single-threaded decoders on multi-core machines; decord is the fallback when PyAV cannot
  read a file, and can be forced with ``backend="decord"``.

Usage::

    with open_video("talk.mp4") as reader:
        print(reader.info.duration)
        (t, rgb), = reader.frames_at([12.5])
"""

from __future__ import annotations

import os
from typing import Literal

from ..errors import InvalidArgumentError, VideoReadError
from ..types import VideoInfo
from .base import Frame, VideoReader, check_path, fit_size, sample_times, uniform_times
from .decord_reader import DecordReader, decord_available
from .pyav_reader import PyAVReader

__all__ = [
    "open_video",
    "probe",
    "VideoReader",
    "PyAVReader",
    "DecordReader",
    "decord_available",
    "Frame",
    "check_path",
    "fit_size",
    "sample_times",
    "uniform_times",
    "BACKENDS",
]

BACKENDS = ("auto", "pyav", "decord")

# Measured defaults per access pattern (see the module docstring).
_DEFAULT_ORDER = {"sequential": ("pyav", "decord"), "sparse": ("pyav", "decord")}


def _make(backend: str, path, access: str = "sparse", parallel_decoders: bool = False) -> VideoReader:
    if backend == "pyav":
        if access == "sequential":
            # one long walk: FFmpeg's own frame threading, unless the caller decodes segments in parallel
            return PyAVReader(path, parallel=False, thread_type="NONE" if parallel_decoders else "AUTO")
        # sparse reads seek before each target, where frame threading only adds latency; with
        # several cores the reader splits the targets between two single-threaded decoders
        parallel = (os.cpu_count() or 1) > 1
        return PyAVReader(path, parallel=parallel, thread_type="NONE" if parallel else "SLICE")
    if backend == "decord":
        if not decord_available():
            raise InvalidArgumentError("video backend 'decord' is not installed here; valid backends: auto, pyav")
        return DecordReader(path)
    raise InvalidArgumentError(f"unknown video backend {backend!r}; valid backends: {', '.join(BACKENDS)}")


def open_video(
    path: str | os.PathLike,
    backend: str = "auto",
    access: Literal["sequential", "sparse"] = "sparse",
    parallel_decoders: bool = False,
) -> VideoReader:
    """Open a video file.

    Args:
        path: The file.
        backend: ``"auto"``, ``"pyav"`` or ``"decord"``.
        access: What the caller will do; picks the backend (``"auto"``) and its threading.
        parallel_decoders: The caller runs several readers of this file at once (segments of
            one embedding pass): each then decodes single-threaded.

    Returns:
        An open :class:`VideoReader` (close it, or use it as a context manager).

    Raises:
        VideoReadError: The file is missing, empty, not a video, corrupt or truncated.
        InvalidArgumentError: An unknown backend.
    """
    if backend != "auto":
        return _make(backend, path, access, parallel_decoders)
    check_path(path)
    order = [b for b in _DEFAULT_ORDER[access] if b != "decord" or decord_available()]
    first_error: VideoReadError | None = None
    for name in order:
        try:
            return _make(name, path, access, parallel_decoders)
        except VideoReadError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def probe(path: str | os.PathLike, backend: str = "auto") -> VideoInfo:
    """Container facts of one video file (duration, fps, frame count, size, codec)."""
    with open_video(path, backend=backend) as reader:
        return reader.info
