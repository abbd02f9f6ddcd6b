"""The default vector backend: FAISS files on one machine.

:class:`~agent_tools.corpus.vector_index.VectorIndex` *is* the FAISS backend (it defines the
surface :class:`~agent_tools.corpus.backends.base.VectorBackend` describes); this module names
it as a backend and adds what FAISS cannot do inside the index: filtered segment search.

- :func:`open_faiss` - load ``<index>/vectors/{main,delta}.faiss`` (what ``CorpusIndex.open`` does).
- :func:`faiss_search_segments` - segments of some videos and/or a time range, best first. With
  ``video_ids`` it is exact (the videos' segment vectors from their shards, one matrix
  product); a time range alone searches FAISS with a widened ``k`` and filters the hits.

Usage::

    hits = faiss_search_segments(index, q, 10, video_ids=["ab12cd34ef56"], time_range=(30, 90))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent_tools.corpus.vector_index import VectorIndex

__all__ = ["FaissBackend", "faiss_search_segments", "open_faiss"]

FaissBackend = VectorIndex
"""The FAISS backend class."""


def open_faiss(folder: Path, dim: int, kind: str = "auto", read_only: bool = False, **kwargs) -> VectorIndex:
    """Load the FAISS files of an index (``read_only`` memory-maps an IVF main index).

    Raises:
        IndexCorruptError: A file fails its checksum or cannot be read.
    """
    return VectorIndex.load(folder, dim, kind=kind, mmap=read_only, **kwargs)


def faiss_search_segments(
    index: Any,
    query: np.ndarray,
    k: int,
    video_ids: Sequence[str] | None = None,
    time_range: tuple[float, float] | None = None,
) -> list[tuple[int, str, float, float, float]]:
    """Filtered segment search over a FAISS-backed :class:`~agent_tools.corpus.builder.CorpusIndex`.

    Returns:
        ``(vector_id, video_id, start, end, score)`` tuples, best first, at most ``k``.
    """
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    lo, hi = (float(time_range[0]), float(time_range[1])) if time_range is not None else (-np.inf, np.inf)
    out: list[tuple[int, str, float, float, float]] = []
    if video_ids is not None:
        for vid in video_ids:
            row = index.catalog.row(video_id=vid)
            if row is None or row["status"] != "indexed":
                continue
            shard = index.shard(vid)
            keep = (shard.seg_ends > lo) & (shard.seg_starts < hi)
            sims = shard.seg_vectors.astype(np.float32) @ q
            for j in np.flatnonzero(keep):
                out.append(
                    (int(row["id_base"] + j), vid, float(shard.seg_starts[j]), float(shard.seg_ends[j]), float(sims[j]))
                )
        out.sort(key=lambda h: -h[4])
        return out[:k]
    vi = index.vectors
    want = int(min(vi.ntotal, max(k * 20, 256)))
    while want > 0:
        scores, ids = vi.search(q[None, :], want)
        seg = index.catalog.lookup_segments(ids[0][ids[0] >= 0].tolist())
        out = [
            (int(i), seg[int(i)][0], seg[int(i)][1], seg[int(i)][2], float(s))
            for s, i in zip(scores[0].tolist(), ids[0].tolist())
            if int(i) in seg and seg[int(i)][2] > lo and seg[int(i)][1] < hi
        ]
        if len(out) >= k or want >= vi.ntotal:
            return out[:k]
        want = int(min(vi.ntotal, want * 4))
    return []
