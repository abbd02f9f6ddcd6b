"""Smoke test with the official MCP Inspector CLI (npm ``@modelcontextprotocol/inspector@0.15.0``).

Optional: it runs only where ``npx`` exists and the Inspector is already in the npm cache
(``npx --no-install``), so CI never waits on the network. ``VIDEOSEEK_TEST_INSPECTOR=1`` lets
npx download it (about 20-30 s the first time). 0.15.0 is the last release that runs on
Node 20; later ones need Node >= 22.19.

One ``tools/list`` and one ``tools/call`` of ``seek_video_frames`` against ``videoseek-mcp``
over stdio, the way a developer would check the server by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent_tools.synthetic import write_indexed_video

INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"

pytestmark = pytest.mark.slow


def _server_command() -> list[str]:
    script = Path(sys.executable).parent / "videoseek-mcp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_server"]


def _inspector(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx is not installed")
    install = ["-y"] if os.environ.get("VIDEOSEEK_TEST_INSPECTOR") == "1" else ["--no-install"]
    cmd = [npx, *install, INSPECTOR, "--cli", *_server_command(), *args]
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the Inspector did not finish in 240 s (network?)")
    if proc.returncode != 0 and (
        "missing packages" in proc.stderr
        or "ENOTFOUND" in proc.stderr
        or "EAI_AGAIN" in proc.stderr
        or "ETIMEDOUT" in proc.stderr
    ):
        pytest.skip(f"{INSPECTOR} is not available offline; set VIDEOSEEK_TEST_INSPECTOR=1 to fetch it")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_inspector_lists_and_calls(tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    write_indexed_video(root / "clip.mp4", duration=6, fps=10, size=(160, 120))
    env = {
        **os.environ,
        "VIDEOSEEK_ENCODER": "tiny-untrained",
        "VIDEOSEEK_DEVICE": "cpu",
        "VIDEOSEEK_MEDIA_ROOTS": str(root),
        "VIDEOSEEK_CACHE_DIR": str(tmp_path / "cache"),
        "VIDEOSEEK_INDEX_DIR": str(tmp_path / "index"),
        "HF_HUB_OFFLINE": "1",
    }
    listed = _inspector(["--method", "tools/list"], env, tmp_path)
    assert {t["name"] for t in listed["tools"]} >= {"seek_video_frames", "preview_video", "search_moments"}
    called = _inspector(
        [
            "--method",
            "tools/call",
            "--tool-name",
            "seek_video_frames",
            "--tool-arg",
            "video=clip.mp4",
            "--tool-arg",
            "query=a square",
            # no num_frames: Inspector 0.15's CLI sends every --tool-arg as a string, and the server's
            # integer arguments are strict ("2" is refused, as the library refuses it; issue 13)
        ],
        env,
        tmp_path,
    )
    assert called.get("isError") in (None, False), called
    images = [c for c in called["content"] if c["type"] == "image"]
    assert len(images) == 8 and all(c["mimeType"] == "image/jpeg" for c in images)  # default: max_frames
    assert len(called["structuredContent"]["frames"]) == 8  # agent_tools.types.FrameSelection
