"""Corpus index end to end with synthetic videos and the untrained tiny encoder.

A frame decoded from one video must bring that video back first, with a moment that contains
the frame's time; adding, changing and removing files touches only those files; a corrupt
file is recorded as failed with its reason while the others are indexed.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from agent_tools.corpus import CorpusIndex, MomentSearcher
from agent_tools.errors import InvalidArgumentError, UnknownVideoError
from agent_tools.store import FrameEmbeddingStore, fingerprint_file
from agent_tools.synthetic import write_indexed_video
from agent_tools.video import open_video

DURATION = 12.0
SIZE = (96, 64)  # short side = the tiny encoder's input size: the store and the query see the same pixels
N_VIDEOS = 5


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus_videos")
    for seed in range(N_VIDEOS):
        write_indexed_video(d / f"clip{seed}.mp4", duration=DURATION, fps=10, size=SIZE, seed=seed)
    return d


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("corpus_cache")


class CountingStore(FrameEmbeddingStore):
    """The real store, counting which files it is asked for."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: list[str] = []

    def get(self, video, progress=None):
        self.calls.append(str(video))
        return super().get(video, progress=progress)


def open_index(path, encoder, cache, **kw) -> CorpusIndex:
    return CorpusIndex.open(path, encoder, store=CountingStore(cache, encoder, sample_fps=2.0), **kw)


def assert_consistent(index: CorpusIndex) -> None:
    """FAISS holds exactly the catalog's indexed videos, each whole."""
    ids = np.sort(index.vectors.ids())
    np.testing.assert_array_equal(ids, np.sort(index.catalog.indexed_ids()))
    for rec in index.list_videos("indexed"):
        shard = index.shard(rec.video_id)
        assert rec.num_segments == len(shard.seg_vectors) == index.catalog.count_segments(rec.video_id) > 0
        assert rec.num_frames == len(shard.frames)


def frame_at(path, t):
    with open_video(path) as reader:
        ((exact, rgb),) = reader.frames_at([t])
    return exact, rgb


@pytest.fixture(scope="module")
def built(tmp_path_factory, video_dir, shared_cache, tiny_encoder):
    index = open_index(tmp_path_factory.mktemp("idx") / "index", tiny_encoder, shared_cache)
    events = []
    report = index.update([video_dir], progress=events.append)
    return index, report, events


def test_build_catalog_and_progress(built, video_dir):
    index, report, events = built
    assert sorted(report.added) == sorted(str(p) for p in video_dir.glob("*.mp4"))
    assert report.failed == {} and not report.interrupted and report.rebuilt
    recs = index.list_videos()
    assert len(recs) == N_VIDEOS and all(r.status == "indexed" for r in recs)
    for r in recs:
        assert r.fingerprint == fingerprint_file(r.path)
        assert r.video_id == r.fingerprint[:12]
        assert r.duration == pytest.approx(DURATION, abs=0.2)
        assert r.fps == pytest.approx(10.0)
        assert r.num_frames == 24
    assert index.get_video(recs[0].video_id) == recs[0]
    assert index.get_video(recs[0].path) == recs[0]
    with pytest.raises(UnknownVideoError, match="videoseek index --status"):
        index.get_video("0123456789ab")
    st = index.status()
    assert st.num_indexed == N_VIDEOS and st.num_vectors == index.vectors.ntotal > 0
    assert st.encoder == "tiny-untrained" and st.main_kind == "flat"
    stages = [e.stage for e in events]
    assert stages[0] == "scan" and events[0].total == N_VIDEOS
    assert stages.count("start") == N_VIDEOS and stages.count("done") == N_VIDEOS
    frames = [e for e in events if e.stage == "frames"]
    assert frames and frames[-1].done_frames == frames[-1].total_frames
    assert_consistent(index)


@pytest.mark.parametrize("seed", range(N_VIDEOS))
def test_image_query_returns_video_and_moment(built, video_dir, tiny_encoder, seed):
    index, _, _ = built
    path = video_dir / f"clip{seed}.mp4"
    vid = index.get_video(path).video_id
    searcher = MomentSearcher(index, tiny_encoder)
    for t in (3.0, 9.0):  # middles of 2-second scenes
        exact, rgb = frame_at(path, t)
        result = searcher.search(rgb, top_k=5)
        assert result.query_kind == "image" and result.num_videos_searched == N_VIDEOS
        first = result.moments[0]
        assert first.video_id == vid and first.path == str(path)
        assert first.start <= exact <= first.end
        assert first.end - first.start < DURATION / 2  # a moment, not the whole video
        assert first.score >= max(m.score for m in result.moments)


