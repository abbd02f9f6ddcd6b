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
