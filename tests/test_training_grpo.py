"""training.grpo / training.csv_env: GRPO-CSV on TRL's GRPOTrainer.

- the protocol's turns parse into TRL tool calls, and the chat-template prelude passes TRL's
  checks without changing how our conversations render;
- one scripted episode through the trainer's tool loop and through ``build_temporal_graph``
  gives the same token ids, the same pixels and the same searched frames;
- the recipe maps onto ``trl.GRPOConfig``; ``main`` turns a ``VideoseekError`` into one line;
- a toy GRPO run through the real trainer raises its reward, changes the weights and writes
  checkpoints that ``load_policy`` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("peft")

from agent_tools.graphs import AgentRunner, build_temporal_graph  # noqa: E402
from agent_tools.policies import ScriptedPolicy, load_policy, read_manifest  # noqa: E402
from agent_tools.policies.transformers_policy import split_images  # noqa: E402
from tests.agent_fakes import answer, seek_call, tiny_policy_path  # noqa: E402
from training import csv_env  # noqa: E402
from training.common import load_trainable_policy  # noqa: E402
from training.data import Trajectory  # noqa: E402
from training.errors import TrainingConfigError  # noqa: E402
from training.grpo import GRPOConfig, build_trainer, group_advantages, main, train_grpo, trl_config  # noqa: E402

Q = "What colour is the square?"


def _cfg(tmp_path, **kw):
    base = dict(
        model=str(tiny_policy_path()),
        data="<rows>",
        output_dir=str(tmp_path / "out"),
        encoder="tiny-untrained",
        device="cpu",
        num_generations=2,
        max_turns=3,
        max_new_tokens=64,
        preview_frames=2,
        max_completion_length=2000,
        beta=0.0,
        max_steps=1,
    )
    base.update(kw)
    return GRPOConfig(**base)


def test_response_template_parses_protocol_turns():
    from trl.chat_template_utils import parse_response

    proc = csv_env.prepare_processing_class(load_trainable_policy(tiny_policy_path()).processor)
    tok = proc.tokenizer
    prefix = proc.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    pre_ids = tok(prefix, add_special_tokens=False)["input_ids"]

    def parse(text):
        return parse_response(tok, tok(text + "<|im_end|>", add_special_tokens=False)["input_ids"], prefix=pre_ids)

    call = parse(seek_call("a red square", 2, 9, 3, think="look closer"))
    assert call["reasoning_content"] == "look closer"
    assert call["tool_calls"] == [
        {
            "type": "function",
            "function": {
                "name": "seek_video_frames",
                "arguments": {"query": "a red square", "start_time": 2, "end_time": 9, "num_frames": 3},
            },
        }
    ]
    ans = parse(answer("B"))
    assert "tool_calls" not in ans and ans["content"] == "<answer>B</answer>"
    broken = parse('<think>x</think><tool_call>{"name": "seek_video_frames", "arguments": {</tool_call>')
    assert "tool_calls" not in broken  # TRL falls back to plain content: the episode ends there


def test_tool_call_prelude_passes_trl_checks_and_keeps_our_rendering(searcher, clip20):
    from trl.chat_template_utils import is_chat_template_prefix_preserving, supports_tool_calling

    policy = load_trainable_policy(tiny_policy_path())
    original = policy.processor.chat_template
    assert not supports_tool_calling(policy.processor)  # why the prelude exists
    traj = Trajectory(Q, str(clip20), [seek_call("a square", 0, 10, 2), answer("red")])
    from training.data import replay_trajectory

    rollout = replay_trajectory(traj, searcher, max_turns=3, preview_frames=2)
    templated, _ = split_images(policy.prepare(rollout.messages, searcher.frames))
    before = policy.processor.apply_chat_template(templated, tokenize=False)
    csv_env.prepare_processing_class(policy.processor)
    csv_env.prepare_processing_class(policy.processor)  # idempotent
    assert policy.processor.chat_template == csv_env.with_tool_call_rendering(original)
    assert policy.processor.chat_template.count(csv_env.TOOL_CALL_PRELUDE_MARK) == 1
    assert supports_tool_calling(policy.processor)
    assert is_chat_template_prefix_preserving(policy.processor)
    assert policy.processor.apply_chat_template(templated, tokenize=False) == before


def test_trainer_loop_and_graph_render_the_same_token_ids(tmp_path, searcher, clip20):
    """One scripted episode (search, then answer) through TRL's _tool_call_loop and through the graph."""
    turns = [seek_call("a square", 0, 10, 2, think="the preview is not enough"), answer("red", think="seen")]
    row = Trajectory(Q, str(clip20), answer="red", problem_type="open_ended")
    cfg = _cfg(tmp_path)
    trainer, policy = build_trainer(
        cfg, searcher=searcher, policy=load_trainable_policy(tiny_policy_path()), rows=[row]
    )
    tok = policy.tokenizer
    scripted = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in turns]
    calls = []

    def fake_generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        calls.append(len(prompt_ids))
        return [list(scripted[len(calls) - 1]) for _ in prompt_ids], None

    trainer._generate_single_turn = fake_generate
    inputs = [trainer.train_dataset[0] for _ in range(cfg.num_generations)]
    out = trainer._generate_and_score_completions(inputs)
    assert calls == [2, 2]  # first turn, then the turn after the tool result
    p_ids = out["prompt_ids"][0][out["prompt_mask"][0].bool()].tolist()
    c_ids = out["completion_ids"][0][out["completion_mask"][0].bool()].tolist()
    tool_mask = out["tool_mask"][0][: len(c_ids)].tolist()

    # the graph, with the same turns and the same processor
    graph = build_temporal_graph(ScriptedPolicy(turns), searcher, max_turns=3, preview_frames=2)
    rollout = AgentRunner(graph, max_turns=3).run(Q, str(clip20))
    templated, images = split_images(policy.prepare(rollout.messages, searcher.frames))
    text = policy.processor.apply_chat_template(templated, tokenize=False)
    graph_inputs = policy.processor(text=[text], images=images, return_tensors="pt")
    assert p_ids + c_ids == graph_inputs["input_ids"][0].tolist()
    # only the sampled tokens carry loss; the tool result (frames included) does not
    assert [i for i, m in zip(c_ids, tool_mask) if m] == scripted[0] + scripted[1]
    # rollout 0's images come first in the batch: the same frames (TRL runs the image processor on
    # its own, so allow float rounding only)
    n = graph_inputs["pixel_values"].shape[0]
    assert out["pixel_values"].shape[0] == cfg.num_generations * n
    assert (out["pixel_values"][:n] - graph_inputs["pixel_values"]).abs().max() < 1e-4
    # the environment saw what the graph's seek node returned, and the CSV re-answer ran on it
    env = trainer.environments[0]
    assert [f["timestamp"] for f in env.frames_seen] == [f["timestamp"] for f in rollout.frames]
    assert len(rollout.frames) == 2 and env.verification["num_frames"] == 2
    assert env.verification["reply"] is not None