def test_vector_query_and_video_restriction(built, video_dir, tiny_encoder):
    index, _, _ = built
    path = video_dir / "clip3.mp4"
    rec = index.get_video(path)
    shard = index.shard(rec.video_id)
    searcher = MomentSearcher(index, tiny_encoder)
    # the retrieval stage alone: a segment vector finds its own video first
    ranked = searcher.rank_videos(shard.seg_vectors[2].astype(np.float32), 3)
    assert ranked[0][0] == rec.video_id
    # a stored frame embedding as the query vector
    i = 14  # 7.0 s
    result = searcher.search(shard.frames[i].astype(np.float32), top_k=3)
    assert result.query_kind == "vector"
    assert result.moments[0].video_id == rec.video_id
    assert result.moments[0].start <= shard.timestamps[i] <= result.moments[0].end
    # restricted to one video: only its moments
    other = index.get_video(video_dir / "clip0.mp4")
    res = searcher.search(shard.frames[i].astype(np.float32), top_k=3, video=other.video_id)
    assert res.moments and {m.video_id for m in res.moments} == {other.video_id}
    with pytest.raises(UnknownVideoError):
        searcher.search("anything", video="nope")
    with pytest.raises(InvalidArgumentError, match="top_k"):
        searcher.search("anything", top_k=0)
    with pytest.raises(InvalidArgumentError, match="empty"):
        searcher.search("  ")
    with pytest.raises(InvalidArgumentError, match="vector"):
        searcher.search(np.ones(7, np.float32))
    text = searcher.search("a red square", top_k=2)
    assert text.query_kind == "text" and len(text.moments) == 2 and not text.encoder_trained


def test_incremental_add_change_remove(tmp_path, video_dir, shared_cache, tiny_encoder):
    vids = tmp_path / "videos"
    vids.mkdir()
    for s in range(3):
        shutil.copy(video_dir / f"clip{s}.mp4", vids / f"clip{s}.mp4")
    idx_path = tmp_path / "index"
    index = open_index(idx_path, tiny_encoder, shared_cache)
    r1 = index.update([vids])
    assert len(r1.added) == 3
    old_ids = {r.path: r.video_id for r in index.list_videos()}

    # nothing changed: nothing is read again
    index._store.calls.clear()
    r2 = index.update([vids])
    assert r2.unchanged == 3 and not r2.added and not r2.changed and not r2.removed
    assert index._store.calls == []

    # add one, change one, remove one
    shutil.copy(video_dir / "clip3.mp4", vids / "clip3.mp4")
    write_indexed_video(vids / "clip1.mp4", duration=DURATION, fps=10, size=SIZE, seed=42)
    removed_vid = old_ids[str(vids / "clip2.mp4")]
    removed_segments = index.catalog.row(video_id=removed_vid)
    (vids / "clip2.mp4").unlink()
    index._store.calls.clear()
    main_before = index.vectors.main.ntotal
    r3 = index.update([vids])
    assert r3.added == [str(vids / "clip3.mp4")]
    assert r3.changed == [str(vids / "clip1.mp4")]
    assert r3.removed == [str(vids / "clip2.mp4")]
    assert r3.unchanged == 1
    assert sorted(index._store.calls) == sorted([str(vids / "clip1.mp4"), str(vids / "clip3.mp4")])
    assert not r3.rebuilt and index.vectors.main.ntotal <= main_before  # additions went to the delta
    new_clip1 = index.get_video(vids / "clip1.mp4")
    assert new_clip1.video_id != old_ids[str(vids / "clip1.mp4")]
    with pytest.raises(UnknownVideoError):
        index.get_video(removed_vid)
    gone_ids = set(
        range(removed_segments["id_base"], removed_segments["id_base"] + removed_segments["num_segments"])
    )
    assert not gone_ids & set(index.vectors.ids().tolist())
    assert not list((idx_path / "shards").glob(f"{removed_vid}-*"))
    assert_consistent(index)
    # the removed video is never returned
    searcher = MomentSearcher(index, tiny_encoder)
    _, rgb = frame_at(video_dir / "clip2.mp4", 5.0)
    assert removed_vid not in {m.video_id for m in searcher.search(rgb, top_k=10).moments}
    index.close()

    # a fresh process view sees the same state
    again = open_index(idx_path, tiny_encoder, shared_cache)
    assert {r.path for r in again.list_videos()} == {str(vids / f"clip{s}.mp4") for s in (0, 1, 3)}
    assert_consistent(again)
    # explicit removal by id
    assert again.remove([new_clip1.video_id]) == [new_clip1.path]
    assert_consistent(again)
    assert len(again.list_videos()) == 2
    again.close()


