"""FAISS wrapper for the corpus: inner-product search over L2-normalised vectors with int64 ids.

Two FAISS indexes live side by side:

- **main** - the large one, of a *kind*:

  - ``flat`` - exact ``IndexIDMap2(IndexFlatIP)``; chosen by ``auto`` below
    :data:`FLAT_MAX` vectors (exact search there costs a few ms per query).
  - ``ivf`` - ``IndexIVFFlat`` (inner product), ``nlist ≈ 4·√N``, trained once on a sample;
    ``nprobe`` tuned at build time to reach :data:`TARGET_RECALL` recall@10 against exact search.
    Chosen by ``auto`` above :data:`FLAT_MAX`.
  - ``hnsw`` - ``IndexIDMap2(IndexHNSWFlat)`` by flag; ``efSearch`` tuned the same way.

  Removed ids become *tombstones* in the main index (excluded from searches with an
  ``IDSelector``) and are dropped physically when the main index is next rewritten (a merge, or
  :meth:`VectorIndex.compact` once over :data:`COMPACT_FRACTION` of it is dead), so neither adding
  nor removing a video rewrites a large main index.

- **delta** - a small exact ``IndexIDMap2(IndexFlatIP)`` receiving every addition. Adding a
  video therefore never rebuilds or rewrites the main index; when the delta passes
  :data:`DELTA_MAX` vectors, :meth:`VectorIndex.merge` appends it to the main index (``add``,
  no retraining). The one exception is the *kind transition*: a growing ``flat`` main that passes
  :data:`FLAT_MAX` under ``auto`` is rebuilt once as IVF (counted in :attr:`VectorIndex.rebuilds`).

Searching queries both and merges the results. The files ``main.faiss`` and ``delta.faiss`` are
written atomically; which ids they hold is read back from the indexes themselves, so the caller
(``builder.CorpusIndex``) can reconcile them against its catalog after a crash. After each write
the file's size and BLAKE2b digest go to ``checksums.json`` (atomically); :meth:`VectorIndex.load`
verifies them (about a second per GB) and raises :class:`~agent_tools.errors.IndexCorruptError`
on a mismatch, so flipped bits never reach a search: the caller rebuilds from its shards.

GPU: when ``faiss.get_num_gpus() > 0`` (faiss-gpu installed), a GPU clone of a flat or IVF main
index serves searches; the CPU copy stays the one that is saved.

Usage::

    vi = VectorIndex(dim=512, kind="auto")
    vi.add(ids, vecs); vi.merge()               # or let add() merge when the delta is full
    scores, ids = vi.search(queries, k=10)
    vi.save(folder); vi = VectorIndex.load(folder, dim=512)

Modules: this one holds :class:`VectorIndex` and its tuning constants; the stateless FAISS and
checksum helpers (:func:`index_ids`, :func:`ivf_nlist`, ``checksums.json`` reading and writing)
are :mod:`agent_tools.corpus.faiss_util`. Every name is re-exported here.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Iterable, Literal, Optional

import faiss
import numpy as np

from agent_tools.corpus._io import atomic_write
from agent_tools.corpus.faiss_util import (
    CHECKSUM_FILE,  # noqa: F401  (re-exported)
    _as_f32,
    _digest,
    _ivf_contents,
    _kind_of,
    _new_flat,
    _read_sums,
    _write_sums,
    index_ids,
    ivf_nlist,
)
from agent_tools.errors import IndexCorruptError, InvalidArgumentError

__all__ = [
    "VectorIndex",
    "IndexKind",
    "KINDS",
    "FLAT_MAX",
    "DELTA_MAX",
    "TARGET_RECALL",
    "COMPACT_FRACTION",
    "ivf_nlist",
    "index_ids",
]

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
KINDS = ("auto", "flat", "ivf", "hnsw")

FLAT_MAX = 50_000
"""``auto`` keeps an exact index up to this many vectors (≈3 ms per 512-d query on 2 cores)."""
COMPACT_FRACTION = 0.1
"""Share of tombstoned main vectors above which a save compacts the main index."""
DELTA_MAX = 20_000
"""Vectors the exact delta index holds before it is merged into the main index (≈1 ms/query)."""
TARGET_RECALL = 0.97
"""recall@10 against exact search that nprobe / efSearch tuning aims for (margin over 0.95)."""
SINGLE_THREAD_NQ = 4
"""Searches with at most this many queries run on one OpenMP thread (lower latency)."""
MAIN_FILE = "main.faiss"
DELTA_FILE = "delta.faiss"


class VectorIndex:
    """Main + delta FAISS indexes with stable int64 ids (see the module docstring).

    Args:
        dim: Vector width.
        kind: ``auto`` (flat below :data:`FLAT_MAX`, IVF above), ``flat``, ``ivf`` or ``hnsw``.
        delta_max: Delta size that triggers a merge into the main index.
        flat_max: ``auto`` threshold between flat and IVF.
        use_gpu: ``None`` = use a GPU clone when faiss sees a GPU; ``False`` never.

    Raises:
        InvalidArgumentError: If ``kind`` is not one of ``auto|flat|ivf|hnsw``.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "auto",
        delta_max: int = DELTA_MAX,
        flat_max: int = FLAT_MAX,
        use_gpu: Optional[bool] = None,
    ):
        if kind not in KINDS:
            raise InvalidArgumentError(f"index kind must be one of {', '.join(KINDS)}; got {kind!r}")
        self.dim = int(dim)
        self.kind = kind
        self.delta_max = int(delta_max)
        self.flat_max = int(flat_max)
        self.main: Optional[faiss.Index] = None
        self.delta: faiss.IndexIDMap2 = _new_flat(self.dim)
        self.tombstones: set[int] = set()
        self._tomb_sel = None
        self._main_ids: Optional[np.ndarray] = None  # sorted ids of the main index (cache)
        self.rebuilds = 0
        self.main_read_only = False  # an IVF main memory-mapped by load(mmap=True): search only
        self.last_build: Optional[dict] = None  # timings of the last build(): kind, train_s, add_s, tune_s
        self.main_dirty = False
        self.delta_dirty = False
        self._use_gpu = (faiss.get_num_gpus() > 0) if use_gpu is None else bool(use_gpu)
        self._gpu_main = None
        self._gpu_stale = True

    # ------------------------------------------------------------------ facts
    @property
    def main_kind(self) -> Optional[str]:
        """Kind of the main index actually built (``None`` before the first merge)."""
        return _kind_of(self.main)

    @property
    def ntotal(self) -> int:
        """Live vectors (main + delta, tombstones excluded)."""
        n_main = self.main.ntotal if self.main is not None else 0
        return n_main + self.delta.ntotal - len(self.tombstones)

    @property
    def search_param(self) -> Optional[int]:
        """``nprobe`` for IVF, ``efSearch`` for HNSW, else ``None``."""
        k = self.main_kind
        if k == "ivf":
            return int(faiss.extract_index_ivf(self.main).nprobe)
        if k == "hnsw":
            return int(faiss.downcast_index(self.main.index).hnsw.efSearch)
        return None

    def ids(self) -> np.ndarray:
        """All live ids, main and delta."""
        ids = np.concatenate([index_ids(self.main), index_ids(self.delta)])
        if self.tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self.tombstones, dtype=np.int64))]
        return ids

    def target_kind(self, n: int) -> str:
        """Kind the main index should have for ``n`` vectors."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.flat_max else "ivf"

    # ------------------------------------------------------------------ edits
    def add(self, ids: np.ndarray, vectors: np.ndarray, merge: bool = True) -> None:
        """Add vectors to the delta index (merging into main when the delta is full).

        Args:
            ids: int64 ids, unique across the index.
            vectors: ``(n, dim)`` L2-normalised vectors.
            merge: Allow an automatic merge when the delta passes ``delta_max``.
        """
        x = _as_f32(vectors, self.dim)
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(ids) != len(x):
            raise InvalidArgumentError(f"got {len(ids)} ids for {len(x)} vectors; pass one id per vector")
        if len(ids) == 0:
            return
        self.delta.add_with_ids(x, ids)
        self.delta_dirty = True
        if merge and self.delta.ntotal > self.delta_max:
            self.merge()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids: deleted from the delta, tombstoned in the main index; returns how many were present.

        Tombstoned vectors are excluded from every search (an ``IDSelector``) and physically
        dropped at the next :meth:`merge` / :meth:`compact`, so removing a video never rewrites
        a large main index by itself.
        """
        ids = np.ascontiguousarray(np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64)))
        if len(ids) == 0:
            return 0
        removed = int(self.delta.remove_ids(faiss.IDSelectorBatch(ids)))
        if removed:
            self.delta_dirty = True
        if self.main is not None and self.main.ntotal:
            main_ids = self._main_id_array()
            pos = np.minimum(np.searchsorted(main_ids, ids), len(main_ids) - 1)
            in_main = ids[main_ids[pos] == ids]
            new = set(in_main.tolist()) - self.tombstones
            if new:
                self.tombstones |= new
                self._tomb_sel = None
                removed += len(new)
        return removed

    def _main_id_array(self) -> np.ndarray:
        if self._main_ids is None:
            self._main_ids = np.sort(index_ids(self.main))
        return self._main_ids

    def compact(self) -> bool:
        """Physically drop tombstoned vectors from the main index (flat/IVF: ``remove_ids``;
        HNSW: rebuild). Returns True if the main index changed (it must then be saved)."""
        if not self.tombstones or self.main is None:
            return False
        if self.main_read_only:
            raise InvalidArgumentError(
                "this vector index was loaded read-only (memory-mapped); open it writable to compact"
            )
        if self.main_kind == "hnsw":
            ids, x = self._all_main_vectors()
            self.rebuilds += 1
            self.build(ids, x, kind="hnsw")
            return True
        self.main.remove_ids(faiss.IDSelectorBatch(np.fromiter(self.tombstones, dtype=np.int64)))
        self.tombstones = set()
        self._tomb_sel = None
        self._main_ids = None
        self.main_dirty = True
        self._gpu_stale = True
        return True

    def merge(self, force_rebuild: bool = False) -> None:
        """Move the delta into the main index.

        Appends (``add``) without retraining, unless the main index is missing, ``force_rebuild``
        is set, or the main index is of the wrong kind for the new size (flat → IVF transition
        under ``auto``, or an explicit kind different from the one on disk); then the main index
        is (re)built from all vectors once.
        """
        if self.delta.ntotal == 0 and not force_rebuild:
            return
        if self.main_read_only:
            raise InvalidArgumentError(
                "this vector index was loaded read-only (memory-mapped); open it writable to merge"
            )
        total = (self.main.ntotal - len(self.tombstones) if self.main is not None else 0) + self.delta.ntotal
        want = self.target_kind(total)
        if self.main is None or force_rebuild or self.main_kind != want:
            if self.main is not None and self.main.ntotal:
                ids_m, x_m = self._all_main_vectors()
                ids = np.concatenate([ids_m, index_ids(self.delta)])
                x = np.concatenate([x_m, self._delta_vectors()])
                self.rebuilds += 1
                log.info("rebuilding the main index as %s over %d vectors", want, len(ids))
            else:
                ids, x = index_ids(self.delta), self._delta_vectors()
            self.build(ids, x, kind=want)
        else:
            if self.tombstones and (
                self.main_kind != "hnsw" or len(self.tombstones) > COMPACT_FRACTION * self.main.ntotal
            ):
                self.compact()  # the main file is rewritten anyway: drop removed vectors now
            ids, x = index_ids(self.delta), self._delta_vectors()
            self.main.add_with_ids(x, ids)
            self._main_ids = None
            self.main_dirty = True
            self._gpu_stale = True
        self.delta = _new_flat(self.dim)
        self.delta_dirty = True

    def build(self, ids: np.ndarray, vectors: np.ndarray, kind: Optional[str] = None, seed: int = 0) -> dict:
        """Build the main index from scratch over ``vectors`` (training and tuning included).

        Args:
            ids: int64 ids.
            vectors: ``(n, dim)`` L2-normalised float32 vectors.
            kind: ``flat``, ``ivf`` or ``hnsw``; default: :meth:`target_kind`.
            seed: Seed of the training sample and tuning queries.

        Returns:
            Timings and parameters: ``{"kind", "train_s", "add_s", "tune_s", "nlist", "param"}``.
        """
        x = _as_f32(vectors, self.dim)
        ids = np.ascontiguousarray(np.asarray(ids, dtype=np.int64))
        n = len(x)
        if kind is None or kind == "auto":
            kind = self.target_kind(n)
        if kind not in ("flat", "ivf", "hnsw"):
            raise InvalidArgumentError(f"cannot build an index of kind {kind!r}; use flat, ivf or hnsw")
        rng = np.random.default_rng(seed)
        info: dict = {"kind": kind, "train_s": 0.0, "add_s": 0.0, "tune_s": 0.0, "nlist": None, "param": None}
        if kind == "ivf" and n < 2 * 39 * 16 or n == 0:
            kind = info["kind"] = "flat"  # too few vectors to train even the smallest IVF
        if kind == "flat":
            index = _new_flat(self.dim)
            t = time.perf_counter()
            index.add_with_ids(x, ids)
            info["add_s"] = time.perf_counter() - t
        elif kind == "ivf":
            nlist = ivf_nlist(n)
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = 10  # 10 k-means rounds: recall is set by nprobe tuning, not by polish
            index.cp.seed = seed
            sample_n = min(n, 39 * nlist)
            sample = x[np.sort(rng.choice(n, size=sample_n, replace=False))] if sample_n < n else x
            t = time.perf_counter()
            index.train(sample)
            info["train_s"] = time.perf_counter() - t
            t = time.perf_counter()
            index.add_with_ids(x, ids)
            info["add_s"] = time.perf_counter() - t
            info["nlist"] = nlist
        else:
            inner = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            index = faiss.IndexIDMap2(inner)
            t = time.perf_counter()
            index.add_with_ids(x, ids)
            info["add_s"] = time.perf_counter() - t
        self.main = index
        self._main_ids = None
        self.tombstones = set()
        self._tomb_sel = None
        self.main_dirty = True
        self._gpu_stale = True
        if kind in ("ivf", "hnsw"):
            t = time.perf_counter()
            info["param"] = self.tune(x, ids, rng=rng)
            info["tune_s"] = time.perf_counter() - t
        self.last_build = info
        return info

    def tune(
        self,
        vectors: np.ndarray,
        ids: np.ndarray,
        k: int = 10,
        n_queries: int = 200,
        target: float = TARGET_RECALL,
        rng: Optional[np.random.Generator] = None,
    ) -> Optional[int]:
        """Pick ``nprobe`` (IVF) / ``efSearch`` (HNSW): twice the smallest value reaching ``target`` recall@k.

        Queries are database vectors moved off their point by noise (cosine ≈ 0.9 to it), the
        ground truth is exact inner-product search over ``vectors`` (the main index's contents).

        Args:
            vectors: The vectors of the main index, ``(n, dim)``.
            ids: Their ids, in the same order.
            k: Recall cut-off.
            n_queries: Tuning queries.
            target: Recall to reach.
            rng: Random generator.

        Returns:
            The chosen parameter, or ``None`` for a flat index.
        """
        kind = self.main_kind
        if kind not in ("ivf", "hnsw"):
            return None
        rng = rng or np.random.default_rng(0)
        x = _as_f32(vectors, self.dim)
        nq = min(n_queries, len(x))
        q = x[rng.choice(len(x), size=nq, replace=False)] + rng.normal(
            0, 0.45 / math.sqrt(self.dim), size=(nq, self.dim)
        ).astype(np.float32)
        faiss.normalize_L2(q)
        _, gt = faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)
        gt_ids = np.asarray(ids, dtype=np.int64)[gt]  # knn returns row numbers of x
        if kind == "ivf":
            ivf = faiss.extract_index_ivf(self.main)
            candidates = [
                p for p in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if p <= ivf.nlist
            ]
            setter = lambda p: setattr(ivf, "nprobe", p)  # noqa: E731
        else:
            hnsw = faiss.downcast_index(self.main.index).hnsw
            candidates = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
            setter = lambda p: setattr(hnsw, "efSearch", p)  # noqa: E731
        chosen = candidates[-1]
        for p in candidates:
            setter(p)
            _, got = self.main.search(q, k)
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(got.tolist(), gt_ids.tolist())])
            if recall >= target:
                # 2x headroom: real queries sit farther from the data than the tuning queries,
                # and the cost is small (the coarse quantizer dominates at small nprobe)
                chosen = min(2 * p, candidates[-1])
                break
        setter(chosen)
        self._gpu_stale = True
        log.info("tuned %s search parameter to %d", kind, chosen)
        return chosen

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search over main and delta.

        Args:
            queries: ``(nq, dim)`` or ``(dim,)`` float vectors (L2-normalised).
            k: Results per query.

        Returns:
            ``(scores, ids)``, each ``(nq, k)``; missing results have id ``-1`` and score ``-inf``.
        """
        q = _as_f32(queries, self.dim)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be an integer >= 1; got {k!r}")
        nq = len(q)
        if nq <= SINGLE_THREAD_NQ and faiss.omp_get_max_threads() > 1:
            # faiss parallelises over queries: for one query, extra OpenMP threads only add
            # barrier waits (milliseconds on a busy machine). The setting is per calling thread.
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._search(q, k)
            finally:
                faiss.omp_set_num_threads(threads)
        return self._search(q, k)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq = len(q)
        parts_d, parts_i = [], []
        if self.main is not None and self.main.ntotal:
            d, i = self._search_main(q, k)
            parts_d.append(d)
            parts_i.append(i)
        if self.delta.ntotal:
            d, i = self.delta.search(q, min(k, self.delta.ntotal))
            parts_d.append(d)
            parts_i.append(i)
        if not parts_d:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
        d = np.concatenate(parts_d, axis=1)
        i = np.concatenate(parts_i, axis=1)
        d = np.where(i < 0, -np.inf, d).astype(np.float32)
        order = np.argsort(-d, axis=1, kind="stable")[:, :k]
        d = np.take_along_axis(d, order, axis=1)
        i = np.take_along_axis(i, order, axis=1)
        if d.shape[1] < k:
            pad = k - d.shape[1]
            d = np.pad(d, ((0, 0), (0, pad)), constant_values=-np.inf)
            i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
        return d, i

    def _search_main(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, self.main.ntotal)
        if self.tombstones:
            if self._tomb_sel is None:
                arr = np.fromiter(self.tombstones, dtype=np.int64)
                self._tomb_batch = faiss.IDSelectorBatch(arr)
                self._tomb_sel = faiss.IDSelectorNot(self._tomb_batch)
            kind = self.main_kind
            if kind == "hnsw":
                params = faiss.SearchParametersHNSW()
                params.efSearch = faiss.downcast_index(self.main.index).hnsw.efSearch
            elif kind == "ivf":
                params = faiss.SearchParametersIVF()
                params.nprobe = faiss.extract_index_ivf(self.main).nprobe
            else:
                params = faiss.SearchParameters()
            params.sel = self._tomb_sel
            return self.main.search(q, kk, params=params)
        index = self._gpu_index() or self.main
        return index.search(q, kk)

    def _gpu_index(self):
        if not self._use_gpu or self.main_kind == "hnsw":
            return None
        if self._gpu_stale:
            try:
                self._gpu_main = faiss.index_cpu_to_all_gpus(self.main)
            except Exception as exc:  # pragma: no cover - needs faiss-gpu
                log.warning("GPU clone of the index failed (%s); searching on CPU", exc)
                self._use_gpu = False
                self._gpu_main = None
            self._gpu_stale = False
        return self._gpu_main

    # ------------------------------------------------------------------ vectors
    def _delta_vectors(self) -> np.ndarray:
        n = self.delta.ntotal
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return faiss.downcast_index(self.delta.index).reconstruct_n(0, n)

    def _all_main_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        kind = self.main_kind
        if kind in ("flat", "hnsw"):
            inner = faiss.downcast_index(self.main.index)
            ids = faiss.vector_to_array(self.main.id_map).astype(np.int64)
            x = inner.reconstruct_n(0, self.main.ntotal)
        else:
            ids, x = _ivf_contents(self.main, self.dim, with_vectors=True)
        if self.tombstones:
            keep = ~np.isin(ids, np.fromiter(self.tombstones, dtype=np.int64))
            ids, x = ids[keep], x[keep]
        return ids, x

    # ------------------------------------------------------------------ files
    def save(self, folder: Path) -> None:
        """Write the changed index files atomically into ``folder`` (unchanged ones are kept)."""
        folder = Path(folder)
        written = []
        if self.main_dirty and self.main is not None and not self.main_read_only:
            atomic_write(folder / MAIN_FILE, lambda p: faiss.write_index(self.main, str(p)))
            self.main_dirty = False
            written.append(MAIN_FILE)
        if self.delta_dirty:
            atomic_write(folder / DELTA_FILE, lambda p: faiss.write_index(self.delta, str(p)))
            self.delta_dirty = False
            written.append(DELTA_FILE)
        if written:
            _write_sums(folder, written)

    @classmethod
    def load(cls, folder: Path, dim: int, kind: str = "auto", mmap: bool = False, **kwargs) -> "VectorIndex":
        """Read ``main.faiss`` / ``delta.faiss`` from ``folder`` (missing files mean empty).

        Args:
            folder: The folder holding the files.
            dim: Expected vector width.
            kind: Kind used for later (re)builds.
            mmap: Memory-map an IVF main index instead of reading it (opens in milliseconds,
                pages in only the probed lists); the main index is then search-only: removals
                become tombstones and merges are refused.
            **kwargs: Passed to the constructor (``delta_max``, ``flat_max``, ``use_gpu``).

        Raises:
            IndexCorruptError: If a file exists but cannot be read or has the wrong width.
        """
        folder = Path(folder)
        vi = cls(dim, kind=kind, **kwargs)
        sums = _read_sums(folder)
        for name in (MAIN_FILE, DELTA_FILE):
            path = folder / name
            if not path.exists():
                continue
            want = sums.get(name)
            if want is not None:  # files written before checksums existed are read unverified
                size = path.stat().st_size
                if size != want.get("size") or _digest(path) != want.get("blake2b"):
                    raise IndexCorruptError(
                        f"{path} does not match its checksum (damaged on disk); the vector index "
                        "will be rebuilt from the shards"
                    )
            use_mmap = mmap and name == MAIN_FILE
            try:
                # IO_FLAG_MMAP maps IVF inverted lists read-only; other kinds are read as usual
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP if use_mmap else 0)
            except Exception as exc:
                raise IndexCorruptError(
                    f"cannot read {path}: {exc}; delete it to rebuild from shards"
                ) from exc
            if index.d != dim:
                raise IndexCorruptError(f"{path} holds {index.d}-d vectors, expected {dim}")
            if name == MAIN_FILE:
                vi.main = index
                vi._main_ids = None
                vi.main_read_only = use_mmap and _kind_of(index) == "ivf"
            else:
                vi.delta = index
        return vi