def test_recipe_maps_onto_trl_config(tmp_path):
    cfg = _cfg(tmp_path, scale_rewards=False, warmup_steps=0.1, report_to="tensorboard", use_peft=True)
    args = trl_config(cfg)
    assert args.scale_rewards == "none" and args.loss_type == "dapo"
    assert args.max_tool_calling_iterations == 2  # max_turns - 1 calls, then the answer
    assert args.generation_kwargs["max_new_tokens"] == 64  # per turn, not per episode
    assert args.max_completion_length == 2000
    assert args.reward_weights == [1.0, 0.5, 0.5] and args.per_device_train_batch_size == 2
    assert args.report_to == ["tensorboard"] and args.use_cpu and not args.bf16
    assert _cfg(tmp_path, max_completion_length=None).episode_tokens == 3 * 65 + 2 * (8 * 262 + 80)
    with pytest.raises(TrainingConfigError, match="not trl.GRPOConfig fields"):
        trl_config(_cfg(tmp_path, trl_args={"no_such_field": 1}))
    with pytest.raises(TrainingConfigError, match="top-level"):
        _cfg(tmp_path, trl_args={"beta": 0.1})
    with pytest.raises(TrainingConfigError, match="eval_data"):
        _cfg(tmp_path, eval_strategy="steps")
    with pytest.raises(TrainingConfigError, match="policy_steps"):
        _cfg(tmp_path, policy_steps=[0])
    with pytest.raises(TrainingConfigError, match=r"after max_steps 1: valid 1\.\.1"):
        _cfg(tmp_path, policy_steps=[2])
    recipe = json.loads((Path(__file__).parents[1] / "training/configs/grpo_tiny.json").read_text())
    tiny = GRPOConfig(**{k: v for k, v in recipe.items() if not k.startswith("_")})
    assert tiny.max_new_tokens >= 96  # a tool call is 61-75 tokens of the tiny tokenizer


