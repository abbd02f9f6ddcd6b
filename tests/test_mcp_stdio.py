"""The MCP server as a real subprocess, driven by the SDK client (stdio and streamable HTTP).

- ``videoseek-mcp`` launched from ``examples/claude_desktop_config.json`` (command and env
  as a host would use them; only the placeholders and the test encoder are substituted):
  every tool, the resources, the bad-input table in one session, concurrent calls, the
  untrained-encoder banner on stderr.
- ``python -m mcp_server`` over stdio.
- ``videoseek-mcp --transport streamable-http`` bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from agent_tools.types import MomentSearchResult, VideoInfo
from tests.test_mcp_server import (
    BAD_INPUTS,
    TOOLS,
    build_index,
    check_frames,
    error_text,
    fill,
    make_media,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "claude_desktop_config.json"
TIMEOUT = 120  # seconds per request; the first call loads torch in the subprocess


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_encoder):
    """Media root, cache and a built index shared with the subprocesses."""
    base = tmp_path_factory.mktemp("mcp-stdio")
    root = make_media(base)
    build_index(base / "index", tiny_encoder, base / "cache", [root / "corpus"])
    return base, root


def console_script() -> list[str]:
    """The installed ``videoseek-mcp`` next to this interpreter, else ``python -m mcp_server``."""
    script = Path(sys.executable).parent / "videoseek-mcp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_server"]


def server_env(base: Path, root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "VIDEOSEEK_ENCODER": "tiny-untrained",
        "VIDEOSEEK_DEVICE": "cpu",
        "VIDEOSEEK_MEDIA_ROOTS": str(root),
        "VIDEOSEEK_CACHE_DIR": str(base / "cache"),
        "VIDEOSEEK_INDEX_DIR": str(base / "index"),
        "HF_HUB_OFFLINE": "1",
    }
    env.update(extra or {})
    return env


def desktop_params(base: Path, root: Path) -> StdioServerParameters:
    """The example Claude Desktop entry, with its placeholders filled for this test."""
    entry = json.loads(CONFIG.read_text())["mcpServers"]["videoseek"]
    # the pip-installed console script, wherever it is installed; never a path into a Makefile venv
    assert entry["command"].endswith("/videoseek-mcp") and ".venv" not in entry["command"]
    env = dict(entry["env"])
    assert all(k.startswith("VIDEOSEEK_") or k == "HF_HUB_OFFLINE" for k in env)
    env.update(server_env(base, root))  # roots, caches, and the test encoder instead of siglip-b16
    cmd = console_script()
    return StdioServerParameters(command=cmd[0], args=cmd[1:] + entry["args"], env=env, cwd=str(base))


@pytest.mark.anyio
async def test_stdio_session_from_the_desktop_config(corpus):
    base, root = corpus
    errlog_path = base / "stderr.log"
    params = desktop_params(base, root)
    timings: dict[str, float] = {}
    with open(errlog_path, "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=TIMEOUT) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert tools == TOOLS

            t0 = time.perf_counter()
            seek = await client.call_tool(
                "seek_video_frames", {"video": "clip.mp4", "query": "a striped scene"}
            )
            timings["seek (embeds the video)"] = time.perf_counter() - t0
            assert len(check_frames(seek)) == 8
            t0 = time.perf_counter()
            again = await client.call_tool(
                "seek_video_frames", {"video": "clip.mp4", "query": "x", "start_time": 6, "end_time": 8}
            )
            timings["seek (cached)"] = time.perf_counter() - t0
            assert all(6 <= t <= 8 for t in check_frames(again))

            preview = await client.call_tool("preview_video", {"video": "clip.mp4", "num_frames": 4})
            assert check_frames(preview) == [2.5, 7.5, 12.5, 17.5]
            info = await client.call_tool("video_info", {"video": "clip.mp4"})
            assert VideoInfo.model_validate(info.structured_content).frame_count == 200

            listing = await client.call_tool("list_videos", {})
            assert listing.structured_content["total"] == 2
            vid = listing.structured_content["videos"][0]["video_id"]
            t0 = time.perf_counter()
            moments = await client.call_tool("search_moments", {"query": "a bright square", "top_k": 3})
            timings["search_moments"] = time.perf_counter() - t0
            assert moments.structured_content["moments"], moments.content
            MomentSearchResult.model_validate(moments.structured_content)
            by_id = await client.call_tool("seek_video_frames", {"video": vid, "query": "x", "num_frames": 3})
            assert len(check_frames(by_id)) == 3 and by_id.structured_content["video"] == vid
            uniform = await client.call_tool(
                "seek_video_frames", {"video": "clip.mp4", "query": "", "start_time": 4, "end_time": 12}
            )
            assert len(check_frames(uniform)) == 8 and uniform.structured_content["method"] == "uniform"
            status = json.loads((await client.read_resource("videoseek://index/status")).contents[0].text)
            assert status["available"] and status["index"]["num_indexed"] == 2

            for tool, args, expected in BAD_INPUTS:
                if tool in ("search_moments", "list_videos") and expected == "videoseek index":
                    continue  # this server has an index
                assert expected in error_text(await client.call_tool(tool, fill(args, root))), (tool, args)

            results: dict[int, object] = {}
            calls = [
                ("seek_video_frames", {"video": "clip.mp4", "query": "a", "end_time": 10}),
                ("seek_video_frames", {"video": "corpus/b.mp4", "query": "b", "num_frames": 4}),
                ("preview_video", {"video": "corpus/a.mp4", "num_frames": 3}),
                ("search_moments", {"query": "c"}),
                ("video_info", {"video": "corrupt.mp4"}),
                ("seek_video_frames", {"video": "../outside/secret.mp4", "query": "x"}),
            ]

            async def call(i: int, tool: str, args: dict) -> None:
                results[i] = await client.call_tool(tool, args)

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i, (tool, args) in enumerate(calls):
                    tg.start_soon(call, i, tool, args)
            timings["6 concurrent calls"] = time.perf_counter() - t0
            assert all(t <= 10 for t in check_frames(results[0]))
            assert len(check_frames(results[1])) == 4 and len(check_frames(results[2])) == 3
            assert not results[3].is_error
            assert "cannot read video" in error_text(results[4]) and "'..'" in error_text(results[5])

            # still serving after all of that
            assert len(check_frames(await client.call_tool("preview_video", {"video": "clip.mp4"}))) == 8
    log = errlog_path.read_text()
    assert "UNTRAINED" in log and "videoseek-mcp ready" in log
    print("stdio timings:", {k: round(v, 3) for k, v in timings.items()})


@pytest.mark.anyio
async def test_python_dash_m(corpus):
    base, root = corpus
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_server"], env=server_env(base, root), cwd=str(base)
    )
    async with Client(params, read_timeout_seconds=TIMEOUT) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        info = await client.call_tool("video_info", {"video": "clip.mp4"})
    assert info.structured_content["duration"] == 20.0


@pytest.mark.anyio
async def test_bad_encoder_is_reported_by_the_tools(corpus):
    base, root = corpus
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_server"],
        env=server_env(base, root, {"VIDEOSEEK_ENCODER": "no-such-encoder"}),
        cwd=str(base),
    )
    async with Client(params, read_timeout_seconds=TIMEOUT) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        result = await client.call_tool("preview_video", {"video": "clip.mp4"})
    assert "no-such-encoder" in error_text(result)


def test_invalid_settings_fail_with_one_line(corpus):
    base, root = corpus
    env = {**os.environ, **server_env(base, root, {"VIDEOSEEK_MAX_FRAMES": "1000"})}
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_server"],
        env=env,
        cwd=base,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and proc.stdout == ""  # stdout is the protocol wire
    assert (
        proc.stderr.startswith("videoseek-mcp: invalid configuration")
        and "VIDEOSEEK_MAX_FRAMES" in proc.stderr
    )


def _listening_hosts(port: int) -> list[str] | None:
    """Local addresses of the TCP sockets listening on ``port``, from ``/proc/net`` (Linux) or
    ``ss``; ``None`` where neither is available."""
    proc_net = Path("/proc/net/tcp")
    if proc_net.exists():
        hosts = []
        for line in proc_net.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN; address in little-endian hex
                hosts.append(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
        tcp6 = Path("/proc/net/tcp6")
        for line in (tcp6.read_text().splitlines()[1:] if tcp6.exists() else []):
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                hosts.append(f"[{addr}]")  # any IPv6 listener is unexpected: the default is 127.0.0.1
        return hosts
    if shutil.which("ss"):
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        local = [ln.split()[3] for ln in out.splitlines()]
        return [addr.rsplit(":", 1)[0] for addr in local if addr.endswith(f":{port}")]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.anyio
async def test_streamable_http_on_localhost(corpus):
    base, root = corpus
    port = _free_port()
    env = {**os.environ, **server_env(base, root)}
    proc = subprocess.Popen(
        console_script() + ["--transport", "streamable-http", "--port", str(port)],
        env=env,
        cwd=base,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start listening"
                await anyio.sleep(0.25)
        hosts = _listening_hosts(port)
        if hosts is not None:  # bound to the loopback address only, never to all interfaces
            assert hosts and set(hosts) <= {"127.0.0.1"}, hosts
        async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=TIMEOUT) as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = await client.call_tool(
                "seek_video_frames", {"video": "clip.mp4", "query": "x", "num_frames": 2}
            )
        assert len(check_frames(result)) == 2
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
