"""LangChain tools: content for the model (timestamp text + image blocks), typed artifact for code."""

from __future__ import annotations

import base64
import io
from typing import Annotated

import numpy as np
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from PIL import Image
from typing_extensions import TypedDict

from agent_tools.langchain_tools import make_moment_tool, make_preview_tool, make_seek_tool
from agent_tools.types import FrameSelection, Moment, MomentSearchResult
from tests.agent_fakes import FakeMomentSearcher, FakeSearcher


def call(tool, args, id="c1"):
    return tool.invoke({"type": "tool_call", "id": id, "name": tool.name, "args": args})


def decode(block) -> Image.Image:
    assert block["type"] == "image" and block["mime_type"] == "image/jpeg"
    img = Image.open(io.BytesIO(base64.b64decode(block["base64"])))
    assert img.format == "JPEG"
    return img


def test_seek_tool_content_is_timestamps_and_images_and_artifact_is_the_selection():
    s = FakeSearcher(videos=["v.mp4"])
    tool = make_seek_tool(s, max_side=100)
    msg = call(
        tool, {"video": "v.mp4", "query": "red car", "start_time": 10, "end_time": 20, "num_frames": 3}
    )
    assert isinstance(msg, ToolMessage) and msg.status == "success" and msg.name == "seek_video_frames"
    blocks = msg.content
    assert "3 frames of v.mp4 between 10.0s and 20.0s" in blocks[0]["text"] and "red car" in blocks[0]["text"]
    body = blocks[1:-1]
    assert [b["type"] for b in body] == ["text", "image"] * 3
    assert [b["text"] for b in body[::2]] == ["12.5s", "15.0s", "17.5s"]
    assert all(max(decode(b).size) == 100 for b in body[1::2])
    assert blocks[-1]["text"] == "Timestamps: 12.5s, 15.0s, 17.5s."
    art = msg.artifact
    assert isinstance(art, FrameSelection) and art.timestamps == [12.5, 15.0, 17.5]
    assert art.images == [] and "base64" not in art.model_dump_json()  # code gets no pixels
    assert s.seeks[0] == {
        "video": "v.mp4",
        "query": "red car",
        "start_time": 10.0,
        "end_time": 20.0,
        "num_frames": 3,
    }
    assert s.frame_calls[0] == {"video": "v.mp4", "timestamps": [12.5, 15.0, 17.5], "max_side": 100}


def test_seek_tool_schema_and_binding_to_one_video():
    s = FakeSearcher()
    free = make_seek_tool(s)
    schema = free.tool_call_schema.model_json_schema()
    assert schema["required"] == ["video"]
    assert schema["properties"]["num_frames"]["maximum"] == 8
    bound = make_seek_tool(s, video="match.mp4")
    assert "video" not in bound.tool_call_schema.model_json_schema()["properties"]
    msg = call(bound, {"query": "goal"})
    assert msg.artifact.video == "match.mp4" and len(msg.artifact.frames) == 8
    assert "match.mp4" in bound.description


def test_seek_tool_errors_say_what_is_valid():
    tool = make_seek_tool(FakeSearcher(videos=["v.mp4"]))
    msg = call(tool, {"video": "v.mp4", "query": "x", "start_time": 30, "end_time": 20})
    assert msg.status == "error" and "valid" in msg.content and "0 <= start_time" in msg.content
    msg = call(tool, {"video": "v.mp4", "num_frames": 30})
    assert msg.status == "error" and "num_frames" in msg.content and "8" in msg.content
    msg = call(tool, {"video": "other.mp4"})
    assert msg.status == "error" and "known" in msg.content


def test_preview_tool():
    tool = make_preview_tool(FakeSearcher(), max_side=50)
    msg = call(tool, {"video": "v.mp4", "num_frames": 4})
    assert "length 60.0 seconds" in msg.content[0]["text"]
    assert [b["text"] for b in msg.content[1::2]] == ["12.0s", "24.0s", "36.0s", "48.0s"]
    assert msg.artifact.method == "uniform"


