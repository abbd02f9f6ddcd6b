"""benchmarks/bench_learning_text.py: the held-out questions' shape split and the per-question results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_learning_text as B

from agent_tools.world import WorldConfig, load_manifest, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("w") / "world"
    make_world(root, WorldConfig(seed=1, n_train=0, n_test=2, min_duration=60, max_duration=60, needle_videos=0,
                                 events_per_minute=4.0, size=32))
    return root


def test_shape_shared_marks_questions_whose_video_has_another_event_of_that_shape(world):
    questions = B.load_questions(world, "test")
    shapes = {v["video_id"]: [e.shape for e in v["events"]] for v in load_manifest(world)["videos"]}
    flags = []
    for q in questions:
        shape = q["target"].split()[1]  # "a {shape} that {action}"
        assert shape in q["question"]
        flags.append(q["shape_shared"])
        assert q["shape_shared"] == (shapes[Path(q["video"]).stem].count(shape) > 1)
    assert True in flags and False in flags  # this world has both kinds, so the split is exercised


def test_evaluate_keeps_each_questions_result_and_splits_accuracy_by_shape(world, searcher):
    from agent_tools.policies import ScriptedPolicy

    questions = B.load_questions(world, "test")
    colour = questions[0]["answer"]
    policy = ScriptedPolicy([f"<think>I say {colour}.</think><answer>{colour}</answer>"], repeat_last=True)
    ev = B.evaluate(policy, searcher, questions, max_turns=2, preview_frames=2)
    right = [q["answer"] == colour for q in questions]
    assert ev["correct"] == right and ev["accuracy"] == pytest.approx(sum(right) / len(right))
    shared = [ok for ok, q in zip(right, questions) if q["shape_shared"]]
    unique = [ok for ok, q in zip(right, questions) if not q["shape_shared"]]
    assert ev["questions_shape_shared"] == len(shared)
    assert ev["accuracy_shape_shared"] == pytest.approx(sum(shared) / len(shared))
    assert ev["accuracy_shape_unique"] == pytest.approx(sum(unique) / len(unique))
    assert ev["answered"] == 1.0 and ev["valid_turn_rate"] == 1.0


def test_sampled_eval_needs_a_temperature_and_its_figures_reach_the_proof_summary(tmp_path, capsys):
    import json

    import bench_learning
    import eval_learning_checkpoints

    with pytest.raises(SystemExit):
        eval_learning_checkpoints.main(["--samples", "4", f"sft0={tmp_path}"])
    assert "--samples > 1 needs --temperature > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_learning.main(["--skip-text", "--skip-sqr", "--sampled-eval", "2", "--out", str(tmp_path)])
    assert "needs --work" in capsys.readouterr().err

    ev = lambda acc: {"eval": {"valid_turn_rate": 1.0, "accuracy": acc}}
    text = {"base": {"valid_turn_rate": 0.0, "accuracy": 0.0},
            "sft": {"0": {**ev(0.5), "grpo": {**ev(0.5), "rewards": [1.0, 1.5, 2.0, 1.5, 1.5]}}}}
    (tmp_path / "learning_text.json").write_text(json.dumps(text))
    sampled = {"samples": 4, "temperature": 0.8,
               "checkpoints": {"sft0": {"accuracy": 0.375}, "grpo0": {"accuracy": 0.5625}}}
    (tmp_path / "learning_proof_sampled.json").write_text(json.dumps(sampled))
    res = bench_learning.summary(tmp_path, {"total": 1.0})
    assert res["text"]["sampled"] == {"samples": 4, "temperature": 0.8, "0": {"sft": 0.375, "grpo": 0.5625}}
    # the reward of the first and the last two of five steps (the middle one is in neither half)
    g = res["text"]["grpo"]["0"]
    assert (g["reward_first"], g["reward_last"], g["reward_mean_first_half"], g["reward_mean_last_half"]) == (1.0, 1.5, 1.25, 1.5)


def test_checkpoint_plot_draws_every_checkpoint(tmp_path):
    import eval_learning_checkpoints

    ev = {"accuracy": 0.5, "answered": 1.0}
    res = {"questions": 12, "samples": 4, "temperature": 0.8, "checkpoints": {"sft0": ev, "grpo0": {**ev, "accuracy": 0.75}}}
    path = eval_learning_checkpoints.plot(res, tmp_path / "bars.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_demonstrated_protocol_scores_the_questions_the_demonstrations_keep(world, searcher):
    from agent_tools.observations import EncoderTagger, world_vocabulary

    questions = B.load_questions(world, "test")
    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=1)
    kw = {"num_frames": 2, "max_turns": 2, "preview_frames": 2}
    kept, _, dropped = B.expert_trajectories(questions, searcher, tagger, **kw)
    ref = B.demonstrated_protocol(questions, searcher, tagger, **kw)
    assert len(ref["correct"]) == len(questions) and sum(ref["correct"]) == len(kept) == len(questions) - dropped
    kept_keys = {(t.question, t.video) for t in kept}
    assert ref["correct"] == [(q["question"], q["video"]) in kept_keys for q in questions]


def _eval(correct):
    return {"correct": correct, "answered": 1.0, "accuracy": sum(correct) / len(correct)}


def _run_folder(folder, grpo, sft=None, rewards=(1.0, 2.0)):
    """A results folder with one seed ("0"): views as the proof writes them."""
    import json

    folder.mkdir()
    sft = sft or {}
    (folder / "learning_text.json").write_text(json.dumps({"sft": {"0": {
        "eval": _eval(sft.get("greedy_12", [False])),
        "grpo": {"eval": _eval(grpo["greedy_12"]), "rewards": list(rewards), "frac_reward_zero_std": [0.0, 1.0]}}}}))
    for view, name in (("greedy_39", "learning_text_fresh_world.json"), ("sampled_12x4", "learning_proof_sampled.json"),
                       ("sampled_39x2", "learning_text_sampled_fresh_world.json")):
        ck = {"grpo0": _eval(grpo[view])}
        if view in sft:
            ck["sft0"] = _eval(sft[view])
        (folder / name).write_text(json.dumps({"checkpoints": ck}))


def test_collate_grpo_steps_pools_each_view_per_step_from_one_sft_start(tmp_path, capsys):
    import collate_grpo_steps as C

    T, F = True, False
    sft = {"greedy_12": [T, F, F], "greedy_39": [F, F], "sampled_12x4": [T, F, F, F], "sampled_39x2": [F, F]}
    _run_folder(tmp_path / "r8", {"greedy_12": [T, T, F], "greedy_39": [T, F], "sampled_12x4": [T, T, F, F],
                                  "sampled_39x2": [T, F]}, sft=sft)
    _run_folder(tmp_path / "r16", {"greedy_12": [T, T, T], "greedy_39": [T, T], "sampled_12x4": [T, T, T, F],
                                   "sampled_39x2": [T, T]}, rewards=(0.5, 1.5, 2.0, 2.0))
    res = C.main(["--run", f"16={tmp_path / 'r16'}", "--run", f"8={tmp_path / 'r8'}", "--out", str(tmp_path / "c")])
    seed = res["seeds"]["0"]
    assert res["steps"] == [0, 8, 16]
    # hand-counted: greedy 12 + 39 = 5 questions; sampled 4 + 2 = 6 episodes; step 0 from the 8-step run's SFT
    assert seed["greedy_51"] == {"0": [1, 5], "8": [3, 5], "16": [5, 5]}
    assert seed["sampled_126"] == {"0": [1, 6], "8": [3, 6], "16": [5, 6]}
    assert seed["rewards_16"] == [0.5, 1.5, 2.0, 2.0]
    assert (tmp_path / "c.json").is_file() and (tmp_path / "c.png").stat().st_size > 0
    assert "| 0 | 1 -> 3 -> 5 | 1 -> 3 -> 5 | 1 of 2 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        C.main(["--run", f"x={tmp_path / 'r8'}", "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="no checkpoint sft0"):  # the SFT start must come first
        C.main(["--run", f"8={tmp_path / 'r16'}", "--run", f"16={tmp_path / 'r8'}", "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="learning_proof_sampled.json"):
        (tmp_path / "r8" / "learning_proof_sampled.json").unlink()
        C.main(["--run", f"8={tmp_path / 'r8'}", "--out", str(tmp_path / "d")])


def test_grpo_options_are_checked_before_any_work(tmp_path, capsys):
    """A policy step past --grpo-steps, or a prompt pool drawn from the proof's or the held-out world, is refused
    at once (before the world is rendered or a model loaded), naming what is valid."""
    with pytest.raises(SystemExit):
        B.main(["--grpo-steps", "8", "--grpo-policy-steps", "4", "9", "--work", str(tmp_path)])
    assert "--grpo-policy-steps [9]: valid steps are 1..8" in capsys.readouterr().err
    for seed in ("0", "1"):
        with pytest.raises(SystemExit):
            B.main(["--grpo-pool-videos", "10", "--grpo-pool-world", seed, "--work", str(tmp_path)])
        assert f"--grpo-pool-world {seed} is the proof's (0) or the fresh held-out world's (1) seed" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
