"""The corpus index: an incremental, resumable, crash-safe build over many videos.

:class:`CorpusIndex` ties together the frame-embedding store (decode + encode once per
video), the SQLite :class:`~agent_tools.corpus.catalog.Catalog` and the FAISS
:class:`~agent_tools.corpus.vector_index.VectorIndex`. Each video becomes *segment vectors*:
mean-pooled, re-normalised frame embeddings over sliding windows (``window_s`` long, every
``stride_s``), each with its own int64 id.

Layout of an index directory::

    catalog.sqlite            videos, segments (vector id -> video, start, end), meta
    shards/<vid>-<base>.npz   per video: frame times, frame embeddings, segment vectors/spans
    vectors/main.faiss        the large FAISS index (flat / IVF / HNSW)
    vectors/delta.faiss       recent additions (exact), merged into main when large
    .write.lock               held by the one process updating the index

Crash safety, in order, per video: the shard is written atomically (temporary file, fsync,
rename); then one SQLite transaction inserts the video row as ``indexed`` with all its
segment rows; only then is the video added to the in-memory FAISS indexes, which are saved
atomically at the end of a run. On open, the FAISS contents are *reconciled* with the catalog:
vectors of videos that are not (or no longer) indexed are dropped, and indexed videos whose
vectors are missing are added back from their shards. So killing the process at any moment
leaves an index that loads and holds only whole videos; running ``update`` again resumes
(already-indexed files are skipped by fingerprint, and the frame-embedding store keeps
finished embedding passes).

Incremental: a file whose size and mtime match its row (and whose shard is whole) is skipped
without reading; otherwise its content fingerprint decides (same → skipped, different →
re-indexed under a new id). A damaged shard is re-indexed; until then searches skip its video.
Files gone from a scanned folder are removed. A file that cannot be read is recorded as
``failed`` with the reason, and the run goes on - whatever its name (names that are not UTF-8
are stored as bytes by the catalog; reports and progress show them with ``\\xNN`` escapes).

Damage on disk is never answered silently: catalog rows carry checksums (the catalog raises
``IndexCorruptError``); ``vectors/checksums.json`` holds the digests of the FAISS files, and a
mismatch rebuilds the vector index from the shards (``update`` then writes it back whole);
a shard whose zip CRC fails raises ``IndexCorruptError`` and is marked ``<shard>.damaged`` so
the next ``update`` re-indexes its video. A folder whose ``catalog.sqlite`` was lost is
rebuilt in place (its ``.write.lock`` and old vector files are not "foreign"). Opening
``read_only`` never creates an index.

Usage::

    from agent_tools.corpus import CorpusIndex
    from agent_tools.encoders import load_encoder
    index = CorpusIndex.open("~/.local/share/videoseek/index", load_encoder("siglip-b16"))
    report = index.update(["~/videos"])        # BuildReport
    index.status()                             # IndexStatus

Modules: this one opens an index and reads it (:class:`CorpusIndex`); its write path (``update``,
``ingest``, ``remove``, ``rebuild_vectors``) is :class:`agent_tools.corpus.updating.IndexWriter`;
shards and segment pooling are :mod:`agent_tools.corpus.shards`. Every name is re-exported here.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import faiss
import numpy as np

from agent_tools.corpus.catalog import Catalog
from agent_tools.corpus.shards import (
    DAMAGED_SUFFIX,
    DEFAULT_STRIDE_S,
    DEFAULT_WINDOW_S,
    SHARD_CACHE_BYTES,
    Shard,
    pool_segments,
    segment_windows,
)
from agent_tools.corpus.updating import (
    MISSING_REASON,
    VIDEO_EXTENSIONS,
    BuildProgress,
    IndexWriter,
    ProgressCallback,
)
from agent_tools.corpus.vector_index import DELTA_MAX, FLAT_MAX, KINDS, VectorIndex
from agent_tools.errors import IndexCorruptError, InvalidArgumentError, UnknownVideoError
from agent_tools.types import IndexStatus, VideoRecord

__all__ = [
    "CorpusIndex",
    "BuildProgress",
    "ProgressCallback",
    "Shard",
    "VIDEO_EXTENSIONS",
    "segment_windows",
    "pool_segments",
    "MISSING_REASON",
    "DAMAGED_SUFFIX",
]

log = logging.getLogger(__name__)

_OWN_FILES = frozenset(
    {
        "shards",
        "vectors",
        ".write.lock",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
        "catalog.sqlite-journal",
        "speech.sqlite",  # the speech index beside the visual one (agent_tools.speech)
        "speech.sqlite-wal",
        "speech.sqlite-shm",
    }
)
"""What an index folder may hold besides ``catalog.sqlite`` (a lost catalog is rebuilt in place)."""
_META_KEYS = ("encoder", "encoder_key", "dim", "sample_fps", "window_s", "stride_s", "kind", "roots")
"""The index settings kept in the catalog's ``meta`` table."""


