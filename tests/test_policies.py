"""Policies: the interface, the three backends, the scripted policy and checkpoint loading.

The transformers backend runs a tiny *untrained* Qwen2.5-VL built offline, so the real
processor, chat template, image tokens and ``generate`` paths execute on CPU.
"""

from __future__ import annotations

import base64
import io
import json
import shutil

import httpx
import pytest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError, VideoseekError
from agent_tools.policies import (
    MANIFEST_NAME,
    LangChainPolicy,
    OpenAIPolicy,
    PolicyLoadError,
    PolicyManifest,
    ScriptedPolicy,
    TransformersPolicy,
    frame_block,
    load_policy,
    read_manifest,
    resolve_frames,
    text_block,
    write_manifest,
)
from agent_tools.policies.base import CachingResolver, tool_turns_as_user
from tests.agent_fakes import FakeSearcher, tiny_policy, tiny_policy_path


def conversation(video="v.mp4", times=(1.0, 2.5)):
    blocks = []
    for t in times:
        blocks += [text_block(protocol.format_timestamp(t)), frame_block(video, t)]
    blocks.append(text_block(protocol.user_prompt("What colour is the car?", 60.0, 8)))
    return [
        {"role": "system", "content": protocol.system_prompt()},
        {"role": "user", "content": blocks},
        {
            "role": "assistant",
            "content": '<think>look</think><tool_call>{"name": "seek_video_frames", "arguments": {"query": "car"}}</tool_call>',
        },
        {
            "role": "tool",
            "name": "seek_video_frames",
            "content": [
                text_block("30.0s"),
                frame_block(video, 30.0),
                text_block(protocol.search_response_text([30.0])),
            ],
        },
    ]


# --------------------------------------------------------------------------- interface


def test_resolve_frames_fetches_lazily_once_per_video_and_keeps_input_untouched():
    s = FakeSearcher()
    convo = conversation()
    before = json.dumps(convo)
    out = resolve_frames(convo, s.frames, max_side=64)
    assert json.dumps(convo) == before  # input still holds references only
    assert len(s.frame_calls) == 1 and s.frame_calls[0]["timestamps"] == [1.0, 2.5, 30.0]
    images = [b for m in out if isinstance(m["content"], list) for b in m["content"] if b["type"] == "image"]
    assert [b["timestamp"] for b in images] == [1.0, 2.5, 30.0]
    assert all(isinstance(b["image"], Image.Image) and max(b["image"].size) == 64 for b in images)
    with pytest.raises(InvalidArgumentError, match="frame resolver"):
        resolve_frames(convo, None)


def test_caching_resolver_decodes_each_frame_once():
    s = FakeSearcher()
    cached = CachingResolver(s.frames, max_items=10)
    a = cached("v.mp4", [1.0, 2.0], max_side=32)
    b = cached("v.mp4", [2.0, 1.0, 3.0], max_side=32)
    assert [c["timestamps"] for c in s.frame_calls] == [[1.0, 2.0], [3.0]]
    assert b[0] is a[1] and b[1] is a[0]


def test_tool_turns_become_user_turns_when_asked():
    out = tool_turns_as_user(conversation())
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    assert out[-1]["content"][0]["text"].startswith("[seek_video_frames result]")


def test_scripted_policy_replays_records_and_runs_out_loudly():
    s = FakeSearcher()
    p = ScriptedPolicy(
        [
            "one",
            lambda msgs: (
                f"saw {sum(1 for m in msgs for b in m['content'] if isinstance(m['content'], list) and b['type'] == 'image')} images"
            ),
        ]
    )
    assert p.generate(conversation(), frames=s.frames) == "one"
    assert p.generate(conversation(), frames=s.frames) == "saw 3 images"
    assert p.calls[0]["num_images"] == 3
    assert p.calls[0]["messages"][1]["content"][1]["type"] == "frame"  # recorded as references
    with pytest.raises(InvalidArgumentError, match="ran out of replies"):
        p.generate(conversation(), frames=s.frames)
    with pytest.raises(InvalidArgumentError, match="max_new_tokens must be >= 1"):
        p.generate(conversation(), frames=s.frames, max_new_tokens=0)  # never silently the default
    q = ScriptedPolicy(["x"], repeat_last=True, resolve_images=False)
    assert q.generate(conversation()) == q.generate(conversation()) == "x"
    assert q.calls[0]["num_images"] == 0