def test_group_advantages_match_trl_by_hand():
    # TRL 1.16 grpo_trainer._generate_and_score_completions: r - mean(group), / (std + 1e-4) when scaled
    assert group_advantages([1, 0, 0, 1, 1, 1], num_generations=3) == pytest.approx(
        [2 / 3, -1 / 3, -1 / 3, 0, 0, 0]
    )
    std = torch.tensor([1.0, 0.0, 0.0]).std().item()
    assert group_advantages([1, 0, 0], num_generations=3, scale="group")[0] == pytest.approx(
        (2 / 3) / (std + 1e-4)
    )


def test_main_turns_videoseek_error_into_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "missing.json" in err


@pytest.mark.slow
def test_toy_grpo_raises_reward_changes_weights_and_saves_loadable_checkpoints(tmp_path, clip20):
    from agent_tools.policies.tiny import build_tiny_policy_dir
    from training.grpo_toy import letter_reward, toy_config, toy_generation_kwargs, toy_rows

    start = build_tiny_policy_dir(tmp_path / "start")
    before = {k: v.clone() for k, v in load_policy(start, device="cpu").model.state_dict().items()}
    cfg = toy_config(start, tmp_path / "cache", tmp_path / "toy", max_steps=8, learning_rate=0.005, save_steps=4,
                     policy_steps=[4])
    tok = load_policy(start, device="cpu").tokenizer
    result = train_grpo(
        cfg,
        rows=toy_rows(clip20),
        reward_funcs=[letter_reward],
        trl_overrides={"generation_kwargs": toy_generation_kwargs(tok)},
    )
    rewards = result.rewards
    assert len(rewards) == 8
    # fixed seed 0: 1 of 8 rollouts right at the start (chance is 1 in 5), most at the end
    assert sum(rewards[-2:]) / 2 > sum(rewards[:2]) / 2 + 0.25, rewards
    zero_std = [h["frac_reward_zero_std"] for h in result.log_history if "frac_reward_zero_std" in h]
    assert zero_std[0] < 1.0  # non-zero advantages from the first step
    trained = load_policy(result.output_dir, device="cpu")
    changed = [k for k, v in trained.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, f"{len(changed)} of {len(before)} tensors changed"
    m = read_manifest(result.output_dir)
    assert (m.max_turns, m.max_new_tokens, m.preview_frames) == (1, 1, 1)
    assert "training.grpo" in m.notes and m.trained is False  # still random weights underneath
    mid = load_policy(tmp_path / "toy" / "checkpoint-4", device="cpu")  # a mid-run checkpoint loads too
    assert read_manifest(tmp_path / "toy" / "checkpoint-4").name.endswith("@4") and mid.manifest.max_turns == 1
    # policy_steps: the policy after step 4, copied mid-run, is TRL's own step-4 checkpoint, not the final one
    snap = load_policy(tmp_path / "toy" / "policy-step-4", device="cpu")
    assert read_manifest(tmp_path / "toy" / "policy-step-4").name.endswith("@4") and snap.manifest.max_turns == 1
    mid_sd, final_sd = mid.model.state_dict(), trained.model.state_dict()
    assert all(torch.equal(v, mid_sd[k]) for k, v in snap.model.state_dict().items())
    assert any(not torch.equal(v, final_sd[k]) for k, v in snap.model.state_dict().items())
