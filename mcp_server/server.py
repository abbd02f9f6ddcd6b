"""The videoseek MCP server: temporal and corpus video search as MCP tools.

The host's model is the search policy: it calls the tools below, looks at the frames they
return and decides where to look next. Built on the ``mcp`` 2.x SDK (:class:`MCPServer`).

Tools (names and argument names are a contract). Each returns readable content for the model
and, as ``structuredContent``, the typed result every videoseek surface shares (the CLI's
``--json``, the LangChain artifact and the graph state carry the same models):

- ``seek_video_frames(video, query, start_time?, end_time?, num_frames?)`` - the frames of one
  video that best match a query inside a time window (TimeSearch-R's tool), as JPEG images
  each preceded by its timestamp; an empty or blank query samples the window uniformly, as
  :meth:`agent_tools.temporal.TemporalSearcher.seek` does. Structured output:
  :class:`~agent_tools.types.FrameSelection`.
- ``preview_video(video, num_frames?)`` - uniformly spaced frames and the duration
  (:class:`~agent_tools.types.FrameSelection`).
- ``search_moments(query, top_k?, video?)`` - ranked moments from the corpus index
  (:class:`~agent_tools.types.MomentSearchResult`); an empty query is an error.
- ``video_info(video)`` - container facts (:class:`~agent_tools.types.VideoInfo`); whether the
  index holds the video is said in the text.
- ``list_videos(status?, limit?, offset?)`` - a page of the indexed videos
  (:class:`~mcp_server.models.VideoPage` of :class:`~agent_tools.types.VideoRecord`).

A :class:`~agent_tools.types.FrameSelection`'s ``frames`` are exactly the frames whose images
were sent, in time order, and its ``video`` is the index id when the index holds the video,
else the ``video`` argument as given. What only this surface knows (JPEG size and quality,
the file and its index status, frames left out to fit the payload) is in the text content.

Resources: ``videoseek://videos`` (the index's videos), ``videoseek://videos/{video_id}``
(one video's metadata) and ``videoseek://index/status`` (index, encoder and media roots).

Design:

- :class:`ServerState` holds the encoder, the frame-embedding store, the temporal searcher
  and the corpus index. The lifespan starts loading it (once per server object, in the
  background, so the host's handshake and tool listing do not wait for torch); calls wait
  for it, and later calls and connections reuse the loaded models. If loading fails, the
  server keeps running and every tool call fails with the reason (an ``isError`` result).
- ``video`` is an index id or a path under a media root (:mod:`mcp_server.security`).
- Engine calls run in worker threads (two at a time). A video's first search embeds its
  frames once (:class:`EmbedJob`, one background pass per video, one pass at a time); the call
  waits up to ``embed_wait_s`` (40 s) with progress notifications, then answers "call again
  in N s" while the pass goes on, so no call outlives a host's ~60 s timeout. This is the only
  long job the server runs; indexing a corpus is the CLI's job (``videoseek index PATH``).
- Bad input raises :class:`ToolError` with a message that says what is valid; the SDK turns
  it into an ``isError`` result and the server keeps serving.
- Logging goes to stderr only: on stdio, stdout is the protocol wire.

Usage::

    videoseek-mcp                                    # stdio (Claude Desktop, Claude Code)
    videoseek-mcp --transport streamable-http --port 8765   # http://127.0.0.1:8765/mcp
    python -m mcp_server --help

    server = build_server(get_settings(encoder="tiny-untrained"))   # in tests
    async with Client(server) as client: ...
"""

# No ``from __future__ import annotations`` here: the SDK reads the tool signatures, whose
# ``Field`` bounds close over ``build_server``'s locals.

import argparse
import contextlib
import inspect
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from agent_tools.config import Settings, get_settings
from agent_tools.errors import UnknownVideoError, VideoseekError
from agent_tools.protocol import format_timestamp, format_timestamps
from agent_tools.types import FrameSelection, MomentSearchResult, VideoInfo, VideoRecord

from .media import DEFAULT_BUDGET, EncodedBatch, base64_len, encode_frames
from .models import VideoPage
from .security import MediaResolver, looks_like_url

__all__ = [
    "build_server",
    "main",
    "ServerState",
    "StateLoader",
    "EmbedJob",
    "ResolvedVideo",
    "load_state",
    "SERVER_NAME",
]

logger = logging.getLogger("videoseek.mcp")

SERVER_NAME = "videoseek"
DEFAULT_IMAGE_MAX_SIDE = 768
DEFAULT_EMBED_WAIT_S = 40.0
_MAX_TOP_K = 50
_MAX_PAGE = 500
_INDEX_HINT = "build one with `videoseek index PATH` (the server picks it up on the next call)"

INSTRUCTIONS = """\
videoseek searches long videos for you. Times are seconds from the start of a video.
- Across many indexed videos: search_moments(query) returns ranked (video, start, end) moments;
  list_videos shows what is indexed.
- Inside one video: preview_video(video) for an overview, then seek_video_frames(video, query,
  start_time, end_time) to look closer; narrow the window around promising timestamps and search
  again until the frames answer the question (an empty query gives evenly spaced frames of the
  window). Base answers on what the frames show.
- `video` is an id from list_videos/search_moments or a file path under the server's media roots.
"""


