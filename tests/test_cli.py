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


# ----------------------------------------------------------------- issue 8: CLI friction


def test_invalid_env_value_is_one_line_naming_the_variable(env, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_SAMPLE_FPS", "fast")
    res = runner.invoke(app, ["encoders"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "VIDEOSEEK_SAMPLE_FPS='fast'" in lines[0] and "valid: a number > 0 and <= 30" in lines[0]
    monkeypatch.setenv("VIDEOSEEK_SAMPLE_FPS", "2")
    monkeypatch.setenv("VIDEOSEEK_VIDEO_BACKEND", "ffmpeg")
    res = runner.invoke(app, ["info", "x.mp4"])
    assert res.exit_code == 2 and "VIDEOSEEK_VIDEO_BACKEND='ffmpeg'" in res.output
    assert "one of auto, pyav, decord" in res.output and "Traceback" not in res.output


def test_missing_weights_error_says_how_to_select_the_test_encoder(env, clip20, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_ENCODER", "siglip-b16")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x"])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "--encoder tiny-untrained" in text and "VIDEOSEEK_ENCODER=tiny-untrained" in text


def test_window_is_checked_before_embedding(env, clip20):
    """A start past the end fails at once: nothing is embedded or cached for the video."""
    res = runner.invoke(app, ["seek", str(clip20), "-q", "x", "--start", "500"])
    assert res.exit_code == 2 and "at or after the end of the video" in res.output
    cache = env / "cache"
    stored = [p for p in cache.rglob("*") if p.is_file() and p.suffix in (".npy", ".json")] if cache.exists() else []
    assert stored == []


def test_list_shows_ids_status_and_paths(env, clip20, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    index = str(tmp_path / "index")
    res = runner.invoke(app, ["index", str(clip20), str(bad), "--index", index, "--no-progress"])
    assert res.exit_code == 0, res.output
    # one line per failed file (its reason may name the path again), no repeats, no decoder noise
    assert res.output.count("failed:") == 1 and "moov atom" not in res.output
    assert res.output.count("is untrained") == 1  # the untrained warning, once
    res = runner.invoke(app, ["list", "--index", index, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["path"]: r for r in json.loads(res.output[res.output.index("["):])}
    assert rows[str(clip20.resolve())]["status"] == "indexed" and rows[str(clip20.resolve())]["duration"] == 20.0
    assert rows[str(bad.resolve())]["status"] == "failed" and rows[str(bad.resolve())]["error"]
    ids = {r["video_id"] for r in rows.values()}
    assert len(ids) == 2 and all(len(i) == 12 for i in ids)
    res = runner.invoke(app, ["list", "--index", index, "--status", "indexed"])
    assert res.exit_code == 0 and rows[str(clip20.resolve())]["video_id"] in res.output
    assert "bad.mp4" not in res.output


@pytest.mark.slow
def test_sample_writes_the_readme_media_and_the_image_query_finds_its_slide(env, tmp_path):
    folder = tmp_path / "media"
    res = runner.invoke(app, ["sample", str(folder), "--seconds", "60"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in folder.iterdir()} == {"talk.mp4", "slide.png", "still.png"}
    res = runner.invoke(app, ["info", str(folder / "talk.mp4"), "--json"])
    assert json.loads(res.output[res.output.index("{"):])["duration"] == 60.0
    # slide.png is the picture of frame round(33 * 5): the scene shown from 20 s to 40 s
    res = runner.invoke(app, ["seek", str(folder / "talk.mp4"), "--image", str(folder / "slide.png"), "-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    best = json.loads(res.output[res.output.index("{"):])["frames"][0]["timestamp"]
    assert 20.0 <= best < 40.0


def test_piped_console_is_not_cut_at_80_columns(monkeypatch):
    import io

    from rich.table import Table

    from agent_tools._term import PIPE_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a TTY
    con = make_console()
    assert con.width == PIPE_WIDTH
    long_path = "/data/" + "very-long-folder-name/" * 8 + "talk.mp4"
    table = Table()
    table.add_column("path")
    table.add_row(long_path)
    with con.capture() as cap:
        con.print(table)
    assert long_path in cap.get()


def test_encoders_and_help_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from agent_tools.cli import app\n"
        "r = CliRunner().invoke(app, ['encoders', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'open_clip', 'transformers', 'torchvision') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_weights_status_hub_ids_match_open_clip():
    """The registry's hf_hub ids (which keep `encoders` free of open_clip) are open_clip's own."""
    open_clip = pytest.importorskip("open_clip")
    from agent_tools.encoders import list_encoders

    for spec in list_encoders():
        if spec.hf_hub:
            cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {}
            assert (cfg.get("hf_hub") or "").strip("/") == spec.hf_hub, spec.name


def test_demo_check_accepts_the_same_picture_elsewhere_and_rejects_a_different_one():
    """`make demo VIDEO=...`: a static stretch gives the probe several right answers (examples/demo.py)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("vs_demo", Path(__file__).resolve().parents[1] / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    slide = Image.new("RGB", (64, 48), (10, 200, 30))
    other = Image.new("RGB", (64, 48), (200, 10, 30))

    class Frames:
        def __init__(self, img):
            self.img = img

        def frames(self, video, timestamps):
            return [self.img for _ in timestamps]

    assert demo.image_match_ok(Frames(other), "v.mp4", slide, 50.0, 50.4)[0]  # near the probe: right
    assert demo.image_match_ok(Frames(slide), "v.mp4", slide, 50.0, 10.0)[0]  # same slide at 10 s: right
    ok, why = demo.image_match_ok(Frames(other), "v.mp4", slide, 50.0, 10.0)
    assert not ok and "looks different" in why