def test_moment_tool_lists_moments_with_optional_thumbnails():
    moments = [
        Moment(video_id="dog-park", path="dog.mp4", start=10, end=20, score=0.91, peak_time=12.5),
        Moment(video_id="cat-sofa", path="cat.mp4", start=5, end=9, score=0.42),
    ]
    ms = FakeMomentSearcher(moments)
    plain = make_moment_tool(ms)
    msg = call(plain, {"query": "a dog", "top_k": 2})
    texts = [b["text"] for b in msg.content]
    assert texts[0] == "2 moments for 'a dog' (searched 2 videos):"
    assert texts[1] == "1. video dog-park (dog.mp4) from 10.0s to 20.0s, score 0.910"
    assert isinstance(msg.artifact, MomentSearchResult) and msg.artifact.moments[1].video_id == "cat-sofa"
    s = FakeSearcher()
    thumbs = make_moment_tool(ms, frames=s.frames, max_side=64)
    msg = call(thumbs, {"query": "a dog"})
    assert [b["type"] for b in msg.content] == ["text", "text", "text", "image", "text", "text", "image"]
    assert msg.content[2]["text"] == "12.5s" and max(decode(msg.content[3]).size) == 64
    assert [c["timestamps"] for c in s.frame_calls] == [[12.5], [7.0]]
    # a thumbnail that cannot be read is reported in place, not dropped silently
    partial = make_moment_tool(ms, frames=FakeSearcher(videos=["dog.mp4"]).frames)
    texts = [b.get("text", "") for b in call(partial, {"query": "a dog"}).content]
    assert any(t.startswith("(no thumbnail: unknown video 'cat.mp4'") for t in texts)
    empty = make_moment_tool(FakeMomentSearcher([]))
    assert "Nothing matched" in call(empty, {"query": "x"}).content[-1]["text"]
    assert call(plain, {"query": "x", "top_k": 0}).status == "error"


def test_tools_work_inside_a_langgraph_agent():
    """A LangChain chat model calls the tool through ToolNode; the reply carries images and the artifact."""
    s = FakeSearcher()
    tool = make_seek_tool(s, video="v.mp4")
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "seek_video_frames", "args": {"query": "dog", "num_frames": 2}, "id": "t1"}
                    ],
                ),
                AIMessage(content="It is brown."),
            ]
        )
    )

    class S(TypedDict):
        messages: Annotated[list[AnyMessage], add_messages]

    g = StateGraph(S)
    g.add_node("agent", lambda st: {"messages": [model.invoke(st["messages"])]})
    g.add_node("tools", ToolNode([tool]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    out = g.compile().invoke({"messages": [HumanMessage(content="What colour is the dog?")]})
    tool_msg = out["messages"][2]
    assert isinstance(tool_msg, ToolMessage) and tool_msg.tool_call_id == "t1"
    assert [b["type"] for b in tool_msg.content] == ["text", "text", "image", "text", "image", "text"]
    assert tool_msg.artifact.timestamps == [20.0, 40.0]
    assert out["messages"][-1].content == "It is brown."


def test_seek_tool_on_the_real_searcher_returns_the_right_frames(searcher, clip20):
    from agent_tools.synthetic import read_frame_index

    tool = make_seek_tool(searcher, max_side=None)
    msg = call(
        tool,
        {"video": str(clip20), "query": "a pattern", "start_time": 2.0, "end_time": 6.0, "num_frames": 4},
    )
    assert msg.status == "success", msg.content
    ts = msg.artifact.timestamps
    assert len(ts) == 4 and all(2.0 <= t <= 6.0 for t in ts)
    images = [decode(b) for b in msg.content if b["type"] == "image"]
    # the JPEG sent to the model shows the frame at its timestamp (10 fps clip)
    assert [read_frame_index(np.asarray(im.convert("RGB"))) for im in images] == [round(t * 10) for t in ts]
    err = call(tool, {"video": str(clip20), "query": "x", "start_time": 25.0})
    assert err.status == "error" and "valid range" in err.content
