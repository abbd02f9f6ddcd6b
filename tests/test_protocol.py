"""The text protocol: tool schemas, prompts, the tolerant parser and argument coercion."""

from __future__ import annotations

import json
import re

import pytest

from agent_tools import protocol
from agent_tools.protocol import (
    cleanup_response,
    coerce_seek_arguments,
    parse_action,
    parse_verification,
    repair_json,
)

CALL = '{"name": "seek_video_frames", "arguments": {"query": "a red car", "start_time": 10, "end_time": 20}}'


def test_seek_schema_matches_timesearch_r_tool():
    fn = protocol.SEEK_TOOL["function"]
    assert fn["name"] == "seek_video_frames"
    params = fn["parameters"]
    assert set(params["properties"]) == {"query", "start_time", "end_time", "num_frames"}
    assert params["required"] == ["query"]
    assert params["properties"]["num_frames"]["type"] == "integer"
    assert params["properties"]["start_time"]["type"] == "number"
    assert protocol.MAX_FRAMES_PER_SEARCH == 8


def test_system_prompt_embeds_parseable_tool_schemas():
    text = protocol.system_prompt([protocol.SEEK_TOOL, protocol.MOMENT_TOOL])
    block = re.search(r"<tools>\n(.*)\n</tools>", text, re.DOTALL).group(1)
    names = [json.loads(line)["function"]["name"] for line in block.splitlines()]
    assert names == ["seek_video_frames", "search_moments"]
    for tag in ("<think>", "<tool_call>", "<answer>"):
        assert tag in text


def test_user_prompt_states_question_duration_budget_and_window():
    text = protocol.user_prompt("What is cut?", 615.25, 8, window=(12.0, 30.5))
    assert "Question: What is cut?" in text
    assert "615.2 seconds" in text or "615.3 seconds" in text
    assert "at most 8 replies" in text
    assert "12.0s" in text and "30.5s" in text


def test_timestamps_are_formatted_like_12_5s():
    assert protocol.format_timestamp(12.5) == "12.5s"
    assert protocol.format_timestamp(3) == "3.0s"
    assert protocol.format_timestamps([12.5, 13.04]) == "12.5s, 13.0s"
    text = protocol.search_response_text([12.5, 13.0])
    assert "12.5s, 13.0s" in text and "<answer></answer>" in text
    assert "no frames" in protocol.search_response_text([])


def test_parse_tool_call_and_answer():
    a = parse_action(f"<think>need to look</think>\n<tool_call>\n{CALL}\n</tool_call>")
    assert a.kind == "tool_call" and a.name == "seek_video_frames"
    assert a.arguments == {"query": "a red car", "start_time": 10, "end_time": 20}
    assert a.think == "need to look"
    b = parse_action("<think>seen it</think><answer> (B) red </answer>")
    assert b.kind == "answer" and b.answer == "(B) red" and b.think == "seen it"


def test_first_block_wins_and_text_after_it_is_dropped():
    a = parse_action(f"<think>x</think><answer>A</answer><tool_call>{CALL}</tool_call>")
    assert a.kind == "answer" and a.answer == "A"
    b = parse_action(f"<think>x</think><tool_call>{CALL}</tool_call><answer>A</answer>")
    assert b.kind == "tool_call"
    assert b.text.endswith("</tool_call>")
    assert cleanup_response(f"<tool_call>{CALL}</tool_call>\n<tool_response>fake</tool_response>").endswith(
        "</tool_call>"
    )


def test_tags_mentioned_inside_think_do_not_count():
    a = parse_action(
        f"<think>I could write <answer>B</answer> but first search</think><tool_call>{CALL}</tool_call>"
    )
    # a *closed* block inside the thought is the exception: cleanup cuts at the first closer
    # (TimeSearch-R's rule), so the turn that was acted on ends there and is that answer
    assert a.kind == "answer" and a.answer == "B"
    assert a.text == "<think>I could write <answer>B</answer>"
    c = parse_action(f"<think>I will use <answer> tags later</think><tool_call>{CALL}</tool_call>")
    assert c.kind == "tool_call" and c.arguments["query"] == "a red car"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "{'name': 'seek_video_frames', 'arguments': {'query': 'dog', 'num_frames': 4,},}",
            {"query": "dog", "num_frames": 4},
        ),
        (
            '{"name": "seek_video_frames", "arguments": "{\\"query\\": \\"dog\\", \\"start_time\\": 5}"}',
            {"query": "dog", "start_time": 5},
        ),
        (
            '{name: seek_video_frames, arguments: {query: "it\'s a dog", end_time: 30',
            {"query": "it's a dog", "end_time": 30},
        ),
        ('```json\n{"name": "seek_video_frames", "arguments": {"query": "dog"}}\n```', {"query": "dog"}),
        (
            '{"name": "seek_video_frames", "parameters": {"query": "dog", "flag": True, "x": None}}',
            {"query": "dog", "flag": True, "x": None},
        ),
        ('{"function": {"name": "seek_video_frames", "arguments": {"query": "dog"}}}', {"query": "dog"}),
        ('{"name": "seek_video_frames", "arguments": {"query": "dog"}} trailing words', {"query": "dog"}),
        # json-repair cases: an invented second object, a raw newline in a string, a cut-off string
        (
            '{"name": "seek_video_frames", "arguments": {"query": "dog"}}\n{"name": "x", "arguments": {}}',
            {"query": "dog"},
        ),
        (
            '{"name": "seek_video_frames", "arguments": {"query": "a dog\nrunning"}}',
            {"query": "a dog\nrunning"},
        ),
        ('{"name": "seek_video_frames", "arguments": {"query": "a brown dog', {"query": "a brown dog"}),
    ],
)
def test_malformed_json_is_repaired(raw, expected):
    a = parse_action(f"<think>t</think><tool_call>{raw}</tool_call>")
    assert a.kind == "tool_call", a.error
    assert a.arguments == expected