# --------------------------------------------------------------------------- state


@dataclass
class ResolvedVideo:
    """A ``video`` argument after resolution."""

    ref: str
    path: Any  # Path of a local file, or an allowed URL string
    video_id: Optional[str] = None
    record: Optional[VideoRecord] = None  # the index's record, when the index holds the video


class EmbedJob:
    """The one-time embedding pass of one video, running in a background thread.

    Started by the first ``seek_video_frames`` call on a video that is not in the embedding
    store yet. Calls wait for it up to the server's ``embed_wait_s``; past that they return
    "not ready, call again" while the job goes on, so no call outlives the host's timeout.

    Attributes:
        path: The video file.
        done: Frames embedded so far.
        total: Frames to embed (``None`` until the video is opened).
        error: Why the pass failed, if it did.
    """

    _slots = threading.BoundedSemaphore(1)  # one embedding pass at a time: they share the CPU

    def __init__(self, path: Path, store: Any):
        self.path = path
        self.done = 0
        self.total: Optional[int] = None
        self.error: Optional[BaseException] = None
        self.started = time.monotonic()
        self.finished = threading.Event()
        self._store = store

    def start(self) -> "EmbedJob":
        threading.Thread(target=self._run, name=f"videoseek-embed-{self.path.name}", daemon=True).start()
        return self

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)

    def _run(self) -> None:
        try:
            with self._slots:
                self.started = time.monotonic()
                self._store.get(self.path, progress=self._progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the calls that wait
            self.error = exc
        finally:
            self.finished.set()

    def status_text(self) -> str:
        """One sentence on how far the pass is, with an estimate of the time left."""
        elapsed = time.monotonic() - self.started
        if not self.total or not self.done:
            return f"embedding has not produced frames yet after {elapsed:.0f} s"
        left = elapsed / self.done * max(0, self.total - self.done)
        return (
            f"{100 * self.done / self.total:.0f}% of its frames are embedded ({self.done}/{self.total} "
            f"after {elapsed:.0f} s, about {left:.0f} s left)"
        )


@dataclass
class ServerState:
    """What the tools share: loaded once per server, read by every call.

    Attributes:
        settings: The configuration the server was built with.
        encoder: The image-text encoder (``.name``, ``.trained``).
        store: The frame-embedding store (on-disk cache).
        temporal: The :class:`agent_tools.temporal.TemporalSearcher`.
        resolver: The media-root allow-list.
        index: The corpus index, or ``None`` when there is none.
        moments: The :class:`agent_tools.corpus.MomentSearcher` over ``index``.
        index_error: Why ``index`` is ``None``.
    """

    settings: Settings
    encoder: Any
    store: Any
    temporal: Any
    resolver: MediaResolver
    index: Any = None
    moments: Any = None
    index_error: Optional[str] = None
    limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(2))
    _jobs: dict[str, EmbedJob] = field(default_factory=dict)
    _jobs_lock: threading.Lock = field(default_factory=threading.Lock)
    index_enabled: bool = True
    _index_lock: threading.RLock = field(default_factory=threading.RLock)
    _index_sig: Optional[tuple] = None

    # ---------------------------------------------------------------- encoder facts
    @property
    def encoder_name(self) -> str:
        """Registry name of the encoder."""
        return str(getattr(self.encoder, "name", self.settings.encoder))

    @property
    def encoder_trained(self) -> bool:
        """False for untrained test encoders (results are then meaningless)."""
        return bool(getattr(self.encoder, "trained", True))

    def embed_job(self, path: Path) -> Optional[EmbedJob]:
        """The running (or just finished) embedding pass of ``path``; starts one if it is not stored.

        Returns:
            ``None`` when the video's embeddings are already in the store.
        """
        key = str(path)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None and not (job.finished.is_set() and job.error is not None):
                return job
            if self.store.has(path):
                self._jobs.pop(key, None)
                return None
            job = self._jobs[key] = EmbedJob(path, self.store).start()
            return job

    def forget_job(self, job: EmbedJob) -> None:
        """Drop a finished job (its result now lives in the store, or its error was reported)."""
        with self._jobs_lock:
            if self._jobs.get(str(job.path)) is job:
                del self._jobs[str(job.path)]

    # ---------------------------------------------------------------- index
    @property
    def index_dir(self) -> Path:
        """The corpus index folder from the settings."""
        return Path(self.settings.index_dir).expanduser()

    def index_exists(self) -> bool:
        """Whether ``videoseek index`` has created an index (the server never creates one)."""
        return (self.index_dir / "catalog.sqlite").is_file()

    def _index_signature(self) -> tuple:
        """Changes when the CLI adds, removes or re-indexes videos (vector files or catalog)."""
        sig: list[Any] = []
        for sub in ("vectors", "catalog.sqlite", "catalog.sqlite-wal"):
            p = self.index_dir / sub
            try:
                if p.is_dir():
                    stats = [(f.name, f.stat()) for f in p.iterdir()]
                    sig.extend(sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats))
                elif p.exists():
                    st = p.stat()
                    sig.append((sub, st.st_mtime_ns, st.st_size))
            except OSError:
                sig.append((sub, None))
        return tuple(sig)

    def open_index(self) -> None:
        """(Re)open the corpus index from ``settings.index_dir``; on failure, record why."""
        from agent_tools.corpus import CorpusIndex, MomentSearcher

        index_dir = self.index_dir
        with self._index_lock:
            if not self.index_enabled:
                self._close_index()
                self.index_error = "the corpus index is disabled for this server"
                return
            if not self.index_exists():
                self._close_index()
                self.index_error = f"no corpus index at {index_dir}"
                return
            # Remembered on failure too, so an unusable index is retried only once it changes.
            self._index_sig = self._index_signature()
            try:
                index = CorpusIndex.open(index_dir, self.encoder, read_only=True)  # never builds or repairs
                moments = MomentSearcher(index, self.encoder)
            except VideoseekError as exc:
                self._close_index()
                self.index_error = f"the corpus index at {index_dir} cannot be used: {exc}"
                logger.warning("%s", self.index_error)
                return
            except Exception as exc:  # noqa: BLE001 - keep serving the temporal tools
                self._close_index()
                self.index_error = (
                    f"the corpus index at {index_dir} failed to load ({type(exc).__name__}: {exc})"
                )
                logger.exception("corpus index failed to load")
                return
            # The previous index is not closed: a call in another thread may still be reading it;
            # it is released when the last reference goes.
            self.index, self.moments, self.index_error = index, moments, None
            # Taken after opening: opening touches the catalog itself (WAL, reconcile).
            self._index_sig = self._index_signature()
            logger.info("corpus index loaded from %s", index_dir)

    def _close_index(self) -> None:
        self.index, self.moments = None, None

    def refresh_index(self) -> None:
        """Open the index if it appeared, reopen it if the CLI changed it since it was loaded."""
        if not self.index_enabled:
            return
        with self._index_lock:
            if self.index is None and not self.index_exists():
                return
            if self._index_sig is not None and self._index_signature() == self._index_sig:
                return
            if self.index is not None:
                logger.info("corpus index changed on disk; reloading")
            self.open_index()

    def require_index(self) -> Any:
        """The (refreshed) corpus index; raises a ToolError naming the fix when there is none.

        Raises:
            ToolError: No index, or one that cannot be used with this server's encoder.
        """
        self.refresh_index()
        if self.index is None:
            raise ToolError(
                f"{self.index_error}. Corpus search needs an index: {_INDEX_HINT}. Meanwhile "
                f"seek_video_frames, preview_video and video_info accept {self.resolver.describe()}."
            )
        return self.index

    def indexed_count(self) -> int:
        """Videos with status ``indexed`` in the current index (0 without one)."""
        return 0 if self.index is None else self.index.catalog.count_indexed()

    def lookup_indexed(self, ref: str) -> Optional[VideoRecord]:
        """The index record whose id (or path) is ``ref``, or ``None``."""
        if self.index is None:
            return None
        try:
            return self.index.get_video(ref)
        except UnknownVideoError:
            return None

    # ---------------------------------------------------------------- videos
    def resolve_video(self, ref: Any) -> ResolvedVideo:
        """Turn a ``video`` argument into a file the engines may open.

        An exact index id is accepted as is (the index is the operator's allow-list). Anything
        else must be a path under a media root (or an allowed URL).

        Raises:
            ToolError: Empty, unknown, or not allowed; the message lists what is valid.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise ToolError(
                f"video must be a non-empty string: an index id (see list_videos) or "
                f"{self.resolver.describe()}"
            )
        ref = ref.strip()
        self.refresh_index()
        record = None if looks_like_url(ref) else self.lookup_indexed(ref)
        if record is not None and record.video_id == ref:
            return ResolvedVideo(ref=ref, path=Path(record.path), video_id=ref, record=record)
        try:
            path = self.resolver.resolve(ref)
        except VideoseekError as exc:
            ids = "an index id (see list_videos)" if self.index is not None else "no index ids (no index yet)"
            raise ToolError(f"{exc}. `video` may be {ids} or a path as described.") from exc
        record = self.lookup_indexed(str(path)) if isinstance(path, Path) else None
        return ResolvedVideo(
            ref=ref, path=path, video_id=record.video_id if record is not None else None, record=record
        )


def load_state(settings: Settings, *, encoder: Any = None, load_index: bool = True) -> ServerState:
    """Load the encoder, the embedding store, the temporal searcher and (if present) the index.

    Args:
        settings: Configuration (encoder name, cache and index folders, media roots).
        encoder: An already loaded encoder to use instead of ``settings.encoder``.
        load_index: Open the corpus index at ``settings.index_dir`` if it exists.

    Returns:
        The state the tools share.

    Raises:
        EncoderUnavailableError: The configured encoder cannot be loaded here.
    """
    from agent_tools.store import FrameEmbeddingStore
    from agent_tools.temporal import TemporalSearcher

    t0 = time.perf_counter()
    if encoder is None:
        from agent_tools.encoders import load_encoder

        encoder = load_encoder(settings.encoder, device=settings.device)
    store = FrameEmbeddingStore(
        settings.cache_dir,
        encoder,
        sample_fps=settings.sample_fps,
        batch_size=settings.batch_size,
        backend=settings.video_backend,
    )
    temporal = TemporalSearcher(encoder, store, settings=settings)
    state = ServerState(
        settings=settings,
        encoder=encoder,
        store=store,
        temporal=temporal,
        resolver=MediaResolver(settings.media_roots, allow_urls=settings.allow_urls),
    )
    state.index_enabled = load_index
    state.open_index()
    if not state.encoder_trained:
        banner = "!" * 72
        logger.warning(
            "\n%s\n!! videoseek-mcp: encoder %r is UNTRAINED (random weights, for tests only).\n"
            "!! Search scores and frame choices are meaningless. Set VIDEOSEEK_ENCODER to a trained\n"
            "!! encoder (`videoseek encoders` lists them).\n%s",
            banner,
            state.encoder_name,
            banner,
        )
    logger.info(
        "videoseek-mcp ready in %.1f s: encoder=%s media_roots=%s index=%s",
        time.perf_counter() - t0,
        state.encoder_name,
        [str(r) for r in state.resolver.roots] or "none",
        "loaded" if state.index is not None else state.index_error,
    )
    return state


# --------------------------------------------------------------------------- helpers


class StateLoader:
    """Loads the :class:`ServerState` once, in a background thread, and hands it to every call.

    The transport starts answering at once (hosts see the tool list without waiting for torch
    and the encoder to load); a tool call that arrives earlier waits for the load. A failed
    load (say, an encoder whose weights are missing) does not stop the server: every tool call
    then raises a :class:`ToolError` with the reason, which the host shows as an ``isError`` result.

    Args:
        load: Builds the state (runs in a worker thread).
    """

    def __init__(self, load: Callable[[], ServerState]):
        self._load = load
        self._done = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        self.state: Optional[ServerState] = None
        self.error: Optional[BaseException] = None

    @classmethod
    def ready(cls, state: ServerState) -> "StateLoader":
        """A loader that already holds ``state``."""
        loader = cls(lambda: state)
        loader.state, loader._started = state, True
        loader._done.set()
        return loader

    def start(self) -> None:
        """Start loading in a daemon thread (idempotent)."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="videoseek-load", daemon=True).start()

    def _run(self) -> None:
        try:
            self.state = self._load()
        except BaseException as exc:  # noqa: BLE001 - reported to every call
            self.error = exc
            logger.error(
                "videoseek-mcp could not load its models: %s",
                exc,
                exc_info=not isinstance(exc, VideoseekError),
            )
        finally:
            self._done.set()

    def get_now(self) -> ServerState:
        """The state, blocking until it is loaded (call from a worker thread).

        Raises:
            ToolError: The load failed; the message says why.
        """
        self.start()
        self._done.wait()
        if self.state is None:
            exc = self.error
            reason = str(exc) if isinstance(exc, VideoseekError) else f"{type(exc).__name__}: {exc}"
            raise ToolError(f"the videoseek server failed to start its search engines: {reason}")
        return self.state

    async def get(self) -> ServerState:
        """The state, waiting (without blocking the event loop) until it is loaded."""
        if self._done.is_set():
            return self.get_now()
        return await anyio.to_thread.run_sync(self.get_now)


