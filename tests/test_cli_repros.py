"""Issue 13 item 9 on ``videoseek seek``: ``--image`` that is a device, ``--sheet`` that is a folder,
and the contact sheet of a large clip built from downscaled frames."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import agent_tools.render as render
from agent_tools.cli import app
from agent_tools.synthetic import write_indexed_video

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_ENCODER", "tiny-untrained")
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    return tmp_path


def test_image_query_that_is_a_device_or_folder(env, clip20):
    for image in ("/dev/zero", str(env)):
        r = runner.invoke(app, ["seek", str(clip20), "--image", image])
        assert r.exit_code == 2, r.output
        assert "not a regular file" in r.output or "is a folder" in r.output
        assert "Traceback" not in r.output


def test_sheet_to_a_folder_is_a_clear_error(env, clip20):
    r = runner.invoke(app, ["seek", str(clip20), "-q", "x", "--sheet", str(env)])
    assert r.exit_code == 2 and "is a folder" in r.output and r.exception.__class__ is SystemExit


def test_sheet_of_a_large_clip_uses_downscaled_frames(env, monkeypatch):
    """A 1920x1920 clip: the frames handed to the sheet are at most 640 px (not 8 full frames)."""
    big = write_indexed_video(env / "big.mp4", duration=1.0, fps=4, size=(1920, 1920), seed=3)
    seen = []
    real = render.contact_sheet

    def spy(images, timestamps, **kw):
        seen.extend(im.size for im in images)
        return real(images, timestamps, **kw)

    monkeypatch.setattr(render, "contact_sheet", spy)
    r = runner.invoke(app, ["seek", str(big), "-q", "x", "-k", "4", "--sheet", str(env / "s.png")])
    assert r.exit_code == 0, r.output
    assert seen and max(max(s) for s in seen) <= 640
    assert (env / "s.png").is_file()


def test_huge_query_is_refused_by_the_library_not_echoed(env, clip20):
    """Issue 13 item 4 below the MCP surface: ``TemporalSearcher.seek`` bounds the text query."""
    r = runner.invoke(app, ["seek", str(clip20), "-q", "z" * 50_000])
    assert r.exit_code == 2 and "VIDEOSEEK_MAX_QUERY_CHARS" in r.output and len(r.output) < 1000
