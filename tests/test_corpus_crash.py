"""Crash safety and resumption of the corpus build.

A subprocess building the index kills itself (``os._exit``, no cleanup) at several points;
the index must then load, hold only whole videos, agree with its catalog, and a resumed
build must finish the job without redoing finished videos. Ctrl-C in-process is also covered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent_tools.corpus import CorpusIndex
from agent_tools.synthetic import write_indexed_video

sys.path.insert(0, str(Path(__file__).parent))
from corpus_fakes import CRASH_CODE, HashEncoder, HashStore  # noqa: E402

N = 5


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash_videos")
    paths = []
    for s in range(N):
        paths.append(write_indexed_video(d / f"v{s}.mp4", duration=6.0, fps=5, size=(64, 48), seed=s))
    return paths


def run_crashing(mode: str, index_dir: Path, files) -> subprocess.CompletedProcess:
    script = Path(__file__).parent / "corpus_fakes.py"
    return subprocess.run(
        [sys.executable, str(script), mode, str(index_dir), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_whole(index: CorpusIndex) -> None:
    """Loads, FAISS == catalog, every indexed video complete, nothing half-written visible."""
    np.testing.assert_array_equal(np.sort(index.vectors.ids()), np.sort(index.catalog.indexed_ids()))
    for rec in index.list_videos():
        if rec.status != "indexed":  # pending (not started / interrupted) or failed: no vectors at all
            assert rec.num_segments == 0 and index.catalog.count_segments(rec.video_id) == 0
        else:
            shard = index.shard(rec.video_id)
            assert len(shard.seg_vectors) == rec.num_segments == index.catalog.count_segments(rec.video_id)
    # a search only ever returns indexed videos
    q = np.random.default_rng(1).standard_normal(HashEncoder.dim).astype(np.float32)
    q /= np.linalg.norm(q)
    _, ids = index.vectors.search(q, 50)
    known = index.catalog.lookup_segments(ids[0][ids[0] >= 0])
    assert len(known) == int((ids[0] >= 0).sum())


@pytest.mark.parametrize(
    "mode,indexed_after_crash",
    [
        ("after_two_videos", 2),
        ("mid_frames", 1),
        ("during_shard_write", 1),
        ("before_commit", 1),
        ("during_vector_save", N),
    ],
)
def test_crash_then_resume(tmp_path, videos, mode, indexed_after_crash):
    index_dir = tmp_path / "index"
    proc = run_crashing(mode, index_dir, videos)
    assert proc.returncode == CRASH_CODE, proc.stderr[-2000:]

    index = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    assert len(index.list_videos("indexed")) == indexed_after_crash
    assert len(index.list_videos("pending")) == N - indexed_after_crash  # the rest wait for the resume
    check_whole(index)
    done_before = {r.path for r in index.list_videos("indexed")}
    if mode == "during_vector_save":  # the torn file never replaced anything
        assert not (index_dir / "vectors" / "main.faiss").exists()
        assert index.vectors.ntotal == index.catalog.counts()["vectors"]  # restored from the shards

    report = index.update(videos)
    assert set(report.added) == {str(v) for v in videos} - done_before
    assert report.unchanged == len(done_before) and not report.failed
    check_whole(index)
    assert len(index.list_videos("indexed")) == N
    index.close()

    # everything on disk is referenced and complete; a fresh open agrees
    again = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    check_whole(again)
    assert again.vectors.main is not None and again.vectors.ntotal == again.catalog.counts()["vectors"]
    referenced = {r["shard"] for r in again.catalog.rows()}
    assert {p.name for p in (index_dir / "shards").iterdir()} == referenced
    assert not [p for p in index_dir.rglob("*") if p.name.endswith(".tmp-write")]
    again.close()


def test_crash_during_update_of_existing_index(tmp_path, videos):
    """A complete index, then a run that changes one file and adds others is killed: stale
    vectors of the changed file (still in main.faiss) must never come back."""
    vids = tmp_path / "videos"
    vids.mkdir()
    for v in videos[:3]:
        shutil.copy(v, vids / v.name)
    index_dir = tmp_path / "index"
    idx = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    idx.update([vids])
    old = idx.get_video(vids / "v0.mp4")
    old_ids = set(
        range(
            idx.catalog.row(video_id=old.video_id)["id_base"],
            idx.catalog.row(video_id=old.video_id)["id_base"] + old.num_segments,
        )
    )
    idx.close()

    write_indexed_video(vids / "v0.mp4", duration=6.0, fps=5, size=(64, 48), seed=99)  # changed
    for v in videos[3:]:
        shutil.copy(v, vids / v.name)
    # files in order v0 (changed), v3, v4: the crash comes at the start of the third file to do
    proc = run_crashing("after_two_videos", index_dir, [vids])
    assert proc.returncode == CRASH_CODE, proc.stderr[-2000:]

    idx = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    check_whole(idx)
    new = idx.get_video(vids / "v0.mp4")
    assert new.video_id != old.video_id
    assert not old_ids & set(idx.vectors.ids().tolist())
    report = idx.update([vids])
    assert report.added == [str(vids / "v4.mp4")] and report.unchanged == 4
    check_whole(idx)
    idx.close()


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, videos):
    index_dir = tmp_path / "index"
    idx = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())

    def interrupt(ev):
        if ev.stage == "start" and ev.position == 3:
            raise KeyboardInterrupt

    report = idx.update(videos, progress=interrupt)
    assert report.interrupted and len(report.added) == 3
    assert (index_dir / "vectors" / "main.faiss").exists()  # what was complete got saved
    idx.close()
    idx = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    check_whole(idx)
    assert idx.vectors.ntotal == idx.catalog.counts()["vectors"]
    report = idx.update(videos)
    assert len(report.added) == 2 and report.unchanged == 3 and not report.interrupted
    check_whole(idx)
    idx.close()


def test_concurrent_update_is_refused(tmp_path, videos):
    from agent_tools.corpus.updating import _WriteLock
    from agent_tools.errors import InvalidArgumentError

    idx = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
    with _WriteLock(idx.index_dir):
        other = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
        with pytest.raises(InvalidArgumentError, match="another process"):
            other.update(videos[:1])
        other.close()
    assert idx.update(videos[:1]).added == [str(videos[0])]
    idx.close()


def test_kind_flag_builds_and_switches_main_index(tmp_path, videos):
    idx = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore(), kind="hnsw")
    report = idx.update(videos[:3])
    assert report.main_kind == "hnsw" and idx.status().kind == "hnsw"
    removed = idx.get_video(videos[0])
    idx.remove([removed.video_id])  # HNSW cannot delete: a tombstone, never returned
    check_whole(idx)
    idx.close()
    again = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore(), kind="flat")
    check_whole(again)  # the reconcile re-applies the removal to the reloaded HNSW index
    report = again.update(videos[:3])
    assert report.rebuilt and report.main_kind == "flat" and len(report.added) == 1
    check_whole(again)
    again.close()


def test_vectors_held_twice_after_a_torn_merge_are_deduplicated(tmp_path, videos):
    """Killed after main.faiss was rewritten by a merge but before delta.faiss was emptied."""
    import faiss

    idx = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
    idx.update(videos[:3])
    rec = idx.get_video(videos[1])
    row = idx.catalog.row(video_id=rec.video_id)
    shard = idx.shard(rec.video_id)
    idx.close()
    stale_delta = faiss.IndexIDMap2(faiss.IndexFlatIP(HashEncoder.dim))
    ids = np.arange(row["id_base"], row["id_base"] + row["num_segments"], dtype=np.int64)
    stale_delta.add_with_ids(shard.seg_vectors.astype(np.float32), ids)
    faiss.write_index(stale_delta, str(tmp_path / "index" / "vectors" / "delta.faiss"))

    again = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
    assert len(again.vectors.ids()) == len(set(again.vectors.ids().tolist()))
    check_whole(again)
    _, got = again.vectors.search(shard.seg_vectors[0].astype(np.float32), 5)
    assert len(set(got[0].tolist())) == 5  # no id returned twice
    again.close()


def test_damaged_shard_is_skipped_by_search_and_reindexed_by_update(tmp_path, videos):
    """A shard cut short on disk: searches skip that video (no crash), the next update re-indexes it."""
    from agent_tools.corpus import MomentSearcher
    from agent_tools.errors import IndexCorruptError

    idx = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
    idx.update(videos[:3])
    broken = idx.get_video(videos[1])
    shard_file = tmp_path / "index" / "shards" / idx.catalog.row(video_id=broken.video_id)["shard"]
    idx.close()
    data = shard_file.read_bytes()
    shard_file.write_bytes(data[: len(data) // 2])

    idx = CorpusIndex.open(tmp_path / "index", HashEncoder(), store=HashStore())
    with pytest.raises(IndexCorruptError, match="videoseek index"):
        idx.shard(broken.video_id)
    q = np.random.default_rng(3).standard_normal(HashEncoder.dim).astype(np.float32)
    result = MomentSearcher(idx, HashEncoder()).search(q / np.linalg.norm(q), top_k=10)
    assert result.moments and broken.video_id not in {m.video_id for m in result.moments}
    report = idx.update(videos[:3])
    assert report.changed == [str(videos[1])] and report.unchanged == 2 and not report.failed
    check_whole(idx)
    idx.close()
