"""The MCP server through the SDK's in-memory client, on the real engines and the tiny encoder.

- the tool contract: names, argument names, bounds, output schemas (the shared models of
  :mod:`agent_tools.types`), resources;
- every tool called on synthetic videos whose frames paint their own index: the returned
  JPEGs are decoded and their painted index checked against the timestamps, and the structured
  output validates as the shared model (``FrameSelection``, ``MomentSearchResult``, ``VideoInfo``);
- ``seek_video_frames``' structured output equals what ``TemporalSearcher.seek`` returns for
  the same call, and an empty query samples the window uniformly;
- a table of bad inputs, each an ``isError`` result that says what is valid;
- several concurrent calls, progress notifications, the payload budget, the untrained-encoder
  warning, and an index that appears (and changes) while the server runs.

Helpers (:func:`make_media`, :func:`frame_pairs`, :func:`check_frames`, :func:`server_settings`,
:func:`build_index`, :func:`facts_text`, :data:`BAD_INPUTS`) are shared with ``test_mcp_stdio.py``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, TextContent
from PIL import Image

from agent_tools.config import Settings, get_settings
from agent_tools.synthetic import read_frame_index, write_indexed_video
from agent_tools.temporal import TemporalSearcher
from agent_tools.types import FrameSelection, MomentSearchResult, VideoInfo, VideoRecord
from mcp_server.server import build_server

FPS = 10.0
TOOLS = {
    "seek_video_frames", "preview_video", "video_info", "list_videos", "search_moments",
    "search_transcript", "get_transcript",
}


@pytest.fixture
def anyio_backend():
    return "asyncio"


# --------------------------------------------------------------------------- helpers


def make_media(base: Path) -> Path:
    """A media root with videos, bad files and a symlink that escapes; returns the root.

    root/clip.mp4            20 s, 10 fps, 160x120 (frame i paints index i)
    root/corpus/a.mp4        12 s   (indexed by :func:`build_index`)
    root/corpus/b.mp4        16 s
    root/bad/broken.mp4      random bytes (a failed index entry)
    root/corrupt.mp4, root/empty.mp4, root/notes.txt, root/sub/ (a folder)
    root/escape.mp4 -> base/outside/secret.mp4 (a real video outside the root)
    """
    root = base / "media"
    (root / "corpus").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "sub").mkdir()
    write_indexed_video(root / "clip.mp4", duration=20, fps=FPS, size=(160, 120), seed=1)
    write_indexed_video(root / "corpus" / "a.mp4", duration=12, fps=FPS, size=(160, 120), seed=2)
    write_indexed_video(root / "corpus" / "b.mp4", duration=16, fps=FPS, size=(160, 120), seed=3)
    rng = np.random.default_rng(0)
    (root / "bad" / "broken.mp4").write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    (root / "corrupt.mp4").write_bytes(
        b"\x00\x00\x00\x18ftypmp42" + rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes()
    )
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video\n")
    outside = base / "outside"
    outside.mkdir()
    write_indexed_video(outside / "secret.mp4", duration=4, fps=FPS, size=(160, 120), seed=9)
    os.symlink(outside / "secret.mp4", root / "escape.mp4")
    return root


def server_settings(base: Path, root: Path, index_dir: Path, **kw: Any) -> Settings:
    """Settings for a test server: tiny encoder on CPU, caches under ``base``."""
    return get_settings(
        encoder="tiny-untrained",
        device="cpu",
        cache_dir=base / "cache",
        index_dir=index_dir,
        media_roots=[root],
        max_frames=8,
        allow_urls=False,
        **kw,
    )


def build_index(index_dir: Path, encoder: Any, cache_dir: Path, paths: list[Path]) -> Any:
    """Index ``paths`` with the real corpus builder (what ``videoseek index`` does)."""
    from agent_tools.corpus import CorpusIndex
    from agent_tools.store import FrameEmbeddingStore

    store = FrameEmbeddingStore(cache_dir, encoder, sample_fps=2.0)
    index = CorpusIndex.open(index_dir, encoder, store=store)
    try:
        return index.update(paths)
    finally:
        index.close()


def frame_pairs(result: CallToolResult) -> list[tuple[str, np.ndarray]]:
    """``(timestamp text, decoded RGB frame)`` for each image, which must follow its text."""
    pairs = []
    content = result.content
    for i, block in enumerate(content):
        if isinstance(block, ImageContent):
            assert block.mime_type == "image/jpeg"
            raw = base64.b64decode(block.data)
            assert raw[:2] == b"\xff\xd8", "not a JPEG"
            prev = content[i - 1]
            assert isinstance(prev, TextContent) and prev.text.startswith("Frame at "), prev
            pairs.append((prev.text, np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))))
    return pairs


def check_frames(result: CallToolResult, fps: float = FPS) -> list[float]:
    """Assert the structured output is a FrameSelection whose frames are exactly the images sent,
    each image showing the frame its timestamp names; returns the timestamps."""
    assert not result.is_error, result.content
    selection = FrameSelection.model_validate(result.structured_content)
    assert all(f.image is None for f in selection.frames)
    assert all("image" not in f for f in result.structured_content["frames"])  # never serialised
    ts = selection.timestamps
    pairs = frame_pairs(result)
    assert len(pairs) == len(ts) > 0
    assert ts == sorted(ts)
    for t, (text, rgb) in zip(ts, pairs, strict=True):
        assert text.startswith(f"Frame at {t:.1f}s"), (text, t)
        assert abs(t * fps - round(t * fps)) < 1e-3, f"{t} is not a frame time"
        assert abs(read_frame_index(rgb) - round(t * fps)) <= 1, (read_frame_index(rgb), t)
    return ts


def texts(result: CallToolResult) -> list[str]:
    return [b.text for b in result.content if isinstance(b, TextContent)]


def facts_text(result: CallToolResult) -> str:
    """The text block with what only the MCP surface knows (file, index status, JPEG encoding)."""
    found = [t for t in texts(result) if t.startswith("Video file ")]
    assert len(found) == 1, texts(result)
    return found[0]


def sent_base64(result: CallToolResult) -> int:
    """Base64 characters of the images, as the facts text states them (checked against the images)."""
    match = re.search(r"(\d+) base64 characters in all", facts_text(result))
    assert match, facts_text(result)
    stated = int(match.group(1))
    assert stated == sum(len(b.data) for b in result.content if isinstance(b, ImageContent))
    return stated


def error_text(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content}"
    assert result.content and isinstance(result.content[0], TextContent)
    return result.content[0].text


# Bad inputs: (tool, arguments, substring of the error). `{root}`/`{outside}` are filled in.
BAD_INPUTS: list[tuple[str, dict, str]] = [
    ("seek_video_frames", {"video": "nope.mp4", "query": "x"}, "no video file 'nope.mp4'"),
    ("seek_video_frames", {"video": "0123456789ab", "query": "x"}, "media root"),
    ("seek_video_frames", {"video": "../outside/secret.mp4", "query": "x"}, "'..'"),
    ("seek_video_frames", {"video": "sub/../clip.mp4", "query": "x"}, "'..'"),
    ("seek_video_frames", {"video": "{outside}/secret.mp4", "query": "x"}, "outside the allowed media roots"),
    ("seek_video_frames", {"video": "escape.mp4", "query": "x"}, "outside the allowed media roots"),
    ("seek_video_frames", {"video": "/etc/passwd", "query": "x"}, "outside the allowed media roots"),
    ("seek_video_frames", {"video": "https://example.com/v.mp4", "query": "x"}, "URLs are disabled"),
    ("seek_video_frames", {"video": "file:///etc/passwd", "query": "x"}, "scheme 'file'"),
    ("seek_video_frames", {"video": "sub", "query": "x"}, "folder"),
    ("seek_video_frames", {"video": "", "query": "x"}, "non-empty"),
    ("seek_video_frames", {"video": "clip.mp4"}, "query is required"),
    ("seek_video_frames", {"video": 123, "query": "x"}, "valid string"),
    ("seek_video_frames", {"video": "clip.mp4", "query": None}, "valid string"),
    (
        "seek_video_frames",
        {"video": "clip.mp4", "query": "x", "start_time": -1},
        "greater than or equal to 0",
    ),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "end_time": -5}, "greater than 0"),
    (
        "seek_video_frames",
        {"video": "clip.mp4", "query": "x", "start_time": 10, "end_time": 5},
        "must be less than end_time",
    ),
    (
        "seek_video_frames",
        {"video": "clip.mp4", "query": "x", "start_time": 7, "end_time": 7},
        "must be less than end_time",
    ),
    (
        "seek_video_frames",
        {"video": "clip.mp4", "query": "x", "start_time": 25},
        "after the end of the video",
    ),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "start_time": "abc"}, "valid number"),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "num_frames": 0}, "greater than or equal to 1"),
    (
        "seek_video_frames",
        {"video": "clip.mp4", "query": "x", "num_frames": 10_000},
        "less than or equal to 8",
    ),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "num_frames": 2.5}, "valid integer"),
    # issue 13 item 9: strict like the library - a JSON true or the string "8" is not a count
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "num_frames": True}, "num_frames = True"),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "num_frames": "8"}, "num_frames = '8'"),
    ("seek_video_frames", {"video": "clip.mp4", "query": "x", "start_time": True}, "start_time = True"),
    ("preview_video", {"video": "clip.mp4", "num_frames": "8"}, "valid integer"),
    ("search_moments", {"query": "a dog", "top_k": True}, "top_k = True"),
    ("list_videos", {"limit": "5"}, "limit = '5'"),
    # issue 13 item 4: bounded query, echoed only in part
    ("seek_video_frames", {"video": "clip.mp4", "query": "q" * 1_000_000}, "VIDEOSEEK_MAX_QUERY_CHARS"),
    ("search_moments", {"query": "q" * 1_000_000}, "1000000 characters long"),
    ("seek_video_frames", {"video": "corrupt.mp4", "query": "x"}, "cannot read video"),
    ("seek_video_frames", {"video": "empty.mp4", "query": "x"}, "empty"),
    # A text file: the decoders' message differs (see the report on decord's raw RuntimeError),
    # but the error must name the file.
    ("seek_video_frames", {"video": "notes.txt", "query": "x"}, "notes.txt'"),
    ("preview_video", {"video": "clip.mp4", "num_frames": 0}, "greater than or equal to 1"),
    ("preview_video", {"video": "clip.mp4", "num_frames": 10_000}, "less than or equal to 8"),
    ("preview_video", {"video": "corrupt.mp4"}, "cannot read video"),
    ("preview_video", {"video": "escape.mp4"}, "outside the allowed media roots"),
    ("video_info", {"video": "corrupt.mp4"}, "cannot read video"),
    ("video_info", {"video": "  "}, "non-empty"),
    ("video_info", {}, "video is required"),
    ("search_moments", {"query": "a dog"}, "videoseek index"),
    ("search_moments", {"query": ""}, "query must describe"),
    ("search_moments", {"query": "   "}, "a non-empty string"),
    ("search_moments", {"query": "a dog", "top_k": 0}, "greater than or equal to 1"),
    ("list_videos", {}, "videoseek index"),
    ("list_videos", {"status": "bogus"}, "'indexed', 'pending' or 'failed'"),
    ("list_videos", {"limit": 0}, "greater than or equal to 1"),
    ("no_such_tool", {}, "Unknown tool"),
]


def fill(args: dict, root: Path) -> dict:
    """Fill the ``{outside}`` placeholder of a BAD_INPUTS row."""
    outside = str(root.parent / "outside")
    return {k: v.replace("{outside}", outside) if isinstance(v, str) else v for k, v in args.items()}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    base = tmp_path_factory.mktemp("mcp")
    return base, make_media(base)


@pytest.fixture(scope="module")
def server(media, tiny_encoder):
    """A server with media roots and no corpus index."""
    base, root = media
    return build_server(server_settings(base, root, base / "no-index"), encoder=tiny_encoder)


@pytest.fixture(scope="module")
def indexed(media, tiny_encoder):
    """A server over a corpus index of root/corpus (two videos)."""
    base, root = media
    report = build_index(base / "index", tiny_encoder, base / "cache", [root / "corpus"])
    assert len(report.added) == 2 and not report.failed, report
    return build_server(server_settings(base, root, base / "index"), encoder=tiny_encoder)


# --------------------------------------------------------------------------- contract


@pytest.mark.anyio
async def test_tool_contract(server):
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    seek = tools["seek_video_frames"]
    props = seek.input_schema["properties"]
    assert list(props) == ["video", "query", "start_time", "end_time", "num_frames"]
    assert seek.input_schema["required"] == ["video", "query"]
    nf = props["num_frames"]["anyOf"][0]
    assert (nf["minimum"], nf["maximum"]) == (1, 8)
    assert props["start_time"]["anyOf"][0]["minimum"] == 0
    assert "temporal window" in seek.description and "seconds" in seek.description
    assert "\n    " not in seek.description  # docstrings are dedented for the model
    assert "empty string returns frames evenly spaced" in props["query"]["description"]
    # The output schemas are the shared models of agent_tools.types.
    for name, model in [
        ("seek_video_frames", FrameSelection),
        ("preview_video", FrameSelection),
        ("search_moments", MomentSearchResult),
        ("video_info", VideoInfo),
    ]:
        schema = tools[name].output_schema
        assert schema["title"] == model.__name__
        assert set(schema["properties"]) == set(model.model_fields), name
    assert {"frames", "video", "start_time", "end_time", "method", "encoder_trained"} <= set(
        seek.output_schema["properties"]
    )
    hit = seek.output_schema["$defs"]["FrameHit"]
    assert {"timestamp", "score", "relevance"} <= set(hit["properties"]) and "image" not in hit.get(
        "required", []
    )
    page = tools["list_videos"].output_schema
    assert {"total", "offset", "next_offset", "videos"} == set(page["properties"])
    assert page["$defs"]["VideoRecord"]["properties"].keys() == VideoRecord.model_fields.keys()
    assert list(tools["preview_video"].input_schema["properties"]) == ["video", "num_frames"]
    assert list(tools["search_moments"].input_schema["properties"]) == ["query", "top_k", "video"]
    assert tools["search_moments"].input_schema["required"] == ["query"]
    assert tools["video_info"].input_schema["required"] == ["video"]
    for tool in tools.values():
        assert tool.output_schema is not None and tool.description
        assert tool.annotations.read_only_hint is True
        for name, prop in tool.input_schema["properties"].items():
            assert prop.get("description"), f"{tool.name}.{name} has no description"


@pytest.mark.anyio
async def test_resources_listed(server):
    async with Client(server) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        status = json.loads((await client.read_resource("videoseek://index/status")).contents[0].text)
        videos = json.loads((await client.read_resource("videoseek://videos")).contents[0].text)
    assert uris == {"videoseek://videos", "videoseek://index/status"}
    assert templates == {"videoseek://videos/{video_id}", "videoseek://videos/{video_id}/transcript"}
    assert status["available"] is False and "videoseek index" in status["message"]
    assert status["encoder"] == "tiny-untrained" and status["encoder_trained"] is False
    assert videos == {"available": False, "message": status["message"], "videos": []}


# --------------------------------------------------------------------------- tools


@pytest.mark.anyio
async def test_seek_whole_video(server, media):
    _, root = media
    async with Client(server) as client:
        result = await client.call_tool(
            "seek_video_frames", {"video": "clip.mp4", "query": "a bright square on a striped background"}
        )
    ts = check_frames(result)
    sc = result.structured_content
    assert len(ts) == 8 and len(set(ts)) == 8
    assert (sc["start_time"], sc["end_time"], sc["duration"]) == (0.0, 20.0, 20.0)
    assert sc["video"] == "clip.mp4"  # not indexed: the reference as given
    assert sc["query"] == "a bright square on a striped background" and sc["query_kind"] == "text"
    assert sc["method"] == "dpp" and sc["num_candidates"] == 40 and sc["sample_fps"] == 2.0
    assert sc["encoder"] == "tiny-untrained" and sc["encoder_trained"] is False
    assert all(isinstance(f["score"], float) and isinstance(f["relevance"], float) for f in sc["frames"])
    facts = facts_text(result)
    assert str((root / "clip.mp4").resolve()) in facts and "not in the corpus index" in facts
    assert 0 < sent_base64(result) and "JPEG quality 80" in facts and "reduced" not in facts
    lines = texts(result)
    assert "untrained" in lines[0]
    assert lines[-2].startswith("These frames are at ") and lines[-1] == facts


@pytest.mark.anyio
async def test_seek_window_and_open_end(server, media):
    _, root = media
    async with Client(server) as client:
        inside = await client.call_tool(
            "seek_video_frames",
            {
                "video": str(root / "clip.mp4"),
                "query": "the moving square",
                "start_time": 5,
                "end_time": 9,
                "num_frames": 3,
            },
        )
        open_end = await client.call_tool(
            "seek_video_frames",
            {"video": "clip.mp4", "query": "anything", "start_time": 12, "end_time": 65535},
        )
        narrow = await client.call_tool(
            "seek_video_frames", {"video": "clip.mp4", "query": "x", "start_time": 4.1, "end_time": 4.2}
        )
    ts = check_frames(inside)
    assert len(ts) == 3 and all(5 <= t <= 9 for t in ts)
    assert (inside.structured_content["start_time"], inside.structured_content["end_time"]) == (5.0, 9.0)
    ts = check_frames(open_end)
    assert open_end.structured_content["end_time"] == 20.0 and all(12 <= t < 20 for t in ts)
    ts = check_frames(narrow)  # narrower than the 0.5 s sampling step: the nearest sampled frame
    assert len(ts) == 1 and abs(ts[0] - 4.0) <= 0.5


@pytest.mark.anyio
@pytest.mark.parametrize(
    "args",
    [
        {"query": "a bright square on a striped background"},
        {"query": "  the moving square ", "start_time": 3.3, "end_time": 14, "num_frames": 5},
        {"query": "x", "start_time": 15, "end_time": 1000, "num_frames": 1},
        {"query": "", "start_time": 2, "end_time": 11},
    ],
)
async def test_seek_output_is_what_the_temporal_searcher_returns(server, media, tiny_encoder, args):
    """The structured output is the shared FrameSelection: the same object TemporalSearcher.seek gives."""
    base, root = media
    async with Client(server) as client:
        result = await client.call_tool("seek_video_frames", {"video": "clip.mp4", **args})
    ts = check_frames(result)
    got = FrameSelection.model_validate(result.structured_content)
    searcher = TemporalSearcher(tiny_encoder, settings=server_settings(base, root, base / "no-index"))
    want = searcher.seek(
        root / "clip.mp4",
        args["query"],
        start_time=args.get("start_time"),
        end_time=args.get("end_time"),
        num_frames=args.get("num_frames"),
        video_id="clip.mp4",
    )
    assert ts == want.timestamps
    assert [f.score for f in got.frames] == [f.score for f in want.frames]
    assert [f.relevance for f in got.frames] == [f.relevance for f in want.frames]
    assert (got.start_time, got.end_time, got.duration) == (want.start_time, want.end_time, want.duration)
    assert got == want  # every field: video, query, kind, method, candidates, encoder, sample_fps, frames


@pytest.mark.anyio
async def test_seek_empty_query_samples_the_window_uniformly(server, media, tiny_encoder):
    """An empty or blank query is TimeSearch-R's uniform sampling of the window, not an error."""
    base, root = media
    searcher = TemporalSearcher(tiny_encoder, settings=server_settings(base, root, base / "no-index"))
    async with Client(server) as client:
        whole = await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": ""})
        window = await client.call_tool(
            "seek_video_frames",
            {"video": "clip.mp4", "query": "   ", "start_time": 4, "end_time": 12, "num_frames": 4},
        )
    for result, (start, end, k) in ((whole, (0.0, 20.0, 8)), (window, (4.0, 12.0, 4))):
        ts = check_frames(result)  # the painted frames match the timestamps
        sc = result.structured_content
        assert (sc["method"], sc["query_kind"], sc["query"]) == ("uniform", "none", None)
        assert (sc["start_time"], sc["end_time"]) == (start, end)
        assert all(f["score"] is None and f["relevance"] is None for f in sc["frames"])
        assert len(ts) == k and ts[0] == start and end - 0.5 <= ts[-1] <= end  # first and last candidates
        steps = np.diff(ts)
        assert steps.max() - steps.min() <= 0.5 + 1e-9  # evenly spaced, up to the 0.5 s sampling step
        assert ts == searcher.seek(root / "clip.mp4", None, start, end, k).timestamps
        lines = texts(result)
        assert lines[1].startswith(f"{k} evenly spaced frames of clip.mp4 (empty query) in [")
        assert not any("score" in t for t in lines if t.startswith("Frame at "))