def _check_encoder(index_dir: Path, meta: dict, encoder: Any) -> None:
    """Refuse an encoder other than the one the index was built with (``None`` passes)."""
    if encoder is None or meta.get("encoder_key") is None or encoder.cache_key == meta["encoder_key"]:
        return
    raise InvalidArgumentError(
        f"the index {index_dir} was built with encoder {meta['encoder']!r} ({meta['encoder_key']}); "
        f"open and search it with that encoder, or use another --index directory for {encoder.name!r}"
    )



class CorpusIndex(IndexWriter):
    """A corpus index directory (see the module docstring). Create with :meth:`open`."""

    def __init__(
        self, index_dir: Path, encoder: Any, store: Any, catalog: Catalog, vectors: VectorIndex, meta: dict
    ):
        self.index_dir = index_dir
        self.encoder = encoder
        self._store = store
        self.catalog = catalog
        self.vectors = vectors
        self.meta = meta
        self._shard_cache: "OrderedDict[str, Shard]" = OrderedDict()
        self._shard_cache_bytes = 0
        self.shard_cache_bytes = SHARD_CACHE_BYTES
        self._shard_lock = threading.Lock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        index_dir: Optional[str | os.PathLike] = None,
        encoder: Any = None,
        store: Any = None,
        kind: Optional[str] = None,
        sample_fps: Optional[float] = None,
        window_s: float = DEFAULT_WINDOW_S,
        stride_s: float = DEFAULT_STRIDE_S,
        delta_max: int = DELTA_MAX,
        flat_max: int = FLAT_MAX,
        read_only: bool = False,
        check: bool = False,
        backend: Optional[str] = None,
        milvus_uri: Optional[str] = None,
    ) -> "CorpusIndex":
        """Open (or create) an index directory and reconcile its FAISS files with its catalog.

        Args:
            index_dir: The directory (default: ``Settings.index_dir``, per user).
            encoder: An encoder object or registry name. Required to update or search; may be
                ``None`` to read the status. Must be the encoder the index was built with.
            store: A ``FrameEmbeddingStore`` (default: one over ``Settings.cache_dir`` with the
                index's ``sample_fps``).
            kind: ``auto``, ``flat``, ``ivf`` or ``hnsw``; stored and used for later builds
                (default: the stored kind, else ``auto``).
            sample_fps: Frames per second embedded (fixed when the index is created; default
                ``Settings.sample_fps``).
            window_s: Segment window (fixed at creation).
            stride_s: Segment stride (fixed at creation).
            delta_max: Delta size that triggers a merge into the main FAISS index.
            flat_max: ``auto`` switches from exact to IVF above this many vectors.
            read_only: Memory-map a large IVF index instead of reading it (a 1M-vector index opens
                in well under a second instead of seconds); ``update`` and ``remove`` are then
                refused. For one-off searches (the CLI) and servers that do not build. A
                read-only open of a folder without an index is an error (nothing is created).
            check: Run SQLite's ``quick_check`` over the catalog first (reads it once; servers
                do this so a damaged catalog is reported when it is opened, not mid-search).
            backend: Vector backend of a new index: ``faiss`` (default) or ``milvus`` (default:
                ``VIDEOSEEK_VECTOR_BACKEND``); recorded in the catalog, so later opens use the
                index's own (see :mod:`agent_tools.corpus.backends`).
            milvus_uri: Milvus URI of a new ``milvus`` index (Milvus Lite ``*.db`` file or
                ``http://host:19530``; default ``VIDEOSEEK_MILVUS_URI``, else ``vectors/milvus.db``).

        Returns:
            The opened index.

        Raises:
            InvalidArgumentError: Bad ``kind``, or an encoder different from the index's.
            EncoderUnavailableError: An encoder name that cannot be loaded.
            IndexCorruptError: A catalog that cannot be read.
            InvalidArgumentError: ``read_only`` and no index in ``index_dir``.
        """
        from agent_tools.config import get_settings

        settings = get_settings()
        index_dir = Path(index_dir).expanduser() if index_dir else settings.index_dir
        if index_dir.exists() and not index_dir.is_dir():
            raise InvalidArgumentError(f"index path {index_dir} is a file; pass a directory for --index")
        has_catalog = (index_dir / "catalog.sqlite").is_file()
        if read_only and not has_catalog:
            raise InvalidArgumentError(
                f"there is no corpus index at {index_dir}; build one with `videoseek index PATH... "
                f"--index {index_dir}` (or check the --index / VIDEOSEEK_INDEX_DIR spelling)"
            )
        if (
            index_dir.is_dir()
            and not has_catalog
            and any(p.name not in _OWN_FILES for p in index_dir.iterdir())
        ):
            raise InvalidArgumentError(
                f"{index_dir} holds other files and no corpus index; "
                "pass an empty or new directory for --index"
            )
        if kind is not None and kind not in KINDS:
            raise InvalidArgumentError(f"index kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if window_s <= 0 or stride_s <= 0:
            raise InvalidArgumentError("window_s and stride_s must be > 0 seconds")
        if isinstance(encoder, str):
            from agent_tools.encoders import load_encoder

            encoder = load_encoder(encoder, device=settings.device)
        for sub in ("shards", "vectors"):
            (index_dir / sub).mkdir(parents=True, exist_ok=True)
        if not has_catalog:  # a WAL left by a lost catalog must not be replayed into the new one
            for name in ("catalog.sqlite-wal", "catalog.sqlite-shm", "catalog.sqlite-journal"):
                (index_dir / name).unlink(missing_ok=True)
        catalog = Catalog(index_dir / "catalog.sqlite")
        if check:
            try:
                catalog.check()
            except IndexCorruptError:
                catalog.close()
                raise
        if not has_catalog:
            # A new catalog over old vector files (the catalog was lost): their ids mean nothing
            # now and would collide with the ids the new catalog hands out. Shards are dropped by
            # the next update's cleanup; the frame-embedding cache makes the rebuild fast.
            for name in ("main.faiss", "delta.faiss", "checksums.json"):
                stale = index_dir / "vectors" / name
                if stale.exists():
                    log.warning("no catalog beside %s; discarding it and rebuilding the index", stale)
                    stale.unlink()

        meta = {k: catalog.get_meta(k) for k in _META_KEYS}
        if meta["encoder_key"] is None:
            if encoder is not None:
                meta.update(
                    encoder=encoder.name,
                    encoder_key=encoder.cache_key,
                    dim=int(encoder.dim),
                    sample_fps=float(sample_fps or settings.sample_fps),
                    window_s=float(window_s),
                    stride_s=float(stride_s),
                )
                for k in ("encoder", "encoder_key", "dim", "sample_fps", "window_s", "stride_s"):
                    catalog.set_meta(k, meta[k])
        else:
            _check_encoder(index_dir, meta, encoder)
        if kind is not None and kind != meta["kind"]:
            catalog.set_meta("kind", kind)
            meta["kind"] = kind
        meta["kind"] = meta["kind"] or "auto"
        if (
            sample_fps is not None
            and meta["sample_fps"] is not None
            and float(sample_fps) != meta["sample_fps"]
        ):
            raise InvalidArgumentError(
                f"the index {index_dir} samples {meta['sample_fps']:g} frames/s; "
                "pass that rate or another --index"
            )

        vectors = VectorIndex(meta["dim"] or 1, kind=meta["kind"], delta_max=delta_max, flat_max=flat_max)
        if meta["dim"]:
            try:
                vectors = VectorIndex.load(
                    index_dir / "vectors",
                    meta["dim"],
                    kind=meta["kind"],
                    mmap=read_only,
                    delta_max=delta_max,
                    flat_max=flat_max,
                )
            except IndexCorruptError as exc:
                log.warning("%s", exc)
        from agent_tools.corpus.backends import open_backend, resolve_backend

        meta["backend"] = resolve_backend(catalog, backend, read_only=read_only or not meta["dim"])
        if meta["backend"] != "faiss" and meta["dim"]:  # e.g. Milvus: the catalog stays the truth
            vectors = open_backend(
                meta["backend"], index_dir, catalog, meta["dim"], kind=meta["kind"], milvus_uri=milvus_uri,
                read_only=read_only, delta_max=delta_max, flat_max=flat_max,
            )
        if store is None and encoder is not None:
            from agent_tools.store import FrameEmbeddingStore

            store = FrameEmbeddingStore(
                settings.cache_dir, encoder, sample_fps=meta["sample_fps"], batch_size=settings.batch_size
            )
        index = cls(index_dir, encoder, store, catalog, vectors, meta)
        index.read_only = read_only
        index._reconcile()
        return index

    @staticmethod
    def read_meta(index_dir: Optional[str | os.PathLike] = None) -> dict:
        """The stored settings of an index (encoder, dim, sample_fps, kind, roots) without loading it.

        Returns:
            The meta values (``{}`` when the directory holds no index yet).
        """
        from agent_tools.config import get_settings

        index_dir = Path(index_dir).expanduser() if index_dir else get_settings().index_dir
        path = index_dir / "catalog.sqlite"
        if not path.exists():
            return {}
        catalog = Catalog(path)
        try:
            return {k: catalog.get_meta(k) for k in _META_KEYS}
        finally:
            catalog.close()

    def close(self) -> None:
        """Close the catalog connection (and a vector backend's client)."""
        self.catalog.close()
        getattr(self.vectors, "close", lambda: None)()

    def __enter__(self) -> "CorpusIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_encoder(self, encoder: Any) -> None:
        """Raise :class:`InvalidArgumentError` unless ``encoder`` is the one the index was built with."""
        _check_encoder(self.index_dir, self.meta, encoder)

    # ------------------------------------------------------------------ properties
    @property
    def encoder_name(self) -> Optional[str]:
        """Registry name of the encoder the index was built with (``None`` while empty)."""
        return self.meta.get("encoder")

    @property
    def sample_fps(self) -> Optional[float]:
        """Frames per second embedded."""
        return self.meta.get("sample_fps")

    @property
    def dim(self) -> Optional[int]:
        """Vector width."""
        return self.meta.get("dim")

    # ------------------------------------------------------------------ reconcile
    def _reconcile(self) -> dict:
        """Make the in-memory FAISS indexes hold exactly the catalog's indexed videos."""
        if not self.meta.get("dim"):
            return {"stale": 0, "missing": 0}
        expected = np.sort(self.catalog.indexed_ids())
        present = np.sort(self.vectors.ids())
        dup = np.unique(present[1:][present[1:] == present[:-1]])
        if len(dup):  # killed between writing main.faiss and delta.faiss after a merge
            log.info("dropping %d vectors held twice (main and delta)", len(dup))
            self.vectors.delta.remove_ids(faiss.IDSelectorBatch(dup))
            self.vectors.delta_dirty = True
            present = np.unique(present)
        if len(present) == len(expected) and np.array_equal(present, expected):
            return {"stale": 0, "missing": 0, "restored": 0}  # the usual case: nothing to do
        stale = np.setdiff1d(present, expected, assume_unique=True)
        missing = np.setdiff1d(expected, present, assume_unique=True)
        if len(stale):
            log.info("dropping %d stale vectors from the FAISS index", len(stale))
            self.vectors.remove(stale)
        added = 0
        if len(missing):
            missing_set = set(missing.tolist())
            for row in self.catalog.rows("indexed"):
                base, n = row["id_base"], row["num_segments"]
                if not n or (base not in missing_set and base + n - 1 not in missing_set):
                    continue
                ids = np.arange(base, base + n, dtype=np.int64)
                try:
                    shard = self._read_shard(row["shard"])
                except Exception as exc:
                    log.warning(
                        "shard of %s is unreadable (%s); run `videoseek index` to re-index it",
                        row["path"],
                        exc,
                    )
                    continue
                keep = np.isin(ids, missing)
                self.vectors.add(ids[keep], shard.seg_vectors[keep].astype(np.float32), merge=False)
                added += int(keep.sum())
            if added:
                log.info("restored %d vectors from shards", added)
        return {"stale": int(len(stale)), "missing": int(len(missing)), "restored": added}

    # ------------------------------------------------------------------ shards
    def _shard_path(self, name: str) -> Path:
        return self.index_dir / "shards" / name

    def _shard_ok(self, name: str) -> bool:
        """Whether the shard file is there and whole (a cheap check of the zip's directory) and no
        reader found its contents damaged (``<shard>.damaged``, left by :meth:`_read_shard`)."""
        p = self._shard_path(name)
        return p.is_file() and zipfile.is_zipfile(p) and not self._damage_mark(name).exists()

    def _damage_mark(self, name: str) -> Path:
        return self._shard_path(name + DAMAGED_SUFFIX)

    def _read_shard(self, name: str) -> Shard:
        with self._shard_lock:
            hit = self._shard_cache.get(name)
            if hit is not None:
                self._shard_cache.move_to_end(name)
                return hit
        try:
            with np.load(self._shard_path(name), allow_pickle=False) as z:
                shard = Shard(
                    timestamps=z["timestamps"],
                    frames=np.ascontiguousarray(z["frames"], dtype=np.float32),
                    seg_vectors=z["seg_vectors"],
                    seg_starts=z["seg_starts"],
                    seg_ends=z["seg_ends"],
                    duration=float(z["duration"]),
                )
        except OSError:  # gone: removed or re-indexed by another process meanwhile
            raise
        except Exception as exc:  # a damaged file (bad zip, bad CRC, missing array): say which, and the fix
            try:  # tell the next `videoseek index` to re-index this video (readers may mark too)
                self._damage_mark(name).touch()
            except OSError:
                pass
            raise IndexCorruptError(
                f"shard {self._shard_path(name)} is damaged ({type(exc).__name__}: {exc}); "
                "run `videoseek index` on the video again to re-index it"
            ) from exc
        with self._shard_lock:
            hit = self._shard_cache.get(name)
            if hit is not None:  # another thread read it meanwhile: keep one copy, counted once
                self._shard_cache.move_to_end(name)
                return hit
            self._shard_cache[name] = shard
            self._shard_cache_bytes += shard.nbytes
            while self._shard_cache_bytes > self.shard_cache_bytes and len(self._shard_cache) > 1:
                _, old = self._shard_cache.popitem(last=False)
                self._shard_cache_bytes -= old.nbytes
        return shard

    def shard(self, video: str) -> Shard:
        """The stored frame and segment data of an indexed video (by id or path).

        Raises:
            UnknownVideoError: The video is not indexed here.
        """
        row = self._resolve_row(video)
        if row["status"] != "indexed":
            raise UnknownVideoError(f"video {video!r} is {row['status']} in this index, not indexed")
        return self._read_shard(row["shard"])

    # ------------------------------------------------------------------ queries
    def _resolve_row(self, id_or_path: str | os.PathLike) -> dict:
        key = str(id_or_path)
        row = self.catalog.row(video_id=key)
        if row is None:
            try:
                row = self.catalog.row(path=str(Path(key).expanduser().resolve()))
            except (OSError, RuntimeError, ValueError):  # NUL byte, symlink loop: not a path we hold
                pass
        if row is None:
            row = self.catalog.row(path=key)
        if row is None:
            raise UnknownVideoError(
                f"no video {key!r} in the index {self.index_dir}; pass a video id or path that "
                "`videoseek index --status` lists, or index it first"
            )
        return row

    def get_video(self, id_or_path: str | os.PathLike) -> VideoRecord:
        """A video's catalog record, by 12-character id or path.

        Raises:
            UnknownVideoError: Not in the catalog.
        """
        row = self._resolve_row(id_or_path)
        return self.catalog.record(video_id=row["video_id"])

    def video_path(self, id_or_path: str | os.PathLike) -> str:
        """The file path of an indexed video as the file system gives it, to open the file.

        :class:`VideoRecord` ``.path`` is for showing: a name that is not UTF-8 appears there
        with ``\\xNN`` escapes. This is the path that opens.

        Raises:
            UnknownVideoError: Not in the catalog.
        """
        return self._resolve_row(id_or_path)["path"]

    def list_videos(self, status: Optional[str] = None) -> list[VideoRecord]:
        """Videos in the catalog, by path, optionally only ``pending``, ``indexed`` or ``failed``.

        Raises:
            InvalidArgumentError: Unknown status.
        """
        if status is not None and status not in ("pending", "indexed", "failed"):
            raise InvalidArgumentError(f"status must be pending, indexed or failed; got {status!r}")
        return self.catalog.records(status)

    def status(self) -> IndexStatus:
        """Summary: counts per status, vectors, index kind, size on disk, failed files."""
        c = self.catalog.counts()
        disk = 0
        for p in self.index_dir.rglob("*"):
            try:
                if p.is_file():
                    disk += p.stat().st_size
            except OSError:
                pass
        v = self.vectors
        return IndexStatus(
            index_dir=str(self.index_dir),
            encoder=self.meta.get("encoder"),
            dim=self.meta.get("dim"),
            sample_fps=self.meta.get("sample_fps"),
            kind=self.meta.get("kind") or "auto",
            main_kind=v.main_kind,
            search_param=v.search_param,
            num_videos=c["pending"] + c["indexed"] + c["failed"],
            num_indexed=c["indexed"],
            num_failed=c["failed"],
            num_pending=c["pending"],
            num_vectors=c["vectors"],
            num_vectors_main=(v.main.ntotal - len(v.tombstones)) if v.main is not None else 0,
            num_vectors_delta=v.delta.ntotal,
            total_duration=c["duration"],
            disk_bytes=disk,
            failed=self.catalog.records("failed"),
        )