async def _state(ctx: Context) -> ServerState:
    return await ctx.request_context.lifespan_context.get()


def _tool_error(exc: BaseException, what: str) -> ToolError:
    """Map an engine exception to a ToolError whose text the model can act on."""
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, VideoseekError):
        return ToolError(str(exc))
    # Not one of videoseek's own errors: most often a decoder choking on a file that is not a
    # video. The server is local, so the decoder's one-line reason is kept for the user.
    logger.error("unexpected %s while %s", type(exc).__name__, what, exc_info=exc)
    reason = " ".join(str(exc).split())[:200]
    return ToolError(
        f"failed while {what} ({type(exc).__name__}: {reason}). If the file is not a playable video, "
        "pass another one; the server logged the details and keeps serving other calls."
    )


async def _run_engine(state: ServerState, fn: Callable[[], Any], what: str) -> Any:
    try:
        return await anyio.to_thread.run_sync(fn, limiter=state.limiter)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable isError result
        raise _tool_error(exc, what) from exc


async def _wait_for_embeddings(
    state: ServerState, target: ResolvedVideo, ctx: Context, wait_s: float
) -> None:
    """Make sure the video is embedded, waiting at most ``wait_s`` (progress goes to the client).

    Raises:
        ToolError: The pass is still running after ``wait_s`` ("call again in N s"), or it failed.
    """
    job = await _run_engine(state, lambda: state.embed_job(target.path), f"reading {target.ref!r}")
    if job is None:
        return
    label = f"embedding the frames of {target.ref} (once per video)"
    last: tuple = ()
    with anyio.move_on_after(wait_s):
        while not job.finished.is_set():
            if job.total and (job.done, job.total) != last:
                last = (job.done, job.total)
                with contextlib.suppress(Exception):  # progress is best effort
                    await ctx.report_progress(float(job.done), float(job.total), label)
            await anyio.sleep(0.1)
    if not job.finished.is_set():
        raise ToolError(
            f"{target.ref} is being prepared for search for the first time: {job.status_text()}. Call "
            "seek_video_frames again in a while (preview_video and video_info work meanwhile). To prepare "
            "videos ahead of time, run `videoseek index PATH`."
        )
    state.forget_job(job)
    if job.error is not None:
        raise _tool_error(job.error, f"reading {target.ref!r}")
    if job.total:
        with contextlib.suppress(Exception):
            await ctx.report_progress(float(job.total), float(job.total), label)


