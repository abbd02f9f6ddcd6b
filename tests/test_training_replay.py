"""training.replay: TimeSearch-R's GRPO replay buffer, and the trainer using it.

Expected behaviour from TimeSearch-R ``time_r1/trainer/grpo_trainer_env.py``: ``DapoReplayBuffer.add``
(every batch until full, then only batches with a non-zero advantage replace the oldest),
``SSRReplayBuffer`` (draws weighted by |advantage| ** alpha), and ``_prepare_inputs`` (a batch
whose advantages are all zero is swapped for a draw from the buffer, after being added).
"""

from __future__ import annotations

import pytest
import torch

from training.replay import ReplayBuffer, make_replay_buffer


def _batch(name, adv):
    return {"name": name, "advantages": torch.tensor(adv, dtype=torch.float32)}


def test_dapo_fills_then_replaces_only_with_informative_batches():
    buf = ReplayBuffer("dapo", capacity=2, seed=0)
    assert buf.add(_batch("flat0", [0.0, 0.0]))  # not full yet: stored even with zero advantages
    assert buf.add(_batch("a", [0.5, -0.5]))
    assert not buf.add(_batch("flat1", [0.0, 0.0]))  # full: a flat batch is dropped
    assert [e["name"] for e in buf.entries] == ["flat0", "a"]
    assert buf.add(_batch("b", [0.0, 0.25]))  # full: an informative batch evicts the oldest
    assert [e["name"] for e in buf.entries] == ["a", "b"]
    draws = {buf.sample()["name"] for _ in range(50)}
    assert draws == {"a", "b"}  # uniform: both come up


def test_step_swaps_a_flat_batch_for_a_stored_one():
    buf = ReplayBuffer("dapo", capacity=4, seed=1)
    a = _batch("a", [1.0, -1.0])
    assert buf.step(a) is a and buf.replayed == 0  # informative: trained as generated
    flat = _batch("flat", [0.0, 0.0])
    got = buf.step(flat)  # stored (buffer not full), then a draw from {a, flat}
    assert buf.replayed == 1 and got["name"] in {"a", "flat"}
    assert len(buf) == 2


def test_ssr_draws_by_mean_absolute_advantage():
    buf = ReplayBuffer("ssr", capacity=2, alpha=1.0, seed=0)
    buf.add(_batch("small", [0.01, -0.01]))
    buf.add(_batch("large", [1.0, -1.0]))
    assert buf.weights == pytest.approx([0.0101, 1.0001])
    names = [buf.sample()["name"] for _ in range(400)]
    assert names.count("large") > 0.95 * len(names)


def test_bad_kinds_and_empty_buffer_raise():
    assert make_replay_buffer("none") is None
    with pytest.raises(ValueError, match="none, dapo, ssr"):
        make_replay_buffer("fifo")
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer("dapo", capacity=0)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer("dapo").sample()


def test_recipe_rejects_an_unknown_replay_buffer(tmp_path):
    pytest.importorskip("trl")
    from training.errors import TrainingConfigError
    from training.grpo import GRPOConfig

    with pytest.raises(TrainingConfigError, match="none, dapo, ssr"):
        GRPOConfig(model="m", data="d", output_dir=str(tmp_path), replay_buffer="lru")


@pytest.mark.slow
def test_trainer_replays_an_informative_step_when_a_step_is_flat(tmp_path, clip20):
    """Step 1 scores its rollouts apart, steps 2-3 score them all alike.

    Without a buffer the flat steps have no gradient (grad norm 0); with ``dapo`` each flat step
    trains on a draw from the buffer (``replay/replayed`` 1), and a draw of step 1's batch has a
    gradient.
    """
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from agent_tools.policies import load_policy
    from agent_tools.policies.tiny import build_tiny_policy_dir
    from training.grpo import train_grpo
    from training.grpo_toy import toy_config, toy_generation_kwargs, toy_rows

    start = build_tiny_policy_dir(tmp_path / "start")
    tok = load_policy(start, device="cpu").tokenizer

    def run(kind):
        calls = []

        def first_step_only(completions, **kwargs):
            calls.append(len(completions))
            if len(calls) == 1:
                return [float(i % 2) for i in range(len(completions))]
            return [1.0] * len(completions)

        cfg = toy_config(start, tmp_path / "cache", tmp_path / kind, max_steps=3, learning_rate=0.005,
                         save_steps=100, replay_buffer=kind, num_generations=4)
        res = train_grpo(cfg, rows=toy_rows(clip20), reward_funcs=[first_step_only],
                         trl_overrides={"generation_kwargs": toy_generation_kwargs(tok)})
        return [h for h in res.log_history if "reward" in h]

    plain, replay = run("none"), run("dapo")
    assert plain[0]["grad_norm"] > 0 and plain[1]["grad_norm"] == 0 and plain[2]["grad_norm"] == 0
    assert [h["replay/replayed"] for h in replay] == [0.0, 1.0, 1.0]  # a draw on each flat step
    # while the buffer fills, flat batches are stored too (the reference's rule), so a draw can
    # be a flat batch: with seed 0, step 2 draws its own batch and step 3 draws step 1's
    assert replay[1]["grad_norm"] == 0 and replay[2]["grad_norm"] > 0
