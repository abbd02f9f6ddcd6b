"""training.filtering: TimeSearch-R's stage-1 visual-dependency filter, alone and inside GRPO's build_trainer.

The rule comes from the TimeSearch-R paper (appendix B.1, "Stage 1: Visual Dependency
Filtering"): the model sees 4 uniformly sampled frames and the question; questions it answers
correctly are dropped. Their repository ships the filtered data, not the filter.
"""

from __future__ import annotations

import pytest

from agent_tools.policies import ScriptedPolicy
from tests.agent_fakes import answer
from training.data import Trajectory
from training.errors import TrainingConfigError, TrainingDataError
from training.filtering import uniform_frame_answer, visual_dependency_filter

SQUARE = "What colour is the square?"
CIRCLE = "What colour is the circle?"


def _reply(messages):
    """Answers 'red' to every question (so: right about the square, wrong about the circle)."""
    return answer("red")


def test_drops_what_uniform_frames_answer_and_keeps_the_rest(searcher, clip20):
    rows = [Trajectory(SQUARE, str(clip20), answer="red"), Trajectory(CIRCLE, str(clip20), answer="blue"),
            {"question": "Which option?", "video": str(clip20), "answer": "B", "problem_type": "multiple_choice"}]
    policy = ScriptedPolicy([_reply, _reply, answer("B. the blue one")])
    report = visual_dependency_filter(policy, searcher, rows, num_frames=4)
    assert report.kept == [rows[1]]
    assert report.dropped == [rows[0], rows[2]]
    assert [a["score"] for a in report.answers] == [1.0, 0.0, 1.0]
    assert report.summary() == "kept 1 of 3 prompts (2 answered right from 4 uniform frames alone)"
    # each question was asked once, with the 4 uniform frames of the 20 s clip (slot centres) and nothing else
    assert [a["timestamps"] for a in report.answers] == [[2.5, 7.5, 12.5, 17.5]] * 3
    assert [c["num_images"] for c in policy.calls] == [4, 4, 4]
    asked = policy.calls[0]["messages"][-1]["content"]
    assert SQUARE in str(asked) and "seek_video_frames" not in str(asked)


def test_i_dont_know_and_grounding_below_the_threshold_are_kept(searcher, clip20):
    grounding = {"question": "When does the square appear?", "video": str(clip20),
                 "answer": {"start_time": 4.0, "end_time": 8.0}, "problem_type": "grounding"}
    unsure = Trajectory(SQUARE, str(clip20), answer="red")
    # IoU of [6, 10] with [4, 8] is 2 / 6 = 0.33: below 0.5, kept; then "I don't know": no answer, kept
    policy = ScriptedPolicy([answer('{"start_time": 6, "end_time": 10}'), answer("I don't know")])
    report = visual_dependency_filter(policy, searcher, [grounding, unsure], num_frames=2, threshold=0.5)
    assert report.kept == [grounding, unsure] and report.dropped == []
    assert report.answers[0]["score"] == pytest.approx(1 / 3)
    assert report.answers[1]["answer"] is None
    assert report.answers[0]["timestamps"] == [5.0, 15.0]


def test_uniform_frame_answer_returns_the_answer_text(searcher, clip20):
    got, stamps = uniform_frame_answer(ScriptedPolicy([answer("red")]), searcher, SQUARE, str(clip20), num_frames=1)
    assert (got, stamps) == ("red", [10.0])


def test_bad_arguments_say_what_is_valid(searcher, clip20):
    policy = ScriptedPolicy([_reply], repeat_last=True)
    with pytest.raises(TrainingDataError, match="num_frames must be >= 1"):
        visual_dependency_filter(policy, searcher, [], num_frames=0)
    with pytest.raises(TrainingDataError, match=r"threshold must be in \(0, 1\]"):
        visual_dependency_filter(policy, searcher, [], threshold=0)
    with pytest.raises(TrainingDataError, match="prompt row 1 needs 'question' and 'video'"):
        visual_dependency_filter(policy, searcher, [Trajectory(SQUARE, str(clip20), answer="red"), {"question": SQUARE}])
    with pytest.raises(TrainingDataError, match=r"prompt row 0 .*unknown problem_type 'essay'"):
        visual_dependency_filter(policy, searcher, [{"question": SQUARE, "video": str(clip20), "answer": "red",
                                                     "problem_type": "essay"}])


