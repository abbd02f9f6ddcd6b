"""FAISS helpers of the corpus vector index: index contents, kinds, vector checks and file checksums.

:class:`~agent_tools.corpus.vector_index.VectorIndex` builds on these module-level helpers; they
hold no state of their own. :mod:`agent_tools.corpus.vector_index` re-exports every name.

Map:

- Index contents: :func:`index_ids` (the int64 ids of an index of any kind), :func:`_ivf_contents`
  (ids and, optionally, stored vectors of an IVF index, list by list), :func:`_kind_of`
  (``flat`` / ``ivf`` / ``hnsw``), :func:`ivf_nlist` (number of IVF lists for ``n`` vectors).
- New indexes and inputs: :func:`_new_flat` (an exact ``IndexIDMap2(IndexFlatIP)``),
  :func:`_as_f32` (vectors as a contiguous ``(n, dim)`` float32 array, or
  :class:`~agent_tools.errors.InvalidArgumentError`).
- Checksums: :data:`CHECKSUM_FILE` (``checksums.json``, size and BLAKE2b digest per index file),
  :func:`_digest` (:func:`agent_tools.store.file_digest`, shared with the frame store),
  :func:`_read_sums` (raises :class:`~agent_tools.errors.IndexCorruptError` on a damaged file),
  :func:`_write_sums` (atomic).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import faiss
import numpy as np

from agent_tools.corpus._io import atomic_write
from agent_tools.errors import IndexCorruptError, InvalidArgumentError
from agent_tools.store import file_digest as _digest  # BLAKE2b (16-byte) of a file's bytes

__all__ = [
    "CHECKSUM_FILE",
    "ivf_nlist",
    "index_ids",
    "_digest",
    "_read_sums",
    "_write_sums",
    "_ivf_contents",
    "_kind_of",
    "_as_f32",
    "_new_flat",
]

CHECKSUM_FILE = "checksums.json"
"""Beside the index files: ``{name: {"size", "blake2b"}}`` for each file written."""


def _read_sums(folder: Path) -> dict:
    """The checksums recorded in ``folder`` (``{}`` when there is no checksum file).

    Raises:
        IndexCorruptError: If the checksum file exists but cannot be read as a JSON object.
    """
    p = folder / CHECKSUM_FILE
    if not p.exists():
        return {}
    try:
        sums = json.loads(p.read_text())
        if not isinstance(sums, dict):
            raise ValueError("not an object")
        return sums
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{p} is damaged ({exc}); the vector index will be rebuilt from shards") from exc


def _write_sums(folder: Path, names: list[str]) -> None:
    """Record the size and digest of the files ``names`` in ``folder``'s checksum file (atomically).

    Entries of other files are kept; a damaged checksum file is started afresh.
    """
    try:
        sums = _read_sums(folder)
    except IndexCorruptError:
        sums = {}
    for name in names:
        p = folder / name
        sums[name] = {"size": p.stat().st_size, "blake2b": _digest(p)}
    data = json.dumps(sums, indent=1).encode()
    atomic_write(folder / CHECKSUM_FILE, lambda t: Path(t).write_bytes(data))


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ``4·√n``, at least 16, at most ``n // 39``."""
    return int(max(16, min(round(4 * math.sqrt(max(n, 1))), max(16, n // 39))))


def _ivf_contents(
    index: faiss.Index, dim: int, with_vectors: bool
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Ids (and, for an ``IndexIVFFlat``, the stored vectors) of an IVF index, list by list."""
    ivf = faiss.extract_index_ivf(index)
    inv = ivf.invlists
    id_parts, x_parts = [], []
    for lst in range(ivf.nlist):
        size = inv.list_size(lst)
        if size:
            id_parts.append(faiss.rev_swig_ptr(inv.get_ids(lst), size).copy())
            if with_vectors:
                codes = faiss.rev_swig_ptr(inv.get_codes(lst), size * inv.code_size).copy()
                x_parts.append(codes.view(np.float32).reshape(size, dim))
    ids = np.concatenate(id_parts).astype(np.int64) if id_parts else np.zeros(0, dtype=np.int64)
    if not with_vectors:
        return ids, None
    return ids, np.concatenate(x_parts) if x_parts else np.zeros((0, dim), dtype=np.float32)


def index_ids(index: Optional[faiss.Index]) -> np.ndarray:
    """The int64 ids stored in an index built by this module (any kind)."""
    if index is None or index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    if isinstance(index, faiss.IndexIDMap2) or hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    return _ivf_contents(index, index.d, with_vectors=False)[0]


def _kind_of(index: Optional[faiss.Index]) -> Optional[str]:
    """``hnsw``, ``ivf`` or ``flat`` for an index built by this module; ``None`` for no index."""
    if index is None:
        return None
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivf"
    return "flat"


def _as_f32(x: np.ndarray, dim: int) -> np.ndarray:
    """``x`` as a contiguous ``(n, dim)`` float32 array (one vector becomes one row).

    Raises:
        InvalidArgumentError: If the vectors are not ``dim`` wide.
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise InvalidArgumentError(f"vectors must have shape (n, {dim}); got {x.shape}")
    return x


def _new_flat(dim: int) -> faiss.IndexIDMap2:
    """An empty exact inner-product index with int64 ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
