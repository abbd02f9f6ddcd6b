"""Shards: what the corpus index stores per video, and how frame embeddings become segment vectors.

A shard (``shards/<vid>-<base>.npz``, :class:`Shard`) holds one video's frame times, frame
embeddings (float16 on disk) and its *segment vectors*: frame embeddings mean-pooled over sliding
windows (:func:`segment_windows`, :func:`pool_segments`) and re-normalised, which is what the
vector index searches. :class:`~agent_tools.corpus.builder.CorpusIndex` reads and caches shards;
:mod:`agent_tools.corpus.updating` writes them.

Names: :class:`Shard`, :func:`segment_windows`, :func:`pool_segments`, :data:`DEFAULT_WINDOW_S`,
:data:`DEFAULT_STRIDE_S`, :data:`SHARD_CACHE_BYTES`, :data:`DAMAGED_SUFFIX`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "Shard",
    "segment_windows",
    "pool_segments",
    "DEFAULT_WINDOW_S",
    "DEFAULT_STRIDE_S",
    "SHARD_CACHE_BYTES",
    "DAMAGED_SUFFIX",
]

DEFAULT_WINDOW_S = 4.0
"""Segment length: long enough to pool a shot, short enough that one video gives many vectors."""
DEFAULT_STRIDE_S = 2.0
"""Segment stride: half a window, so every moment is covered by a well-centred segment."""
SHARD_CACHE_BYTES = 512 * 2**20
"""Memory for recently searched videos' frame embeddings (float32): ~70 hours of video at 2 fps, 512-d."""
DAMAGED_SUFFIX = ".damaged"
"""``shards/<shard>.damaged`` marks a shard a reader found damaged; the next update re-indexes it."""


@dataclass
class Shard:
    """The stored data of one indexed video."""

    timestamps: np.ndarray  #: float64 (N,) frame times
    frames: np.ndarray  #: float32 (N, D) frame embeddings (stored as float16 on disk)
    seg_vectors: np.ndarray  #: float16 (S, D) segment vectors (what FAISS holds)
    seg_starts: np.ndarray  #: float64 (S,)
    seg_ends: np.ndarray  #: float64 (S,)
    duration: float

    @property
    def nbytes(self) -> int:
        """Memory the shard cache charges for it (frames and segment vectors)."""
        return self.frames.nbytes + self.seg_vectors.nbytes


def segment_windows(
    timestamps: np.ndarray, duration: float, window_s: float, stride_s: float
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Sliding windows over sampled frames.

    Args:
        timestamps: Frame times (ascending).
        duration: Video duration.
        window_s: Window length in seconds.
        stride_s: Step between window starts.

    Returns:
        ``(starts, ends, ranges)``: window spans in seconds and the ``[i0, i1)`` frame ranges
        they pool (empty windows are skipped; a video shorter than a window gives one window).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    n = len(ts)
    if n == 0:
        return np.zeros(0), np.zeros(0), []
    duration = max(float(duration), float(ts[-1]))
    starts, ends, ranges = [], [], []
    s = 0.0
    while True:
        e = s + window_s
        i0, i1 = int(np.searchsorted(ts, s - 1e-9)), int(np.searchsorted(ts, e - 1e-9))
        if i1 > i0 and (not ranges or ranges[-1] != (i0, i1)):
            starts.append(s)
            ends.append(min(e, duration))
            ranges.append((i0, i1))
        if e >= duration or e > ts[-1] + 1e-9 and i1 >= n:
            break
        s += stride_s
    return np.asarray(starts), np.asarray(ends), ranges


def pool_segments(frames: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean-pool frame embeddings over ranges and L2-normalise → float16 ``(S, D)``."""
    f = np.asarray(frames, dtype=np.float32)
    if not ranges:
        return np.zeros((0, f.shape[1]), dtype=np.float16)
    csum = np.concatenate([np.zeros((1, f.shape[1]), np.float32), np.cumsum(f, axis=0)])
    idx = np.asarray(ranges)
    seg = (csum[idx[:, 1]] - csum[idx[:, 0]]) / (idx[:, 1] - idx[:, 0])[:, None]
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-12)
    return seg.astype(np.float16)