async def _resolve(state: ServerState, video: Any) -> ResolvedVideo:
    """Resolve a ``video`` argument in a worker thread (it may reload the index)."""
    try:
        target = await anyio.to_thread.run_sync(state.resolve_video, video)
    except Exception as exc:  # noqa: BLE001 - a readable isError result, never a bare SDK error
        raise _tool_error(exc, f"resolving video {video!r}") from exc
    if not isinstance(target.path, Path):
        raise ToolError(
            f"video {target.ref!r} is a URL; URLs pass the server's allow-list, but the search engines read "
            "local files only. Download it under a media root and pass that path."
        )
    return target


async def _encode(
    state: ServerState, target: ResolvedVideo, hits: list[Any], max_side: int, budget: int
) -> tuple[list[Any], EncodedBatch, int]:
    """JPEG-encode the hits' images under the payload budget (decoding any that are missing).

    Returns:
        ``(kept hits, their encoded frames, number of frames left out)``. Frames are left out
        only when even the smallest size and quality exceed the budget (lowest score first,
        or every other frame for uniform sampling).
    """
    images = [h.image for h in hits]
    if any(im is None for im in images):
        images = await _run_engine(
            state,
            lambda: state.temporal.frames(target.path, [h.timestamp for h in hits], max_side=max_side),
            f"decoding frames of {target.ref!r}",
        )
    batch = await anyio.to_thread.run_sync(lambda: encode_frames(images, max_side=max_side, budget=budget))
    keep = list(range(len(hits)))
    if batch.total_base64 > budget and len(keep) > 1:
        if all(h.score is not None for h in hits):
            order = sorted(keep, key=lambda i: hits[i].score)
        else:
            order = keep[1::2] + keep[0::2]
        sizes = {i: base64_len(len(batch.frames[i].data)) for i in keep}
        total = batch.total_base64
        for i in order:
            if total <= budget or len(keep) == 1:
                break
            keep.remove(i)
            total -= sizes[i]
        batch.frames = [batch.frames[i] for i in keep]
        batch.total_base64 = total
        batch.downscaled = True
        logger.warning(
            "left out %d frames to fit the %d-character payload budget", len(hits) - len(keep), budget
        )
    return [hits[i] for i in keep], batch, len(hits) - len(keep)


