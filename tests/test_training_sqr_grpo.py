"""VideoSearch-R1 stage 2: GRPO of an SQR checkpoint on TRL's GRPOTrainer with the six rewards.

Reference: ``mlvlab/VideoSearch-R1`` @ f6f2113, ``videosearch_r1/trainer/grpo_vllm_trainer_qwen3_vl.py``
(``_populate_latent_improve_meta``: ``query_refine_quality = p_after - p_before`` with the hard
negatives, the turns' retrieved ids and the other samples' GT videos as negatives, tau 0.1) and
``scripts/internal/stage2/train_stage2.bash`` (weights 1.6/0.05/0.05/0.35/0.8/0.5, beta 0.01, 8 generations).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("trl")  # the train extra (transformers.Trainer / TRL); the floor job runs without it
import torch

from agent_tools.policies import load_policy, read_manifest
from tests.agent_fakes import tiny_policy_path
from training.common import load_trainable_policy
from training.config import load_config
from training.errors import TrainingConfigError
from training.sqr import MomentBank, SQRConfig, SQRExample, corpus_conversation, load_projector, train_sqr
from training.sqr_grpo import (
    RefineQualityReward,
    VSR1GRPOConfig,
    build_grpo_dataset,
    build_rewards,
    train_sqr_grpo,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _examples(clip20):
    v = str(clip20)
    scenes = [(v, 2.0 * i + 0.25, 2.0 * i + 1.75) for i in range(4)]
    return [
        SQRExample(
            "find the red scene",
            scenes[1],
            scenes[0],
            [scenes[3]],
            "<think>red</think><answer>not_matched</answer>",
        ),
        SQRExample(
            "find the blue scene", scenes[0], scenes[2], [], "<think>blue</think><answer>not_matched</answer>"
        ),
    ]


@pytest.fixture
def sqr_checkpoint(searcher, clip20, tmp_path):
    policy = load_trainable_policy(tiny_policy_path())
    cfg = SQRConfig(
        model="given",
        data="given",
        output_dir=str(tmp_path / "sqr"),
        encoder="tiny-untrained",
        num_tokens=3,
        verify_frames=1,
        max_steps=1,
        logging_steps=0,
        learning_rate=1e-3,
        projector_lr=1e-2,
    )
    return train_sqr(cfg, searcher=searcher, policy=policy, examples=_examples(clip20)).output_dir


def _p(q, pos, negs, tau=0.1):
    logits = np.concatenate([[pos @ q], negs @ q]) / tau
    e = np.exp(logits - logits.max())
    return e[0] / e.sum()


def test_refine_quality_is_p_after_minus_p_before_of_the_policys_latents(searcher, clip20, sqr_checkpoint):
    policy = load_trainable_policy(sqr_checkpoint)
    proj, _ = load_projector(sqr_checkpoint)
    torch.nn.init.normal_(proj.readout[-1].weight, std=0.3)  # a head that moves the query
    exs = _examples(clip20)
    bank = MomentBank.from_examples(searcher, exs)
    rid = policy.tokenizer.convert_tokens_to_ids("<REFINE>")
    ds = build_grpo_dataset(policy, exs, bank, searcher.frames, 1)
    row = ds[0]
    assert (
        row["label"] == "matched"
    )  # shown and positive are in the same video (reference: retrieved id == GT video)
    assert row["gt_time"] == [0.25, 1.75] and row["negative_ids"] == [bank.id(exs[0].negatives[0])]
    reward = RefineQualityReward(proj, searcher.encoder, bank, rid)
    reward.policy = policy
    prompt, _ = __import__("agent_tools.policies.transformers_policy", fromlist=["x"]).split_images(
        policy.prepare(corpus_conversation(exs[0].query, *exs[0].shown, frames=1), searcher.frames)
    )
    prepared = policy.prepare(corpus_conversation(exs[0].query, *exs[0].shown, frames=1), searcher.frames)
    with_refine = policy.tokenizer(
        "<think>red</think><answer>not_matched</answer>", add_special_tokens=False
    )["input_ids"] + [rid]
    without = with_refine[:-1]
    kw = {k: [ds[0][k], ds[0][k]] for k in ("query", "positive_id", "shown_id", "negative_ids")}
    texts = [policy.tokenizer.decode(with_refine), policy.tokenizer.decode(without)]
    assert "<REFINE>" in texts[0]  # kept by decoding: the refine-presence reward can see it
    got = reward([prepared, prepared], texts, [with_refine, without], **kw)
    assert got[1] == 0.0  # no <REFINE>: the reference's no-refine value (0.0)
    # by hand: negatives = listed hard negative + shown + the batch's positives other than its own
    q_orig, q_final = reward.last["q_orig"][0], reward.last["q_final"][0]
    pos = bank.vectors[row["positive_id"]].numpy()
    negs = bank.vectors[sorted({row["negative_ids"][0], row["shown_id"]})].numpy()
    want = _p(q_final, pos, negs) - _p(q_orig, pos, negs)
    assert got[0] == pytest.approx(want, abs=1e-6) and abs(got[0]) > 1e-6
    assert len(prompt) == 2


def test_six_rewards_in_the_reference_order_and_weights():
    cfg = VSR1GRPOConfig(model="m", data="d", output_dir="o")
    assert (
        cfg.reward_weights == [1.6, 0.05, 0.05, 0.35, 0.8, 0.5]
        and cfg.beta == 0.01
        and cfg.num_generations == 8
    )
    names = [getattr(f, "__name__", "") for f in build_rewards(RefineQualityReward(None, None, None, 0))]
    assert names[-1] == "query_refine_quality_reward" and len(names) == 6
    with pytest.raises(TrainingConfigError, match="reward_weights needs 6"):
        VSR1GRPOConfig(model="m", data="d", output_dir="o", reward_weights=[1.0])


def test_recipes_parse():
    from pathlib import Path

    import training

    d = Path(training.__file__).parent / "configs"
    for name in ("vsr1_grpo_tiny.json", "vsr1_grpo_qwen3vl_8b.json"):
        cfg = load_config(VSR1GRPOConfig, d / name)
        assert cfg.reward_weights == [1.6, 0.05, 0.05, 0.35, 0.8, 0.5] and cfg.beta == 0.01
    big = load_config(VSR1GRPOConfig, d / "vsr1_grpo_qwen3vl_8b.json")
    assert big.num_generations == 8 and big.learning_rate == 5e-7 and big.max_completion_length == 768
    assert (Path(training.__file__).parents[1] / big.deepspeed).is_file()
    for name in ("sqr_tiny.json", "sqr_qwen3vl_8b.json"):
        cfg = load_config(SQRConfig, d / name)
        assert (
            cfg.num_tokens == 8
            and cfg.retrieval_loss_weight == 0.3
            and cfg.tau == 0.1
            and cfg.negative_pool_size == 24
        )
    assert (
        Path(training.__file__).parents[1] / load_config(SQRConfig, d / "sqr_qwen3vl_8b.json").deepspeed
    ).is_file()


@pytest.mark.slow
def test_tiny_grpo_stage_runs_through_trl_and_saves_a_refiner_checkpoint(
    searcher, clip20, sqr_checkpoint, tmp_path
):
    """CPU dry run of the stage-2 code path (the 8B recipe's, with the tiny models)."""
    cfg = VSR1GRPOConfig(
        model=str(sqr_checkpoint),
        data="given",
        output_dir=str(tmp_path / "grpo"),
        encoder="tiny-untrained",
        verify_frames=1,
        num_generations=2,
        per_device_train_batch_size=2,
        max_steps=1,
        max_completion_length=8,
        learning_rate=1e-3,
        logging_steps=1,
    )
    policy = load_trainable_policy(sqr_checkpoint)
    out = train_sqr_grpo(cfg, searcher=searcher, policy=policy, examples=_examples(clip20))
    logs = [h for h in out["log_history"] if "reward" in h]
    assert logs and all(math.isfinite(h["reward"]) for h in logs)
    assert any("query_refine_quality_reward" in k for k in logs[0])
    d = out["output_dir"]
    assert read_manifest(d).soft_refinement is True
    assert json.loads((d / "sqr_config.json").read_text())["num_tokens"] == 3
    loaded = load_policy(d, device="cpu")
    assert callable(loaded.refine_query_vector)


def test_stage_two_needs_a_stage_one_checkpoint(searcher, tmp_path):
    cfg = VSR1GRPOConfig(
        model=tiny_policy_path(), data="d", output_dir=str(tmp_path / "o"), encoder="tiny-untrained"
    )
    with pytest.raises(TrainingConfigError, match="stage 2 starts from a stage-1 SQR checkpoint"):
        train_sqr_grpo(cfg, searcher=searcher)


def test_tiny_recipe_completion_budget_holds_the_stage_one_reply():
    """At 24 tokens every tiny rollout was cut before its verdict and <REFINE>: six equal rewards
    per group, all advantages 0. The budget must hold the reply stage 1 teaches (and a matched
    reply with its times), as the reference's 768 does for the 8B policy."""
    from pathlib import Path

    import training
    from training.sqr import DEFAULT_REPLY, ensure_refine_token

    cfg = load_config(VSR1GRPOConfig, Path(training.__file__).parent / "configs" / "vsr1_grpo_tiny.json")
    policy = load_policy(tiny_policy_path(), device="cpu")
    ensure_refine_token(policy)
    matched = "<think>The frames show it.</think><answer>matched</answer><start>2.0</start><end>3.5</end>"
    for reply in (DEFAULT_REPLY, matched):
        n = len(policy.tokenizer(reply + "<REFINE>", add_special_tokens=False)["input_ids"])
        assert 24 < n <= cfg.max_completion_length