@pytest.mark.anyio
async def test_preview_and_info(server, media):
    async with Client(server) as client:
        preview = await client.call_tool("preview_video", {"video": "clip.mp4", "num_frames": 4})
        default = await client.call_tool("preview_video", {"video": "clip.mp4"})
        info = await client.call_tool("video_info", {"video": "clip.mp4"})
    ts = check_frames(preview)
    assert ts == [2.5, 7.5, 12.5, 17.5]
    sc = preview.structured_content
    assert sc["duration"] == 20.0 and sc["video"] == "clip.mp4"
    assert (sc["method"], sc["query_kind"], sc["query"]) == ("uniform", "none", None)
    assert (sc["start_time"], sc["end_time"]) == (0.0, 20.0)
    assert "20.0s" in preview.content[0].text
    assert "not in the corpus index" in facts_text(preview) and sent_base64(preview) > 0
    assert len(check_frames(default)) == 8
    sc = info.structured_content
    assert not info.is_error
    assert VideoInfo.model_validate(sc).path == str((media[1] / "clip.mp4").resolve())
    assert (sc["duration"], sc["fps"], sc["frame_count"], sc["width"], sc["height"]) == (
        20.0,
        10.0,
        200,
        160,
        120,
    )
    assert sc["codec"] == "h264" and set(sc) == set(VideoInfo.model_fields)
    assert json.loads(info.content[0].text)["frame_count"] == 200
    assert info.content[1].text == "clip.mp4 is not in the corpus index."