def test_command_line_writes_the_kept_rows_as_read_and_a_report(tmp_path, clip20, monkeypatch, capsys):
    import json

    import agent_tools.policies as P
    from training.filtering import main

    rows = [{"question": SQUARE, "video": str(clip20), "answer": "red", "problem_type": "open_ended", "source": "a"},
            {"question": CIRCLE, "video": str(clip20), "answer": "blue", "problem_type": "open_ended", "source": "b"}]
    prompts = tmp_path / "grpo.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = []

    def fake_load_policy(spec, **kw):  # what `--policy` names, answering 'red' to everything
        loaded.append((spec, kw))
        return ScriptedPolicy([_reply], repeat_last=True)

    monkeypatch.setattr(P, "load_policy", fake_load_policy)
    out, report = tmp_path / "kept" / "grpo.kept.jsonl", tmp_path / "filter.json"
    got = main([str(prompts), "--policy", "http://localhost:8000/v1", "--model", "qwen", "--encoder", "tiny-untrained",
                "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--report", str(report)])
    assert loaded == [("http://localhost:8000/v1", {"model": "qwen", "device": "cpu"})]
    assert [json.loads(line) for line in out.read_text().splitlines()] == [rows[1]]  # unchanged, extra column kept
    assert len(got.dropped) == 1
    rep = json.loads(report.read_text())
    assert (rep["kept"], rep["dropped"], rep["num_frames"]) == (1, 1, 4)
    assert [a["answer"] for a in rep["answers"]] == ["red", "red"]
    assert "kept 1 of 2 prompts" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exc:  # a bad file: one line naming it, exit status 2
        main([str(tmp_path / "missing.jsonl"), "--policy", "x", "--encoder", "tiny-untrained", "--out", str(out)])
    assert exc.value.code == 2
    assert "missing.jsonl" in capsys.readouterr().err


# ------------------------------------------------------------------ inside GRPO's build_trainer

def _needs_trl():
    pytest.importorskip("trl")
    pytest.importorskip("peft")


def _cfg(tmp_path, **kw):
    from tests.agent_fakes import tiny_policy_path
    from training.grpo import GRPOConfig

    base = dict(model=str(tiny_policy_path()), data="<rows>", output_dir=str(tmp_path / "out"), encoder="tiny-untrained",
                device="cpu", num_generations=2, max_turns=2, max_new_tokens=8, preview_frames=2,
                max_completion_length=500, beta=0.0, max_steps=1)
    base.update(kw)
    return GRPOConfig(**base)


def test_build_trainer_trains_on_the_kept_prompts_only(tmp_path, searcher, clip20, monkeypatch):
    _needs_trl()
    import training.filtering as F
    from tests.agent_fakes import tiny_policy_path
    from training.common import load_trainable_policy
    from training.grpo import build_trainer

    rows = [Trajectory(SQUARE, str(clip20), answer="red"), Trajectory(CIRCLE, str(clip20), answer="blue")]
    asked = []

    def knows_red(policy, searcher_, question, video, **kw):  # the untrained tiny model answers at random
        asked.append((question, kw["num_frames"], policy.model.training))
        return "red", [2.5, 7.5, 12.5, 17.5]

    monkeypatch.setattr(F, "uniform_frame_answer", knows_red)
    policy = load_trainable_policy(tiny_policy_path())
    policy.model.train()
    trainer, _ = build_trainer(_cfg(tmp_path, filter_uniform_frames=4), searcher=searcher, policy=policy, rows=rows)
    assert asked == [(SQUARE, 4, False), (CIRCLE, 4, False)]  # greedy answers, model in eval mode
    assert policy.model.training  # and back in training mode for GRPO
    assert [r["question"] for r in trainer.train_dataset] == [CIRCLE]
    assert trainer.filter_report.dropped == [rows[0]]

    with pytest.raises(TrainingDataError, match="answers every one of the 1 prompts"):
        build_trainer(_cfg(tmp_path, filter_uniform_frames=4), searcher=searcher,
                      policy=load_trainable_policy(tiny_policy_path()), rows=rows[:1])
    with pytest.raises(TrainingConfigError, match="filter_uniform_frames must be >= 0"):
        _cfg(tmp_path, filter_uniform_frames=-1)


def test_build_trainer_runs_the_filter_with_the_real_policy(tmp_path, searcher, clip20):
    """No patch: the untrained tiny model answers from the 4 uniform frames (gibberish, so the prompt stays)."""
    _needs_trl()
    from tests.agent_fakes import tiny_policy_path
    from training.common import load_trainable_policy
    from training.grpo import build_trainer

    rows = [Trajectory(SQUARE, str(clip20), answer="red")]
    trainer, _ = build_trainer(_cfg(tmp_path, filter_uniform_frames=4), searcher=searcher,
                               policy=load_trainable_policy(tiny_policy_path()), rows=rows)
    rep = trainer.filter_report
    assert rep.kept == rows and rep.answers[0]["timestamps"] == [2.5, 7.5, 12.5, 17.5]
    assert len(trainer.train_dataset) == 1
