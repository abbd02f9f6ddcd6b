"""Frame-embedding store: each video's frames embedded once, kept on disk, shared by processes.

For one video, encoder and sample rate the store holds the embeddings of the frames on
screen every ``1/sample_fps`` seconds (2 fps by default, TimeSearch-R's rate). Entries live
in a cache directory (never beside the videos), keyed by the file's *content* fingerprint,
the encoder's ``cache_key`` and the rate::

    <cache_dir>/frames/<fp[:2]>/<fp>/<encoder-key>@2fps.npy      float16 (N, D) embeddings
    <cache_dir>/frames/<fp[:2]>/<fp>/<encoder-key>@2fps.ts.npy   float64 (N,) exact timestamps
    <cache_dir>/frames/<fp[:2]>/<fp>/<encoder-key>@2fps.json     sidecar: video facts, counts

Writes are atomic (temporary file, fsync, rename) and the sidecar is written last, so a
crash leaves either a complete entry or none. An exclusive file lock per entry
(:mod:`filelock`: works on Linux, macOS and Windows) makes concurrent processes compute an
entry once: the others wait and then read it. The sidecar holds a BLAKE2b checksum of each
array file and of itself; an entry whose bytes do not match (or whose values are not finite / ascending)
is recomputed with one warning, never served. Temporary files of killed writers are deleted
when the entry is next written, and a video that fails leaves no empty cache folder behind.

- :func:`fingerprint_file` - sampled content hash of a file (size + 16 spread 64 KiB chunks).
- :class:`FrameEmbeddings` - timestamps, embeddings, fingerprint, video facts.
- :class:`FrameEmbeddingStore` - ``get(path, progress=None)``, ``has(path)``, ``path_for(path)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from filelock import FileLock

from .errors import VideoReadError
from .types import VideoInfo
from .video import check_path, fit_size, open_video

__all__ = ["FrameEmbeddings", "FrameEmbeddingStore", "file_digest", "fingerprint_file", "ProgressFn", "STORE_VERSION"]

log = logging.getLogger(__name__)

STORE_VERSION = 2
"""Version 2 adds the ``checksums`` of the array files to the sidecar (version 1 entries are recomputed)."""
_CHUNK = 64 * 1024
_NCHUNKS = 16

#: ``progress(done_frames, total_frames)``; called from the embedding loop.
ProgressFn = Callable[[int, int], None]

_FP_MEMO: dict[tuple, str] = {}
_FP_LOCK = threading.Lock()

# numpy parses a .npy header with ast.literal_eval, and on CPython 3.11 two threads doing that at
# once can raise a spurious ``SystemError: AST constructor recursion depth mismatch``
# (python/cpython#106905). The store is read from many threads (the MCP server's workers, the
# batched evaluation's episodes), and a read that fails looks like a damaged entry that then gets
# recomputed, so headers are parsed one at a time.
_NPY_LOCK = threading.Lock()


def fingerprint_file(path: str | os.PathLike) -> str:
    """Content fingerprint of a file: BLAKE2b over its size and 16 evenly spread 64 KiB chunks.

    Reading ~1 MiB makes it cheap for multi-GB videos while any re-encode, trim or append
    changes it. Results are memoised per (path, size, mtime, inode) within the process.

    Raises:
        VideoReadError: The file is missing or unreadable.
    """
    return _fingerprint(check_path(path))


def _fingerprint(p: Path) -> str:
    """:func:`fingerprint_file` for a path that already passed :func:`check_path`."""
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
    with _FP_LOCK:
        hit = _FP_MEMO.get(key)
    if hit:
        return hit
    h = hashlib.blake2b(digest_size=16)
    h.update(f"videoseek-fp1:{st.st_size}".encode())
    try:
        with open(p, "rb") as f:
            if st.st_size <= _CHUNK * _NCHUNKS:
                h.update(f.read())
            else:
                span = st.st_size - _CHUNK
                for i in range(_NCHUNKS):
                    f.seek(span * i // (_NCHUNKS - 1))
                    h.update(f.read(_CHUNK))
    except OSError as exc:
        raise VideoReadError(p, f"cannot read file ({exc.strerror})") from exc
    fp = h.hexdigest()
    with _FP_LOCK:
        _FP_MEMO[key] = fp
    return fp


@dataclass
class FrameEmbeddings:
    """The stored embeddings of one video."""

    timestamps: np.ndarray  #: float64 (N,) exact presentation times, ascending
    embeddings: np.ndarray  #: float16 (N, D), unit norm
    fingerprint: str
    info: VideoInfo
    encoder_key: str
    sample_fps: float
    _f32: Optional[np.ndarray] = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def embeddings_f32(self) -> np.ndarray:
        """The embeddings as float32 (converted once, then kept)."""
        if self._f32 is None:
            self._f32 = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        return self._f32


def _atomic_write(path: Path, write: Callable[[object], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_digest(path: Path) -> str:
    """BLAKE2b (128-bit) hex digest of a file's bytes, read in 1 MiB blocks (the store's and the vector index's checksums)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta_digest(meta: dict) -> str:
    """BLAKE2b of a sidecar's other keys (canonical JSON), so a flipped fact is caught too."""
    body = {k: v for k, v in meta.items() if k != "sidecar_checksum"}
    return hashlib.blake2b(json.dumps(body, sort_keys=True).encode(), digest_size=16).hexdigest()


