"""The videoseek CLI: encoders, info, seek --json / --sheet, settings from VIDEOSEEK_* and clear errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from agent_tools.cli import app

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_ENCODER", "tiny-untrained")
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    return tmp_path


def test_encoders_json():
    res = runner.invoke(app, ["encoders", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["tiny-untrained"]["trained"] is False and rows["tiny-untrained"]["weights_available"] is True
    assert rows["siglip-b16"]["model"] == "ViT-B-16-SigLIP"


def test_info_json(clip20):
    res = runner.invoke(app, ["info", str(clip20), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["frame_count"] == 200 and info["fps"] == 10.0


def test_seek_json_and_sheet(env, clip20):
    sheet = env / "sheet.png"
    res = runner.invoke(app, ["seek", str(clip20), "-q", "a red square", "--start", "2", "--end", "8", "-k", "4", "--json", "--sheet", str(sheet)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ts = [f["timestamp"] for f in out["frames"]]
    assert len(ts) == 4 and all(2 <= t <= 8 for t in ts) and ts == sorted(ts)
    assert out["encoder"] == "tiny-untrained" and out["encoder_trained"] is False
    img = Image.open(sheet)
    assert img.width > 4 * 300  # four 320-px tiles in one row


def test_seek_by_image(env, clip20, tmp_path):
    from agent_tools.video import open_video

    with open_video(clip20) as r:
        (_, rgb), = r.frames_at([9.0])
    Image.fromarray(rgb).save(tmp_path / "q.png")
    res = runner.invoke(app, ["seek", str(clip20), "--image", str(tmp_path / "q.png"), "-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["frames"][0]["timestamp"] == 9.0


def test_encoder_flag_beats_env(env, clip20, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_ENCODER", "siglip-b16")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x", "--json"])
    assert res.exit_code == 2 and "not available on this machine" in res.output
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x", "--encoder", "tiny-untrained", "--json"])
    assert res.exit_code == 0, res.output


def test_errors_are_one_clear_line(env, clip20, tmp_path):
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x", "--start", "30"])
    assert res.exit_code == 2 and "valid range" in res.output
    res = runner.invoke(app, ["seek", str(tmp_path / "nope.mp4"), "-q", "x"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x", "-k", "50"])
    assert res.exit_code == 2 and "from 1 to 8" in res.output