@pytest.mark.anyio
@pytest.mark.parametrize(
    "tool,args,expected", BAD_INPUTS, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(BAD_INPUTS)]
)
async def test_bad_input(server, media, tool, args, expected):
    _, root = media
    async with Client(server) as client:
        result = await client.call_tool(tool, fill(args, root))
    text = error_text(result)
    assert expected in text
    assert "pydantic.dev" not in text and "input_type=" not in text  # one readable sentence
    assert len(text) < 2000  # never the whole (1 MB) query echoed back


@pytest.mark.anyio
async def test_server_survives_every_bad_input(server, media):
    """One session: all bad inputs in a row, then a good call still works."""
    _, root = media
    async with Client(server) as client:
        for tool, args, expected in BAD_INPUTS:
            assert expected in error_text(await client.call_tool(tool, fill(args, root)))
        check_frames(await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": "x"}))


@pytest.mark.anyio
async def test_concurrent_calls(server, media):
    _, root = media
    fresh = write_indexed_video(root / "concurrent.mp4", duration=14, fps=FPS, size=(160, 120), seed=5)
    calls = [
        ("seek_video_frames", {"video": "clip.mp4", "query": "a", "start_time": 0, "end_time": 10}),
        ("seek_video_frames", {"video": "clip.mp4", "query": "b", "start_time": 10}),
        ("seek_video_frames", {"video": fresh.name, "query": "c", "num_frames": 4}),  # embeds now
        ("seek_video_frames", {"video": fresh.name, "query": "d", "num_frames": 2}),  # waits for it
        ("preview_video", {"video": "clip.mp4", "num_frames": 3}),
        ("preview_video", {"video": fresh.name, "num_frames": 5}),
        ("video_info", {"video": fresh.name}),
        ("seek_video_frames", {"video": "escape.mp4", "query": "x"}),
    ]
    results: dict[int, CallToolResult] = {}
    async with Client(server) as client:

        async def call(i: int, tool: str, args: dict) -> None:
            results[i] = await client.call_tool(tool, args)

        async with anyio.create_task_group() as tg:
            for i, (tool, args) in enumerate(calls):
                tg.start_soon(call, i, tool, args)
    assert all(0 <= t <= 10 for t in check_frames(results[0]))
    assert all(t >= 10 for t in check_frames(results[1]))
    assert len(check_frames(results[2])) == 4 and len(check_frames(results[3])) == 2
    assert len(check_frames(results[4])) == 3 and len(check_frames(results[5])) == 5
    assert results[6].structured_content["duration"] == 14.0
    assert "outside" in error_text(results[7])


@pytest.mark.anyio
async def test_progress_notifications_while_embedding(server, media):
    _, root = media
    fresh = write_indexed_video(root / "progress.mp4", duration=30, fps=FPS, size=(160, 120), seed=6)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(server) as client:
        result = await client.call_tool(
            "seek_video_frames", {"video": fresh.name, "query": "x"}, progress_callback=on_progress
        )
        check_frames(result)
        seen_before = len(seen)
        check_frames(
            await client.call_tool(
                "seek_video_frames", {"video": fresh.name, "query": "y"}, progress_callback=on_progress
            )
        )
    assert seen and seen[-1][0] == seen[-1][1] == 60.0  # 30 s at 2 fps
    assert "embedding" in seen[0][2]
    assert len(seen) == seen_before  # cached: no second embedding pass


@pytest.mark.anyio
async def test_payload_budget(media, tiny_encoder):
    base, root = media
    small = build_server(
        server_settings(base, root, base / "no-index"), encoder=tiny_encoder, image_budget=15_000
    )
    async with Client(small) as client:
        result = await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": "x"})
    assert "(reduced to fit the size limit)" in facts_text(result) and sent_base64(result) <= 15_000
    assert sum(len(b.data) for b in result.content if isinstance(b, ImageContent)) <= 15_000
    assert len(check_frames(result)) == 8


@pytest.mark.anyio
async def test_untrained_encoder_logged_loudly(media, tiny_encoder, caplog):
    base, root = media
    fresh = build_server(server_settings(base, root, base / "no-index"), encoder=tiny_encoder)
    with caplog.at_level(logging.WARNING, logger="videoseek.mcp"):
        async with Client(fresh) as client:
            await client.list_tools()  # answered before the models are loaded
            info = await client.call_tool("video_info", {"video": "clip.mp4"})  # waits for them
    assert not info.is_error
    assert any("UNTRAINED" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_failed_model_load_keeps_the_server_up(media):
    base, root = media
    broken = build_server(
        server_settings(base, root, base / "no-index").model_copy(update={"encoder": "no-such-encoder"})
    )
    async with Client(broken) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        first = await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": "x"})
        second = await client.call_tool("video_info", {"video": "clip.mp4"})
        with pytest.raises(Exception, match="no-such-encoder"):
            await client.read_resource("videoseek://index/status")
    for result in (first, second):
        assert "failed to start its search engines" in error_text(result)
        assert "no-such-encoder" in error_text(result)


# --------------------------------------------------------------------------- with an index


@pytest.mark.anyio
async def test_list_videos_and_resources(indexed, media, caplog):
    _, root = media
    caplog.set_level(logging.INFO, logger="videoseek.mcp")
    async with Client(indexed) as client:
        everything = (await client.call_tool("list_videos", {})).structured_content
        page = (await client.call_tool("list_videos", {"status": "indexed", "limit": 1})).structured_content
        listing = json.loads((await client.read_resource("videoseek://videos")).contents[0].text)
        status = json.loads((await client.read_resource("videoseek://index/status")).contents[0].text)
        vid = page["videos"][0]["video_id"]
        record = json.loads((await client.read_resource(f"videoseek://videos/{vid}")).contents[0].text)
        with pytest.raises(Exception, match="no indexed video"):
            await client.read_resource("videoseek://videos/ffffffffffff")
    assert everything["total"] == 2 and everything["next_offset"] is None
    assert {v["status"] for v in everything["videos"]} == {"indexed"}
    assert page["total"] == 2 and len(page["videos"]) == 1 and page["next_offset"] == 1
    assert page["videos"][0]["path"] == str((root / "corpus" / "a.mp4").resolve())
    assert page["videos"][0]["duration"] == 12.0
    assert listing["available"] is True and len(listing["videos"]) == 2
    assert status["available"] is True and status["index"]["num_indexed"] == 2
    assert record["video_id"] == vid and record["status"] == "indexed" and record["duration"] == 12.0
    assert not [r for r in caplog.records if "reloading" in r.getMessage()]  # reading does not reload


@pytest.mark.anyio
async def test_search_moments(indexed):
    async with Client(indexed) as client:
        ids = {
            v["video_id"]: v
            for v in (await client.call_tool("list_videos", {"status": "indexed"})).structured_content[
                "videos"
            ]
        }
        result = await client.call_tool("search_moments", {"query": "a bright square", "top_k": 3})
        one = next(iter(ids))
        scoped = await client.call_tool("search_moments", {"query": "a bright square", "video": one})
        by_path = await client.call_tool("search_moments", {"query": "x", "video": ids[one]["path"]})
        unknown = await client.call_tool("search_moments", {"query": "x", "video": "clip.mp4"})
    assert not result.is_error, result.content
    for r in (result, scoped, by_path):
        MomentSearchResult.model_validate(r.structured_content)
    assert result.structured_content["query"] == "a bright square"
    moments = result.structured_content["moments"]
    assert 1 <= len(moments) <= 3
    assert [m["score"] for m in moments] == sorted((m["score"] for m in moments), reverse=True)
    for rank, m in enumerate(moments, 1):
        assert f"{rank}. video {m['video_id']}" in result.content[-1].text
    for m in moments:
        assert m["video_id"] in ids and 0 <= m["start"] < m["end"] <= ids[m["video_id"]]["duration"] + 1e-6
        assert f"video {m['video_id']}" in result.content[-1].text
    assert result.structured_content["num_videos_searched"] == 2
    assert result.structured_content["encoder_trained"] is False
    assert {m["video_id"] for m in scoped.structured_content["moments"]} == {one}
    assert {m["video_id"] for m in by_path.structured_content["moments"]} == {one}
    assert "not in the corpus index" in error_text(unknown)


@pytest.mark.anyio
async def test_temporal_tools_accept_index_ids(indexed, media):
    _, root = media
    async with Client(indexed) as client:
        vid = (await client.call_tool("list_videos", {"status": "indexed"})).structured_content["videos"][1]
        seek = await client.call_tool(
            "seek_video_frames", {"video": vid["video_id"], "query": "x", "num_frames": 5}
        )
        info = await client.call_tool("video_info", {"video": vid["video_id"]})
        info_by_path = await client.call_tool("video_info", {"video": "corpus/b.mp4"})
        preview = await client.call_tool("preview_video", {"video": vid["video_id"], "num_frames": 2})
        seek_by_path = await client.call_tool(
            "seek_video_frames", {"video": "corpus/b.mp4", "query": "x", "num_frames": 2}
        )
    assert len(check_frames(seek)) == 5 and len(check_frames(seek_by_path)) == 2
    indexed_as = f"in the corpus index as {vid['video_id']} (indexed)"
    for result in (seek, seek_by_path, preview):
        assert result.structured_content["video"] == vid["video_id"]  # indexed: the id, however named
        assert facts_text(result).startswith(f"Video file {vid['path']}, {indexed_as}. Images: JPEG")
    assert info.structured_content["path"] == vid["path"]
    assert info.content[1].text == f"{vid['video_id']} is {indexed_as}."
    assert info_by_path.content[1].text == f"corpus/b.mp4 is {indexed_as}."
    assert check_frames(preview) == [4.0, 12.0]


@pytest.mark.anyio
async def test_index_appears_and_changes_while_serving(media, tiny_encoder, tmp_path):
    base, root = media
    index_dir = tmp_path / "late-index"
    server = build_server(server_settings(base, root, index_dir), encoder=tiny_encoder)
    async with Client(server) as client:
        assert "videoseek index" in error_text(await client.call_tool("list_videos", {}))
        assert not index_dir.exists()  # the server never creates an index
        build_index(index_dir, tiny_encoder, base / "cache", [root / "corpus" / "a.mp4"])
        first = await client.call_tool("list_videos", {})
        assert first.structured_content["total"] == 1
        build_index(index_dir, tiny_encoder, base / "cache", [root / "corpus" / "b.mp4"])
        second = await client.call_tool("list_videos", {})
        found = await client.call_tool("search_moments", {"query": "x", "top_k": 10})
    assert second.structured_content["total"] == 2
    assert found.structured_content["num_videos_searched"] == 2


@pytest.mark.anyio
async def test_latency_on_built_index(indexed):
    """A call on a built index returns in well under a second once the models are loaded."""
    async with Client(indexed) as client:
        await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": "warm-up"})
        timings = {}
        for tool, args in [
            ("seek_video_frames", {"video": "clip.mp4", "query": "a person"}),
            ("preview_video", {"video": "clip.mp4"}),
            ("search_moments", {"query": "a person"}),
            ("list_videos", {}),
            ("video_info", {"video": "clip.mp4"}),
        ]:
            t0 = time.perf_counter()
            result = await client.call_tool(tool, args)
            timings[tool] = time.perf_counter() - t0
            assert not result.is_error, result.content
    assert max(timings.values()) < 2.0, timings


@pytest.mark.anyio
async def test_failed_videos_are_listed(media, tiny_encoder, tmp_path):
    base, root = media
    index_dir = tmp_path / "index-with-failure"
    report = build_index(index_dir, tiny_encoder, base / "cache", [root / "bad", root / "corpus" / "a.mp4"])
    assert len(report.failed) == 1, report
    server = build_server(server_settings(base, root, index_dir), encoder=tiny_encoder)
    async with Client(server) as client:
        failed = (await client.call_tool("list_videos", {"status": "failed"})).structured_content
        everything = (await client.call_tool("list_videos", {})).structured_content
        status = json.loads((await client.read_resource("videoseek://index/status")).contents[0].text)
    assert failed["total"] == 1 and failed["videos"][0]["path"].endswith("broken.mp4")
    assert everything["total"] == 2
    assert status["index"]["num_failed"] == 1 and status["index"]["num_indexed"] == 1


@pytest.mark.anyio
async def test_frames_left_out_when_even_the_smallest_size_is_too_big(media, tiny_encoder):
    base, root = media
    tiny = build_server(
        server_settings(base, root, base / "no-index"), encoder=tiny_encoder, image_budget=5_000
    )
    async with Client(tiny) as client:
        seek = await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": "x"})
        uniform = await client.call_tool("seek_video_frames", {"video": "clip.mp4", "query": ""})
        preview = await client.call_tool("preview_video", {"video": "clip.mp4"})
    for result in (seek, uniform, preview):
        ts = check_frames(result)  # the structured frames are exactly the images that were sent
        assert 1 <= len(ts) < 8
        assert sent_base64(result) <= 5_000
        assert sum(len(b.data) for b in result.content if isinstance(b, ImageContent)) <= 5_000
        assert "left out" in " ".join(texts(result))
    assert all(f["score"] is not None for f in seek.structured_content["frames"])
    assert all(f["score"] is None for f in uniform.structured_content["frames"])


@pytest.mark.anyio
async def test_unusable_index_leaves_temporal_tools_working(media, tiny_encoder, tmp_path):
    base, root = media
    index_dir = tmp_path / "corrupt-index"
    index_dir.mkdir()
    (index_dir / "catalog.sqlite").write_bytes(b"this is not a sqlite database" * 100)
    server = build_server(server_settings(base, root, index_dir), encoder=tiny_encoder)
    async with Client(server) as client:
        moments = await client.call_tool("search_moments", {"query": "x"})
        info = await client.call_tool("video_info", {"video": "clip.mp4"})
        status = json.loads((await client.read_resource("videoseek://index/status")).contents[0].text)
    assert "cannot be used" in error_text(moments) and "videoseek index" in error_text(moments)
    assert not info.is_error
    assert status["available"] is False and "cannot be used" in status["message"]


@pytest.mark.anyio
async def test_index_can_be_disabled(indexed, media, tiny_encoder):
    base, root = media
    server = build_server(server_settings(base, root, base / "index"), encoder=tiny_encoder, load_index=False)
    async with Client(server) as client:
        result = await client.call_tool("list_videos", {})
    assert "disabled" in error_text(result)


@pytest.mark.anyio
async def test_first_search_of_a_long_video_answers_call_again(media, tiny_encoder):
    """No call outlives the host's timeout: past embed_wait_s the call says 'call again'."""
    base, root = media
    fresh = write_indexed_video(root / "slow.mp4", duration=60, fps=FPS, size=(160, 120), seed=7)
    impatient = build_server(
        server_settings(base, root, base / "no-index"), encoder=tiny_encoder, embed_wait_s=0
    )
    async with Client(impatient) as client:
        first = await client.call_tool("seek_video_frames", {"video": fresh.name, "query": "x"})
        assert "being prepared for search" in error_text(first) and "again" in error_text(first)
        preview = await client.call_tool("preview_video", {"video": fresh.name, "num_frames": 2})
        assert check_frames(preview) == [15.0, 45.0]  # works meanwhile
        deadline = time.monotonic() + 60
        while True:  # the pass goes on in the background; a later call gets the frames
            result = await client.call_tool("seek_video_frames", {"video": fresh.name, "query": "x"})
            if not result.is_error or time.monotonic() > deadline:
                break
            assert "being prepared" in error_text(result)
            await anyio.sleep(0.2)
    assert len(check_frames(result)) == 8 and result.structured_content["num_candidates"] == 120


@pytest.mark.anyio
async def test_no_media_roots_and_no_index(media, tiny_encoder):
    base, root = media
    bare = build_server(
        server_settings(base, root, base / "no-index").model_copy(update={"media_roots": []}),
        encoder=tiny_encoder,
    )
    async with Client(bare) as client:
        seek = await client.call_tool("seek_video_frames", {"video": str(root / "clip.mp4"), "query": "x"})
        listing = await client.call_tool("list_videos", {})
    assert "no media roots are configured (set VIDEOSEEK_MEDIA_ROOTS)" in error_text(seek)
    assert "no index ids" in error_text(seek)
    assert "videoseek index" in error_text(listing)


@pytest.mark.anyio
async def test_nul_byte_in_video_is_a_clear_error_with_an_index(indexed):
    """With an index loaded, the id/path look-up must not turn a NUL byte into a raw ValueError."""
    async with Client(indexed) as client:
        info = await client.call_tool("video_info", {"video": "a\x00.mp4"})
        moments = await client.call_tool("search_moments", {"query": "x", "video": "a\x00.mp4"})
        good = await client.call_tool("list_videos", {})
    assert "NUL" in error_text(info)
    assert "not in the corpus index" in error_text(moments)
    assert good.structured_content["total"] == 2  # and the server keeps serving
