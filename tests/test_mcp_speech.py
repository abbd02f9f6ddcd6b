"""Speech over MCP, through a real ``videoseek-mcp`` subprocess on stdio.

Two videos speak known sentences (espeak-ng); ``videoseek index`` indexes frames and speech;
then, over stdio: ``search_moments`` with a paraphrase returns the right video first with a
speech moment starting within 2 s of the sentence; ``search_transcript`` and ``get_transcript``
answer inside one video; the transcript resource lists the sentences; bad input is an error
result and the server keeps serving.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from typer.testing import CliRunner

from tests.test_speech import TALKS

pytestmark = [pytest.mark.slow]
TIMEOUT = 180


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def spoken_index(tmp_path_factory):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("sentence_transformers")
    from agent_tools.speech.models import asr_available
    from agent_tools.speech.synth import espeak_available, write_spoken_video

    if not espeak_available() or not asr_available():
        pytest.skip("needs espeak-ng and the speech extra")
    base = tmp_path_factory.mktemp("mcp-speech")
    root = base / "media"
    for i, (name, sentences, _) in enumerate(TALKS[:2]):
        write_spoken_video(root / name, 26.0, sentences, seed=60 + i)
    import typer

    from agent_tools.corpus.cli import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    env = {"VIDEOSEEK_CACHE_DIR": str(base / "cache"), "VIDEOSEEK_DEVICE": "cpu"}
    r = CliRunner().invoke(
        app, ["index", str(root), "--index", str(base / "index"), "--encoder", "tiny-untrained", "--json"], env=env
    )
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["speech"]["transcribed"]) == 2
    return base, root


def _params(base: Path, root: Path) -> StdioServerParameters:
    env = {
        "VIDEOSEEK_ENCODER": "tiny-untrained",
        "VIDEOSEEK_DEVICE": "cpu",
        "VIDEOSEEK_MEDIA_ROOTS": str(root),
        "VIDEOSEEK_CACHE_DIR": str(base / "cache"),
        "VIDEOSEEK_INDEX_DIR": str(base / "index"),
        "HF_HUB_OFFLINE": "1",
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server"], env=env, cwd=str(base))


@pytest.mark.anyio
async def test_speech_tools_over_stdio(spoken_index):
    base, root = spoken_index
    (name0, sentences0, query0), (name1, sentences1, _) = TALKS[0], TALKS[1]
    with open(base / "stderr.log", "w") as errlog:
        async with Client(stdio_client(_params(base, root), errlog=errlog), read_timeout_seconds=TIMEOUT) as client:
            res = await client.call_tool("search_moments", {"query": query0, "top_k": 3})
            assert not res.is_error, res.content
            top = res.structured_content["moments"][0]
            assert top["path"].endswith(name0) and top["source"] in ("speech", "both")
            assert abs(top["start"] - sentences0[0][0]) < 2.0 and top["text"]
            assert "said:" in res.content[-1].text

            res = await client.call_tool(
                "search_transcript", {"video": str(root / name1), "query": "car parks restricted while rebuilding"}
            )
            assert not res.is_error, res.content
            hit = res.structured_content["moments"][0]
            assert abs(hit["start"] - sentences1[1][0]) < 2.0 and hit["source"] == "speech"

            res = await client.call_tool("get_transcript", {"video": top["video_id"], "start_time": 0, "end_time": 10})
            assert not res.is_error, res.content
            segs = res.structured_content["segments"]
            assert segs and all(s["start"] <= 10 for s in segs) and "Travel" in res.content[0].text

            text = (await client.read_resource(f"videoseek://videos/{top['video_id']}/transcript")).contents[0].text
            assert len(text.splitlines()) == 2 and text.startswith("[")

            bad = await client.call_tool("search_transcript", {"video": str(root / name1), "query": "  "})
            assert bad.is_error and "empty" in bad.content[0].text
            bad = await client.call_tool("get_transcript", {"video": "/etc/passwd"})
            assert bad.is_error
            bad = await client.call_tool("get_transcript", {"video": str(root / name1), "start_time": "3"})
            assert bad.is_error
            ok = await client.call_tool("get_transcript", {"video": str(root / name1)})  # still serving
            assert not ok.is_error