# --------------------------------------------------------------------------- transformers


def test_tiny_policy_checkpoint_loads_with_validated_manifest():
    path = tiny_policy_path()
    manifest = read_manifest(path)
    assert manifest.trained is False and manifest.backend == "transformers"
    assert manifest.prompt_format == protocol.PROMPT_FORMAT
    assert manifest.tool_schema[0]["function"]["name"] == "seek_video_frames"
    policy = load_policy(path, device="cpu")
    assert isinstance(policy, TransformersPolicy)
    assert policy.manifest.trained is False and "untrained" in policy.name
    assert policy.max_new_tokens == manifest.max_new_tokens


def test_transformers_policy_puts_one_image_per_frame_reference_into_the_model_input():
    s = FakeSearcher()
    policy = tiny_policy()
    prepared = policy.prepare(conversation(), s.frames)
    inputs = policy.build_inputs(prepared)
    assert inputs["image_grid_thw"].shape[0] == 3
    tok = policy.processor.tokenizer
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    n_pad = int((inputs["input_ids"] == image_pad).sum())
    merge = policy.model.config.vision_config.spatial_merge_size**2
    assert n_pad == int(inputs["image_grid_thw"].prod(dim=1).sum()) // merge
    text = tok.decode(inputs["input_ids"][0])
    assert "30.0s" in text and "<|im_start|>tool" in text and text.rstrip().endswith("<|im_start|>assistant")


def test_transformers_policy_generates_within_the_token_budget():
    s = FakeSearcher()
    policy = tiny_policy()
    gen = policy.generate_details(conversation(), max_new_tokens=5, frames=s.frames)
    assert 1 <= gen.completion_tokens <= 5
    assert len(gen.completion_ids) == gen.completion_tokens
    assert gen.text == policy.processor.tokenizer.decode(gen.completion_ids, skip_special_tokens=True)
    assert gen.prompt_tokens > 100
    # greedy decoding is deterministic for the same conversation and frames
    again = policy.generate_details(conversation(), max_new_tokens=5, frames=s.frames)
    assert again.completion_ids == gen.completion_ids


def test_transformers_policy_tool_role_user_rewrites_tool_turns():
    s = FakeSearcher()
    policy = tiny_policy(tool_role="user")
    text = policy.processor.tokenizer.decode(
        policy.build_inputs(policy.prepare(conversation(), s.frames))["input_ids"][0]
    )
    assert "<|im_start|>tool" not in text and "[seek_video_frames result]" in text


# --------------------------------------------------------------------------- manifest


def _copy(tmp_path):
    d = tmp_path / "policy"
    shutil.copytree(tiny_policy_path(), d)
    return d


def _edit(d, **changes):
    data = json.loads((d / MANIFEST_NAME).read_text())
    data.update(changes)
    (d / MANIFEST_NAME).write_text(json.dumps(data))


