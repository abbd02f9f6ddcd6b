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


# --------------------------------------------------------------------------- settings-driven schemas


def test_frame_tools_follow_videoseek_max_frames(monkeypatch, tiny_encoder, clip20, tmp_path):
    """Issue 8: with VIDEOSEEK_MAX_FRAMES=4 the schema says 1..4 and a default call works (was: 'got 8')."""
    from agent_tools.config import get_settings
    from agent_tools.temporal import TemporalSearcher

    monkeypatch.setenv("VIDEOSEEK_MAX_FRAMES", "4")
    settings = get_settings(cache_dir=tmp_path / "cache", device="cpu", encoder="tiny-untrained")
    searcher = TemporalSearcher(tiny_encoder, settings=settings)
    assert searcher.max_frames == 4
    tool = make_seek_tool(searcher, max_side=None)
    prop = tool.tool_call_schema.model_json_schema()["properties"]["num_frames"]
    assert (prop["minimum"], prop["maximum"], prop["default"]) == (1, 4, 4)
    assert "1 to 4" in prop["description"] and "at most 4 frames" in tool.description
    msg = call(tool, {"video": str(clip20), "query": "a pattern"})
    assert msg.status == "success", msg.content
    assert len(msg.artifact.frames) == 4
    too_many = call(tool, {"video": str(clip20), "num_frames": 5})
    assert too_many.status == "error" and "num_frames" in too_many.content and "4" in too_many.content
    preview = make_preview_tool(searcher, max_side=32)
    assert preview.tool_call_schema.model_json_schema()["properties"]["num_frames"]["maximum"] == 4
    assert len(call(preview, {"video": str(clip20)}).artifact.frames) == 4


def test_searchers_without_max_frames_use_the_settings_and_an_explicit_cap_wins(monkeypatch):
    import pytest as _pytest

    from agent_tools.errors import InvalidArgumentError

    monkeypatch.setenv("VIDEOSEEK_MAX_FRAMES", "3")
    s = FakeSearcher()
    tool = make_seek_tool(s, video="v.mp4")
    assert tool.tool_call_schema.model_json_schema()["properties"]["num_frames"]["maximum"] == 3
    assert len(call(tool, {"query": "dog"}).artifact.frames) == 3
    assert s.seeks[-1]["num_frames"] == 3
    wide = make_seek_tool(s, max_frames=12)
    assert wide.tool_call_schema.model_json_schema()["properties"]["num_frames"]["maximum"] == 12
    with _pytest.raises(InvalidArgumentError, match="max_frames must be an integer >= 1"):
        make_seek_tool(s, max_frames=0)


# --------------------------------------------------------------------------- chat-completions delivery


def _seek_conversation():
    s = FakeSearcher()
    tool = make_seek_tool(s, video="v.mp4", max_side=64)
    tool_msg = call(tool, {"query": "dog", "num_frames": 2}, id="call_7")
    ai = AIMessage(
        content="",
        tool_calls=[{"name": "seek_video_frames", "args": {"query": "dog", "num_frames": 2}, "id": "call_7"}],
    )
    return [HumanMessage(content="What colour is the dog?"), ai, tool_msg], tool_msg


def test_tool_images_move_to_a_following_user_message_in_chatopenai_payloads():
    """ChatOpenAI's chat-completions payload: the tool message text-only, images as image_url parts."""
    import json

    import pytest

    langchain_openai = pytest.importorskip("langchain_openai")
    from agent_tools.langchain_tools import tool_images_to_user

    messages, tool_msg = _seek_conversation()
    chat = langchain_openai.ChatOpenAI(model="gpt-4o-mini", api_key="x")
    # as the tool returns it, the tool-role message would carry images (what OpenAI rejects)
    raw = chat._get_request_payload(messages)["messages"]
    assert any(isinstance(p, dict) and p.get("type") == "image_url" for p in raw[2]["content"])

    converted = tool_images_to_user(messages)
    assert messages[2] is tool_msg and isinstance(tool_msg.content, list)  # input untouched
    payload = chat._get_request_payload(converted)["messages"]
    assert [m["role"] for m in payload] == ["user", "assistant", "tool", "user"]
    tool_part = payload[2]
    assert tool_part["tool_call_id"] == "call_7" and isinstance(tool_part["content"], str)
    assert "20.0s" in tool_part["content"] and "40.0s" in tool_part["content"]
    assert "image" not in json.dumps(tool_part).replace("images follow", "")
    user = payload[3]["content"]
    assert [p["type"] for p in user] == ["text", "text", "image_url", "text", "image_url"]
    assert user[0]["text"] == "Images returned by seek_video_frames (call call_7):"
    assert [user[1]["text"], user[3]["text"]] == ["20.0s", "40.0s"]  # each image after its timestamp
    for part in (user[2], user[4]):
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        assert max(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size) == 64
    # the typed artifact and the call id survive
    assert converted[2].artifact.timestamps == [20.0, 40.0] and converted[2].tool_call_id == "call_7"


