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
    policy = OpenAIPolicy("http://vllm:8000/v1/", client=client, max_side=96)
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
    def fail(request):
        raise httpx.ConnectError("refused")

    p = OpenAIPolicy("http://nowhere/v1", model="m", client=httpx.Client(transport=httpx.MockTransport(fail)))
    with pytest.raises(PolicyLoadError, match="cannot reach the policy server"):
        p.generate([{"role": "user", "content": "hi"}])
    q = OpenAIPolicy(
        "http://x/v1",
        model="m",
        client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500, text="boom"))),
    )
    with pytest.raises(PolicyLoadError, match="answered 500"):
        q.generate([{"role": "user", "content": "hi"}])


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
