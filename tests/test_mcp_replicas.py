"""Two MCP server replicas over streamable HTTP serve one shared corpus index at the same time.

The scale-out shape for serving (README "Scale"): several ``videoseek-mcp --transport
streamable-http`` processes, each opening the same index read-only, behind a load balancer.
Here two processes on two loopback ports get the same ``search_moments`` call concurrently and
must give the same answer, equal to the in-process :class:`MomentSearcher` over that index; the
index files are not modified by serving.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import anyio
import pytest
from mcp import Client

from agent_tools.types import MomentSearchResult
from tests.test_mcp_server import build_index, make_media
from tests.test_mcp_stdio import TIMEOUT, _free_port, console_script, server_env

pytestmark = pytest.mark.slow  # two subprocesses, each importing torch


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _digest(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes(), digest_size=8).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "sqlite-" not in p.name and not p.name.endswith(".lock")
    }


async def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    import socket

    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "server did not start listening"
            await anyio.sleep(0.25)


@pytest.mark.anyio
async def test_two_http_replicas_answer_the_same_search_concurrently(tmp_path, tiny_encoder):
    from agent_tools.corpus import CorpusIndex, MomentSearcher

    root = make_media(tmp_path)
    build_index(tmp_path / "index", tiny_encoder, tmp_path / "cache", [root / "corpus"])
    before = _digest(tmp_path / "index")
    env = {**os.environ, **server_env(tmp_path, root)}
    ports = [_free_port(), _free_port()]
    while ports[1] == ports[0]:
        ports[1] = _free_port()
    procs = [
        subprocess.Popen(
            console_script() + ["--transport", "streamable-http", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    query = {"query": "a bright square", "top_k": 4}
    try:
        for proc, port in zip(procs, ports):
            await _wait_listening(proc, port)
        answers: dict[int, list] = {}

        async def ask(port: int) -> None:
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=TIMEOUT) as client:
                got = []
                for _ in range(3):  # a few calls each, interleaved with the other replica's
                    res = await client.call_tool("search_moments", query)
                    got.append(MomentSearchResult.model_validate(res.structured_content))
                answers[port] = got

        async with anyio.create_task_group() as tg:
            for port in ports:
                tg.start_soon(ask, port)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    key = lambda r: [(m.video_id, m.start, m.end, round(m.score, 5)) for m in r.moments]
    a, b = (answers[p] for p in ports)
    assert a[0].moments and all(key(r) == key(a[0]) for r in a + b)
    # the same answer as searching the index in this process
    with CorpusIndex.open(tmp_path / "index", tiny_encoder, read_only=True) as idx:
        local = MomentSearcher(idx, tiny_encoder).search(query["query"], top_k=4)
    assert [(m.video_id, m.start, m.end) for m in local.moments] == [(m.video_id, m.start, m.end) for m in a[0].moments]
    assert _digest(tmp_path / "index") == before  # serving never wrote to the shared index
