"""The corpus index's write path: scanning folders, indexing videos crash-safely, removing, saving.

:class:`IndexWriter` is the half of :class:`~agent_tools.corpus.builder.CorpusIndex` that changes
an index (``update``, ``ingest``, ``remove``, ``rebuild_vectors``); the builder's module docstring
gives the on-disk layout and the crash-safety order these methods keep. Every write runs under
the folder's ``.write.lock`` (:class:`_WriteLock`). A file that cannot be read is recorded as
``failed`` and the build goes on.

Names: :class:`IndexWriter`, :class:`BuildProgress` (one progress event), :data:`ProgressCallback`,
:data:`VIDEO_EXTENSIONS`, :data:`MISSING_REASON`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
from filelock import FileLock, Timeout

from agent_tools.corpus._io import atomic_write, clean_tmp
from agent_tools.corpus.shards import DAMAGED_SUFFIX, pool_segments, segment_windows
from agent_tools.corpus.vector_index import COMPACT_FRACTION, KINDS
from agent_tools.display import display_path
from agent_tools.errors import IndexCorruptError, InvalidArgumentError, VideoReadError, VideoseekError
from agent_tools.types import BuildReport, VideoRecord

__all__ = ["IndexWriter", "BuildProgress", "ProgressCallback", "VIDEO_EXTENSIONS", "MISSING_REASON"]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
    }
)
"""File suffixes picked up when a folder is scanned (files named explicitly are always taken)."""

MISSING_REASON = "no such file or directory"
"""The ``BuildReport.failed`` reason of a path named on the command line that does not exist."""


@dataclass
class BuildProgress:
    """One progress event of :meth:`CorpusIndex.update`.

    ``stage`` is ``scan`` (files found: ``total``), ``start`` (a video begins: ``position`` of
    ``total``), ``frames`` (``done_frames`` of ``total_frames`` embedded), ``done``, ``failed``
    (``message`` = reason), ``removed``, ``finalize`` (saving / merging the FAISS index).
    """

    stage: str
    path: str = ""
    position: int = 0
    total: int = 0
    done_frames: int = 0
    total_frames: int = 0
    message: str = ""


ProgressCallback = Callable[[BuildProgress], None]


class _WriteLock:
    """Exclusive lock on ``<index>/.write.lock`` (:mod:`filelock`, any OS) for the duration of an update."""

    def __init__(self, folder: Path):
        self.path = folder / ".write.lock"
        self.lock = FileLock(str(self.path))

    def __enter__(self):
        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            raise InvalidArgumentError(
                f"the index {self.path.parent} is being updated by another process; "
                "wait for it to finish or pass a different --index directory"
            ) from None
        return self

    def __exit__(self, *exc):
        self.lock.release()


class IndexWriter:
    """The write methods of :class:`~agent_tools.corpus.builder.CorpusIndex` (a mixin: they use its
    catalog, vectors, shard files and meta)."""

    read_only = False

    def _require_writable(self) -> None:
        if self.read_only:
            raise InvalidArgumentError(
                f"the index {self.index_dir} was opened read_only; open it with "
                "read_only=False to update or remove videos"
            )

    def _require_encoder(self) -> None:
        self._require_writable()
        if self.encoder is None or self._store is None:
            raise InvalidArgumentError(
                "this index was opened without an encoder; pass encoder= to update or search"
            )

    @staticmethod
    def _scan(
        paths: Iterable[str | os.PathLike],
    ) -> tuple[list[Path], list[Path], list[Path], dict[str, str]]:
        files: dict[str, Path] = {}
        roots: list[Path] = []
        gone: list[Path] = []
        missing: dict[str, str] = {}
        for raw in paths:
            p = Path(raw).expanduser()
            p = p.resolve() if p.exists() else Path(os.path.abspath(p))
            if p.is_dir():
                roots.append(p)
                for dirpath, dirnames, filenames in os.walk(p):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for name in sorted(filenames):
                        if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                            f = Path(dirpath) / name
                            files[str(f)] = f
            elif p.exists():
                files[str(p)] = p
            else:
                gone.append(p)
                missing[str(p)] = MISSING_REASON
        return list(files.values()), roots, gone, missing

    def update(
        self,
        paths: Iterable[str | os.PathLike],
        progress: Optional[ProgressCallback] = None,
        retry_failed: bool = True,
    ) -> BuildReport:
        """Index new and changed videos under ``paths``, drop removed ones, save.

        Args:
            paths: Video files and/or folders (scanned recursively for video suffixes). Catalog
                entries under a scanned folder, or named explicitly, whose file is gone are
                removed.
            progress: Called with :class:`BuildProgress` events (per video and overall).
            retry_failed: Try files recorded as failed again (default) even if unchanged.

        Returns:
            A :class:`BuildReport`. On Ctrl-C the run stops after saving what is complete and
            returns with ``interrupted=True``; calling ``update`` again resumes.

        Raises:
            InvalidArgumentError: No encoder, or another process is updating this index.
        """
        self._require_encoder()
        t0 = time.perf_counter()
        emit = progress or (lambda ev: None)
        report = BuildReport()
        with _WriteLock(self.index_dir):
            self._cleanup()
            files, roots, gone, missing = self._scan(paths)
            # removed files: rows under a scanned folder, or named explicitly, whose file is gone
            present = {str(f) for f in files}
            doomed, matched = [], set()
            for row in self.catalog.rows():
                p = Path(row["path"])
                if row["path"] in present or p.exists():
                    continue
                hits = [g for g in gone if p == g or p.is_relative_to(g)]
                matched.update(str(g) for g in hits)
                if hits or any(p.is_relative_to(r) for r in roots):
                    doomed.append(row)
            report.failed.update({display_path(k): v for k, v in missing.items() if k not in matched})
            if doomed:
                self._remove_rows(doomed)
                report.removed = [display_path(r["path"]) for r in doomed]
                for r in doomed:
                    emit(BuildProgress("removed", path=display_path(r["path"])))

            todo: list[tuple[Path, Optional[dict], int, int]] = []
            by_path = {r["path"]: r for r in self.catalog.rows()}  # one verified scan, not one query per file
            for f in files:
                try:
                    st = f.stat()
                except OSError as exc:
                    report.failed[display_path(str(f))] = f"cannot stat file ({exc.strerror})"
                    continue
                if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader; a device is endless
                    report.failed[display_path(str(f))] = "not a regular file (a FIFO, device or socket)"
                    continue
                row = by_path.get(str(f))
                if (
                    row is not None
                    and row["status"] == "indexed"
                    and row["size_bytes"] == st.st_size
                    and row["mtime_ns"] == st.st_mtime_ns
                    and self._shard_ok(row["shard"])
                ):
                    report.unchanged += 1
                    continue
                if (
                    row is not None
                    and row["status"] == "failed"
                    and not retry_failed
                    and (row["size_bytes"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns)
                ):
                    report.failed[display_path(str(f))] = row["error"] or "failed"
                    continue
                todo.append((f, row, st.st_size, st.st_mtime_ns))
            for f, row, size, mtime_ns in todo:  # new files show as pending until indexed
                if row is None:
                    self.catalog.mark(
                        {
                            "video_id": self._video_id(None, str(f)),
                            "path": str(f),
                            "size_bytes": size,
                            "mtime_ns": mtime_ns,
                            "status": "pending",
                        }
                    )
            emit(BuildProgress("scan", total=len(todo)))

            try:
                for pos, (f, row, size, mtime_ns) in enumerate(todo):
                    self._index_one(f, row, size, mtime_ns, pos, len(todo), emit, report)
            except KeyboardInterrupt:
                report.interrupted = True
                log.warning("interrupted; what is complete is saved, run the same command again to resume")
            finally:
                emit(BuildProgress("finalize", total=len(todo)))
                report.rebuilt = self._finalize()
            if roots:
                known = self.catalog.get_meta("roots") or []
                self.catalog.set_meta("roots", sorted(set(known) | {str(r) for r in roots}))
        report.seconds = time.perf_counter() - t0
        report.num_vectors = self.vectors.ntotal
        report.main_kind = self.vectors.main_kind
        return report

    def _index_one(
        self,
        f: Path,
        row: Optional[dict],
        size: int,
        mtime_ns: int,
        pos: int,
        total: int,
        emit: ProgressCallback,
        report: BuildReport,
    ) -> None:
        from agent_tools.store import fingerprint_file

        path = str(f)
        shown = display_path(path)  # what reports, progress and logs carry (always printable)
        emit(BuildProgress("start", path=shown, position=pos, total=total))
        fp: Optional[str] = None
        try:
            fp = fingerprint_file(f)
            if (
                row is not None
                and row["status"] == "indexed"
                and row["fingerprint"] == fp
                and self._shard_ok(row["shard"])
            ):
                self.catalog.touch(row["video_id"], size, mtime_ns)
                report.unchanged += 1
                emit(BuildProgress("done", path=shown, position=pos, total=total, message="unchanged"))
                return

            def on_frames(done: int, total_frames: int) -> None:
                emit(
                    BuildProgress(
                        "frames",
                        path=shown,
                        position=pos,
                        total=total,
                        done_frames=done,
                        total_frames=total_frames,
                    )
                )

            fe = self._store.get(f, progress=on_frames)
            self.ingest(path, fe, size_bytes=size, mtime_ns=mtime_ns)
        except Exception as exc:  # a bad file never stops the build: it is recorded as failed, with why
            reason = exc.reason if isinstance(exc, VideoReadError) else f"{type(exc).__name__}: {exc}"
            log.warning("failed to index %s: %s", shown, reason, exc_info=not isinstance(exc, VideoseekError))
            try:
                self._mark_failed(path, fp, size, mtime_ns, reason)
            except IndexCorruptError:
                raise
            except Exception as mark_exc:  # noqa: BLE001 - still never stops the build
                log.warning("could not record %s as failed: %s", shown, mark_exc)
            report.failed[shown] = reason
            emit(BuildProgress("failed", path=shown, position=pos, total=total, message=reason))
            return
        (report.changed if row is not None and row["status"] == "indexed" else report.added).append(shown)
        emit(BuildProgress("done", path=shown, position=pos, total=total))

    def _video_id(self, fingerprint: Optional[str], path: str) -> str:
        fallback = hashlib.blake2b(f"{fingerprint}|{path}".encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        if not fingerprint:
            return fallback
        return self.catalog.free_video_id(fingerprint[:12], path, fallback)

    def _mark_failed(self, path: str, fp: Optional[str], size: int, mtime_ns: int, reason: str) -> None:
        old = self.catalog.mark(
            {
                "video_id": self._video_id(fp, path),
                "path": path,
                "fingerprint": fp,
                "size_bytes": size,
                "mtime_ns": mtime_ns,
                "status": "failed",
                "error": reason,
            }
        )
        if old is not None:
            self._drop_vectors_and_shard(old)

    def ingest(
        self, path: str, fe: Any, size_bytes: Optional[int] = None, mtime_ns: Optional[int] = None
    ) -> VideoRecord:
        """Add one video's frame embeddings to the index (the crash-safe core of :meth:`update`).

        Also usable directly with precomputed embeddings (benchmarks, external pipelines).

        Args:
            path: The video's path (its catalog key).
            fe: An object with ``timestamps`` (N,), ``embeddings`` (N, D) unit-norm,
                ``fingerprint`` and ``info`` (with ``duration`` and ``fps``), e.g. a
                ``FrameEmbeddings`` from the store.
            size_bytes: File size, for change detection without reading the file.
            mtime_ns: File mtime, idem.

        Returns:
            The video's new record.

        Raises:
            InvalidArgumentError: Embeddings of the wrong width, or no frames.
        """
        emb = np.asarray(fe.embeddings)
        ts = np.asarray(fe.timestamps, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != self.meta["dim"]:
            raise InvalidArgumentError(f"embeddings must be (N, {self.meta['dim']}); got {emb.shape}")
        if len(ts) == 0 or len(ts) != len(emb):
            raise InvalidArgumentError(
                f"need one timestamp per embedding and at least one frame; got {len(ts)}/{len(emb)}"
            )
        duration = float(getattr(fe.info, "duration", 0.0) or 0.0)
        duration = max(duration, float(ts[-1]) + 1.0 / self.meta["sample_fps"])
        starts, ends, ranges = segment_windows(ts, duration, self.meta["window_s"], self.meta["stride_s"])
        seg = pool_segments(emb, ranges)
        vid = self._video_id(fe.fingerprint, path)
        base = self.catalog.allocate_ids(len(seg))
        shard_name = f"{vid}-{base}.npz"

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    timestamps=ts,
                    frames=emb.astype(np.float16),
                    seg_vectors=seg,
                    seg_starts=starts,
                    seg_ends=ends,
                    duration=np.float64(duration),
                )

        atomic_write(self._shard_path(shard_name), write)
        row = {
            "video_id": vid,
            "path": path,
            "fingerprint": fe.fingerprint,
            "size_bytes": size_bytes,
            "mtime_ns": mtime_ns,
            "duration": duration,
            "fps": float(getattr(fe.info, "fps", 0.0) or 0.0),
            "num_frames": len(ts),
            "id_base": base,
            "shard": shard_name,
        }
        old = self.catalog.commit_indexed(row, starts, ends)
        if old is not None:
            self._drop_vectors_and_shard(old)
        self.vectors.add(
            np.arange(base, base + len(seg), dtype=np.int64), seg.astype(np.float32), merge=False
        )
        return self.catalog.record(video_id=vid)

    def _drop_vectors_and_shard(self, row: dict) -> None:
        if row.get("id_base") is not None and row.get("num_segments"):
            self.vectors.remove(range(row["id_base"], row["id_base"] + row["num_segments"]))
        if row.get("shard"):
            with self._shard_lock:
                gone = self._shard_cache.pop(row["shard"], None)
                if gone is not None:
                    self._shard_cache_bytes -= gone.nbytes
            for p in (self._shard_path(row["shard"]), self._damage_mark(row["shard"])):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass

    def _remove_rows(self, rows: list[dict]) -> None:
        deleted = self.catalog.delete(r["video_id"] for r in rows)
        for row in deleted:
            self._drop_vectors_and_shard(row)

    def remove(self, videos: Iterable[str | os.PathLike]) -> list[str]:
        """Drop videos (by id or path) from the index and save.

        Returns:
            The paths removed.

        Raises:
            UnknownVideoError: A video the index does not hold.
        """
        self._require_writable()
        with _WriteLock(self.index_dir):
            rows = [self._resolve_row(v) for v in videos]
            self._remove_rows(rows)
            self._finalize()
        return [r["path"] for r in rows]

    def _finalize(self) -> bool:
        """Merge the delta when needed, then save the FAISS files. Returns True if main was rebuilt."""
        v = self.vectors
        before = v.rebuilds
        built = False
        want_kind = self.meta.get("kind") or "auto"
        if v.main is None and v.delta.ntotal:
            v.merge()
            built = True
        elif v.delta.ntotal > v.delta_max:
            v.merge()
        elif v.main is not None and len(v.tombstones) > COMPACT_FRACTION * max(v.main.ntotal, 1):
            v.compact()
        elif want_kind != "auto" and v.main is not None and v.main_kind != want_kind and v.ntotal:
            v.merge(force_rebuild=True)
        v.save(self.index_dir / "vectors")
        return built or v.rebuilds > before

    def _cleanup(self) -> None:
        """Delete temporary files of killed writers and shards no catalog row references."""
        clean_tmp(self.index_dir / "shards")
        clean_tmp(self.index_dir / "vectors")
        referenced = {r["shard"] for r in self.catalog.rows() if r["shard"]}
        marks = (self.index_dir / "shards").glob("*.npz" + DAMAGED_SUFFIX)
        for p in [*(self.index_dir / "shards").glob("*.npz"), *marks]:
            if p.name.removesuffix(DAMAGED_SUFFIX) not in referenced:
                try:
                    p.unlink()
                except OSError:
                    pass

    def rebuild_vectors(self, kind: Optional[str] = None) -> dict:
        """Rebuild the main FAISS index from all vectors (e.g. to change kind or retrain IVF).

        Returns:
            Build timings and parameters.
        """
        self._require_writable()
        with _WriteLock(self.index_dir):
            if kind is not None:
                if kind not in KINDS:
                    raise InvalidArgumentError(f"index kind must be one of {', '.join(KINDS)}; got {kind!r}")
                self.catalog.set_meta("kind", kind)
                self.meta["kind"] = kind
                self.vectors.kind = kind
            self.vectors.merge(force_rebuild=True)
            self.vectors.save(self.index_dir / "vectors")
        return {"kind": self.vectors.main_kind, "param": self.vectors.search_param}
