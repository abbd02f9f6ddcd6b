"""VectorIndex: kinds, ids, removal, delta merge without rebuild, recall, save/load; segment helpers."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from agent_tools.corpus.builder import pool_segments, segment_windows
from agent_tools.corpus.moments import localize
from agent_tools.corpus.vector_index import VectorIndex, index_ids, ivf_nlist
from agent_tools.errors import IndexCorruptError, InvalidArgumentError

D = 32


def clustered(n: int, centres: int = 40, seed: int = 0, spread: float = 0.35) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, D)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, D)).astype(np.float32)
    faiss.normalize_L2(x)
    return x


def exact_top(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    _, rows = faiss.knn(q, x, k, metric=faiss.METRIC_INNER_PRODUCT)
    return ids[rows]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_kinds_search_remove_save_load(kind, tmp_path):
    x = clustered(4000)
    ids = np.arange(4000, dtype=np.int64) * 7 + 1000  # arbitrary, non-contiguous ids
    vi = VectorIndex(D, kind=kind, delta_max=100)
    vi.add(ids, x)  # passes delta_max -> builds the main index of that kind
    assert vi.main_kind == kind and vi.delta.ntotal == 0
    if kind != "flat":
        assert vi.search_param is not None
    # nearest neighbour of a stored vector is itself
    _, got = vi.search(x[:50], 1)
    assert (got[:, 0] == ids[:50]).mean() >= 0.96
    # removal: a tombstone, never returned again
    gone = ids[:25]
    assert vi.remove(gone) == 25 and vi.remove(gone) == 0
    _, got = vi.search(x[:25], 10)
    assert not np.isin(got, gone).any()
    assert vi.ntotal == 4000 - 25 and not np.isin(vi.ids(), gone).any()
    # the file keeps them (the catalog reconcile tombstones them again on load) ...
    vi.save(tmp_path)
    back = VectorIndex.load(tmp_path, D, kind=kind)
    assert back.main_kind == kind and set(index_ids(back.main).tolist()) >= set(gone.tolist())
    back.remove(gone)
    _, got = back.search(x[:25], 10)
    assert not np.isin(got, gone).any()
    assert sorted(back.ids().tolist()) == sorted(ids[25:].tolist())
    # ... until the main index is rewritten: compaction drops them physically
    assert back.compact() and not back.tombstones
    assert not np.isin(index_ids(back.main), gone).any() and back.ntotal == 4000 - 25
    _, got = back.search(x[25:50], 1)
    assert (got[:, 0] == ids[25:50]).mean() >= 0.96


def test_removal_does_not_rewrite_the_main_file(tmp_path):
    x = clustered(3000)
    ids = np.arange(3000, dtype=np.int64)
    vi = VectorIndex(D, kind="ivf", delta_max=500)
    vi.build(ids, x)
    vi.save(tmp_path)
    mtime = (tmp_path / "main.faiss").stat().st_mtime_ns
    vi.remove(ids[:100])  # 3% of the index: tombstones only
    vi.save(tmp_path)
    assert (tmp_path / "main.faiss").stat().st_mtime_ns == mtime
    # a merge rewrites main anyway and drops the tombstones on the way
    vi.add(np.arange(5000, 5600), clustered(600, seed=3))
    assert vi.main.ntotal == 3000 - 100 + 600 and not vi.tombstones and vi.rebuilds == 0


def test_ivf_recall_against_exact():
    x = clustered(20000, centres=100)
    ids = np.arange(len(x), dtype=np.int64)
    vi = VectorIndex(D, kind="ivf")
    info = vi.build(ids, x)
    assert info["kind"] == "ivf" and info["nlist"] == ivf_nlist(20000)
    rng = np.random.default_rng(5)
    q = x[rng.choice(len(x), 200, replace=False)] + rng.normal(0, 0.08, (200, D)).astype(np.float32)
    faiss.normalize_L2(q)
    _, got = vi.search(q, 10)
    truth = exact_top(x, ids, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), truth.tolist())])
    assert recall >= 0.95
    # nprobe was tuned, not left at the exhaustive maximum
    assert vi.search_param < faiss.extract_index_ivf(vi.main).nlist


def test_adding_to_large_ivf_index_never_rebuilds(tmp_path):
    x = clustered(6000)
    ids = np.arange(6000, dtype=np.int64)
    vi = VectorIndex(D, kind="auto", flat_max=2000, delta_max=500)
    vi.build(ids[:5000], x[:5000])
    assert vi.main_kind == "ivf"
    vi.save(tmp_path)
    centroids = faiss.extract_index_ivf(vi.main).quantizer.reconstruct_n(
        0, faiss.extract_index_ivf(vi.main).nlist
    )
    main_file = tmp_path / "main.faiss"
    mtime = main_file.stat().st_mtime_ns
    # one "video" of 300 vectors: goes to the delta, searchable at once, main untouched
    vi.add(ids[5000:5300], x[5000:5300])
    assert vi.delta.ntotal == 300 and vi.main.ntotal == 5000 and vi.rebuilds == 0
    _, got = vi.search(x[5000:5010], 1)
    assert (got[:, 0] == ids[5000:5010]).all()
    vi.save(tmp_path)
    assert main_file.stat().st_mtime_ns == mtime  # only delta.faiss was written
    # passing delta_max merges by appending: same centroids, no retraining
    vi.add(ids[5300:], x[5300:])
    assert vi.delta.ntotal == 0 and vi.main.ntotal == 6000 and vi.rebuilds == 0
    after = faiss.extract_index_ivf(vi.main).quantizer.reconstruct_n(
        0, faiss.extract_index_ivf(vi.main).nlist
    )
    np.testing.assert_array_equal(centroids, after)


def test_auto_kind_transition_rebuilds_once():
    x = clustered(3000)
    ids = np.arange(3000, dtype=np.int64)
    vi = VectorIndex(D, kind="auto", flat_max=1500, delta_max=400)
    vi.add(ids[:1000], x[:1000])
    assert vi.main_kind == "flat" and vi.rebuilds == 0
    vi.add(ids[1000:2000], x[1000:2000])  # now 2000 > flat_max: flat -> ivf, once
    assert vi.main_kind == "ivf" and vi.rebuilds == 1
    vi.add(ids[2000:], x[2000:])
    assert vi.main_kind == "ivf" and vi.rebuilds == 1 and vi.ntotal == 3000
    assert sorted(vi.ids().tolist()) == ids.tolist()


def test_errors_and_corrupt_file(tmp_path):
    with pytest.raises(InvalidArgumentError, match="auto, flat, ivf, hnsw"):
        VectorIndex(D, kind="lsh")
    vi = VectorIndex(D)
    with pytest.raises(InvalidArgumentError, match=r"\(n, 32\)"):
        vi.add([1], np.zeros((1, 8), np.float32))
    (tmp_path / "main.faiss").write_bytes(b"not a faiss file")
    with pytest.raises(IndexCorruptError):
        VectorIndex.load(tmp_path, D)
    s, i = VectorIndex(D).search(np.ones(D, np.float32), 3)
    assert (i == -1).all() and np.isneginf(s).all()
    with pytest.raises(InvalidArgumentError, match="k must be an integer >= 1"):
        VectorIndex(D).search(np.ones(D, np.float32), 0)


def test_segment_windows_and_pooling():
    ts = np.arange(20) * 0.5  # 10 s at 2 fps
    starts, ends, ranges = segment_windows(ts, 10.0, window_s=4.0, stride_s=2.0)
    np.testing.assert_allclose(starts, [0, 2, 4, 6])
    np.testing.assert_allclose(ends, [4, 6, 8, 10])
    assert ranges == [(0, 8), (4, 12), (8, 16), (12, 20)]
    # a video shorter than a window: one segment over all frames
    s2, e2, r2 = segment_windows(np.arange(3) * 0.5, 1.5, 4.0, 2.0)
    assert r2 == [(0, 3)] and e2[0] == 1.5
    frames = np.zeros((4, 3), np.float32)
    frames[:2, 0] = 1
    frames[2:, 1] = 1
    seg = pool_segments(frames, [(0, 2), (0, 4)]).astype(np.float32)
    np.testing.assert_allclose(seg, [[1, 0, 0], [np.sqrt(0.5), np.sqrt(0.5), 0]], atol=1e-3)


def test_localize_variable_length_moments():
    ts = np.arange(60) * 0.5  # 30 s at 2 fps
    sims = np.full(60, 0.1)
    sims[10:30] = 0.8  # 5.0 s .. 15.0 s: a long plateau
    sims[44:47] = 0.7  # 22.0 s .. 23.5 s: a short one
    found = localize(sims, ts, 30.0, 2.0, per_video=3, smooth_s=1.0)
    assert len(found) == 2
    (s1, e1, sc1, p1), (s2, e2, sc2, p2) = found
    assert abs(s1 - 5.0) <= 0.5 and abs(e1 - 15.0) <= 0.5 and sc1 == pytest.approx(0.8)
    assert abs(s2 - 22.0) <= 0.5 and abs(e2 - 23.5) <= 0.5 and sc2 == pytest.approx(0.7)
    assert 5.0 <= p1 <= 15.0 and 22.0 <= p2 <= 23.5
    # a weak bump (under half the first peak's height above the median) is not a moment
    sims2 = np.full(60, 0.1)
    sims2[10:20] = 0.9
    sims2[40:42] = 0.3
    assert len(localize(sims2, ts, 30.0, 2.0, per_video=3)) == 1


def test_memory_mapped_ivf_is_search_only(tmp_path):
    x = clustered(5000)
    ids = np.arange(5000, dtype=np.int64)
    vi = VectorIndex(D, kind="ivf")
    vi.build(ids, x)
    vi.save(tmp_path)
    ro = VectorIndex.load(tmp_path, D, kind="ivf", mmap=True)
    assert ro.main_read_only and ro.main_kind == "ivf" and ro.search_param == vi.search_param
    _, got = ro.search(x[:20], 1)
    assert (got[:, 0] == ids[:20]).mean() >= 0.95
    # removals become tombstones, excluded from results; additions go to the delta
    assert ro.remove(ids[:20]) == 20 and len(ro.tombstones) == 20
    with pytest.raises(InvalidArgumentError, match="read-only"):
        ro.compact()
    _, got = ro.search(x[:20], 10)
    assert not np.isin(got, ids[:20]).any()
    ro.add(np.array([99999]), x[:1], merge=False)
    _, got = ro.search(x[:1], 1)
    assert got[0, 0] == 99999
    with pytest.raises(InvalidArgumentError, match="read-only"):
        ro.merge()
    mtime = (tmp_path / "main.faiss").stat().st_mtime_ns
    ro.save(tmp_path)
    assert (tmp_path / "main.faiss").stat().st_mtime_ns == mtime