def test_loader_rejects_a_directory_without_manifest(tmp_path):
    d = _copy(tmp_path)
    (d / MANIFEST_NAME).unlink()
    with pytest.raises(PolicyLoadError, match="has no videoseek_policy.json"):
        load_policy(d)
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy(tmp_path / "missing")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"prompt_format": "timesearch-v4"}, "prompt_format 'timesearch-v4' is unknown"),
        ({"backend": "jax"}, "field 'backend'"),
        ({"max_new_tokens": 0}, "field 'max_new_tokens'"),
        ({"tool_schema": []}, "tool_schema is empty"),
        (
            {"tool_schema": [{"type": "function", "function": {"name": "zoom", "parameters": {}}}]},
            "tool 'zoom' is unknown",
        ),
        ({"backend": "openai"}, "needs base_url"),
        (
            {"backend": "openai", "base_url": "http://gpu:9000/v1", "soft_refinement": True},
            "soft_refinement needs backend 'transformers'",
        ),
        ({"tag_vocabulary": ["a red car"]}, "tag_vocabulary is read only with observation 'text'"),
        ({"observation": "text", "tag_vocabulary": ["a", "a"]}, "distinct tags"),
        ({"observation": "audio"}, "field 'observation'"),
    ],
)
def test_loader_rejects_invalid_manifests(tmp_path, changes, message):
    d = _copy(tmp_path)
    _edit(d, **changes)
    with pytest.raises(PolicyLoadError, match=message):
        load_policy(d)


def test_loader_rejects_a_policy_trained_on_another_tool_schema(tmp_path):
    d = _copy(tmp_path)
    tool = json.loads(json.dumps(protocol.SEEK_TOOL))
    tool["function"]["parameters"]["properties"]["fps"] = {"type": "number"}
    _edit(d, tool_schema=[tool])
    with pytest.raises(PolicyLoadError, match="trained on another schema"):
        load_policy(d)


def test_loader_rejects_bad_json_and_missing_weights(tmp_path):
    d = _copy(tmp_path)
    (d / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(PolicyLoadError, match="not valid JSON"):
        load_policy(d)
    e = tmp_path / "only-manifest"
    e.mkdir()
    write_manifest(e, PolicyManifest(backend="transformers", name="x"))
    with pytest.raises(PolicyLoadError, match="config.json"):
        load_policy(e)
    assert issubclass(PolicyLoadError, VideoseekError)


def test_loader_builds_openai_policies_from_urls_and_manifests(tmp_path):
    p = load_policy("http://localhost:8000/v1", model="served")
    assert isinstance(p, OpenAIPolicy) and p.base_url == "http://localhost:8000/v1" and p.model == "served"
    d = tmp_path / "remote"
    d.mkdir()
    write_manifest(
        d, PolicyManifest(backend="openai", base_url="http://gpu:9000/v1", model="m", max_new_tokens=77)
    )
    q = load_policy(d)
    assert isinstance(q, OpenAIPolicy) and q.base_url == "http://gpu:9000/v1" and q.max_new_tokens == 77
    assert not q.text_only
    # a text-only model: its manifest says so, or the caller does for a bare URL
    t = tmp_path / "remote-text"
    t.mkdir()
    write_manifest(t, PolicyManifest(backend="openai", base_url="http://gpu:9000/v1", observation="text",
                                     tag_vocabulary=["a red car", "a blue car"]))
    assert load_policy(t).text_only
    u = load_policy("http://localhost:8000/v1", model="served", text_only=True)
    assert u.text_only and u.manifest.observation == "text"


# --------------------------------------------------------------------------- OpenAI-compatible


def _decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_openai_policy_sends_frames_as_data_urls_built_at_request_time():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "policy-7b"}]})
        seen.append(json.loads(request.content))
        # vLLM strips the stop string and reports it in stop_reason
        return httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "message": {"content": "<think>ok</think><answer>red"},
                        "finish_reason": "stop",
                        "stop_reason": "</answer>",
                    }
                ],
                "usage": {"prompt_tokens": 321, "completion_tokens": 9},
            },
        )

    s = FakeSearcher()
    client = httpx.Client(transport=httpx.MockTransport(handler))
    policy = OpenAIPolicy("http://vllm:8000/v1/", http_client=client, max_side=96)
    convo = conversation()
    gen = policy.generate_details(convo, max_new_tokens=42, frames=s.frames)
    assert gen.text == "<think>ok</think><answer>red</answer>"
    assert (gen.prompt_tokens, gen.completion_tokens) == (321, 9)
    body = seen[0]
    assert body["model"] == "policy-7b" and body["max_tokens"] == 42 and "</tool_call>" in body["stop"]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "text", "image_url", "text"]
    assert parts[0]["text"] == "1.0s"
    img = _decode_data_url(parts[1]["image_url"]["url"])
    assert img.format == "JPEG" and max(img.size) == 96
    tool_turn = body["messages"][3]["content"]
    assert tool_turn[0]["text"].startswith("[seek_video_frames result]")
    assert any(p["type"] == "image_url" for p in tool_turn)
    assert "base64" not in json.dumps(convo)  # the conversation itself never held pixels