def _selection_sent(selection: FrameSelection, hits: list[Any]) -> FrameSelection:
    """``selection`` with ``frames`` cut to the hits whose images are sent (pixels dropped)."""
    return selection.model_copy(update={"frames": [h.model_copy(update={"image": None}) for h in hits]})


def _index_text(target: ResolvedVideo) -> str:
    if target.record is None:
        return "not in the corpus index"
    return f"in the corpus index as {target.record.video_id} ({target.record.status})"


def _facts_text(target: ResolvedVideo, batch: Optional[EncodedBatch] = None) -> str:
    """The facts only the MCP surface has: the file, its index status, how the images were sent."""
    text = f"Video file {target.path}, {_index_text(target)}."
    if batch is not None and batch.frames:
        side = max(max(f.width, f.height) for f in batch.frames)
        text += (
            f" Images: JPEG quality {batch.quality}, longest side {side} px, "
            f"{batch.total_base64} base64 characters in all"
            + (" (reduced to fit the size limit)." if batch.downscaled else ".")
        )
    return text


def _frames_content(
    timestamps: list[float], batch: EncodedBatch, labels: Optional[list[str]] = None
) -> list[Any]:
    content: list[Any] = []
    for i, (t, frame) in enumerate(zip(timestamps, batch.frames, strict=True)):
        label = f"Frame at {format_timestamp(t)}" + (f" ({labels[i]})" if labels else "")
        content.append(TextContent(type="text", text=label))
        content.append(ImageContent(type="image", data=frame.b64, mime_type="image/jpeg"))
    return content


def _untrained_note(state: ServerState) -> list[TextContent]:
    if state.encoder_trained:
        return []
    return [
        TextContent(
            type="text",
            text=f"Warning: this server runs the untrained test encoder {state.encoder_name!r}; "
            "relevance scores and the choice of frames are arbitrary.",
        )
    ]


def _check_moment_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ToolError(
            "query must describe what to look for (a non-empty string): who or what, doing what, where. "
            "To see evenly spaced frames of one video, use preview_video, or seek_video_frames with an "
            "empty query."
        )
    return query.strip()


# --------------------------------------------------------------------------- server


