"""Bounds on the work one MCP client can cause: video limits and the first-embedding queue.

A video's first ``seek_video_frames`` embeds all its frames once (minutes for hours of video).
This module keeps that work bounded and fair:

- :func:`check_video_limits` - refuses a video longer than ``max_video_duration_s`` or with
  frames larger than ``max_video_pixels``; the refusal names the limit and the environment
  variable that raises it.
- :class:`EmbedJob` - one video's embedding pass; waiting calls register as *waiters*. When the
  last waiter goes away because its call was cancelled (MCP ``notifications/cancelled`` or a
  client that disconnects), the job is cancelled: dropped from the queue, or stopped between
  encoder batches if it is running. A call that merely stops waiting after ``embed_wait_s``
  ("call again") keeps its job.
- :class:`EmbedQueue` - first come, first served: one pass runs at a time (they share the CPU),
  the others wait in arrival order; at most ``max_embed_queue`` passes are queued or running,
  a further video is refused with the limit and how to raise it.

Usage::

    queue = EmbedQueue(store, max_jobs=settings.max_embed_queue)
    job = queue.submit(path)            # or raises LimitError
    job.attach(); ...; job.detach(cancelled=True)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

from agent_tools.errors import InvalidArgumentError

__all__ = ["LimitError", "EmbedCancelled", "EmbedJob", "EmbedQueue", "check_video_limits"]

logger = logging.getLogger("videoseek.mcp")


class LimitError(InvalidArgumentError):
    """A request over one of the server's limits (the message names it and how to raise it)."""


class EmbedCancelled(Exception):
    """Raised inside a running embedding pass whose every caller went away."""


def check_video_limits(info: Any, settings: Any) -> None:
    """Refuse a video over the duration or frame-size limit.

    Args:
        info: The video's :class:`~agent_tools.types.VideoInfo`.
        settings: The server's settings (``max_video_duration_s``, ``max_video_pixels``).

    Raises:
        LimitError: Naming the limit, the video's value and the ``VIDEOSEEK_*`` variable.
    """
    max_s = float(settings.max_video_duration_s)
    if info.duration > max_s:
        raise LimitError(
            f"this video lasts {info.duration:.0f} s; this server embeds videos up to {max_s:.0f} s "
            "(limit VIDEOSEEK_MAX_VIDEO_DURATION_S, set by the server's operator). Pass a shorter "
            "video, or ask the operator to raise the limit or index it with `videoseek index`."
        )
    max_px = int(settings.max_video_pixels)
    if info.width * info.height > max_px:
        raise LimitError(
            f"this video's frames are {info.width}x{info.height} ({info.width * info.height} pixels); "
            f"this server reads frames up to {max_px} pixels (limit VIDEOSEEK_MAX_VIDEO_PIXELS, set by "
            "the server's operator). Pass a lower-resolution copy, or ask the operator to raise the limit."
        )


class EmbedJob:
    """The one-time embedding pass of one video (run by :class:`EmbedQueue`).

    Attributes:
        path: The video file.
        done: Frames embedded so far.
        total: Frames to embed (``None`` until the pass starts).
        error: Why the pass failed (or :class:`EmbedCancelled`), if it did.
        finished: Set when the pass ended (success, failure or cancellation).
    """

    def __init__(self, path: Path, store: Any):
        self.path = path
        self.done = 0
        self.total: Optional[int] = None
        self.error: Optional[BaseException] = None
        self.queued_at = time.monotonic()
        self.started: Optional[float] = None
        self.finished = threading.Event()
        self.cancelled = threading.Event()
        self.position = 0  # jobs ahead of this one when last looked at
        self._store = store
        self._waiters = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ waiters
    def attach(self) -> None:
        """A call starts waiting for this job."""
        with self._lock:
            self._waiters += 1

    def detach(self, cancelled: bool) -> None:
        """A call stops waiting; ``cancelled`` when the call itself was cancelled.

        The job is cancelled when the last waiter leaves because it was cancelled; a waiter that
        times out ("call again") leaves the job running for the next call.
        """
        with self._lock:
            self._waiters = max(0, self._waiters - 1)
            last = self._waiters == 0
        if cancelled and last and not self.finished.is_set():
            logger.info("every caller of the embedding pass of %s went away; cancelling it", self.path)
            self.cancelled.set()

    # ------------------------------------------------------------------ running
    def _progress(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise EmbedCancelled(f"embedding of {self.path} cancelled: its caller went away")
        self.done, self.total = int(done), int(total)

    def run(self) -> None:
        """Run the pass in the calling thread (the queue's worker)."""
        try:
            if self.cancelled.is_set():
                raise EmbedCancelled(f"embedding of {self.path} cancelled before it started")
            self.started = time.monotonic()
            self._store.get(self.path, progress=self._progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the calls that wait
            self.error = exc
        finally:
            self.finished.set()

    def status_text(self) -> str:
        """One sentence on how far the pass is, with an estimate of the time left."""
        if self.started is None:
            waited = time.monotonic() - self.queued_at
            return f"it is queued behind {self.position} other video(s) ({waited:.0f} s so far)"
        elapsed = time.monotonic() - self.started
        if not self.total or not self.done:
            return f"embedding has not produced frames yet after {elapsed:.0f} s"
        left = elapsed / self.done * max(0, self.total - self.done)
        return (
            f"{100 * self.done / self.total:.0f}% of its frames are embedded ({self.done}/{self.total} "
            f"after {elapsed:.0f} s, about {left:.0f} s left)"
        )


class EmbedQueue:
    """First-come-first-served queue of embedding passes, one running at a time.

    Args:
        store: The frame-embedding store the passes fill.
        max_jobs: Passes queued or running at once; more are refused with :class:`LimitError`.
    """

    def __init__(self, store: Any, max_jobs: int = 4):
        self.store = store
        self.max_jobs = int(max_jobs)
        self._pending: deque[EmbedJob] = deque()
        self._running: Optional[EmbedJob] = None
        self._cv = threading.Condition()
        self._worker: Optional[threading.Thread] = None

    def __len__(self) -> int:
        with self._cv:
            return len(self._pending) + (self._running is not None)

    def submit(self, path: Path) -> EmbedJob:
        """Queue a pass for ``path``.

        Raises:
            LimitError: ``max_jobs`` passes are already queued or running.
        """
        with self._cv:
            self._pending = deque(j for j in self._pending if not j.cancelled.is_set())
            busy = len(self._pending) + (self._running is not None)
            if busy >= self.max_jobs:
                raise LimitError(
                    f"{busy} new videos are already being prepared for search on this server (limit "
                    f"VIDEOSEEK_MAX_EMBED_QUEUE={self.max_jobs}); call again in a few minutes, use a "
                    "video that was searched before, or ask the operator to raise the limit or run "
                    "`videoseek index` ahead of time."
                )
            job = EmbedJob(path, self.store)
            job.position = busy
            self._pending.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="videoseek-embed", daemon=True)
                self._worker.start()
            self._cv.notify_all()
            return job

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    if not self._cv.wait(timeout=30):
                        if not self._pending:
                            self._worker = None
                            return
                job = self._pending.popleft()
                self._running = job
                for i, other in enumerate(self._pending):
                    other.position = i + 1
            try:
                job.run()
            finally:
                with self._cv:
                    self._running = None