def test_openai_policy_reports_unreachable_and_failing_servers():
    calls = []

    def fail(request):
        calls.append(request)
        raise httpx.ConnectError("refused")

    p = OpenAIPolicy(
        "http://nowhere/v1",
        model="m",
        max_retries=1,
        http_client=httpx.Client(transport=httpx.MockTransport(fail)),
    )
    with pytest.raises(
        PolicyLoadError, match="cannot reach the policy server at http://nowhere/v1/chat/completions"
    ):
        p.generate([{"role": "user", "content": "hi"}])
    assert len(calls) == 2  # one retry
    with pytest.raises(InvalidArgumentError, match="max_retries must be an integer >= 0"):
        OpenAIPolicy("http://x/v1", max_retries=-1)


def _counting(responses):
    """A mock transport answering chat requests from ``responses`` (status, json) in order, counting them."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, payload = responses[min(len(seen) - 1, len(responses) - 1)]
        headers = {"retry-after-ms": "5"} if status >= 400 else {}
        return httpx.Response(status, json=payload, headers=headers)

    return seen, httpx.Client(transport=httpx.MockTransport(handler))


def _completion(text):
    return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def test_openai_policy_retries_a_429_with_backoff_and_the_rollout_succeeds():
    """Issue 8: a 429 used to kill a rollout; the SDK now retries it (Retry-After honoured)."""
    from agent_tools.graphs import build_temporal_graph

    limited = (429, {"error": {"message": "rate limited", "type": "rate_limit"}})
    seek_call_text = (
        '<think>look</think><tool_call>{"name": "seek_video_frames", '
        '"arguments": {"query": "car", "num_frames": 2}}</tool_call>'
    )
    seen, client = _counting(
        [
            limited,
            (200, _completion(seek_call_text)),
            limited,
            (200, _completion("<think>seen</think><answer>red</answer>")),
        ]
    )
    policy = OpenAIPolicy("http://vllm:8000/v1", model="m", http_client=client, max_side=32)
    s = FakeSearcher()
    out = (
        build_temporal_graph(policy, s, preview_frames=1)
        .compile()
        .invoke({"question": "colour?", "video": "v.mp4"})
    )
    assert out["answer"] == "red" and out["status"] == "answered"
    assert s.seeks[0]["query"] == "car" and s.seeks[0]["num_frames"] == 2
    assert len(seen) == 4 and all(r.url.path == "/v1/chat/completions" for r in seen)
    assert seen[0].content == seen[1].content  # the rate-limited request was sent again, unchanged
    assert json.loads(seen[2].content)["messages"][2]["content"] == seek_call_text


def test_openai_policy_gives_up_on_a_persistent_500_with_an_error_naming_the_endpoint():
    seen, client = _counting([(500, {"error": {"message": "boom"}})])
    policy = OpenAIPolicy("http://gpu:9000/v1", model="m", http_client=client, max_retries=2)
    with pytest.raises(VideoseekError) as info:
        policy.generate([{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert isinstance(info.value, PolicyLoadError)
    assert "http://gpu:9000/v1/chat/completions" in message and "answered 500" in message
    assert "3 attempts" in message and "boom" in message
    assert len(seen) == 3  # the first try and two retries
    # a 400 is the caller's fault: not retried
    seen, client = _counting([(400, {"error": {"message": "bad image"}})])
    bad = OpenAIPolicy("http://gpu:9000/v1", model="m", http_client=client, max_retries=3)
    with pytest.raises(PolicyLoadError, match="answered 400"):
        bad.generate([{"role": "user", "content": "hi"}])
    assert len(seen) == 1


# --------------------------------------------------------------------------- LangChain


class RecordingChat(BaseChatModel):
    """A chat model that records its inputs and replies from a list."""

    replies: list = []
    seen: list = []
    call_kwargs: list = []

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(messages)
        self.call_kwargs.append({"stop": stop, **kwargs})
        text = self.replies[len(self.seen) - 1]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def test_langchain_policy_wraps_any_chat_model_with_standard_image_blocks():
    s = FakeSearcher()
    chat = RecordingChat(
        replies=[
            "<think>t</think><tool_call>" + '{"name": "seek_video_frames", "arguments": {"query": "car"}}'
        ],
        seen=[],
        call_kwargs=[],
    )
    policy = LangChainPolicy(chat, max_side=80)
    out = policy.generate(conversation(), max_new_tokens=17, frames=s.frames)
    assert out.endswith("</tool_call>")  # closing tag restored after the stop string
    msgs = chat.seen[0]
    assert [type(m) for m in msgs] == [SystemMessage, HumanMessage, AIMessage, HumanMessage]
    blocks = msgs[1].content
    assert [b["type"] for b in blocks] == ["text", "image", "text", "image", "text"]
    assert blocks[1]["mime_type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(base64.b64decode(blocks[1]["base64"]))).size) == 80
    assert chat.call_kwargs[0]["max_tokens"] == 17
    assert chat.call_kwargs[0]["stop"] == ["</tool_call>", "</answer>"]
    assert protocol.parse_action(out).kind == "tool_call"
    with pytest.raises(InvalidArgumentError, match="tool_role must be 'user'"):
        LangChainPolicy(chat, tool_role="tool")  # never silently overridden


def test_qwen3_vl_family_runs_through_the_same_backend(tmp_path):
    from agent_tools.policies.tiny import build_tiny_policy_dir

    path = build_tiny_policy_dir(tmp_path / "q3", family="qwen3_vl", max_new_tokens=4)
    policy = load_policy(path, device="cpu")
    assert type(policy.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert policy.manifest.name == "tiny-untrained-qwen3-vl" and not policy.manifest.trained
    s = FakeSearcher()
    inputs = policy.build_inputs(policy.prepare(conversation(), s.frames))
    assert inputs["image_grid_thw"].shape[0] == 3
    gen = policy.generate_details(conversation(), frames=s.frames)
    assert 1 <= gen.completion_tokens <= 4
    with pytest.raises(InvalidArgumentError, match="valid: qwen2_5_vl, qwen3_vl"):
        build_tiny_policy_dir(tmp_path / "x", family="llava")


# --------------------------------------------------------------------------- LangChain native tool calling


class ToolChat(BaseChatModel):
    """A chat model with native tool calling: records bound tools and inputs, replies from a list."""

    replies: list = []
    seen: list = []
    bound: list = []

    @property
    def _llm_type(self) -> str:
        return "tool-chat"

    def bind_tools(self, tools, **kwargs):
        from langchain_core.utils.function_calling import convert_to_openai_tool

        self.bound.append([convert_to_openai_tool(t) for t in tools])
        return self.bind(tools=self.bound[-1], **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append({"messages": messages, "kwargs": kwargs})
        return ChatResult(generations=[ChatGeneration(message=self.replies[len(self.seen) - 1])])


def _seek(args, id="prov_1", content=""):
    return AIMessage(content=content, tool_calls=[{"name": "seek_video_frames", "args": args, "id": id}])


def test_native_tool_calls_become_protocol_actions_and_drive_the_temporal_graph():
    from langchain_core.messages import ToolMessage

    from agent_tools.graphs import build_temporal_graph
    from agent_tools.policies.langchain_policy import NATIVE_SYSTEM_PROMPT

    chat = ToolChat(
        replies=[
            _seek({"query": "a red car", "start_time": 10, "end_time": 20, "num_frames": 2}, content="look"),
            AIMessage(content="The car is red."),
            AIMessage(content="The car is red."),  # the completeness check
        ],
        seen=[],
        bound=[],
    )
    policy = LangChainPolicy(chat, tool_calling="native", max_side=48)
    s = FakeSearcher()
    graph = build_temporal_graph(policy, s, preview_frames=2, verify=True).compile()
    out = graph.invoke({"question": "What colour is the car?", "video": "v.mp4"})
    # the native call was acted on with its arguments, and the plain-text reply is the answer
    assert s.seeks[0]["query"] == "a red car" and s.seeks[0]["num_frames"] == 2
    assert (s.seeks[0]["start_time"], s.seeks[0]["end_time"]) == (10.0, 20.0)
    assert out["answer"] == "The car is red." and out["status"] == "answered"
    assert [f["timestamp"] for f in out["frames"]] == [13.5, 16.5]
    # bind_tools got the protocol's schema (read from the system prompt), both turns
    assert chat.bound[0] == [protocol.SEEK_TOOL] and len(chat.bound) == 2
    # the completeness check offers no tool: nothing bound, its own system prompt kept
    assert "tools" not in chat.seen[2]["kwargs"]
    assert chat.seen[2]["messages"][0].content == protocol.VERIFY_SYSTEM_PROMPT
    assert out["verification"]["sufficient"] and out["verification"]["agrees"]
    assert chat.seen[0]["kwargs"]["max_tokens"] == policy.max_new_tokens
    second = chat.seen[1]["messages"]
    assert [type(m).__name__ for m in second] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "HumanMessage",
    ]
    assert second[0].content == NATIVE_SYSTEM_PROMPT and "<tools>" not in second[0].content
    ai, tool, images = second[2], second[3], second[4]
    assert ai.content == "look" and ai.tool_calls[0]["args"]["query"] == "a red car"
    assert isinstance(tool, ToolMessage) and tool.tool_call_id == ai.tool_calls[0]["id"]
    assert isinstance(tool.content, str) and "13.5s" in tool.content and "16.5s" in tool.content
    kinds = [b["type"] for b in images.content]
    assert kinds.count("image") == 2
    labels = [images.content[i - 1]["text"] for i, k in enumerate(kinds) if k == "image"]
    assert labels == ["13.5s", "16.5s"]


def test_native_replies_map_to_protocol_text():
    from agent_tools.policies.langchain_policy import native_reply_text

    a = protocol.parse_action(native_reply_text(_seek({"query": "dog"}, content="hmm")))
    assert (a.kind, a.name, a.arguments, a.think) == (
        "tool_call",
        "seek_video_frames",
        {"query": "dog"},
        "hmm",
    )
    two = AIMessage(
        content="",
        tool_calls=[
            {"name": "seek_video_frames", "args": {"query": "first"}, "id": "1"},
            {"name": "seek_video_frames", "args": {"query": "second"}, "id": "2"},
        ],
    )
    assert protocol.parse_action(native_reply_text(two)).arguments == {"query": "first"}  # one call per turn
    bad = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "seek_video_frames", "args": "{'query': 'cat',}", "id": "3", "error": "x"}
        ],
    )
    assert protocol.parse_action(native_reply_text(bad)).arguments == {"query": "cat"}  # repaired leniently
    assert protocol.parse_action(native_reply_text(AIMessage(content="<think>t</think>B"))).answer == "B"
    assert native_reply_text(AIMessage(content="<think>t</think><answer>C</answer>")) == (
        "<think>t</think><answer>C</answer>"
    )
    assert protocol.parse_action(native_reply_text(AIMessage(content=""))).kind == "invalid"


def test_native_conversation_is_what_chat_completions_accept():
    """ChatOpenAI's payload for a native-mode conversation: tool_calls, text-only tool turn, images next."""
    langchain_openai = pytest.importorskip("langchain_openai")
    from agent_tools.policies.langchain_policy import to_native_messages

    s = FakeSearcher()
    convo = conversation() + [
        {"role": "assistant", "content": "<think>x</think><tool_call>not json at all</tool_call>"},
        {"role": "tool", "name": "parse_error", "content": "Your last reply could not be used"},
    ]
    policy = LangChainPolicy(RecordingChat(replies=[], seen=[], call_kwargs=[]), max_side=32)
    prepared = resolve_frames(convo, s.frames, max_side=32)
    msgs = to_native_messages(prepared)
    chat = langchain_openai.ChatOpenAI(model="gpt-4o-mini", api_key="x")
    payload = chat.bind_tools([protocol.SEEK_TOOL])
    body = chat._get_request_payload(msgs, **payload.kwargs)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant", "user"]
    assistant, tool, images = body["messages"][2], body["messages"][3], body["messages"][4]
    assert assistant["tool_calls"][0]["function"]["name"] == "seek_video_frames"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"query": "car"}
    assert tool["tool_call_id"] == assistant["tool_calls"][0]["id"] and isinstance(tool["content"], str)
    assert [p["type"] for p in images["content"]].count("image_url") == 1
    # the corrective turn answers no call: a user message, not an orphan tool message
    assert body["messages"][6]["content"][0]["text"].startswith("[parse_error result]")
    assert body["tools"][0]["function"]["name"] == "seek_video_frames"
    assert policy.tool_calling == "text"


