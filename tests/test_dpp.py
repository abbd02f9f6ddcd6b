"""DPP selection against brute force, and the degenerate cases where a textbook version breaks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent_tools.dpp import dpp_log_det, greedy_map_dpp, minmax_relevance, uniform_indices


def _unit(rng, n, d):
    e = rng.normal(size=(n, d))
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _naive_greedy(e, r, k):
    """Greedy MAP by recomputing log det from scratch at every step."""
    chosen = []
    for _ in range(k):
        best, best_val = None, -np.inf
        for j in range(len(r)):
            if j in chosen:
                continue
            val = dpp_log_det(e, r, chosen + [j])
            if val > best_val + 1e-12:
                best, best_val = j, val
        chosen.append(best)
    return sorted(chosen)


def _exact_map(e, r, k):
    return max(itertools.combinations(range(len(r)), k), key=lambda s: dpp_log_det(e, r, s))


@pytest.mark.parametrize("seed", range(25))
def test_fast_greedy_equals_naive_greedy(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    n, d = int(rng.integers(6, 14)), int(rng.integers(k + 1, 12))  # full rank: every step has a real gain
    e = _unit(rng, n, d)
    r = minmax_relevance(rng.normal(size=n))
    r = np.clip(r, 0.05, 1)  # keep every candidate selectable so the greedy path is unambiguous
    assert greedy_map_dpp(e, r, k) == _naive_greedy(e, r, k)


def test_greedy_is_close_to_exact_map_on_small_sets():
    rng = np.random.default_rng(123)
    ratios, exact_hits = [], 0
    for _ in range(40):
        e = _unit(rng, 9, 6)
        r = np.clip(minmax_relevance(rng.normal(size=9)), 0.05, 1)
        g = greedy_map_dpp(e, r, 3)
        x = _exact_map(e, r, 3)
        ratios.append(np.exp(dpp_log_det(e, r, g) - dpp_log_det(e, r, x)))
        exact_hits += sorted(x) == g
    assert min(ratios) > 0.5
    assert np.mean(ratios) > 0.9
    assert exact_hits >= 25  # greedy finds the true MAP set most of the time


def test_k1_picks_the_most_relevant():
    rng = np.random.default_rng(1)
    e = _unit(rng, 20, 8)
    r = minmax_relevance(rng.normal(size=20))
    assert greedy_map_dpp(e, r, 1) == [int(np.argmax(r))]


def test_diversity_beats_redundancy():
    # three near-identical, highly relevant frames and two distinct, slightly less relevant ones
    base = np.array([1.0, 0, 0, 0])
    e = np.stack([base, base + [0, 1e-3, 0, 0], base + [0, 0, 1e-3, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    r = np.array([1.0, 1.0, 1.0, 0.8, 0.8])
    picks = greedy_map_dpp(e, r, 3)
    assert 3 in picks and 4 in picks
    assert len(set(picks) & {0, 1, 2}) == 1


def test_constant_relevance_is_pure_diversity():
    assert np.all(minmax_relevance(np.full(7, 0.3)) == 1.0)
    e = np.eye(5)
    assert greedy_map_dpp(e, minmax_relevance(np.zeros(5)), 5) == [0, 1, 2, 3, 4]


def test_all_duplicate_frames_fill_by_time_without_nan():
    e = np.tile([[0.6, 0.8]], (50, 1))
    r = np.ones(50)
    times = np.arange(50) * 0.5
    with np.errstate(all="raise"):
        picks = greedy_map_dpp(e, r, 4, times=times)
    assert len(picks) == 4
    # farthest-point in time after the first pick: spread across the window
    assert picks[0] == 0 and picks[-1] == 49


def test_zero_relevance_frames_are_used_last():
    e = np.eye(4)
    r = np.array([1.0, 0.0, 0.5, 0.0])
    assert set(greedy_map_dpp(e, r, 2)) == {0, 2}
    assert len(greedy_map_dpp(e, r, 4)) == 4


@pytest.mark.parametrize("n,k", [(1, 8), (3, 8), (0, 8), (5, 0)])
def test_small_windows(n, k):
    e = np.eye(max(n, 1))[:n] if n else np.zeros((0, 4))
    picks = greedy_map_dpp(e, np.ones(n), k)
    assert picks == list(range(min(n, k)))


def test_output_is_time_ordered():
    rng = np.random.default_rng(5)
    e = _unit(rng, 200, 16)
    picks = greedy_map_dpp(e, minmax_relevance(rng.normal(size=200)), 8)
    assert picks == sorted(picks) and len(set(picks)) == 8


def test_uniform_indices():
    assert uniform_indices(10, 3) == [0, 4, 9] or uniform_indices(10, 3) == [0, 5, 9]
    assert uniform_indices(3, 8) == [0, 1, 2]
    assert uniform_indices(0, 8) == []


# --- selection quality: low-relevance unique frames versus zero-relevance ones (issue 10, item 5) ---


def _chen_greedy(kernel: np.ndarray, k: int, epsilon: float = 1e-10) -> list[int]:
    """Oracle: the fast greedy MAP of Chen et al. as laming-chen/fast-map-dpp ``dpp.py`` ``dpp``
    states it (absolute floor ``epsilon=1e-10`` on the best marginal gain, no other stop), re-derived
    here from the algorithm; TimeSearch-R's ``time_r1/utils/key_frame_selector_v2.py``
    ``DppTimeSelector`` runs the same recursion on ``L = diag(r)·(E Eᵀ)·diag(r)`` with no stop."""
    n = kernel.shape[0]
    c = np.zeros((k, n))
    gains = np.diag(kernel).astype(np.float64).copy()
    picked = [int(np.argmax(gains))]
    while len(picked) < k:
        j, m = picked[-1], len(picked) - 1
        e = (kernel[j] - c[:m, j] @ c[:m]) / np.sqrt(gains[j])
        c[m] = e
        gains = gains - e**2
        gains[picked] = -np.inf
        nxt = int(np.argmax(gains))
        if gains[nxt] < epsilon:
            break
        picked.append(nxt)
    return picked


def test_issue_repro_unique_low_relevance_frames_beat_zero_relevance():
    # Issue 10's repro: identity embeddings (every frame unique), relevance 1, .9, .005, .004, .003, 0.
    e = np.eye(6)
    r = np.array([1.0, 0.9, 0.005, 0.004, 0.003, 0.0])
    kernel = r[:, None] * (e @ e.T) * r[None, :]
    # Chen's greedy (and TimeSearch-R's selector, which never stops early) and the brute-force
    # log-det greedy all take the four frames of positive relevance in relevance order.
    assert sorted(_chen_greedy(kernel, 4)) == [0, 1, 2, 3]
    assert _naive_greedy(e, r, 4) == [0, 1, 2, 3]
    assert greedy_map_dpp(e, r, 4) == [0, 1, 2, 3]
    # k = 5 still leaves the zero-relevance frame out; only k = 6 takes it (fill phase).
    assert greedy_map_dpp(e, r, 5) == [0, 1, 2, 3, 4]
    assert greedy_map_dpp(e, r, 6) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", range(10))
def test_never_a_zero_relevance_frame_while_a_distinct_positive_one_is_left(seed):
    rng = np.random.default_rng(100 + seed)
    n, d, k = 12, 16, 8
    e = _unit(rng, n, d)
    r = np.zeros(n)
    pos = rng.choice(n, size=k, replace=False)
    r[pos] = np.concatenate([[1.0], rng.uniform(1e-4, 1e-2, size=k - 1)])  # mostly tiny relevance
    picks = greedy_map_dpp(e, r, k)
    assert set(picks) == set(pos.tolist())
    kernel = r[:, None] * (e @ e.T) * r[None, :]
    assert sorted(_chen_greedy(kernel, k)) == picks


def test_fill_takes_relevance_before_time():
    # frames 0..3 identical (gain vanishes after the first); relevance decides the fill, then time
    e = np.tile([[1.0, 0.0]], (4, 1))
    r = np.array([1.0, 0.2, 0.9, 0.2])
    assert greedy_map_dpp(e, r, 2, times=np.array([0.0, 100.0, 1.0, 50.0])) == [0, 2]
    # equal relevance (0.2, 0.2): the one farther in time from frame 0 goes first
    assert greedy_map_dpp(e, r, 3, times=np.array([0.0, 100.0, 1.0, 50.0])) == [0, 1, 2]


def test_legacy_settings_reproduce_the_issue():
    # eps=1e-4 with the time-first fill is the pre-issue behaviour the evaluation can still show
    e = np.eye(6)
    r = np.array([1.0, 0.9, 0.005, 0.004, 0.003, 0.0])
    assert greedy_map_dpp(e, r, 4, eps=1e-4, fill="time") == [0, 1, 3, 5]
    with pytest.raises(ValueError, match="fill"):
        greedy_map_dpp(e, r, 4, fill="nope")
