"""SFT cold start on recorded search trajectories, with tool observations regenerated live.

Each JSONL row is a recorded episode (``question``, ``video``, ``turns``: the assistant turns).
Its turns are replayed through the temporal graph the tools use
(:func:`training.data.replay_trajectory`), so every tool observation - timestamps and frames -
comes from the real ``TemporalSearcher`` at train time (TimeSearch-R's ``LazyVLDatasetSFT``
idea). The conversation is tokenised with a loss mask on the assistant tokens only
(:func:`training.data.encode_conversation`) and trained with a plain PyTorch loop: AdamW,
gradient accumulation, gradient clipping, linear warmup. The result is a ``save_pretrained``
directory plus ``videoseek_policy.json`` that ``load_policy`` and ``videoseek ask`` load.

- :class:`SFTConfig` - the recipe (``training/configs/sft_tiny.json``).
- :func:`train_sft` - the loop; returns :class:`SFTResult` (losses, step times, output dir).
- :func:`assistant_loss` - mean negative log-likelihood over the masked tokens of one example.
- :func:`main` - ``python -m training.sft --config training/configs/sft_tiny.json``.

TRL's ``SFTTrainer`` is not used: it is not installed here, and its assistant-only loss needs
a chat template with ``{% generation %}`` markers, which the live tool replay would bypass
anyway. For multi-GPU scale see ``training/README.md``.

Usage::

    from training.sft import SFTConfig, train_sft
    result = train_sft(SFTConfig(model="tiny-policy", data="traj.jsonl", output_dir="runs/sft"))
    result.losses[0], result.losses[-1]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from training.common import prepare_run, save_checkpoint
from training.config import parse_args
from training.data import (
    Encoded,
    Trajectory,
    encode_conversation,
    load_trajectories,
    replay_trajectory,
    token_logprobs,
)
from training.errors import TrainingConfigError

__all__ = ["SFTConfig", "SFTResult", "assistant_loss", "train_sft", "main"]


@dataclass
class SFTConfig:
    """Supervised fine-tuning on recorded search trajectories."""

    model: str = field(
        metadata={
            "help": "Policy checkpoint directory to start from (save_pretrained + videoseek_policy.json)."
        }
    )
    data: str = field(
        metadata={
            "help": "JSONL of trajectories: question, video, turns (assistant turns); video paths relative to the file."
        }
    )
    output_dir: str = field(metadata={"help": "Where the trained checkpoint is written."})
    encoder: str = field(
        default="siglip-b16",
        metadata={
            "help": "Encoder of the TemporalSearcher that regenerates tool observations; recorded in the manifest."
        },
    )
    cache_dir: Optional[str] = field(
        default=None,
        metadata={"help": "Frame-embedding cache of the searcher (default: the VIDEOSEEK_ settings)."},
    )
    device: str = field(default="cpu", metadata={"help": "Torch device for the policy and the encoder."})
    max_turns: int = field(
        default=8,
        metadata={
            "help": "Turn budget of the replayed graph; must match inference (it is stated in the prompt)."
        },
    )
    preview_frames: int = field(
        default=8, metadata={"help": "Preview frames in the first user turn, as at inference."}
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={"help": "AdamW peak learning rate (1e-5 is a usual full fine-tuning value for 7B VLMs)."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warmup steps, then constant."})
    max_steps: int = field(
        default=100,
        metadata={"help": "Optimizer steps (each accumulates gradient_accumulation_steps examples)."},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Examples per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    seed: int = field(default=0, metadata={"help": "Seed for the data order and torch."})
    logging_steps: int = field(default=1, metadata={"help": "Print the loss every N steps (0: silent)."})
    run_name: Optional[str] = field(
        default=None, metadata={"help": "Manifest name of the checkpoint (default: the output folder name)."}
    )

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_steps", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainingConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.preview_frames < 0 or self.warmup_steps < 0:
            raise TrainingConfigError("preview_frames and warmup_steps must be >= 0")


@dataclass
class SFTResult:
    """What a run produced.

    Attributes:
        output_dir: The checkpoint directory.
        losses: Mean assistant-token loss of each optimizer step.
        step_seconds: Wall time of each optimizer step.
        num_examples: Trajectories used.
        assistant_tokens: Trained-on tokens per example.
    """

    output_dir: Path
    losses: list[float]
    step_seconds: list[float]
    num_examples: int
    assistant_tokens: list[int]


def assistant_loss(model: Any, example: Encoded):
    """Mean negative log-likelihood of the masked (assistant) tokens of one example."""
    logps, _ = token_logprobs(model, example.inputs)
    mask = example.loss_mask[1:].to(logps.dtype)
    return -(logps * mask).sum() / mask.sum().clamp(min=1.0)


def train_sft(
    config: SFTConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    trajectories: Optional[Sequence[Trajectory]] = None,
) -> SFTResult:
    """Run SFT and save the checkpoint.

    Args:
        config: The recipe.
        searcher: The ``TemporalSearcher`` (default: built from ``config.encoder``).
        policy: The policy to train (default: loaded from ``config.model``).
        trajectories: The examples (default: read from ``config.data``).

    Returns:
        The :class:`SFTResult`.

    Raises:
        TrainingDataError: On an unusable trajectory (names it and why).
    """
    import torch

    searcher, policy = prepare_run(config, searcher=searcher, policy=policy)
    policy.model.train()
    trajs = list(trajectories) if trajectories is not None else load_trajectories(config.data)

    # replay once: the conversations (frame references) are deterministic given the searcher;
    # pixels are fetched from the videos each time an example is encoded
    conversations = [
        replay_trajectory(
            t, searcher, max_turns=config.max_turns, preview_frames=config.preview_frames
        ).messages
        for t in trajs
    ]
    params = [p for p in policy.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    )
    gen = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    losses, times, tokens = [], [], [0] * len(trajs)
    for step in range(config.max_steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(config.gradient_accumulation_steps):
            if not order:
                order = torch.randperm(len(trajs), generator=gen).tolist()
            i = order.pop()
            enc = encode_conversation(policy, conversations[i], frames=searcher.frames)
            tokens[i] = int(enc.loss_mask.sum())
            loss = assistant_loss(policy.model, enc) / config.gradient_accumulation_steps
            loss.backward()
            total += float(loss.detach())
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(total)
        times.append(time.perf_counter() - t0)
        if config.logging_steps and (step + 1) % config.logging_steps == 0:
            print(
                json.dumps({"step": step + 1, "loss": round(total, 4), "seconds": round(times[-1], 3)}),
                flush=True,
            )
    out = save_checkpoint(
        policy, config.output_dir, config=config, trainer="sft", name=config.run_name, encoder=config.encoder
    )
    return SFTResult(out, losses, times, len(trajs), tokens)


def main(argv: Optional[Sequence[str]] = None) -> SFTResult:
    """``python -m training.sft --config PATH [--field value ...]``."""
    config = parse_args(SFTConfig, argv, prog="python -m training.sft")
    result = train_sft(config)
    mean = sum(result.step_seconds) / max(1, len(result.step_seconds))
    print(
        json.dumps(
            {
                "output_dir": str(result.output_dir),
                "first_loss": result.losses[0],
                "last_loss": result.losses[-1],
                "seconds_per_step": round(mean, 3),
            }
        )
    )
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