def test_unclosed_blocks_are_tolerated():
    a = parse_action(
        '<think>t</think><tool_call>{"name": "seek_video_frames", "arguments": {"query": "dog"}}'
    )
    assert a.kind == "tool_call" and a.arguments == {"query": "dog"}
    assert parse_action("<think>t</think><answer>C").answer == "C"


@pytest.mark.parametrize(
    "reply, fragment",
    [
        ("I think the answer is B.", "neither a <tool_call> nor an <answer>"),
        ("<think>t</think><answer>  </answer>", "empty"),
        ("<think>t</think><tool_call>search for the dog please</tool_call>", "not valid JSON"),
        (
            '<think>t</think><tool_call>{"name": "zoom", "arguments": {}}</tool_call>',
            "valid tools: seek_video_frames",
        ),
        ('<think>t</think><tool_call>{"arguments": {"query": "x"}}</tool_call>', 'no "name"'),
        (
            '<think>t</think><tool_call>{"name": "seek_video_frames", "arguments": [1, 2]}</tool_call>',
            "must be a JSON object",
        ),
        ('<think>t</think><tool_call>["seek_video_frames"]</tool_call>', "JSON object"),
        ("", "neither"),
    ],
)
def test_invalid_replies_give_an_error_never_an_exception(reply, fragment):
    a = parse_action(reply)
    assert a.kind == "invalid"
    assert fragment in a.error
    message = protocol.corrective_text(a.error)
    assert a.error in message and "<tool_call>" in message and "<answer>" in message


def test_repair_json_raises_value_error_on_garbage():
    with pytest.raises(ValueError):
        repair_json("no json here")
    assert repair_json("[1, 2, 3,]") == [1, 2, 3]
    assert repair_json('{"a": "x\\"y"}') == {"a": 'x"y'}
    assert repair_json("{'a': 'say \"hi\"'}") == {"a": 'say "hi"'}


def test_coerce_seek_arguments_is_lenient_like_the_reference_tool():
    assert coerce_seek_arguments({}, 120.0) == {
        "query": "",
        "start_time": 0.0,
        "end_time": 120.0,
        "num_frames": 8,
    }
    got = coerce_seek_arguments(
        {"query": " dog ", "start_time": "12.5s", "end_time": "soon", "num_frames": 99}, 60.0
    )
    assert got == {"query": "dog", "start_time": 12.5, "end_time": 60.0, "num_frames": 8}
    got = coerce_seek_arguments({"query": "x", "start_time": -4, "end_time": 1e9, "num_frames": 0}, 60.0)
    assert got["start_time"] == 0.0 and got["end_time"] == 60.0 and got["num_frames"] == 1
    got = coerce_seek_arguments({"query": None, "start_time": True, "end_time": float("nan")}, None)
    assert got["query"] == "" and got["start_time"] == 0.0 and got["end_time"] == 65535.0
    # a reversed window is kept so the searcher can reject it with its own message
    got = coerce_seek_arguments({"query": "x", "start_time": 50, "end_time": 40}, 60.0)
    assert (got["start_time"], got["end_time"]) == (50.0, 40.0)


def test_parse_verification():
    v = parse_verification("<think>same dog</think><answer>matched</answer><start>12</start><end>15.5</end>")
    assert (v.matched, v.start, v.end, v.think) == (True, 12.0, 15.5, "same dog")
    v = parse_verification("<answer>matched</answer><start>9s</start><end>4s</end>")
    assert (v.start, v.end) == (4.0, 9.0)
    v = parse_verification("<think>no</think><answer>not_matched</answer><query>a dog on a beach</query>")
    assert v.matched is False and v.query == "a dog on a beach"
    v = parse_verification("<answer>not matched</answer>")
    assert v.matched is False and v.query is None
    assert parse_verification("it matches").matched is None
    assert parse_verification("<answer>maybe</answer>").error


def test_insufficient_answers_are_detected():
    for text in (
        "I don't know",
        "i do not know.",
        "I DON\u2019T KNOW",
        "",
        None,
        "Cannot tell from these frames",
    ):
        assert protocol.is_insufficient(text)
    for text in ("red", "B", "The chef cuts onions"):
        assert not protocol.is_insufficient(text)