def test_native_mode_is_refused_where_it_cannot_work():
    chat = RecordingChat(replies=[], seen=[], call_kwargs=[])
    with pytest.raises(InvalidArgumentError, match="needs a chat model with bind_tools"):
        LangChainPolicy(lambda m: m, tool_calling="native")
    with pytest.raises(InvalidArgumentError, match="RecordingChat has none"):
        LangChainPolicy(chat, tool_calling="native")  # BaseChatModel.bind_tools only raises
    with pytest.raises(InvalidArgumentError, match="tool_calling must be one of text, native"):
        LangChainPolicy(chat, tool_calling="json")
    with pytest.raises(InvalidArgumentError, match="tool_role must be 'tool'"):
        LangChainPolicy(ToolChat(replies=[], seen=[], bound=[]), tool_calling="native", tool_role="user")


def test_native_policy_on_chatopenai_runs_the_temporal_graph_over_mocked_http():
    """LangChainPolicy(ChatOpenAI, tool_calling='native') in the graph: real request building and parsing."""
    langchain_openai = pytest.importorskip("langchain_openai")
    from agent_tools.graphs import build_temporal_graph
    from tests.test_langchain_tools import chat_completion, openai_http

    bodies, http = openai_http(
        [
            chat_completion(
                content="Let me look.",
                tool_calls=[("call_x", "seek_video_frames", {"query": "red car", "num_frames": 2})],
            ),
            chat_completion(content="<answer>red</answer>"),
        ]
    )
    chat = langchain_openai.ChatOpenAI(model="gpt-4o-mini", api_key="x", http_client=http, max_retries=0)
    policy = LangChainPolicy(chat, tool_calling="native", max_side=32)
    s = FakeSearcher()
    out = (
        build_temporal_graph(policy, s, preview_frames=2)
        .compile()
        .invoke({"question": "Colour?", "video": "v.mp4"})
    )
    assert out["answer"] == "red" and s.seeks[0]["query"] == "red car"
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["seek_video_frames"]
    assert bodies[0].get("max_completion_tokens", bodies[0].get("max_tokens")) == policy.max_new_tokens
    sent = bodies[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert "<tools>" not in sent[0]["content"]
    assert (
        sent[2]["content"] == "Let me look."
        and sent[2]["tool_calls"][0]["function"]["name"] == "seek_video_frames"
    )
    assert sent[3]["tool_call_id"] == sent[2]["tool_calls"][0]["id"] and isinstance(sent[3]["content"], str)
    assert [p["type"] for p in sent[4]["content"]].count("image_url") == 2
    assert [p["type"] for p in sent[1]["content"]].count("image_url") == 2  # the preview frames
