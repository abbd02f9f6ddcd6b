"""Relevance-conditioned DPP frame selection (greedy MAP), pure numpy, no I/O.

The kernel is ``L = diag(r) · S · diag(r)`` with ``S`` the cosine similarity of the
candidate frames' embeddings and ``r`` their query relevance min-max normalised to
``[0, 1]``: a set scores high when its frames are relevant *and* unlike each other.
:func:`greedy_map_dpp` is the incremental-Cholesky greedy MAP algorithm (Chen et al.,
NeurIPS 2018): ``O(n·k·d)`` time without ever forming ``L``.

Where a textbook implementation breaks, this one stays defined:

- constant relevance (min-max would divide 0 by 0) → ``r = 1`` everywhere (pure diversity);
- duplicate frames or zero relevance (the marginal gain hits 0, the Cholesky step would take
  the square root of a negative number) → the greedy loop stops once the best gain is at or
  below ``eps · max(diag L)`` with ``eps = 1e-10`` (the floor of Chen's reference ``dpp(kernel,
  max_length, epsilon=1e-10)``, laming-chen/fast-map-dpp ``dpp.py``), computed in float64 so
  exact duplicates leave a residual far below it; the remaining slots are filled by relevance
  first and, among equally relevant frames, by farthest-point sampling in time. A distinct frame
  of positive relevance is therefore never passed over for a zero-relevance one (a unique frame
  of relevance 0.003 still has a gain of ~1e-5, far above the floor);
- ``k`` larger than the candidates → every candidate; one candidate → that one.

- :func:`minmax_relevance` - scores → relevance in ``[0, 1]``.
- :func:`greedy_map_dpp` - indices of the chosen candidates, ascending (time order).
- :func:`uniform_indices` - ``k`` evenly spaced indices (the empty-query fallback).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["minmax_relevance", "greedy_map_dpp", "uniform_indices", "dpp_log_det"]

_REL_EPS = 1e-6


def minmax_relevance(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise scores to ``[0, 1]``; constant scores give all ones."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    lo, hi = float(s.min()), float(s.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo < 1e-9:
        return np.ones_like(s)
    return (s - lo) / (hi - lo)


def uniform_indices(n: int, k: int) -> list[int]:
    """``min(k, n)`` indices spread evenly over ``range(n)`` (first and last included)."""
    if n <= 0 or k <= 0:
        return []
    k = min(k, n)
    return sorted(set(np.round(np.linspace(0, n - 1, k)).astype(int).tolist()))


def dpp_log_det(embeddings: np.ndarray, relevance: np.ndarray, subset) -> float:
    """``log det L[subset]`` (for tests and diagnostics)."""
    idx = np.asarray(list(subset), dtype=int)
    e = np.asarray(embeddings, dtype=np.float64)[idx]
    r = np.asarray(relevance, dtype=np.float64)[idx]
    sub = (r[:, None] * (e @ e.T)) * r[None, :]
    sign, logdet = np.linalg.slogdet(sub)
    return float(logdet) if sign > 0 else float("-inf")


def _fill(chosen: list[int], k: int, times: np.ndarray, relevance: np.ndarray, by_time: bool = False) -> list[int]:
    """Complete ``chosen`` to ``k``: highest relevance first, then farthest from the chosen in time
    (``by_time``: the other way round)."""
    n = len(times)
    taken = np.zeros(n, dtype=bool)
    taken[chosen] = True
    if chosen:
        dist = np.min(np.abs(times[:, None] - times[np.asarray(chosen)][None, :]), axis=1)
    else:
        dist = np.full(n, np.inf)
    while len(chosen) < k and not taken.all():
        # most relevant first; among equally relevant frames, the one farthest from the chosen
        primary, secondary = (dist, relevance) if by_time else (relevance, dist)
        key = np.where(taken, -np.inf, primary)
        best = np.flatnonzero(key == key.max())
        j = int(best[np.argmax(secondary[best])])
        chosen.append(j)
        taken[j] = True
        dist = np.minimum(dist, np.abs(times - times[j]))
    return chosen


def greedy_map_dpp(
    embeddings: np.ndarray,
    relevance: np.ndarray,
    k: int,
    times: Optional[np.ndarray] = None,
    eps: float = 1e-10,
    fill: str = "relevance",
) -> list[int]:
    """Greedy MAP inference for ``L = diag(r)·(E Eᵀ)·diag(r)``.

    Args:
        embeddings: ``(n, d)`` candidate embeddings, unit norm.
        relevance: ``(n,)`` relevance in ``[0, 1]`` (see :func:`minmax_relevance`).
        k: How many to choose (fewer when there are fewer candidates).
        times: ``(n,)`` candidate timestamps for the fallback fill (default: the indices).
        eps: Marginal gains at or below ``eps · max(diag L)`` end the greedy phase (Chen et al.'s
            ``epsilon = 1e-10``); only exact duplicates and zero-relevance frames fall below it.
        fill: How slots left after the greedy phase are filled: ``"relevance"`` (most relevant
            first, time spread among ties; the default) or ``"time"`` (farthest in time first,
            relevance among ties: the behaviour before issue 10, kept so the evaluation can show
            the difference together with ``eps=1e-4``).

    Returns:
        Indices of the chosen candidates in ascending order.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    r = np.asarray(relevance, dtype=np.float64)
    n = e.shape[0]
    if n == 0 or k <= 0:
        return []
    if r.shape != (n,):
        raise ValueError(f"relevance must have shape ({n},), got {r.shape}")
    k = min(int(k), n)
    t = np.arange(n, dtype=np.float64) if times is None else np.asarray(times, dtype=np.float64)
    if n == 1:
        return [0]
    r64 = r
    d2 = (r64**2) * np.einsum("ij,ij->i", e, e)
    floor = eps * max(float(d2.max()), 1e-30)
    cis = np.zeros((k, n), dtype=np.float64)
    chosen: list[int] = []
    j = int(np.argmax(d2))
    while len(chosen) < k and d2[j] > floor:
        chosen.append(j)
        if len(chosen) == k:
            break
        m = len(chosen) - 1
        row = r64[j] * r64 * (e @ e[j])  # L[j, :] without forming L
        ej = (row - cis[:m, j] @ cis[:m, :]) / np.sqrt(d2[j])
        cis[m] = ej
        d2 = d2 - ej**2
        d2[chosen] = -np.inf
        j = int(np.argmax(d2))
    if fill not in ("relevance", "time"):
        raise ValueError(f"fill must be 'relevance' or 'time', got {fill!r}")
    if len(chosen) < k:
        chosen = _fill(chosen, k, t, r64, by_time=fill == "time")
    return sorted(chosen)