def _clean_tmp(stem: Path) -> None:
    """Delete the temporary files killed writers left for one entry (call under its lock)."""
    try:
        for p in stem.parent.iterdir():
            if p.name.startswith(f".{stem.name}") and p.name.endswith(".tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FrameEmbeddingStore:
    """Computes each video's frame embeddings once and serves them from disk or memory.

    Args:
        cache_dir: Root of the cache (``Settings.cache_dir``).
        encoder: An encoder with ``encode_images``, ``cache_key``, ``image_size``, ``dim``.
        sample_fps: Frames per second to embed.
        batch_size: Frames per encoder call.
        backend: Video backend for the embedding pass (``"auto"`` picks the sequential default).
        memory_items: How many videos to keep in memory after loading.
        decode_workers: Parallel decoder threads for the embedding pass (default: 2 for videos
            of a minute or more on multi-core machines, else 1).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        encoder,
        sample_fps: float = 2.0,
        batch_size: int = 64,
        backend: str = "auto",
        memory_items: int = 16,
        decode_workers: Optional[int] = None,
    ):
        if sample_fps <= 0:
            raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
        self.root = Path(cache_dir).expanduser() / "frames"
        self.encoder = encoder
        self.sample_fps = float(sample_fps)
        self.batch_size = batch_size
        self.backend = backend
        self.decode_workers = decode_workers
        self._memory: OrderedDict[tuple, FrameEmbeddings] = OrderedDict()
        self._memory_items = memory_items
        self._mem_lock = threading.Lock()
        self._damaged: set[tuple] = set()

    # -- paths --------------------------------------------------------------------
    def _stem(self, fingerprint: str) -> Path:
        fps = f"{self.sample_fps:g}"
        return self.root / fingerprint[:2] / fingerprint / f"{self.encoder.cache_key}@{fps}fps"

    def path_for(self, video: str | os.PathLike) -> Path:
        """Sidecar path of a video's entry (it may not exist yet)."""
        return self._stem(fingerprint_file(video)).with_suffix(".json")

    def has(self, video: str | os.PathLike) -> bool:
        """Whether the video's embeddings are already stored."""
        return self._load(fingerprint_file(video)) is not None

    # -- reading ------------------------------------------------------------------
    def _load(self, fp: str) -> Optional[FrameEmbeddings]:
        key = (fp, self.encoder.cache_key, self.sample_fps)
        with self._mem_lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        stem = self._stem(fp)
        side = stem.with_suffix(".json")
        if not side.exists():
            return None
        try:
            meta = json.loads(side.read_text())
            if meta.get("sidecar_checksum") != _meta_digest(meta):
                raise ValueError("the sidecar does not match its checksum")
            if meta.get("version") != STORE_VERSION:
                raise ValueError(f"store version {meta.get('version')}, expected {STORE_VERSION}")
            emb_path, ts_path = stem.with_suffix(".npy"), stem.with_name(stem.name + ".ts.npy")
            sums = meta.get("checksums") or {}
            for p in (emb_path, ts_path):
                if file_digest(p) != sums.get(p.name.split("@", 1)[-1]):
                    raise ValueError(f"checksum mismatch in {p.name}")
            with _NPY_LOCK:
                emb = np.load(emb_path, mmap_mode="r")
                ts = np.load(ts_path)
            if emb.shape != (meta["count"], meta["dim"]) or ts.shape != (meta["count"],):
                raise ValueError("entry does not match its sidecar")
            if not (np.all(np.isfinite(ts)) and np.all(np.diff(ts) > 0) and np.all(np.isfinite(emb))):
                raise ValueError("non-finite or unordered values")
        except Exception as exc:  # a damaged entry is recomputed, never trusted
            with self._mem_lock:  # one warning per entry, though has() and get() both look
                first = key not in self._damaged
                self._damaged.add(key)
            (log.warning if first else log.debug)(
                "ignoring damaged cache entry %s (%s); it will be recomputed", side, exc
            )
            return None
        entry = FrameEmbeddings(
            timestamps=ts,
            embeddings=np.asarray(emb),
            fingerprint=fp,
            info=VideoInfo(**meta["video"]),
            encoder_key=self.encoder.cache_key,
            sample_fps=self.sample_fps,
        )
        self._remember(key, entry)
        return entry

    def _remember(self, key, entry: FrameEmbeddings) -> None:
        with self._mem_lock:
            self._memory[key] = entry
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_items:
                self._memory.popitem(last=False)

    def get(self, video: str | os.PathLike, progress: Optional[ProgressFn] = None) -> FrameEmbeddings:
        """The video's frame embeddings, computing and storing them on first use.

        Args:
            video: Path of the video file.
            progress: Called with ``(done, total)`` frames while embedding a new video.

        Raises:
            VideoReadError: The file is missing, not a video, corrupt or truncated.
        """
        path = check_path(video)
        fp = _fingerprint(path)
        entry = self._load(fp)
        if entry is not None:
            return entry
        stem = self._stem(fp)
        stem.parent.mkdir(parents=True, exist_ok=True)
        lock_path = stem.with_name(stem.name + ".lock")
        try:
            with FileLock(str(lock_path)):
                entry = self._load(fp)  # another process may have finished it meanwhile
                if entry is None:
                    _clean_tmp(stem)  # left by a writer killed mid-entry (we hold the lock)
                    entry = self._compute(path, fp, progress)
                    self._write(stem, entry)
                    self._remember((fp, self.encoder.cache_key, self.sample_fps), entry)
        except BaseException:
            self._drop_empty(stem)
            raise
        return entry

    def _drop_empty(self, stem: Path) -> None:
        """After a failed pass: remove the entry's lock file and folders if nothing else is there."""
        if any(p.suffix in (".json", ".npy") for p in stem.parent.glob("*")):
            return
        for p in stem.parent.glob("*.lock"):
            try:
                p.unlink()
            except OSError:
                pass
        for folder in (stem.parent, stem.parent.parent):
            try:
                folder.rmdir()
            except OSError:
                return

    # -- computing ----------------------------------------------------------------
    def _compute(self, path: Path, fp: str, progress: Optional[ProgressFn]) -> FrameEmbeddings:
        t0 = time.perf_counter()
        with open_video(path, backend=self.backend, access="sequential") as probe_reader:
            info = probe_reader.info
        total = max(1, int(np.ceil(info.duration * self.sample_fps - 1e-6)))
        size = fit_size(info.width, info.height, short_side=self.encoder.image_size)
        # Split long videos into segments walked by parallel decoder threads (FFmpeg releases
        # the GIL); segment bounds are sample times, so every sample belongs to one segment.
        workers = self.decode_workers or (min(2, os.cpu_count() or 1) if info.duration >= 60 else 1)
        step = 1.0 / self.sample_fps
        bounds = [round(total * i / workers) * step for i in range(workers)] + [None]
        batches: "queue.Queue" = queue.Queue(maxsize=4 * workers)
        failure: list[BaseException] = []
        cancel = threading.Event()

        def decode(start: float, end: Optional[float]) -> None:
            ts_buf: list[float] = []
            img_buf: list[np.ndarray] = []
            try:
                with open_video(path, backend=self.backend, access="sequential", parallel_decoders=workers > 1) as reader:
                    for t, rgb in reader.iter_sampled(self.sample_fps, size=size, start=start, end=end):
                        if cancel.is_set():
                            return
                        ts_buf.append(t)
                        img_buf.append(rgb)
                        if len(img_buf) == self.batch_size:
                            batches.put((ts_buf, np.stack(img_buf)))
                            ts_buf, img_buf = [], []
                    if img_buf:
                        batches.put((ts_buf, np.stack(img_buf)))
            except BaseException as exc:  # handed to the consumer
                failure.append(exc)
            finally:
                batches.put(None)

        threads = [
            threading.Thread(target=decode, args=(bounds[i], bounds[i + 1]), name=f"videoseek-decode-{i}", daemon=True)
            for i in range(workers)
        ]
        for th in threads:
            th.start()
        all_ts: list[float] = []
        all_emb: list[np.ndarray] = []
        finished = 0
        try:
            while finished < workers:
                item = batches.get()
                if item is None:
                    finished += 1
                    continue
                if failure:
                    continue  # drain; the error is raised below
                ts, imgs = item
                all_emb.append(self.encoder.encode_images(imgs, batch_size=self.batch_size).astype(np.float16))
                all_ts.extend(ts)
                if progress:
                    progress(min(len(all_ts), total), total)
        finally:
            cancel.set()
            while any(th.is_alive() for th in threads):
                try:  # unblock producers waiting on a full queue
                    batches.get(timeout=0.05)
                except queue.Empty:
                    pass
            for th in threads:
                th.join()
        if failure:
            exc = failure[0]
            if isinstance(exc, VideoReadError):
                raise exc
            raise VideoReadError(path, f"decoding failed ({type(exc).__name__}: {exc})") from exc
        if not all_ts:
            raise VideoReadError(path, "no frame could be decoded (corrupt or truncated file?)")
        order = np.argsort(np.asarray(all_ts), kind="stable")
        ts_sorted = np.asarray(all_ts, dtype=np.float64)[order]
        emb_sorted = np.concatenate(all_emb)[order]
        keep = np.concatenate([[True], np.diff(ts_sorted) > 1e-9])  # a frame shared by two segments
        ts_sorted, emb_sorted = ts_sorted[keep], emb_sorted[keep]
        all_ts = ts_sorted.tolist()
        expected_last = info.duration - 1.0 / self.sample_fps
        if all_ts[-1] < expected_last - max(2.0, 0.1 * info.duration):
            raise VideoReadError(
                path,
                f"decoding stopped at {all_ts[-1]:.1f}s of a {info.duration:.1f}s video (truncated or corrupt file)",
            )
        if progress:
            progress(total, total)
        log.info("embedded %d frames of %s in %.2fs", len(all_ts), path.name, time.perf_counter() - t0)
        return FrameEmbeddings(
            timestamps=ts_sorted,
            embeddings=emb_sorted,
            fingerprint=fp,
            info=info,
            encoder_key=self.encoder.cache_key,
            sample_fps=self.sample_fps,
        )

    def _write(self, stem: Path, entry: FrameEmbeddings) -> None:
        _atomic_write(stem.with_suffix(".npy"), lambda f: np.save(f, entry.embeddings))
        _atomic_write(stem.with_name(stem.name + ".ts.npy"), lambda f: np.save(f, entry.timestamps))
        meta = {
            "version": STORE_VERSION,
            "checksums": {
                p.name.split("@", 1)[-1]: file_digest(p)
                for p in (stem.with_suffix(".npy"), stem.with_name(stem.name + ".ts.npy"))
            },
            "count": len(entry),
            "dim": int(entry.embeddings.shape[1]),
            "encoder": self.encoder.name,
            "encoder_key": self.encoder.cache_key,
            "sample_fps": self.sample_fps,
            "fingerprint": entry.fingerprint,
            "video": entry.info.model_dump(),
            "created": time.time(),
        }
        meta["sidecar_checksum"] = _meta_digest(meta)
        _atomic_write(stem.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode()))
        _fsync_dir(stem.parent)
