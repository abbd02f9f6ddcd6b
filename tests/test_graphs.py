"""The temporal and corpus graphs, the runner, persistence and composition.

Most tests use a scripted policy over small fakes of the engines (deterministic, fast);
the last ones run the real TemporalSearcher on a synthetic video whose frames carry their
own index, and the tiny untrained Qwen2.5-VL through the real ``generate`` path.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Annotated, Optional

import numpy as np
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs import (
    AgentRunner,
    Rollout,
    Turn,
    build_corpus_graph,
    build_temporal_graph,
    contains_pixel_data,
    merge_frames,
)
from agent_tools.policies import PolicyManifest, ScriptedPolicy
from agent_tools.policies.base import image_to_base64
from agent_tools.types import Moment
from tests.agent_fakes import FakeMomentSearcher, FakeSearcher, answer, seek_call, tiny_policy

Q = "What colour is the car that turns left?"


def run(policy, searcher=None, **kw):
    searcher = searcher or FakeSearcher()
    graph = build_temporal_graph(policy, searcher, **kw).compile()
    return graph.invoke({"question": Q, "video": "v.mp4"}), searcher


def frames_in(message) -> list[float]:
    return (
        [b["timestamp"] for b in message["content"] if b.get("type") == "frame"]
        if isinstance(message["content"], list)
        else []
    )


# --------------------------------------------------------------------------- temporal graph


def test_search_then_answer():
    policy = ScriptedPolicy([seek_call("red car turning", 10, 20, 4), answer("red")])
    out, s = run(policy)
    assert out["answer"] == "red" and out["status"] == "answered" and out["turn"] == 2
    assert s.seeks == [
        {"video": "v.mp4", "query": "red car turning", "start_time": 10.0, "end_time": 20.0, "num_frames": 4}
    ]
    assert [f["timestamp"] for f in out["frames"]] == [12.0, 14.0, 16.0, 18.0]
    assert all(f["query"] == "red car turning" and f["turn"] == 1 for f in out["frames"])
    assert "messages" not in out  # the conversation stays inside the graph's state
    # turn 1 saw the system prompt and the preview; turn 2 also saw the searched frames
    first, second = policy.calls
    assert first["messages"][0]["content"].startswith(protocol.system_prompt()[:40])
    assert first["num_images"] == 8 and second["num_images"] == 12
    tool = second["messages"][-1]
    assert tool["role"] == "tool" and tool["name"] == "seek_video_frames"
    texts = [b.get("text") for b in tool["content"]]
    # each frame reference comes right after its timestamp text
    for i, b in enumerate(tool["content"]):
        if b["type"] == "frame":
            assert texts[i - 1] == protocol.format_timestamp(b["timestamp"])
    assert "12.0s, 14.0s, 16.0s, 18.0s" in texts[-1]


def test_malformed_call_gets_a_corrective_tool_message_and_the_loop_goes_on():
    policy = ScriptedPolicy(
        [
            "I will now search.",
            "<think>t</think><tool_call>{'name': 'seek_video_frames', 'arguments': {'query': 'dog',}}</tool_call>",
            answer("a dog"),
        ]
    )
    graph = build_temporal_graph(policy, FakeSearcher()).compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    out = graph.invoke({"question": Q, "video": "v.mp4"}, cfg)
    assert out["answer"] == "a dog" and out["turn"] == 3
    msgs = graph.get_state(cfg).values["messages"]
    correction = msgs[3]
    assert (
        isinstance(correction, ToolMessage)
        and correction.name == "parse_error"
        and correction.status == "error"
    )
    assert "neither a <tool_call> nor an <answer>" in correction.content
    assert policy.calls[1]["messages"][-1]["name"] == "parse_error"  # the policy read the correction
    assert isinstance(msgs[4], AIMessage) and msgs[4].tool_calls[0]["args"] == {"query": "dog"}


def test_search_errors_go_back_to_the_policy_with_the_valid_range():
    policy = ScriptedPolicy([seek_call("x", 50, 40), answer("unsure")])
    out, s = run(policy)
    err = policy.calls[1]["messages"][-1]
    assert err["role"] == "tool" and "The search failed" in err["content"] and "valid" in err["content"]
    assert out["answer"] == "unsure" and out["frames"] == [] and s.seeks == []


def test_turn_budget_is_enforced():
    policy = ScriptedPolicy([seek_call("x", 0, 10 + i) for i in range(10)])
    out, s = run(policy, max_turns=3)
    assert out["status"] == "budget_exhausted" and out["answer"] is None and out["turn"] == 3
    assert len(policy.calls) == 3 and len(s.seeks) == 3
    # invalid replies count against the budget too
    garbage = ScriptedPolicy(["nonsense"], repeat_last=True)
    out, _ = run(garbage, max_turns=4)
    assert out["status"] == "budget_exhausted" and len(garbage.calls) == 4


def test_force_answer_asks_once_more_after_the_budget():
    policy = ScriptedPolicy([seek_call("x"), seek_call("y"), answer("blue")])
    out, _ = run(policy, max_turns=2, force_answer=True)
    assert out["answer"] == "blue" and out["status"] == "budget_exhausted" and out["turn"] == 3
    assert policy.calls[-1]["messages"][-1]["content"] == protocol.budget_text()


def test_tokens_per_turn_reach_the_policy():
    policy = ScriptedPolicy([answer("x")])
    run(policy, max_new_tokens=33)
    assert policy.calls[0]["max_new_tokens"] == 33
    p2 = ScriptedPolicy([answer("x")], max_new_tokens=99)
    run(p2)
    assert p2.calls[0]["max_new_tokens"] == 99


def test_preview_frames_and_window_hint():
    policy = ScriptedPolicy([answer("x")])
    graph = build_temporal_graph(policy, FakeSearcher(), preview_frames=3).compile()
    graph.invoke({"question": Q, "video": "v.mp4", "window": [12, 30]})
    user = policy.calls[0]["messages"][1]
    assert frames_in(user) == [15.0, 30.0, 45.0]
    assert "between 12.0s and 30.0s" in user["content"][-1]["text"]
    none = ScriptedPolicy([answer("x")])
    run(none, preview_frames=0)
    assert frames_in(none.calls[0]["messages"][1]) == [] and none.calls[0]["num_images"] == 0


def test_bad_input_and_arguments_are_rejected():
    with pytest.raises(InvalidArgumentError, match="max_turns"):
        build_temporal_graph(ScriptedPolicy(["x"]), FakeSearcher(), max_turns=0)
    with pytest.raises(InvalidArgumentError, match="top_k must be >= 1"):
        build_corpus_graph(ScriptedPolicy(["x"]), FakeMomentSearcher(MOMENTS), top_k=0)
    graph = build_temporal_graph(ScriptedPolicy(["x"]), FakeSearcher()).compile()
    with pytest.raises(InvalidArgumentError, match="question"):
        graph.invoke({"question": " ", "video": "v.mp4"})


# --------------------------------------------------------------------------- verification


def test_verification_re_answers_from_the_searched_frames_alone():
    policy = ScriptedPolicy(
        [seek_call("car", 10, 20, 2), seek_call("car", 40, 50, 1), answer("Red."), "<answer>red</answer>"]
    )
    out, _ = run(policy, verify=True)
    v = out["verification"]
    assert v == {
        "answer": "red",
        "sufficient": True,
        "agrees": True,
        "num_frames": 3,
        "reply": "<answer>red</answer>",
    }
    check = policy.calls[-1]["messages"]
    assert check[0] == {"role": "system", "content": protocol.VERIFY_SYSTEM_PROMPT}
    assert len(check) == 2
    # only the searched frames, in time order, each after its timestamp; no preview frames
    assert frames_in(check[1]) == [13.5, 16.5, 45.0]
    assert check[1]["content"][-1]["text"] == f"Question: {Q}"
    assert policy.calls[-1]["num_images"] == 3


def test_verification_reports_insufficient_evidence():
    policy = ScriptedPolicy([seek_call("car"), answer("red"), "<think>cannot see</think>I don't know"])
    out, _ = run(policy, verify=True)
    assert out["verification"]["sufficient"] is False and out["verification"]["agrees"] is False
    assert out["verification"]["answer"] == "I don't know"
    # no searched frames: insufficient without asking the policy
    p2 = ScriptedPolicy([answer("red")])
    out, _ = run(p2, verify=True)
    assert out["verification"]["num_frames"] == 0 and out["verification"]["sufficient"] is False
    assert out["verification"]["answer"] is None  # no re-answer is made up
    assert len(p2.calls) == 1


# --------------------------------------------------------------------------- runner (CLI and trainer view)


def test_runner_yields_turns_then_a_rollout_with_the_full_trajectory():
    policy = ScriptedPolicy(
        [seek_call("red car", 10, 20, 2, think="look closer"), "bad reply", answer("red")]
    )
    runner = AgentRunner(build_temporal_graph(policy, FakeSearcher(), verify=False))
    events = list(runner.stream(Q, "v.mp4"))
    turns, rollout = events[:-1], events[-1]
    assert all(isinstance(t, Turn) for t in turns) and isinstance(rollout, Rollout)
    assert [t.action for t in turns] == ["tool_call", "invalid", "answer"]
    t1 = turns[0]
    assert t1.think == "look closer" and t1.arguments["query"] == "red car"
    assert t1.window == (10.0, 20.0) and t1.timestamps == [13.5, 16.5]
    assert "13.5s, 16.5s" in t1.observation
    assert turns[1].error and "could not be used" in turns[1].observation
    assert rollout.answer == "red" and rollout.status == "answered"
    assert rollout.generated == [c["reply"] for c in policy.calls]
    assert rollout.searched_timestamps == [13.5, 16.5]
    # the trajectory: system, user, then (assistant, tool) pairs, ending with the answer
    roles = [m["role"] for m in rollout.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert [m["content"] for m in rollout.messages if m["role"] == "assistant"] == rollout.generated
    json.dumps(rollout.to_dict())  # JSON-ready, frames as references


def test_runner_exposes_token_ids_from_the_tiny_transformers_policy():
    policy = tiny_policy(max_new_tokens=6)
    graph = build_temporal_graph(policy, FakeSearcher(), max_turns=2, preview_frames=2)
    rollout = AgentRunner(graph, max_turns=2).run(Q, "v.mp4")
    # an untrained model never follows the protocol: two corrective turns, then the budget ends it
    assert rollout.status == "budget_exhausted" and len(rollout.turns) == 2
    for t in rollout.turns:
        ids = t.generation["completion_ids"]
        assert 1 <= len(ids) <= 6 and t.generation["completion_tokens"] == len(ids)
        assert t.generation["raw_text"] == policy.processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert rollout.turns[1].generation["prompt_tokens"] > rollout.turns[0].generation["prompt_tokens"]


# --------------------------------------------------------------------------- persistence


def _sqlite_blobs(path) -> list[bytes]:
    conn = sqlite3.connect(path)
    blobs = []
    for (table,) in conn.execute("select name from sqlite_master where type='table'"):
        for row in conn.execute(f"select * from {table}"):
            blobs += [v if isinstance(v, bytes) else str(v).encode() for v in row if v is not None]
    conn.close()
    return blobs


def test_pixel_detector_finds_images_in_a_checkpoint(tmp_path):
    """Positive control: the detector used below does see an image stored in a checkpoint."""
    from PIL import Image

    img = Image.new("RGB", (64, 48), (200, 10, 10))

    class S(TypedDict):
        messages: Annotated[list[AnyMessage], add_messages]

    g = StateGraph(S)
    g.add_node(
        "n",
        lambda s: {
            "messages": [
                HumanMessage(
                    content=[{"type": "image", "base64": image_to_base64(img), "mime_type": "image/jpeg"}]
                )
            ]
        },
    )
    g.add_edge(START, "n")
    path = tmp_path / "ck.sqlite"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        g.compile(checkpointer=saver).invoke({"messages": []}, {"configurable": {"thread_id": "x"}})
    assert any(contains_pixel_data(b) for b in _sqlite_blobs(path))


def test_sqlite_checkpoints_hold_references_only_and_state_survives_reconnect(tmp_path):
    path = tmp_path / "ck.sqlite"
    policy = ScriptedPolicy([seek_call("red car", 10, 20, 4), answer("red"), "<answer>red</answer>"])
    s = FakeSearcher()
    cfg = {"configurable": {"thread_id": "run-1"}}
    with SqliteSaver.from_conn_string(str(path)) as saver:
        graph = build_temporal_graph(policy, s, verify=True).compile(checkpointer=saver)
        graph.invoke({"question": Q, "video": "v.mp4"}, cfg)
    assert s.frame_calls  # pixels were decoded for the policy ...
    blobs = _sqlite_blobs(path)
    assert blobs and not any(contains_pixel_data(b) for b in blobs)  # ... but never checkpointed
    with SqliteSaver.from_conn_string(str(path)) as saver:
        graph = build_temporal_graph(ScriptedPolicy(["unused"]), FakeSearcher(), verify=True).compile(
            checkpointer=saver
        )
        state = graph.get_state(cfg).values
        history = list(graph.get_state_history(cfg))
    assert state["answer"] == "red" and state["verification"]["sufficient"] is True
    assert [type(m) for m in state["messages"]] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        ToolMessage,
        AIMessage,
    ]
    assert state["messages"][3].artifact["frames"][0]["timestamp"] == 12.0
    assert [f["timestamp"] for f in state["frames"]] == [12.0, 14.0, 16.0, 18.0]
    assert len(history) >= 6


def test_resume_after_a_crash_continues_from_the_last_checkpoint(tmp_path):
    path = tmp_path / "ck.sqlite"

    def crash(_):
        raise RuntimeError("GPU fell over")

    s1 = FakeSearcher()
    with SqliteSaver.from_conn_string(str(path)) as saver:
        runner = AgentRunner(
            build_temporal_graph(ScriptedPolicy([seek_call("car", 0, 30, 2), crash]), s1), checkpointer=saver
        )
        with pytest.raises(RuntimeError, match="GPU fell over"):
            runner.run(Q, "v.mp4", thread_id="job-7")
    assert len(s1.seeks) == 1
    s2 = FakeSearcher()
    policy = ScriptedPolicy([answer("red")])
    with SqliteSaver.from_conn_string(str(path)) as saver:
        runner = AgentRunner(build_temporal_graph(policy, s2), checkpointer=saver)
        rollout = runner.resume("job-7")
    assert s2.seeks == []  # the finished search was not run again
    assert rollout.answer == "red" and rollout.status == "answered"
    assert [t.action for t in rollout.turns] == ["tool_call", "answer"]
    assert rollout.turns[0].timestamps == [10.0, 20.0]
    assert policy.calls[0]["num_images"] == 10  # it saw the preview and the earlier search
    with pytest.raises(InvalidArgumentError, match="checkpointer"):
        AgentRunner(build_temporal_graph(policy, s2)).resume("job-7")


# --------------------------------------------------------------------------- composition and streaming


def test_steps_stream_in_order():
    graph = build_temporal_graph(
        ScriptedPolicy([seek_call("x"), answer("y"), "y"]), FakeSearcher(), verify=True
    ).compile()
    nodes = [
        next(iter(chunk)) for chunk in graph.stream({"question": Q, "video": "v.mp4"}, stream_mode="updates")
    ]
    assert nodes == ["preview", "policy", "seek", "policy", "answer", "verify"]


def test_works_as_a_subgraph_inside_a_users_graph():
    class UserState(TypedDict, total=False):
        question: str
        video: str
        answer: Optional[str]
        frames: list
        messages: Annotated[list[AnyMessage], add_messages]
        report: str

    inner = build_temporal_graph(
        ScriptedPolicy([seek_call("car", 0, 20, 2), answer("red")]), FakeSearcher()
    ).compile()
    g = StateGraph(UserState)
    g.add_node("plan", lambda s: {"messages": [HumanMessage(content="user chat")], "video": "v.mp4"})
    g.add_node("video_agent", inner)
    g.add_node("report", lambda s: {"report": f"{s['answer']} at {[f['timestamp'] for f in s['frames']]}"})
    g.add_edge(START, "plan")
    g.add_edge("plan", "video_agent")
    g.add_edge("video_agent", "report")
    g.add_edge("report", END)
    app = g.compile(checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "u"}}
    seen = []
    for ns, chunk in app.stream({"question": Q}, cfg, stream_mode="updates", subgraphs=True):
        seen.append((ns[0].split(":")[0] if ns else "", next(iter(chunk))))
    out = app.get_state(cfg).values
    assert out["report"] == "red at [6.5, 13.5]"
    assert [m.content for m in out["messages"]] == ["user chat"]  # the user's conversation is untouched
    assert ("video_agent", "seek") in seen and ("", "report") in seen  # inner steps stream too


# --------------------------------------------------------------------------- corpus graph


MOMENTS = [
    Moment(video_id="dog-park", path="dog.mp4", start=10, end=20, score=0.9, peak_time=12),
    Moment(video_id="cat-sofa", path="cat.mp4", start=5, end=9, score=0.8),
    Moment(video_id="car-road", path="car.mp4", start=0, end=4, score=0.7),
]


def test_corpus_verify_refine_and_ground():
    ms = FakeMomentSearcher(MOMENTS)
    policy = ScriptedPolicy(
        [
            "<think>a dog, not a cat</think><answer>not_matched</answer><query>cat sofa</query>",
            "<think>yes</think><answer>matched</answer><start>6</start><end>8.5</end>",
        ]
    )
    out = (
        build_corpus_graph(policy, ms, frames=FakeSearcher().frames)
        .compile()
        .invoke({"query": "a sleeping pet"})
    )
    assert out["status"] == "matched" and out["round"] == 2
    assert out["answer"] == {
        "video_id": "cat-sofa",
        "path": "cat.mp4",
        "start": 6.0,
        "end": 8.5,
        "score": 0.8,
    }
    assert ms.queries == ["a sleeping pet", "cat sofa"]
    assert [(r["matched"], r["query"], r["moment"]["video_id"]) for r in out["rounds"]] == [
        (False, "a sleeping pet", "dog-park"),
        (True, "cat sofa", "cat-sofa"),
    ]
    first = policy.calls[0]["messages"]
    assert first[0]["content"] == protocol.CORPUS_SYSTEM_PROMPT
    assert frames_in(first[1]) == [11.25, 13.75, 16.25, 18.75]
    assert "Query: a sleeping pet" in first[1]["content"][-1]["text"]  # always the user's query
    assert policy.calls[0]["num_images"] == 4


def test_corpus_gives_up_after_max_rounds_and_skips_rejected_moments():
    ms = FakeMomentSearcher(MOMENTS)
    policy = ScriptedPolicy(["<answer>not_matched</answer>"], repeat_last=True)
    out = (
        build_corpus_graph(policy, ms, max_rounds=2, frames=FakeSearcher().frames)
        .compile()
        .invoke({"query": "dog"})
    )
    assert out["status"] == "not_found" and out["answer"] is None and out["round"] == 2
    assert [r["moment"]["video_id"] for r in out["rounds"]] == ["dog-park", "cat-sofa"]
    # more rounds than moments: stops when nothing new is left
    p2 = ScriptedPolicy(["garbage"], repeat_last=True)
    out = (
        build_corpus_graph(p2, ms, max_rounds=9, frames=FakeSearcher().frames)
        .compile()
        .invoke({"query": "dog"})
    )
    assert out["status"] == "not_found" and out["round"] == 3 and out["rounds"][0]["matched"] is None


def test_corpus_runs_the_temporal_graph_inside_the_matched_video(tmp_path):
    ms = FakeMomentSearcher(MOMENTS)
    policy = ScriptedPolicy(["<answer>matched</answer>", seek_call("dog", 10, 20, 2), answer("brown")])
    builder = build_corpus_graph(policy, ms, temporal=FakeSearcher(), temporal_kwargs={"verify": False})
    path = tmp_path / "corpus.sqlite"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        out = builder.compile(checkpointer=saver).invoke(
            {"query": "dog park", "question": "What colour is the dog?"}, {"configurable": {"thread_id": "c"}}
        )
    blobs = _sqlite_blobs(path)
    assert blobs and not any(contains_pixel_data(b) for b in blobs)
    assert out["answer"]["start"] == 10.0 and out["answer"]["end"] == 20.0  # retrieved window kept
    assert out["temporal"]["answer"] == "brown" and out["temporal"]["status"] == "answered"
    assert {f["video"] for f in out["temporal"]["frames"]} == {"dog.mp4"}
    hint = policy.calls[1]["messages"][1]["content"][-1]["text"]
    assert "between 10.0s and 20.0s" in hint and "What colour is the dog?" in hint


def test_corpus_soft_refinement_when_the_checkpoint_provides_it():
    ms = FakeMomentSearcher(MOMENTS)

    class SoftPolicy(ScriptedPolicy):
        def refine_query_vector(self, messages, frames=None):
            return np.ones(4, dtype=np.float32) * 0.5

    policy = SoftPolicy(
        ["<answer>not_matched</answer><query>ignored</query>", "<answer>matched</answer>"],
        manifest=PolicyManifest(soft_refinement=True),
    )
    out = build_corpus_graph(policy, ms, frames=FakeSearcher().frames).compile().invoke({"query": "dog"})
    assert isinstance(ms.queries[1], np.ndarray) and ms.queries[1].tolist() == [0.5] * 4
    assert out["answer"]["video_id"] == "cat-sofa"


def test_corpus_rejects_a_policy_claiming_soft_refinement_it_cannot_do():
    """No silent fallback to text refinement when the manifest promises soft refinement."""
    policy = ScriptedPolicy(["<answer>matched</answer>"], manifest=PolicyManifest(soft_refinement=True))
    with pytest.raises(InvalidArgumentError, match="no refine_query_vector"):
        build_corpus_graph(policy, FakeMomentSearcher(MOMENTS), frames=FakeSearcher().frames)


def test_merge_frames_keeps_first_occurrence_in_order():
    a = [{"video": "v", "timestamp": 1.0, "turn": 1}, {"video": "v", "timestamp": 2.0, "turn": 1}]
    b = [{"video": "v", "timestamp": 2.0004, "turn": 2}, {"video": "w", "timestamp": 2.0, "turn": 2}]
    assert [(f["video"], f["timestamp"], f["turn"]) for f in merge_frames(a, b)] == [
        ("v", 1.0, 1),
        ("v", 2.0, 1),
        ("w", 2.0, 2),
    ]


# --------------------------------------------------------------------------- real engines


def test_real_temporal_searcher_on_a_synthetic_video(searcher, clip20, tmp_path):
    """The graph over the real TemporalSearcher: the policy gets the right frames, checkpoints no pixels."""
    from agent_tools.synthetic import read_frame_index

    seen = {}

    def inspect(messages):
        tool = messages[-1]
        imgs = [(b["timestamp"], b["image"]) for b in tool["content"] if b.get("type") == "image"]
        seen["indices"] = [(t, read_frame_index(np.asarray(img))) for t, img in imgs]
        return answer("seen")

    policy = ScriptedPolicy(
        [seek_call("a bright square", 4, 8, 3), inspect, "<answer>seen</answer>"], max_side=None
    )
    path = tmp_path / "ck.sqlite"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        runner = AgentRunner(build_temporal_graph(policy, searcher, verify=True), checkpointer=saver)
        rollout = runner.run(Q, str(clip20), thread_id="real")
    assert rollout.answer == "seen" and rollout.duration == pytest.approx(20.0, abs=0.2)
    ts = rollout.turns[0].timestamps
    assert len(ts) == 3 and all(4.0 <= t <= 8.0 for t in ts)
    # the pixels the policy got are the frames at those timestamps (10 fps video)
    assert seen["indices"] == [(t, round(t * 10)) for t in ts]
    assert rollout.verification["num_frames"] == 3 and rollout.verification["sufficient"]
    assert not any(contains_pixel_data(b) for b in _sqlite_blobs(path))


def test_tiny_policy_end_to_end_on_a_real_video(searcher, clip20):
    policy = tiny_policy(max_new_tokens=4)
    rollout = AgentRunner(
        build_temporal_graph(policy, searcher, max_turns=2, preview_frames=4), max_turns=2
    ).run(Q, str(clip20))
    assert rollout.status == "budget_exhausted" and len(rollout.turns) == 2
    assert all(t.action == "invalid" and t.generation["completion_ids"] for t in rollout.turns)


def test_corpus_graph_on_a_real_index(tmp_path, tiny_encoder, searcher):
    """Real CorpusIndex + MomentSearcher + TemporalSearcher on two synthetic videos."""
    from pathlib import Path

    from agent_tools.corpus import CorpusIndex, MomentSearcher
    from agent_tools.langchain_tools import make_moment_tool
    from agent_tools.synthetic import write_indexed_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for seed in range(2):
        write_indexed_video(videos / f"c{seed}.mp4", duration=8, fps=10, size=(96, 64), seed=seed)
    index = CorpusIndex.open(tmp_path / "index", tiny_encoder, store=searcher.store)
    index.update([videos])
    moments = MomentSearcher(index, tiny_encoder)
    policy = ScriptedPolicy(
        [
            "<think>wrong scene</think><answer>not_matched</answer><query>a striped pattern</query>",
            "<think>right</think><answer>matched</answer>",
            seek_call("the square", think="look"),
            answer("a square"),
        ]
    )
    graph = build_corpus_graph(policy, moments, temporal=searcher, temporal_kwargs={"max_turns": 3}).compile()
    out = graph.invoke({"query": "a coloured square", "question": "What moves?"})
    first, second = out["rounds"]
    assert first["matched"] is False and second["matched"] is True and second["query"] == "a striped pattern"
    assert moment_key_of(first["moment"]) != moment_key_of(second["moment"])
    assert Path(out["answer"]["path"]).parent == videos
    assert (out["answer"]["start"], out["answer"]["end"]) == (
        second["moment"]["start"],
        second["moment"]["end"],
    )
    assert policy.calls[0]["num_images"] == 4 and policy.calls[1]["num_images"] == 4
    assert out["temporal"]["answer"] == "a square"
    assert {f["video"] for f in out["temporal"]["frames"]} == {out["answer"]["path"]}
    tool = make_moment_tool(moments, frames=searcher.frames)
    msg = tool.invoke(
        {"type": "tool_call", "id": "m", "name": tool.name, "args": {"query": "a square", "top_k": 2}}
    )
    assert msg.status == "success" and len(msg.artifact.moments) == 2
    assert sum(1 for b in msg.content if b["type"] == "image") == 2


def moment_key_of(m):
    from agent_tools.graphs import moment_key

    return moment_key(m)


def test_embedding_progress_streams_as_custom_events():
    class SlowFirstSearch(FakeSearcher):
        def seek(self, video, query, start_time=None, end_time=None, num_frames=None, progress=None):
            for done in (40, 80, 120):
                progress(done, 120)
            return super().seek(video, query, start_time, end_time, num_frames)

    graph = build_temporal_graph(ScriptedPolicy([seek_call("x"), answer("y")]), SlowFirstSearch()).compile()
    events = [
        chunk
        for mode, chunk in graph.stream({"question": Q, "video": "v.mp4"}, stream_mode=["custom", "updates"])
        if mode == "custom"
    ]
    assert events == [{"event": "embedding", "done": d, "total": 120} for d in (40, 80, 120)]


def test_runner_without_checkpointer_keeps_every_searched_frame():
    policy = ScriptedPolicy([seek_call("a", 0, 10, 2), seek_call("b", 20, 30, 2), answer("z")])
    rollout = AgentRunner(build_temporal_graph(policy, FakeSearcher())).run(Q, "v.mp4")
    assert rollout.searched_timestamps == [3.5, 6.5, 23.5, 26.5]
    assert [f["query"] for f in rollout.frames] == ["a", "a", "b", "b"]
    assert rollout.duration == 60.0 and rollout.thread_id is None
