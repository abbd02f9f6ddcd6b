"""The MCP server's shared state: models, index, media roots, and how a ``video`` argument resolves.

- :class:`ServerState` - the encoder, the frame-embedding store, the temporal searcher, the
  corpus index (reopened when the CLI changes it; reported unavailable, with the reason, when
  its catalog is damaged), the media-root allow-list and the embedding queue.
- :class:`ResolvedVideo` - a ``video`` argument after resolution.
- :func:`load_state` - builds the state (loads the encoder; opens the index if there is one).
- :class:`StateLoader` - loads the state once in a background thread; every call waits for it.

An index id resolves through the same media-root allow-list as a path, at call time: the
catalog's path is resolved again (symlinks followed) on every call, so a video indexed outside
the roots, or an indexed file later replaced by a symlink pointing outside, is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import anyio
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError

from agent_tools.config import Settings
from agent_tools.errors import IndexCorruptError, UnknownVideoError, VideoseekError
from agent_tools.types import VideoRecord

from .limits import EmbedJob, EmbedQueue, check_video_limits
from .security import MediaResolver, PathNotAllowedError, looks_like_url

__all__ = ["ServerState", "ResolvedVideo", "StateLoader", "load_state", "INDEX_HINT"]

logger = logging.getLogger("videoseek.mcp")

INDEX_HINT = "build one with `videoseek index PATH` (the server picks it up on the next call)"

@dataclass
class ResolvedVideo:
    """A ``video`` argument after resolution."""

    ref: str
    path: Any  # Path of a local file, or an allowed URL string
    video_id: Optional[str] = None
    record: Optional[VideoRecord] = None  # the index's record, when the index holds the video



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
    queue: Optional[EmbedQueue] = None
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
        """The queued, running (or just finished) embedding pass of ``path``; queues one if needed.

        A new pass is refused when the video is over the server's limits or the queue is full.

        Returns:
            ``None`` when the video's embeddings are already in the store.

        Raises:
            LimitError: Over ``max_video_duration_s`` / ``max_video_pixels`` / ``max_embed_queue``.
        """
        key = str(path)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None and not (job.finished.is_set() and job.error is not None):
                return job
            if self.store.has(path):
                self._jobs.pop(key, None)
                return None
        check_video_limits(self.temporal.info(path), self.settings)
        with self._jobs_lock:
            job = self._jobs.get(key)
            if job is not None and not (job.finished.is_set() and job.error is not None):
                return job
            if self.queue is None:
                self.queue = EmbedQueue(self.store, max_jobs=self.settings.max_embed_queue)
            job = self._jobs[key] = self.queue.submit(path)
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
                # never builds or repairs; quick_check finds damaged catalog pages now, not mid-search
                index = CorpusIndex.open(index_dir, self.encoder, read_only=True, check=True)
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
            raise ToolError(f"{self.index_error}. Corpus search needs an index: {INDEX_HINT}. {_temporal_hint(self)}")
        return self.index

    def index_damaged(self, exc: IndexCorruptError) -> ToolError:
        """Mark the index unavailable (``index_error`` says why) and return the error to raise."""
        with self._index_lock:
            self._close_index()
            self.index_error = f"the corpus index at {self.index_dir} cannot be used: {exc}"
            logger.warning("%s", self.index_error)
        return ToolError(f"{self.index_error}. {_temporal_hint(self)}")

    def indexed_count(self) -> int:
        """Videos with status ``indexed`` in the current index (0 without one)."""
        index = self.index
        if index is None:
            return 0
        try:
            return index.catalog.count_indexed()
        except IndexCorruptError as exc:
            raise self.index_damaged(exc) from exc

    def lookup_indexed(self, ref: str) -> Optional[VideoRecord]:
        """The index record whose id (or path) is ``ref``, or ``None``."""
        index = self.index
        if index is None:
            return None
        try:
            return index.get_video(ref)
        except UnknownVideoError:
            return None
        except IndexCorruptError as exc:
            raise self.index_damaged(exc) from exc

    # ---------------------------------------------------------------- videos
    def resolve_video(self, ref: Any) -> ResolvedVideo:
        """Turn a ``video`` argument into a file the engines may open.

        An exact index id stands for its catalog path, which must resolve (now, symlinks
        followed) under a media root like any path. Anything else must be a path under a media
        root (or an allowed URL).

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
            # the id names a catalog path: it passes the same allow-list as a path, now
            row = self.index.catalog.row(video_id=ref) if self.index is not None else None
            raw = row["path"] if row is not None else record.path
            try:
                path = Path(self.resolver.resolve(raw)) if self.resolver.roots else None
            except PathNotAllowedError:
                path = None
            except VideoseekError as exc:
                raise ToolError(
                    f"video {ref!r} is in the corpus index, but its file cannot be read now ({exc})"
                ) from exc
            if path is None:
                logger.warning("refused index id %r: its file %r is outside the media roots", ref, raw)
                raise ToolError(
                    f"video {ref!r} is in the corpus index, but its file is not readable through this "
                    f"server: it is not (or no longer) under the media roots. Valid: {self.resolver.describe()}"
                )
            return ResolvedVideo(ref=ref, path=path, video_id=ref, record=record)
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



def _temporal_hint(state: ServerState) -> str:
    return f"Meanwhile seek_video_frames, preview_video and video_info accept {state.resolver.describe()}."