def build_server(
    settings: Optional[Settings] = None,
    *,
    encoder: Any = None,
    load_index: bool = True,
    image_max_side: int = DEFAULT_IMAGE_MAX_SIDE,
    image_budget: int = DEFAULT_BUDGET,
    embed_wait_s: float = DEFAULT_EMBED_WAIT_S,
    state: Optional[ServerState] = None,
) -> MCPServer:
    """Build the videoseek MCP server (models load when the first client connects).

    Args:
        settings: Configuration; default: read from ``VIDEOSEEK_*`` environment variables.
        encoder: A loaded encoder to use instead of loading ``settings.encoder``.
        load_index: Open the corpus index at ``settings.index_dir`` when it exists.
        image_max_side: Longest side of returned frames before any budget downscaling.
        image_budget: Base64 characters allowed for the images of one result (~1 MB hosts' limit).
        embed_wait_s: How long a ``seek_video_frames`` call waits for a video's first embedding
            pass before answering "call again" (the pass goes on in the background). Keep it
            under the host's tool timeout (Claude Desktop: about 60 s).
        state: A ready :class:`ServerState` (skips loading; for embedding in other apps).

    Returns:
        The :class:`MCPServer`; run it with ``.run("stdio")`` or connect ``mcp.Client(server)``.
    """
    settings = settings or get_settings()
    max_frames = int(settings.max_frames)
    loader = (
        StateLoader.ready(state)
        if state is not None
        else StateLoader(lambda: load_state(settings, encoder=encoder, load_index=load_index))
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[StateLoader]:
        loader.start()  # first connection: load in the background; later ones reuse the state
        yield loader

    server = MCPServer(
        SERVER_NAME,
        title="videoseek: long-video search",
        instructions=INSTRUCTIONS,
        version=_version(),
        lifespan=lifespan,
    )
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    def tool(title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a read-only tool; its docstring, dedented, is what the model reads."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            server.add_tool(
                fn, title=title, description=inspect.cleandoc(fn.__doc__ or ""), annotations=read_only
            )
            return fn

        return register

    VideoArg = Annotated[
        str,
        Field(
            description="The video: an id from list_videos or search_moments, or a file path under the "
            "server's media roots (relative paths are taken from the roots)."
        ),
    ]

    # ------------------------------------------------------------------ seek_video_frames
    @tool("Seek video frames")
    async def seek_video_frames(
        video: VideoArg,
        query: Annotated[
            str,
            Field(
                description="Describe the object, person, scene or event of interest in the video "
                "thoroughly and clearly. An empty string returns frames evenly spaced over the window "
                "instead (no search, no scores)."
            ),
        ],
        start_time: Annotated[
            Optional[float], Field(ge=0, description="Window start in seconds (default 0).")
        ] = None,
        end_time: Annotated[
            Optional[float],
            Field(
                gt=0,
                description="Window end in seconds (default: the end of the video; later values are "
                "clamped to the end).",
            ),
        ] = None,
        num_frames: Annotated[
            Optional[int],
            Field(
                ge=1,
                le=max_frames,
                description=f"Frames to return, 1 to {max_frames} (default {max_frames}).",
            ),
        ] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, FrameSelection]:
        """Search and select video frames according to a textual query and a temporal window.

        Returns the frames of one video that best match the query inside [start_time, end_time]
        (relevant and mutually diverse), in time order, as images each preceded by its timestamp.
        Time is in seconds from the start of the video. Search the whole video first, then narrow
        the window around promising timestamps and search again to look closer. With an empty
        query the frames are evenly spaced over the window.
        """
        state = await _state(ctx)
        if start_time is not None and end_time is not None and start_time >= end_time:
            raise ToolError(
                f"start_time ({start_time:g}) must be less than end_time ({end_time:g}); both are seconds "
                "from the start of the video"
            )
        target = await _resolve(state, video)
        await _wait_for_embeddings(state, target, ctx, embed_wait_s)
        selection: FrameSelection = await _run_engine(
            state,
            lambda: state.temporal.seek(
                target.path,
                query,  # empty or blank: uniform sampling of the window (TemporalSearcher.seek)
                start_time=start_time,
                end_time=end_time,
                num_frames=num_frames or max_frames,
                with_images=True,
                max_side=image_max_side,
                video_id=target.video_id or target.ref,
            ),
            f"searching {target.ref!r}",
        )
        hits, batch, dropped = await _encode(
            state, target, list(selection.frames), image_max_side, image_budget
        )
        out = _selection_sent(selection, hits)
        uniform = out.method == "uniform"
        window = f"[{format_timestamp(out.start_time)}, {format_timestamp(out.end_time)}]"
        if uniform:
            what = f"evenly spaced frames of {out.video} (empty query)"
        else:
            what = f"frames of {out.video} for {out.query!r}"
        head = f"{len(hits)} {what} in {window} (video length {format_timestamp(out.duration)}):"
        if hits:
            tail = (
                f"These frames are at {format_timestamps(out.timestamps)}. If they answer the question, "
                "answer; otherwise search again with a "
                + ("query" if uniform else "different query")
                + " or a narrower time window."
            )
        else:
            tail = (
                "No frames were sampled in this window; widen it or check the video's length with video_info."
            )
        if dropped:
            which = "" if uniform else "lower-scoring "
            tail += f" ({dropped} {which}frames were left out to keep the result under the size limit.)"
        labels = [f"score {h.score:.3f}" for h in hits if h.score is not None]
        content = [
            *_untrained_note(state),
            TextContent(type="text", text=head),
            *_frames_content(out.timestamps, batch, labels if hits and len(labels) == len(hits) else None),
            TextContent(type="text", text=tail),
            TextContent(type="text", text=_facts_text(target, batch)),
        ]
        return CallToolResult(content=content, structured_content=out.model_dump(mode="json"))

    # ------------------------------------------------------------------ preview_video
    @tool("Preview video")
    async def preview_video(
        video: VideoArg,
        num_frames: Annotated[
            int, Field(ge=1, le=max_frames, description=f"Evenly spaced frames to return, 1 to {max_frames}.")
        ] = max_frames,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, FrameSelection]:
        """Get an overview of one video: evenly spaced frames, each after its timestamp, and the duration.

        Use it first to see what a video contains and how long it is (seconds), then use
        seek_video_frames to look for something specific.
        """
        state = await _state(ctx)
        target = await _resolve(state, video)

        def run() -> tuple[VideoInfo, FrameSelection]:
            info = state.temporal.info(target.path)
            selection = state.temporal.preview(
                target.path,
                num_frames=num_frames,
                with_images=True,
                max_side=image_max_side,
                video_id=target.video_id or target.ref,
            )
            return info, selection

        info, selection = await _run_engine(state, run, f"previewing {target.ref!r}")
        hits, batch, dropped = await _encode(
            state, target, list(selection.frames), image_max_side, image_budget
        )
        out = _selection_sent(selection, hits)
        content = [
            TextContent(
                type="text",
                text=f"Preview of {out.video}: {len(hits)} evenly spaced frames; the video lasts "
                f"{format_timestamp(out.duration)} ({info.width}x{info.height}, {info.fps:g} fps)."
                + (
                    f" {dropped} frames were left out to keep the result under the size limit."
                    if dropped
                    else ""
                ),
            ),
            *_frames_content(out.timestamps, batch),
            TextContent(type="text", text=_facts_text(target, batch)),
        ]
        return CallToolResult(content=content, structured_content=out.model_dump(mode="json"))

    # ------------------------------------------------------------------ video_info
    @tool("Video info")
    async def video_info(
        video: VideoArg,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, VideoInfo]:
        """Get the facts of one video: duration in seconds, frame rate, size, codec, and index status."""
        state = await _state(ctx)
        target = await _resolve(state, video)
        info: VideoInfo = await _run_engine(
            state, lambda: state.temporal.info(target.path), f"probing {target.ref!r}"
        )
        structured = info.model_dump(mode="json")
        content = [
            TextContent(type="text", text=json.dumps(structured, indent=2)),
            TextContent(type="text", text=f"{target.ref} is {_index_text(target)}."),
        ]
        return CallToolResult(content=content, structured_content=structured)

    # ------------------------------------------------------------------ list_videos
    @tool("List indexed videos")
    async def list_videos(
        status: Annotated[
            Optional[Literal["indexed", "pending", "failed"]],
            Field(description="Only videos with this index status; default: all."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=_MAX_PAGE, description="Videos per page.")] = 50,
        offset: Annotated[int, Field(ge=0, description="Videos to skip (for paging).")] = 0,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> VideoPage:
        """List the videos in the corpus index (id, path, duration, status), a page at a time, sorted by path.

        The ids work as the `video` argument of the other tools.
        """
        state = await _state(ctx)

        def run() -> list[Any]:
            return list(state.require_index().list_videos(status=status))

        records = await _run_engine(state, run, "listing videos")
        page = records[offset : offset + limit]
        nxt = offset + limit if offset + limit < len(records) else None
        return VideoPage(total=len(records), offset=offset, next_offset=nxt, videos=page)

    # ------------------------------------------------------------------ search_moments
    @tool("Search moments")
    async def search_moments(
        query: Annotated[
            str,
            Field(
                description="Describe the moment to find: who or what, doing what, where (must not be empty)."
            ),
        ],
        top_k: Annotated[int, Field(ge=1, le=_MAX_TOP_K, description="How many moments to return.")] = 5,
        video: Annotated[
            Optional[str],
            Field(description="Restrict the search to this indexed video (id or path); default: all videos."),
        ] = None,
        ctx: Context = None,  # type: ignore[assignment]
    ) -> Annotated[CallToolResult, MomentSearchResult]:
        """Search all indexed videos for the moments that match a description.

        Returns ranked moments as (video id, start, end, score), times in seconds, best first. Look at
        a moment with seek_video_frames(video=<id>, query=..., start_time=<start>, end_time=<end>).
        """
        state = await _state(ctx)
        query = _check_moment_query(query)
        if video is not None and not video.strip():
            raise ToolError("video must be an indexed video id (see list_videos), or be left out")

        def run() -> MomentSearchResult:
            state.require_index()
            moments_searcher = state.moments
            video_id = None
            if video is not None:
                record = state.lookup_indexed(video.strip())
                if record is None:
                    raise ToolError(
                        f"video {video!r} is not in the corpus index; use an id from list_videos, or leave "
                        "video out to search every indexed video"
                    )
                video_id = record.video_id
            if state.indexed_count() == 0:
                raise ToolError(
                    f"the corpus index at {state.index_dir} holds no indexed videos yet; {_INDEX_HINT}"
                )
            return moments_searcher.search(query, top_k=top_k, video=video_id)

        result: MomentSearchResult = await _run_engine(state, run, f"searching moments for {query!r}")
        moments = result.moments
        if moments:
            searched = result.num_videos_searched
            lines = [f"Top {len(moments)} moments for {query!r} ({searched} videos searched):"]
            lines += [
                f"{rank}. video {m.video_id} [{format_timestamp(m.start)} - {format_timestamp(m.end)}] "
                f"score {m.score:.3f} ({m.path})"
                for rank, m in enumerate(moments, 1)
            ]
            lines.append("Look closer with seek_video_frames(video=<id>, query, start_time, end_time).")
        else:
            lines = [f"No moments found for {query!r} ({result.num_videos_searched} videos searched)."]
        content = [*_untrained_note(state), TextContent(type="text", text="\n".join(lines))]
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    # ------------------------------------------------------------------ resources
    # Static resources get no Context in the SDK, so they reach the state through `loader`.
    async def read_resource(build: Callable[[ServerState], str]) -> str:
        """``build(state)`` in a worker thread, on the loaded state with the index refreshed."""
        try:
            state = await loader.get()
        except ToolError as exc:
            raise ResourceError(str(exc)) from exc

        def run() -> str:
            state.refresh_index()
            return build(state)

        return await anyio.to_thread.run_sync(run)

    @server.resource(
        "videoseek://videos",
        name="videos",
        title="Indexed videos",
        description="Every video in the corpus index (id, path, duration, status), as JSON.",
        mime_type="application/json",
    )
    async def videos_resource() -> str:
        def build(state: ServerState) -> str:
            if state.index is None:
                return json.dumps(
                    {"available": False, "message": f"{state.index_error}; {_INDEX_HINT}", "videos": []},
                    indent=1,
                )
            videos = [r.model_dump(mode="json") for r in state.index.list_videos()]
            return json.dumps({"available": True, "videos": videos}, indent=1)

        return await read_resource(build)

    @server.resource(
        "videoseek://videos/{video_id}",
        name="video",
        title="Video metadata",
        description="Catalog record of one indexed video (path, duration, fps, status, segments), as JSON.",
        mime_type="application/json",
    )
    async def video_resource(video_id: str) -> str:
        def build(state: ServerState) -> str:
            if state.index is None:
                raise ResourceError(f"{state.index_error}; {_INDEX_HINT}")
            record = state.lookup_indexed(video_id)
            if record is None or record.video_id != video_id:
                raise ResourceError(f"no indexed video with id {video_id!r}; see videoseek://videos")
            return json.dumps(record.model_dump(mode="json"), indent=1)

        return await read_resource(build)

    @server.resource(
        "videoseek://index/status",
        name="index-status",
        title="Index status",
        description="State of the corpus index, the encoder and the media roots, as JSON.",
        mime_type="application/json",
    )
    async def index_status_resource() -> str:
        def build(state: ServerState) -> str:
            status: dict[str, Any] = {
                "index_dir": str(state.index_dir),
                "available": state.index is not None,
                "encoder": state.encoder_name,
                "encoder_trained": state.encoder_trained,
                "media_roots": [str(r) for r in state.resolver.roots],
                "allow_urls": state.resolver.allow_urls,
                "max_frames": max_frames,
            }
            if state.index is None:
                status["message"] = f"{state.index_error}; {_INDEX_HINT}"
            else:
                status["index"] = state.index.status().model_dump(mode="json")
            return json.dumps(status, indent=1)

        return await read_resource(build)

    return server


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("videoseek")
    except Exception:  # noqa: BLE001
        return "0"


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="videoseek-mcp",
        description="videoseek MCP server: temporal and corpus video search tools for MCP hosts. "
        "Configuration comes from VIDEOSEEK_* environment variables (VIDEOSEEK_MEDIA_ROOTS, "
        "VIDEOSEEK_ENCODER, VIDEOSEEK_INDEX_DIR, ...).",
    )
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument(
        "--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1: this machine only)."
    )
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765).")
    parser.add_argument(
        "--media-root",
        action="append",
        default=None,
        metavar="DIR",
        help="Folder videos may be read from (repeatable; overrides VIDEOSEEK_MEDIA_ROOTS).",
    )
    parser.add_argument(
        "--encoder", default=None, help="Encoder registry name (overrides VIDEOSEEK_ENCODER)."
    )
    parser.add_argument(
        "--index-dir", default=None, help="Corpus index folder (overrides VIDEOSEEK_INDEX_DIR)."
    )
    parser.add_argument(
        "--embed-wait",
        type=float,
        default=DEFAULT_EMBED_WAIT_S,
        metavar="SECONDS",
        help="How long a search waits for a new video's one-time embedding before answering "
        f"'call again' (default {DEFAULT_EMBED_WAIT_S:g}; keep it under the host's tool timeout).",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("VIDEOSEEK_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point ``videoseek-mcp`` (also ``python -m mcp_server``).

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {"encoder": args.encoder, "index_dir": args.index_dir}
    if args.media_root:
        overrides["media_roots"] = [Path(p) for p in args.media_root]
    try:
        settings = get_settings(**overrides)
    except Exception as exc:  # noqa: BLE001 - configuration errors are one line on stderr
        errors = getattr(exc, "errors", None)
        if callable(errors):
            detail = "; ".join(
                f"VIDEOSEEK_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in errors()
            )
        else:
            detail = str(exc)
        print(f"videoseek-mcp: invalid configuration: {detail}", file=sys.stderr)
        raise SystemExit(2) from exc
    if args.transport == "streamable-http" and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "binding to %s: the server is reachable from other machines and has no auth", args.host
        )
    server = build_server(settings, embed_wait_s=args.embed_wait)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":  # pragma: no cover
    main()