def test_consecutive_tool_messages_share_one_user_message_after_the_last():
    from agent_tools.langchain_tools import tool_images_to_user

    s = FakeSearcher()
    seek = make_seek_tool(s, video="v.mp4", max_side=32)
    a = call(seek, {"query": "dog", "num_frames": 1}, id="a")
    b = call(seek, {"query": "cat", "num_frames": 2}, id="b")
    err = call(seek, {"query": "x", "num_frames": 99}, id="c")  # text-only error passes through
    ai = AIMessage(content="", tool_calls=[{"name": seek.name, "args": {}, "id": i} for i in "abc"])
    out = tool_images_to_user([ai, a, b, err, AIMessage(content="done")])
    assert [m.type for m in out] == ["ai", "tool", "tool", "tool", "human", "ai"]
    assert out[3] is err
    images = [blk for blk in out[4].content if blk["type"] == "image"]
    assert len(images) == 3
    headers = [
        blk["text"] for blk in out[4].content if blk["type"] == "text" and blk["text"].startswith("Images")
    ]
    assert headers == [
        "Images returned by seek_video_frames (call a):",
        "Images returned by seek_video_frames (call b):",
    ]


def test_with_tool_images_as_user_wraps_a_model_inside_a_langgraph_agent():
    from agent_tools.langchain_tools import with_tool_images_as_user

    class Recording(GenericFakeChatModel):
        seen: list = []

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.seen.append(list(messages))
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    tool = make_seek_tool(FakeSearcher(), video="v.mp4")
    fake = Recording(
        messages=iter(
            [
                AIMessage(
                    content="", tool_calls=[{"name": tool.name, "args": {"num_frames": 2}, "id": "t1"}]
                ),
                AIMessage(content="brown"),
            ]
        ),
        seen=[],
    )
    model = with_tool_images_as_user(fake)

    class S(TypedDict):
        messages: Annotated[list[AnyMessage], add_messages]

    g = StateGraph(S)
    g.add_node("agent", lambda st: {"messages": [model.invoke(st["messages"])]})
    g.add_node("tools", ToolNode([tool]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", "agent")
    out = g.compile().invoke({"messages": [HumanMessage(content="What colour?")]})
    assert out["messages"][-1].content == "brown"
    second = fake.seen[1]
    assert [m.type for m in second] == ["human", "ai", "tool", "human"]
    assert isinstance(second[2].content, str)
    assert sum(1 for b in second[3].content if b["type"] == "image") == 2
    # graph state keeps the tool's own message (with its artifact); only the model's input changed
    assert isinstance(out["messages"][2].content, list)


# --------------------------------------------------------------------------- ChatOpenAI over mocked HTTP


def chat_completion(content=None, tool_calls=None):
    """An OpenAI chat completion body; ``tool_calls`` as ``[(id, name, args)]``."""
    import json

    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def openai_http(replies):
    """An httpx client answering chat requests from ``replies``; returns (request bodies, client)."""
    import json

    import httpx

    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=replies[len(bodies) - 1])

    return bodies, httpx.Client(transport=httpx.MockTransport(handler))


def test_langchain_agent_example_with_chatopenai_sends_what_chat_completions_accept(monkeypatch):
    """examples/langchain_agent.py's agent on a real ChatOpenAI (HTTP mocked): the claim in its docstring."""
    import importlib.util
    from pathlib import Path

    import pytest

    langchain_openai = pytest.importorskip("langchain_openai")
    monkeypatch.setenv("VIDEOSEEK_MAX_FRAMES", "4")
    path = Path(__file__).resolve().parents[1] / "examples" / "langchain_agent.py"
    spec = importlib.util.spec_from_file_location("example_langchain_agent_openai", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(__import__("sys").modules, spec.name, example)  # LangGraph resolves its State hints
    spec.loader.exec_module(example)

    bodies, http = openai_http(
        [
            chat_completion(tool_calls=[("call_a", "seek_video_frames", {"video": "v.mp4", "query": "dog"})]),
            chat_completion(content="A brown dog."),
        ]
    )
    chat = langchain_openai.ChatOpenAI(model="gpt-4o-mini", api_key="x", http_client=http, max_retries=0)
    s = FakeSearcher()
    tools = [make_preview_tool(s, max_side=32), make_seek_tool(s, max_side=32)]
    out = (
        example.build_agent(chat, tools).compile().invoke({"messages": [HumanMessage(content="Dog colour?")]})
    )
    assert out["messages"][-1].content == "A brown dog."
    assert s.seeks[0]["num_frames"] == 4  # the default follows VIDEOSEEK_MAX_FRAMES
    seek_schema = next(t for t in bodies[0]["tools"] if t["function"]["name"] == "seek_video_frames")
    assert seek_schema["function"]["parameters"]["properties"]["num_frames"]["maximum"] == 4
    sent = bodies[1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1]["tool_calls"][0]["id"] == "call_a" and sent[2]["tool_call_id"] == "call_a"
    assert isinstance(sent[2]["content"], str) and "Timestamps:" in sent[2]["content"]
    assert [p["type"] for p in sent[3]["content"]].count("image_url") == 4