def test_corrupt_file_is_recorded_and_build_goes_on(tmp_path, video_dir, shared_cache, tiny_encoder):
    vids = tmp_path / "videos"
    vids.mkdir()
    for s in range(2):
        shutil.copy(video_dir / f"clip{s}.mp4", vids / f"clip{s}.mp4")
    (vids / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (vids / "empty.mp4").write_bytes(b"")
    good = (video_dir / "clip4.mp4").read_bytes()
    (vids / "truncated.mp4").write_bytes(good[: len(good) // 3])
    index = open_index(tmp_path / "index", tiny_encoder, shared_cache)
    report = index.update([vids])
    assert sorted(report.added) == sorted(str(vids / f"clip{s}.mp4") for s in range(2))
    bad = {str(vids / n) for n in ("garbage.mp4", "empty.mp4", "truncated.mp4")}
    assert set(report.failed) == bad
    assert all(reason for reason in report.failed.values())
    assert "empty" in report.failed[str(vids / "empty.mp4")]
    failed = index.list_videos("failed")
    assert {r.path for r in failed} == bad and all(r.error for r in failed)
    st = index.status()
    assert st.num_failed == 3 and st.num_indexed == 2
    assert {r.path for r in st.failed} == bad
    assert_consistent(index)
    # a failed file that gets fixed is indexed on the next run
    shutil.copy(video_dir / "clip4.mp4", vids / "truncated.mp4")
    r2 = index.update([vids])
    assert str(vids / "truncated.mp4") in r2.added and r2.unchanged == 2
    assert index.get_video(vids / "truncated.mp4").status == "indexed"
    index.close()


def test_encoder_mismatch_and_bad_kind(tmp_path, built, tiny_encoder):
    index, _, _ = built

    class Other:
        name, cache_key, dim, trained = "other", "other-123", 64, False

    with pytest.raises(InvalidArgumentError, match="built with encoder 'tiny-untrained'"):
        CorpusIndex.open(index.index_dir, Other(), store=object())
    with pytest.raises(InvalidArgumentError, match="built with encoder 'tiny-untrained'"):
        MomentSearcher(index, Other())  # searching with another encoder is refused too
    with pytest.raises(InvalidArgumentError, match="per_video"):
        MomentSearcher(index, tiny_encoder, per_video=0)
    with pytest.raises(InvalidArgumentError, match="auto, flat, ivf, hnsw"):
        CorpusIndex.open(tmp_path / "x", tiny_encoder, kind="annoy")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match="no corpus index"):
        CorpusIndex.open(tmp_path / "videos", tiny_encoder)  # never litter a folder that is not an index
    ro = CorpusIndex.open(index.index_dir, None)
    assert ro.status().num_indexed == N_VIDEOS
    with pytest.raises(InvalidArgumentError, match="without an encoder"):
        ro.update([tmp_path])
    ro.close()
    assert CorpusIndex.read_meta(index.index_dir)["encoder"] == "tiny-untrained"
    assert CorpusIndex.read_meta(tmp_path / "nothing") == {}


def test_read_only_open_searches_but_refuses_writes(built, video_dir, tiny_encoder):
    index, _, _ = built
    ro = CorpusIndex.open(index.index_dir, tiny_encoder, read_only=True)
    _, rgb = frame_at(video_dir / "clip2.mp4", 7.0)
    assert MomentSearcher(ro, tiny_encoder).search(rgb).moments[0].path == str(video_dir / "clip2.mp4")
    with pytest.raises(InvalidArgumentError, match="read_only"):
        ro.update([video_dir])
    with pytest.raises(InvalidArgumentError, match="read_only"):
        ro.remove([str(video_dir / "clip2.mp4")])
    ro.close()
