"""``--engine ray``: embedding on Ray Data gives the index the single-process build gives.

One local Ray instance (2 CPUs) serves the module. The first encoder-actor call kills its
worker (``os._exit``) once; Ray restarts the actor and redoes that task, and the build still
holds every video. Then the CLI with ``--engine ray`` updates the index incrementally (a new,
a changed and a corrupt file) and only the new / changed files are embedded.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from agent_tools.corpus import CorpusIndex, MomentSearcher
from agent_tools.corpus.ray_engine import ray_update
from agent_tools.store import FrameEmbeddingStore
from agent_tools.synthetic import write_indexed_video

pytestmark = pytest.mark.slow  # Ray start + one torch import per actor: tens of seconds on 2 cores

SIZE = (96, 64)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    marker = tmp_path_factory.mktemp("ray") / "crash-once"
    mp = pytest.MonkeyPatch()
    mp.setenv("VIDEOSEEK_RAY_CRASH_ONCE", str(marker))  # inherited by the workers Ray starts
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield marker
    ray.shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray_videos")
    for s in range(4):
        write_indexed_video(d / f"r{s}.mp4", duration=6.0, fps=5, size=SIZE, seed=20 + s)
    return d


def _rows(index):
    return [r.model_dump(exclude={"updated_at"}) for r in index.list_videos()]


def test_ray_build_equals_single_process_build_after_a_worker_dies(ray_session, folder, tmp_path, tiny_encoder):
    single = CorpusIndex.open(
        tmp_path / "single", tiny_encoder, store=FrameEmbeddingStore(tmp_path / "c1", tiny_encoder, sample_fps=2.0)
    )
    r1 = single.update([folder])
    dist = CorpusIndex.open(
        tmp_path / "ray", tiny_encoder, store=FrameEmbeddingStore(tmp_path / "c2", tiny_encoder, sample_fps=2.0)
    )
    events = []
    r2 = ray_update(dist, [folder], "tiny-untrained", tmp_path / "c2", workers=2, device="cpu", progress=events.append)
    assert ray_session.exists()  # a worker did die mid-run (and its task was redone)
    assert sorted(r2.added) == sorted(r1.added) and len(r2.added) == 4 and not r2.failed
    # progress: one event per video, rate and ETA
    assert [e.done for e in events] == [1, 2, 3, 4] and all(e.total == 4 for e in events)
    assert all(e.videos_per_s > 0 for e in events) and events[-1].eta_s == 0
    assert {e.status for e in events} == {"embedded"}
    # same catalog rows, same vectors within float16 rounding, same answers
    assert _rows(single) == _rows(dist)
    np.testing.assert_array_equal(np.sort(single.vectors.ids()), np.sort(dist.vectors.ids()))
    for rec in single.list_videos():
        a, b = single.shard(rec.video_id), dist.shard(rec.video_id)
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
        np.testing.assert_allclose(a.frames, b.frames, atol=2e-3)
        np.testing.assert_allclose(a.seg_vectors.astype(np.float32), b.seg_vectors.astype(np.float32), atol=2e-3)
    q = single.shard(single.list_videos()[1].video_id).frames[5]
    ma = MomentSearcher(single, tiny_encoder).search(q, top_k=3).moments
    mb = MomentSearcher(dist, tiny_encoder).search(q, top_k=3).moments
    assert [(m.video_id, m.start, m.end) for m in ma] == [(m.video_id, m.start, m.end) for m in mb]
    single.close()
    dist.close()


def test_cli_engine_ray_is_incremental(ray_session, folder, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from agent_tools.corpus.cli import register

    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    vids = tmp_path / "videos"
    vids.mkdir()
    for s in range(2):
        shutil.copy(folder / f"r{s}.mp4", vids / f"r{s}.mp4")
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    runner = CliRunner()
    idx = str(tmp_path / "index")
    base = ["index", str(vids), "--index", idx, "--encoder", "tiny-untrained", "--engine", "ray", "--workers", "1"]
    # a plain local build first; then a Ray update adds, changes and fails only what is new
    r = runner.invoke(app, ["index", str(vids), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    assert r.exit_code == 0, r.output
    shutil.copy(folder / "r2.mp4", vids / "r2.mp4")
    write_indexed_video(vids / "r1.mp4", duration=6.0, fps=5, size=SIZE, seed=77)
    (vids / "bad.mp4").write_bytes(b"\x00not a video" * 100)
    r = runner.invoke(app, base)
    assert r.exit_code == 0, r.output
    assert "videos/s" in r.output and "ETA" in r.output
    assert "r2.mp4 embedded" in r.output and "r1.mp4 embedded" in r.output
    assert "r0.mp4" not in r.output  # the unchanged file was not even sent to Ray
    assert "bad.mp4" in r.output
    with CorpusIndex.open(idx, None, read_only=True) as index:
        st = index.status()
        assert st.num_indexed == 3 and st.num_failed == 1
        assert index.get_video(vids / "bad.mp4").error
    r = runner.invoke(app, base + ["--json"])  # nothing left to do
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout[r.stdout.index("{"):])
    assert rep["unchanged"] == 3 and not rep["added"] and not rep["changed"]
