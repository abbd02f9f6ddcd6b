"""``videoseek index`` / ``videoseek search`` through a throwaway Typer app (``register(app)``)."""

from __future__ import annotations

import json

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from agent_tools.corpus.cli import register
from agent_tools.synthetic import write_indexed_video
from agent_tools.video import open_video


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keeps index/search as sub-commands
        pass

    register(app)
    return app


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_encoder):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    vids = tmp_path / "videos"
    vids.mkdir()
    for s in range(3):
        write_indexed_video(vids / f"c{s}.mp4", duration=8.0, fps=10, size=(96, 64), seed=10 + s)
    (vids / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    return tmp_path, vids


def test_index_status_search(app, env):
    tmp, vids = env
    runner = CliRunner()
    idx = str(tmp / "index")
    r = runner.invoke(app, ["index", str(vids), "--index", idx, "--encoder", "tiny-untrained", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert len(report["added"]) == 3 and list(report["failed"]) == [str(vids / "broken.mp4")]

    r = runner.invoke(app, ["index", "--index", idx, "--status", "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)
    assert st["num_indexed"] == 3 and st["num_failed"] == 1 and st["encoder"] == "tiny-untrained"
    assert st["failed"][0]["error"]

    r = runner.invoke(app, ["index", "--index", idx, "--status"])
    assert r.exit_code == 0 and "3 indexed, 1 failed" in r.stdout and "broken.mp4" in r.stdout

    # no PATH: re-scans the folders indexed before (nothing new)
    r = runner.invoke(app, ["index", "--index", idx, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["unchanged"] == 3

    # image query: a frame of c1 at 5 s
    with open_video(vids / "c1.mp4") as reader:
        ((t, rgb),) = reader.frames_at([5.0])
    png = tmp / "q.png"
    Image.fromarray(rgb).save(png)
    r = runner.invoke(app, ["search", "--image", str(png), "--index", idx, "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    first = res["moments"][0]
    assert res["query_kind"] == "image" and len(res["moments"]) == 3
    assert first["path"] == str(vids / "c1.mp4") and first["start"] <= t <= first["end"]

    r = runner.invoke(app, ["search", "a blue circle", "--index", idx, "--top", "2"])
    assert r.exit_code == 0, r.output
    assert "2 moments" in r.stdout


def test_cli_errors(app, env):
    tmp, vids = env
    runner = CliRunner()
    idx = str(tmp / "index")
    r = runner.invoke(app, ["search", "--index", idx])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = runner.invoke(app, ["search", "cats", "--index", idx])
    assert r.exit_code == 2 and "videoseek index PATH" in r.output  # empty index
    r = runner.invoke(app, ["index", "--index", idx, "--encoder", "tiny-untrained"])
    assert r.exit_code == 2 and "give the video files" in r.output
    r = runner.invoke(
        app, ["index", str(vids), "--index", idx, "--kind", "lsh", "--encoder", "tiny-untrained"]
    )
    assert r.exit_code == 2 and "auto, flat, ivf, hnsw" in r.output
