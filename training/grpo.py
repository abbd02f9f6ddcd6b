"""GRPO with completeness self-verification, rolled out through the tools' own temporal graph.

One step, for each prompt row (``question``, ``video``, ``answer``, ``problem_type``):

1. **Rollouts.** Sample ``num_generations`` episodes with the policy at ``temperature > 0``
   through :func:`agent_tools.graphs.build_temporal_graph` + :class:`~agent_tools.graphs.AgentRunner`
   (the graph ``videoseek ask`` runs), with ``verify=True`` so the graph's ``verify`` node
   produces the frames-only re-answer the CSV reward needs.
2. **Rewards.** :mod:`training.rewards` (TimeSearch-R v7: format, accuracy, CSV with weights
   ``[1.0, 0.5, 0.5]``), called with TRL's contract: ``prompts`` = system + first user turn,
   ``completions`` = the rest of the conversation, dataset columns + ``verification`` as kwargs.
3. **Advantages.** :func:`group_advantages`: reward minus the group mean; no division by the
   group std unless ``scale_rewards`` (TRL's ``--scale_rewards false`` is the default here).
4. **Loss.** :func:`policy_gradient_loss` on every generated turn, each re-scored in the exact
   context it was sampled in with its sampled token ids (:func:`training.data.encode_turn`):
   only those ids carry loss, so system, user, tool and image tokens never get gradient.
   Token-level normalisation over the group (DAPO / TRL ``loss_type="dapo"``); optional
   k3 KL to a frozen reference copy with ``beta`` (0.005, TimeSearch-R's value). One
   optimisation pass per batch of rollouts (``num_iterations=1``), so the importance ratio
   is 1 and PPO clipping is a no-op; it is written as ``exp(logp - logp.detach())`` so the
   gradient is the clipped objective's.
5. Save a checkpoint + manifest at the end.

- :class:`GRPOConfig`, :func:`train_grpo`, :func:`grpo_step`, :class:`StepStats`,
  :func:`group_advantages`, :func:`policy_gradient_loss`, :func:`rollout_reward_inputs`,
  :func:`main` (``python -m training.grpo --config training/configs/grpo_tiny.json``).

Why not TRL here: TRL's ``GRPOTrainer(environment_factory=...)`` is the scale path (vLLM
colocate generation, DeepSpeed ZeRO-3, multimodal tool responses), but it is not installed in
this environment, its tool-calling loop lists Qwen2.5-VL as untested, and it would replace the
graph the tools run with its own loop. This trainer keeps rollouts and inference identical,
on one process, in plain torch; see ``training/README.md`` for the TRL mapping.

Usage::

    from training.grpo import GRPOConfig, train_grpo
    result = train_grpo(GRPOConfig(model="runs/sft", data="prompts.jsonl", output_dir="runs/grpo"))
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from training import rewards as R
from training.common import prepare_run, save_checkpoint
from training.config import parse_args
from training.data import Trajectory, encode_turn, load_prompts, token_logprobs
from training.errors import TrainingConfigError

__all__ = [
    "GRPOConfig",
    "StepStats",
    "GRPOResult",
    "group_advantages",
    "policy_gradient_loss",
    "rollout_reward_inputs",
    "sampling_policy",
    "grpo_step",
    "train_grpo",
    "main",
]

#: Reward sets by name (``reward_set`` in the config).
REWARD_SETS: dict[str, tuple[Sequence[Callable[..., list[float]]], Sequence[float]]] = {
    "timesearch_v7": (R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS),
}
#: Tokens a rollout must never emit: a vision placeholder without pixels breaks the forward
#: pass (TimeSearch-R also bans junk tokens during sampling).
BANNED_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


@dataclass
class GRPOConfig:
    """GRPO with CSV rollouts through the temporal search graph."""

    model: str = field(metadata={"help": "Policy checkpoint to start from (usually the SFT output)."})
    data: str = field(
        metadata={
            "help": "JSONL of prompts: question, video, answer, problem_type (multiple_choice | grounding | open_ended)."
        }
    )
    output_dir: str = field(metadata={"help": "Where the trained checkpoint is written."})
    encoder: str = field(
        default="siglip-b16", metadata={"help": "Encoder of the TemporalSearcher the rollouts search with."}
    )
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Frame-embedding cache of the searcher."}
    )
    device: str = field(default="cpu", metadata={"help": "Torch device."})
    num_generations: int = field(
        default=8, metadata={"help": "Rollouts per prompt (the GRPO group size G); TimeSearch-R uses 8."}
    )
    prompts_per_step: int = field(
        default=1, metadata={"help": "Prompts per optimizer step (TimeSearch-R: batch 1 x accumulation 2)."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass of the rollouts."})
    max_turns: int = field(
        default=8, metadata={"help": "Turn budget per rollout (TimeSearch-R trains with 8)."}
    )
    max_new_tokens: int = field(
        default=256, metadata={"help": "Tokens per turn (TimeSearch-R trains with 256)."}
    )
    preview_frames: int = field(default=8, metadata={"help": "Preview frames in the first user turn."})
    verify: bool = field(
        default=True,
        metadata={"help": "Run the graph's verify node (the frames-only re-answer the CSV reward scores)."},
    )
    reward_set: str = field(
        default="timesearch_v7", metadata={"help": "Reward functions: timesearch_v7 = format, accuracy, CSV."}
    )
    reward_weights: Optional[list[float]] = field(
        default=None,
        metadata={"help": "Weights of the reward functions (default: the set's, [1.0, 0.5, 0.5])."},
    )
    scale_rewards: bool = field(
        default=False,
        metadata={
            "help": "Divide advantages by the group std (TRL --scale_rewards); off as in TimeSearch-R."
        },
    )
    beta: float = field(
        default=0.005,
        metadata={
            "help": "KL coefficient to the frozen starting policy (k3 estimator); 0 skips the reference model."
        },
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and data order."})
    logging_steps: int = field(
        default=1, metadata={"help": "Print step statistics every N steps (0: silent)."}
    )
    run_name: Optional[str] = field(default=None, metadata={"help": "Manifest name of the checkpoint."})

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise TrainingConfigError(
                f"num_generations must be >= 2 (advantages are relative to the group), got {self.num_generations}"
            )
        if self.temperature <= 0:
            raise TrainingConfigError(f"temperature must be > 0 for GRPO rollouts, got {self.temperature}")
        for name in ("prompts_per_step", "max_turns", "max_new_tokens", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reward_set not in REWARD_SETS:
            raise TrainingConfigError(
                f"unknown reward_set {self.reward_set!r}; valid: {', '.join(REWARD_SETS)}"
            )
        n = len(REWARD_SETS[self.reward_set][0])
        if self.reward_weights is not None and len(self.reward_weights) != n:
            raise TrainingConfigError(f"reward_weights needs {n} values for reward_set {self.reward_set!r}")
        if self.beta < 0:
            raise TrainingConfigError(f"beta must be >= 0, got {self.beta}")


def group_advantages(rewards: Sequence[float], *, scale: bool = False, eps: float = 1e-4) -> list[float]:
    """GRPO advantages of one group: ``r - mean(r)``, divided by ``std(r) + eps`` if ``scale``.

    The std is the unbiased one (as ``torch.std`` in TRL). A group with equal rewards gets
    all-zero advantages in both modes.

    Args:
        rewards: The group's total rewards.
        scale: Divide by the group std.
        eps: Added to the std.

    Returns:
        One advantage per rollout.
    """
    import torch

    r = torch.tensor(list(rewards), dtype=torch.float64)
    a = r - r.mean()
    if scale and len(r) > 1:
        a = a / (r.std() + eps)
    return [float(x) for x in a]


def policy_gradient_loss(
    logps: Any,
    mask: Any,
    advantage: float,
    *,
    ref_logps: Any = None,
    beta: float = 0.0,
    num_tokens: Optional[float] = None,
) -> tuple[Any, Any]:
    """Token-level GRPO loss of one sequence: ``sum_t mask_t * (-A * ratio_t + beta * KL_t) / N``.

    ``ratio_t = exp(logp_t - logp_t.detach())`` (value 1, gradient of ``logp_t``); ``KL_t`` is
    the k3 estimator ``exp(ref - logp) - (ref - logp) - 1``. Masked tokens contribute neither
    value nor gradient.

    Args:
        logps: ``(T,)`` log-probabilities of the sequence's next tokens (:func:`training.data.token_logprobs`).
        mask: ``(T,)`` 1 on the tokens to train on (the encoder's ``loss_mask[1:]``).
        advantage: The rollout's advantage.
        ref_logps: ``(T,)`` reference log-probabilities (needed when ``beta > 0``).
        beta: KL coefficient.
        num_tokens: Normaliser N (default: this sequence's masked tokens).

    Returns:
        ``(loss, kl_sum)``: the scalar loss and the summed KL over masked tokens (detached).
    """
    import torch

    m = mask.to(logps.dtype)
    n = float(num_tokens) if num_tokens is not None else float(m.sum().clamp(min=1.0))
    ratio = torch.exp(logps - logps.detach())
    per_token = -float(advantage) * ratio
    kl = torch.zeros_like(logps)
    if beta > 0:
        if ref_logps is None:
            raise TrainingConfigError("beta > 0 needs reference log-probabilities (ref_logps)")
        d = ref_logps.detach() - logps
        kl = torch.exp(d) - d - 1.0
        per_token = per_token + beta * kl
    return (per_token * m).sum() / n, (kl.detach() * m).sum()


def rollout_reward_inputs(rollouts: Sequence[Any], row: Trajectory) -> tuple[list, list, dict[str, list]]:
    """TRL-style reward inputs of a group of rollouts of one prompt row.

    Returns:
        ``(prompts, completions, columns)``: prompts are the system + first user messages,
        completions the rest of each conversation, columns one value per rollout
        (``answer``, ``problem_type``, ``question``, ``verification`` and the row's extra columns).
    """
    prompts = [r.messages[:2] for r in rollouts]
    completions = [r.messages[2:] for r in rollouts]
    n = len(rollouts)
    cols: dict[str, list] = {
        "answer": [row.answer] * n,
        "problem_type": [row.problem_type] * n,
        "question": [row.question] * n,
        "verification": [r.verification for r in rollouts],
    }
    for k, v in row.extra.items():
        cols.setdefault(k, [v] * n)
    return prompts, completions, cols


def sampling_policy(policy: Any, config: GRPOConfig):
    """A sampling view of ``policy`` (same model and processor) for rollouts."""
    from agent_tools.policies.transformers_policy import TransformersPolicy

    tok = policy.tokenizer
    banned = [[tok.convert_tokens_to_ids(t)] for t in BANNED_TOKENS if t in tok.get_vocab()]
    return TransformersPolicy(
        policy.model,
        policy.processor,
        name=policy.name,
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        generation_kwargs={"bad_words_ids": banned} if banned else None,
        max_new_tokens=config.max_new_tokens,
        max_side=policy.max_side,
        tool_role=policy.tool_role,
        manifest=policy.manifest,
    )


@dataclass
class StepStats:
    """Statistics of one optimizer step.

    Attributes:
        rewards: Total reward per rollout (groups concatenated).
        advantages: Advantage per rollout.
        reward_parts: Raw values per reward function name.
        loss: The step's loss value.
        kl: Mean KL per trained token.
        num_tokens: Trained tokens.
        num_turns: Turns per rollout.
        rollout_seconds: Time spent sampling.
        train_seconds: Time spent in forward/backward/step.
        rollouts: The step's rollouts (groups concatenated), for logging and inspection.
    """

    rewards: list[float]
    advantages: list[float]
    reward_parts: dict[str, list[float]]
    loss: float
    kl: float
    num_tokens: int
    num_turns: list[int]
    rollout_seconds: float
    train_seconds: float
    rollouts: list = field(default_factory=list, repr=False)


def _turn_contexts(rollout: Any) -> list[tuple[list, list[int]]]:
    """``(context, completion_ids)`` of every generated turn that has its sampled ids."""
    out = []
    assistant_idx = [i for i, m in enumerate(rollout.messages) if m.get("role") == "assistant"]
    for turn, idx in zip(rollout.turns, assistant_idx):
        ids = turn.generation.get("completion_ids")
        if ids:
            out.append((rollout.messages[:idx], list(ids)))
    return out


def grpo_step(
    policy: Any,
    rows: Sequence[Trajectory],
    searcher: Any,
    optimizer: Any,
    config: GRPOConfig,
    *,
    ref_model: Any = None,
    reward_funcs: Optional[Sequence[Callable[..., list[float]]]] = None,
    reward_weights: Optional[Sequence[float]] = None,
    before_update: Optional[Callable[[list], None]] = None,
) -> StepStats:
    """One GRPO step over ``rows`` (each gets ``num_generations`` rollouts).

    Args:
        policy: The :class:`~agent_tools.policies.TransformersPolicy` being trained.
        rows: Prompt rows of this step.
        searcher: The ``TemporalSearcher``.
        optimizer: A torch optimizer over the policy's parameters.
        config: The recipe.
        ref_model: Frozen reference model (needed when ``config.beta > 0``).
        reward_funcs: Reward functions (default: ``config.reward_set``).
        reward_weights: Their weights (default: ``config.reward_weights`` or the set's).
        before_update: Called with the rollouts after the gradients are computed, right
            before ``optimizer.step()`` (logging, tests).

    Returns:
        The :class:`StepStats`.
    """
    import torch

    from agent_tools.graphs import AgentRunner, build_temporal_graph
    from agent_tools.policies.base import CachingResolver

    funcs, default_w = REWARD_SETS[config.reward_set]
    funcs = list(reward_funcs) if reward_funcs is not None else list(funcs)
    weights = list(reward_weights if reward_weights is not None else (config.reward_weights or default_w))
    sampler = sampling_policy(policy, config)
    graph = build_temporal_graph(
        sampler,
        searcher,
        max_turns=config.max_turns,
        verify=config.verify,
        preview_frames=config.preview_frames,
    )
    runner = AgentRunner(graph, max_turns=config.max_turns)

    t0 = time.perf_counter()
    policy.model.eval()
    groups = []
    all_rewards: list[float] = []
    all_adv: list[float] = []
    parts_all: dict[str, list[float]] = {}
    for row in rows:
        window = tuple(row.window) if row.window else None
        rollouts = [runner.run(row.question, row.video, window=window) for _ in range(config.num_generations)]
        prompts, completions, cols = rollout_reward_inputs(rollouts, row)
        totals, parts = R.weighted_rewards(funcs, weights, prompts, completions, **cols)
        adv = group_advantages(totals, scale=config.scale_rewards)
        groups.append((rollouts, adv))
        all_rewards += totals
        all_adv += adv
        for k, v in parts.items():
            parts_all.setdefault(k, []).extend(v)
    rollout_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    policy.model.train()
    optimizer.zero_grad(set_to_none=True)
    items = [
        (ctx, ids, a)
        for rollouts, adv in groups
        for r, a in zip(rollouts, adv)
        for ctx, ids in _turn_contexts(r)
    ]
    num_tokens = sum(len(ids) for _, ids, _ in items)
    loss_value, kl_sum = 0.0, 0.0
    # each turn's context repeats the rollout's earlier frames: decode each frame once per step
    frames = CachingResolver(searcher.frames)
    for ctx, ids, a in items:
        if a == 0.0 and config.beta == 0:
            continue  # no gradient from this turn
        enc = encode_turn(sampler, ctx, ids, frames=frames)
        logps, _ = token_logprobs(policy.model, enc.inputs)
        ref = None
        if config.beta > 0:
            with torch.no_grad():
                ref, _ = token_logprobs(ref_model, enc.inputs)
        loss, kl = policy_gradient_loss(
            logps, enc.loss_mask[1:], a, ref_logps=ref, beta=config.beta, num_tokens=max(1, num_tokens)
        )
        loss.backward()
        loss_value += float(loss.detach())
        kl_sum += float(kl)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    if before_update is not None:
        before_update([r for rollouts, _ in groups for r in rollouts])
    optimizer.step()
    return StepStats(
        rewards=all_rewards,
        advantages=all_adv,
        reward_parts=parts_all,
        loss=loss_value,
        kl=kl_sum / max(1, num_tokens),
        num_tokens=num_tokens,
        num_turns=[len(r.turns) for rollouts, _ in groups for r in rollouts],
        rollout_seconds=rollout_seconds,
        train_seconds=time.perf_counter() - t1,
        rollouts=[r for rollouts, _ in groups for r in rollouts],
    )


@dataclass
class GRPOResult:
    """What a run produced: the checkpoint directory and each step's :class:`StepStats`."""

    output_dir: Path
    steps: list[StepStats]


def train_grpo(
    config: GRPOConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    rows: Optional[Sequence[Trajectory]] = None,
    reward_funcs: Optional[Sequence[Callable[..., list[float]]]] = None,
    reward_weights: Optional[Sequence[float]] = None,
) -> GRPOResult:
    """Run GRPO and save the checkpoint.

    Args:
        config: The recipe.
        searcher: The ``TemporalSearcher`` (default: built from ``config.encoder``).
        policy: The policy (default: loaded from ``config.model``).
        rows: Prompt rows (default: read from ``config.data``).
        reward_funcs: Override the reward functions (TRL contract).
        reward_weights: Their weights.

    Returns:
        The :class:`GRPOResult`.
    """
    import torch

    searcher, policy = prepare_run(config, searcher=searcher, policy=policy)
    data = list(rows) if rows is not None else load_prompts(config.data)
    ref_model = None
    if config.beta > 0:
        ref_model = copy.deepcopy(policy.model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(
        [p for p in policy.model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=0.0
    )
    gen = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    steps = []
    for step in range(config.max_steps):
        batch = []
        for _ in range(config.prompts_per_step):
            if not order:
                order = torch.randperm(len(data), generator=gen).tolist()
            batch.append(data[order.pop()])
        stats = grpo_step(
            policy,
            batch,
            searcher,
            opt,
            config,
            ref_model=ref_model,
            reward_funcs=reward_funcs,
            reward_weights=reward_weights,
        )
        steps.append(stats)
        if config.logging_steps and (step + 1) % config.logging_steps == 0:
            print(
                json.dumps(
                    {
                        "step": step + 1,
                        "reward_mean": round(sum(stats.rewards) / len(stats.rewards), 4),
                        "loss": round(stats.loss, 6),
                        "kl": round(stats.kl, 6),
                        "tokens": stats.num_tokens,
                        "rollout_s": round(stats.rollout_seconds, 2),
                        "train_s": round(stats.train_seconds, 2),
                    }
                ),
                flush=True,
            )
    out = save_checkpoint(
        policy, config.output_dir, config=config, trainer="grpo", name=config.run_name, encoder=config.encoder
    )
    return GRPOResult(out, steps)


def main(argv: Optional[Sequence[str]] = None) -> GRPOResult:
    """``python -m training.grpo --config PATH [--field value ...]``."""
    config = parse_args(GRPOConfig, argv, prog="python -m training.grpo")
    result = train_grpo(config)
    print(json.dumps({"output_dir": str(result.output_dir), "steps": len(result.steps)}))
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
