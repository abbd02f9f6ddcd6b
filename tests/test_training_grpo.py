"""training.grpo: advantages by hand, masked gradients, one real step on the tiny policy."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agent_tools.graphs import AgentRunner, build_temporal_graph
from agent_tools.policies import load_policy, read_manifest
from tests.agent_fakes import answer, seek_call, tiny_policy_path
from training.common import load_trainable_policy
from training.data import Trajectory, encode_conversation, encode_turn, replay_trajectory, token_logprobs
from training.errors import TrainingConfigError
from training.grpo import (
    GRPOConfig,
    _turn_contexts,
    group_advantages,
    grpo_step,
    policy_gradient_loss,
    rollout_reward_inputs,
    train_grpo,
)

Q = "What colour is the square?"


def test_group_advantages_by_hand():
    assert group_advantages([1.0, 2.0, 3.0, 6.0]) == pytest.approx([-2.0, -1.0, 0.0, 3.0])
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # unbiased, as torch.std
    assert group_advantages([1.0, 2.0, 3.0, 6.0], scale=True) == pytest.approx(
        [x / (std + 1e-4) for x in (-2, -1, 0, 3)]
    )
    assert group_advantages([0.5, 0.5, 0.5]) == [0.0, 0.0, 0.0]
    assert group_advantages([0.5, 0.5, 0.5], scale=True) == [0.0, 0.0, 0.0]


def test_loss_value_and_kl_by_hand():
    logps = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    mask = torch.tensor([1, 0, 1])
    loss, _ = policy_gradient_loss(logps, mask, 2.0)
    assert float(loss.detach()) == pytest.approx(-2.0)  # ratio 1 on 2 tokens, mean -> -A
    loss.backward()
    assert logps.grad.tolist() == pytest.approx([-1.0, 0.0, -1.0])  # -A / N on trained tokens only
    ref = torch.tensor([-1.5, -2.0, -0.5])
    loss, kl = policy_gradient_loss(logps.detach(), mask, 0.0, ref_logps=ref, beta=0.5, num_tokens=4)
    k3 = math.exp(-0.5) + 0.5 - 1  # token 0; token 2 has KL 0
    assert float(kl) == pytest.approx(k3) and float(loss) == pytest.approx(0.5 * k3 / 4)
    with pytest.raises(TrainingConfigError, match="ref_logps"):
        policy_gradient_loss(logps, mask, 1.0, beta=0.1)


def test_masked_tokens_get_exactly_zero_gradient(searcher, clip20):
    """Through the real model: tool, user, system and image positions get no gradient."""
    policy = load_trainable_policy(tiny_policy_path())
    traj = Trajectory(Q, str(clip20), [seek_call("a square", 0, 10, 2), answer("red")])
    rollout = replay_trajectory(traj, searcher, max_turns=3, preview_frames=2)
    for enc in (
        encode_conversation(policy, rollout.messages, searcher.frames),
        encode_turn(policy, rollout.messages[:2], [100, 101, 102, 2], searcher.frames),
    ):
        logps, logits = token_logprobs(policy.model, enc.inputs)
        logits.retain_grad()
        loss, _ = policy_gradient_loss(logps, enc.loss_mask[1:], 1.5)
        loss.backward()
        g = logits.grad[0, :-1].abs().sum(-1)  # position t predicts token t+1
        trained = enc.loss_mask[1:].bool()
        assert torch.all(g[~trained] == 0)
        assert torch.all(g[trained] > 0)
        assert int(trained.sum()) < len(trained) // 2  # most of the sequence is context
        policy.model.zero_grad()


def test_one_grpo_step_on_the_tiny_policy(searcher, clip20, tmp_path):
    policy = load_trainable_policy(tiny_policy_path())
    cfg = GRPOConfig(
        model=str(tiny_policy_path()),
        data="unused",
        output_dir=str(tmp_path / "grpo"),
        encoder="tiny-untrained",
        num_generations=3,
        max_turns=2,
        max_new_tokens=6,
        preview_frames=2,
        learning_rate=1e-3,
        beta=0.005,
        max_steps=1,
        logging_steps=0,
    )
    row = Trajectory(Q, str(clip20), answer="red", problem_type="open_ended")
    seen = {}

    def fixed_reward(prompts, completions, **kw):
        seen.update(kw, n=len(completions), prompts=prompts)
        return [1.0, 0.0, 0.5]

    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    torch.manual_seed(0)
    result = train_grpo(
        cfg, searcher=searcher, policy=policy, rows=[row], reward_funcs=[fixed_reward], reward_weights=[2.0]
    )
    stats = result.steps[0]
    assert stats.rewards == [2.0, 0.0, 1.0]
    assert stats.advantages == pytest.approx([1.0, -1.0, 0.0])  # mean 1, no std scaling
    # reward functions got TRL's contract: one verification and answer per rollout
    assert seen["n"] == 3 and seen["answer"] == ["red"] * 3 and len(seen["verification"]) == 3
    assert all(v is not None and "answer" in v for v in seen["verification"])  # the graph's verify node ran
    assert all(p[0]["role"] == "system" and p[1]["role"] == "user" for p in seen["prompts"])
    assert stats.num_tokens > 0 and stats.kl >= 0 and all(1 <= t <= 2 for t in stats.num_turns)
    changed = [n for n, p in policy.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert changed  # the step updated the policy

    manifest = read_manifest(result.output_dir)
    assert "training.grpo" in manifest.notes
    assert json.loads((result.output_dir / "training_config.json").read_text())["beta"] == 0.005
    loaded = load_policy(result.output_dir, device="cpu")
    rollout = AgentRunner(
        build_temporal_graph(loaded, searcher, max_turns=1, preview_frames=1), max_turns=1
    ).run(Q, str(clip20))
    assert len(rollout.turns) == 1


def _one_turn_config(**kw) -> GRPOConfig:
    """Two one-turn rollouts per prompt, no KL, no verification: a fast single step."""
    base = dict(model="m", data="d", output_dir="o", num_generations=2, max_turns=1, preview_frames=1)
    base.update(beta=0.0, verify=False)
    return GRPOConfig(**{**base, **kw})


def test_a_step_raises_the_advantage_weighted_log_likelihood(searcher, clip20):
    """The update moves probability towards the better rollout: J = sum_t A * logp / N goes up."""
    policy = load_trainable_policy(tiny_policy_path())
    cfg = _one_turn_config(max_new_tokens=8, learning_rate=1e-4, max_steps=1)
    row = Trajectory(Q, str(clip20), answer="red")

    def reward(prompts, completions, **kw):
        return [1.0, 0.0]

    opt = torch.optim.AdamW(policy.model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    torch.manual_seed(1)

    def objective(rollouts):
        total, n = 0.0, 0
        with torch.no_grad():
            for r, a in zip(rollouts, [0.5, -0.5]):
                for ctx, ids in _turn_contexts(r):
                    enc = encode_turn(policy, ctx, ids, searcher.frames)
                    lp, _ = token_logprobs(policy.model, enc.inputs)
                    total += a * float((lp * enc.loss_mask[1:]).sum())
                    n += len(ids)
        return total / n

    before = {}
    stats = grpo_step(
        policy,
        [row],
        searcher,
        opt,
        cfg,
        reward_funcs=[reward],
        reward_weights=[1.0],
        before_update=lambda rollouts: before.setdefault("J", objective(rollouts)),
    )
    assert stats.advantages == pytest.approx([0.5, -0.5])
    assert len(stats.rollouts) == 2 and stats.rollouts[0].generated != stats.rollouts[1].generated
    assert objective(stats.rollouts) > before["J"]


def test_equal_rewards_leave_the_policy_unchanged(searcher, clip20):
    """No advantage and no KL: the step must not move the weights (updates come only from A)."""
    policy = load_trainable_policy(tiny_policy_path())
    cfg = _one_turn_config(max_new_tokens=4, learning_rate=1e-2)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    opt = torch.optim.AdamW(policy.model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    stats = grpo_step(
        policy,
        [Trajectory(Q, str(clip20), answer="red")],
        searcher,
        opt,
        cfg,
        reward_funcs=[lambda p, c, **k: [0.3] * len(c)],
        reward_weights=[1.0],
    )
    assert stats.advantages == [0.0, 0.0] and stats.loss == 0.0 and stats.num_tokens > 0
    assert all(torch.equal(before[n], p.detach()) for n, p in policy.model.named_parameters())


def test_vision_tokens_in_a_completion_are_refused(searcher, clip20):
    from training.errors import TrainingDataError

    policy = load_trainable_policy(tiny_policy_path())
    pad = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with pytest.raises(TrainingDataError, match="vision placeholder"):
        encode_turn(policy, [{"role": "user", "content": "hi"}], [100, pad], None)


def test_reward_inputs_follow_trl_contract(searcher, clip20):
    traj = Trajectory(
        Q,
        str(clip20),
        [seek_call("a square", 0, 10, 2), answer("red")],
        answer="red",
        extra={"video_id": "clip20"},
    )
    rollout = replay_trajectory(traj, searcher, max_turns=3, preview_frames=1)
    prompts, completions, cols = rollout_reward_inputs([rollout, rollout], traj)
    assert [m["role"] for m in completions[0]] == ["assistant", "tool", "assistant"]
    assert [m["role"] for m in prompts[0]] == ["system", "user"]
    assert cols["answer"] == ["red", "red"] and cols["video_id"] == ["clip20", "clip20"]


def test_config_validation():
    with pytest.raises(TrainingConfigError, match="num_generations must be >= 2"):
        GRPOConfig(model="m", data="d", output_dir="o", num_generations=1)
    with pytest.raises(TrainingConfigError, match="temperature"):
        GRPOConfig(model="m", data="d", output_dir="o", temperature=0)
    with pytest.raises(TrainingConfigError, match="valid: timesearch_v7"):
        GRPOConfig(model="m", data="d", output_dir="o", reward_set="v9")
