"""SFT cold start on recorded search trajectories, on TRL's ``SFTTrainer``, tool output regenerated live.

Each JSONL row is a recorded episode (``question``, ``video``, ``turns``: the assistant turns).
Before training, every row is replayed through the temporal graph the tools use
(:func:`training.data.replay_trajectory`), so every tool observation - timestamps and frames -
comes from the real ``TemporalSearcher`` (TimeSearch-R's ``LazyVLDatasetSFT`` idea). The
replayed conversations hold frame *references*; pixels are read when a batch is built.

TRL does the training: ``trl.SFTTrainer`` with bf16, LoRA (``peft``), gradient checkpointing,
an LR schedule, ``save_steps`` + resume, ``report_to`` and evaluation during training, under
``accelerate launch`` / DeepSpeed ZeRO when launched so (``training/launch/``). What stays ours
is the collator (:class:`ConversationCollator`): TRL's own vision collator would apply the
chat template itself, and its assistant-only mask needs ``{% generation %}`` markers that the
Qwen2.5-VL template lacks; ours renders through the policy's own ``prepare`` (frames resolved,
tool role as at inference) and masks exactly each assistant turn plus its end-of-turn token,
checked against the processor's ids (:func:`training.data.encode_conversation`). TimeSearch-R's
``time_r1/sft.py`` takes the same route (``SFTTrainer`` + its own ``collate_fn`` +
``skip_prepare_dataset``).

- :class:`SFTConfig` - the recipe (``training/configs/sft_*.json``); ``--help`` lists the fields.
- :class:`ConversationCollator` - replayed conversations -> padded batch with ``labels``.
- :func:`replay_conversations` - trajectories -> conversations, each turn checked to fit ``max_new_tokens``.
- :func:`train_sft` - the run; returns :class:`SFTResult` (losses, step times, eval losses, output dir).
- :func:`assistant_loss` - mean NLL over the masked tokens of one encoded example.
- :func:`main` - ``python -m training.sft --config training/configs/sft_tiny.json``.

The checkpoint is a ``save_pretrained`` folder plus ``videoseek_policy.json`` recording the turn
budget, tokens per turn and preview frames of the run (``videoseek ask`` uses them). Each
``save_steps`` checkpoint (``output_dir/checkpoint-N``) gets the processor and manifest too.

Usage::

    from training.sft import SFTConfig, train_sft
    result = train_sft(SFTConfig(model="tiny-policy", data="traj.jsonl", output_dir="runs/sft"))
    result.losses[0], result.losses[-1]
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from training.common import (
    build_searcher,
    checkpoint_manifest,
    run_cli,
    save_checkpoint,
    set_seed,
    write_run_files,
)
from training.config import parse_args
from training.data import (
    Encoded,
    Trajectory,
    encode_conversation,
    load_trajectories,
    replay_trajectory,
    token_logprobs,
)
from training.errors import TrainingConfigError, TrainingDataError

__all__ = [
    "SFTConfig",
    "SFTResult",
    "ConversationCollator",
    "replay_conversations",
    "assistant_loss",
    "train_sft",
    "main",
]


@dataclass
class SFTConfig:
    """Supervised fine-tuning on recorded search trajectories (TRL SFTTrainer)."""

    model: str = field(
        metadata={"help": "Policy checkpoint directory to start from (save_pretrained + videoseek_policy.json)."}
    )
    data: str = field(
        metadata={
            "help": "JSONL of trajectories: question, video, turns (assistant turns); video paths relative to the file."
        }
    )
    output_dir: str = field(metadata={"help": "Where checkpoints and the final policy are written."})
    eval_data: Optional[str] = field(
        default=None, metadata={"help": "JSONL of held-out trajectories: evaluated every eval_steps."}
    )
    encoder: str = field(
        default="siglip-b16",
        metadata={"help": "Encoder of the TemporalSearcher that regenerates tool observations; recorded in the manifest."},
    )
    cache_dir: Optional[str] = field(
        default=None, metadata={"help": "Frame-embedding cache of the searcher (default: the VIDEOSEEK_ settings)."}
    )
    device: str = field(
        default="cpu",
        metadata={"help": "cpu, cuda or auto (under accelerate each process takes its own GPU); the encoder's too."},
    )
    max_turns: int = field(
        default=8,
        metadata={"help": "Turn budget of the replayed graph; stated in the prompt, recorded in the manifest for `ask`."},
    )
    max_new_tokens: int = field(
        default=256,
        metadata={
            "help": "Tokens per turn at inference, recorded in the manifest; a training turn longer than this is refused "
            "(TimeSearch-R: 256)."
        },
    )
    preview_frames: int = field(
        default=8, metadata={"help": "Preview frames in the first user turn, as at inference; recorded in the manifest."}
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": "transformers scheduler: linear, cosine, constant_with_warmup, ..."}
    )
    warmup_steps: float = field(
        default=0, metadata={"help": "Warmup steps (an integer) or fraction of the run (a float < 1)."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Conversations per device per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    bf16: bool = field(
        default=False, metadata={"help": "bf16 weights and mixed precision (needs a GPU; TimeSearch-R trains in bf16)."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in the backward pass."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank on the language model's projections (0: full fine-tune)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_layers: int = field(
        default=0, metadata={"help": "LoRA in the last N decoder layers only; the backward pass stops below them (0: all)."}
    )
    save_steps: int = field(
        default=0, metadata={"help": "Write output_dir/checkpoint-N every N steps (0: only the final policy)."}
    )
    save_total_limit: Optional[int] = field(default=None, metadata={"help": "Keep at most this many checkpoint-N folders."})
    resume_from_checkpoint: Optional[str] = field(
        default=None,
        metadata={"help": "A checkpoint-N folder to resume from, or 'last' for the newest one in output_dir."},
    )
    eval_steps: int = field(default=0, metadata={"help": "Evaluate eval_data every N steps (0: only at the end)."})
    report_to: str = field(default="none", metadata={"help": "Experiment tracker: none, wandb, tensorboard, ..."})
    seed: int = field(default=0, metadata={"help": "Seed for the data order and torch."})
    logging_steps: int = field(default=1, metadata={"help": "Log the loss every N steps."})
    run_name: Optional[str] = field(
        default=None, metadata={"help": "Manifest and tracker name of the run (default: the output folder name)."}
    )
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Check a scale recipe on CPU: the tiny untrained policy and encoder, 1 step, no tracker, same code path."
        },
    )

    def __post_init__(self) -> None:
        for name in ("max_turns", "max_steps", "gradient_accumulation_steps", "max_new_tokens", "per_device_train_batch_size"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainingConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("preview_frames", "warmup_steps", "save_steps", "eval_steps", "lora_r", "lora_layers", "logging_steps"):
            if getattr(self, name) < 0:
                raise TrainingConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class SFTResult:
    """What a run produced.

    Attributes:
        output_dir: The final checkpoint directory.
        losses: Training loss at each logging step (one per step with ``logging_steps=1``).
        step_seconds: Wall time of each optimizer step run in this process.
        num_examples: Examples trained on (replayed trajectories plus given conversations).
        assistant_tokens: Trained-on tokens per example.
        eval_losses: Evaluation losses, in order (empty without ``eval_data``).
        global_step: Optimizer steps done, resumed ones included.
    """

    output_dir: Path
    losses: list[float]
    step_seconds: list[float]
    num_examples: int
    assistant_tokens: list[int]
    eval_losses: list[float] = field(default_factory=list)
    global_step: int = 0


def assistant_loss(model: Any, example: Encoded):
    """Mean negative log-likelihood of the masked (assistant) tokens of one example."""
    logps, _ = token_logprobs(model, example.inputs)
    mask = example.loss_mask[1:].to(logps.dtype)
    return -(logps * mask).sum() / mask.sum().clamp(min=1.0)


def replay_conversations(
    trajectories: Sequence[Trajectory], searcher: Any, policy: Any, config: SFTConfig
) -> list[list[dict[str, Any]]]:
    """Replay each trajectory through the temporal graph; check every turn fits ``max_new_tokens``.

    Args:
        trajectories: The rows.
        searcher: The ``TemporalSearcher`` that regenerates the tool output.
        policy: The policy (its tokenizer measures the turns).
        config: ``max_turns``, ``preview_frames``, ``max_new_tokens``.

    Returns:
        One conversation (chat messages, frames as references) per trajectory.

    Raises:
        TrainingDataError: A trajectory the graph does not reproduce, or a turn longer than
            ``max_new_tokens`` (inference would cut it off).
    """
    tok = policy.tokenizer
    out = []
    for traj in trajectories:
        for i, turn in enumerate(traj.turns):
            n = len(tok(turn + (tok.eos_token or ""), add_special_tokens=False)["input_ids"])
            if n > config.max_new_tokens:
                raise TrainingDataError(
                    f"trajectory for {traj.question!r}: turn {i} is {n} tokens, over max_new_tokens="
                    f"{config.max_new_tokens}; the policy could not write it at inference (raise max_new_tokens)"
                )
        rollout = replay_trajectory(traj, searcher, max_turns=config.max_turns, preview_frames=config.preview_frames)
        out.append(rollout.messages)
    return out


class ConversationCollator:
    """Replayed conversations -> one padded batch with ``labels`` on assistant tokens only.

    Args:
        policy: The :class:`~agent_tools.policies.TransformersPolicy` (template, processor, frame size).
        frames: The searcher's frame resolver.

    The batch holds ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` off the assistant
    turns and on padding), plus ``pixel_values`` and ``image_grid_thw`` of all images in order.
    """

    def __init__(self, policy: Any, frames: Any):
        self.policy = policy
        self.frames = frames
        tok = policy.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.tokens: dict[int, int] = {}

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        encoded = []
        for ex in examples:
            enc = encode_conversation(self.policy, json.loads(ex["conversation"]), frames=self.frames)
            self.tokens[int(ex["index"])] = int(enc.loss_mask.sum())
            encoded.append(enc)
        width = max(int(e.inputs["input_ids"].shape[1]) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(encoded), width), dtype=torch.long)
        labels = torch.full((len(encoded), width), -100, dtype=torch.long)
        pixels, grids = [], []
        for row, e in enumerate(encoded):
            seq = e.inputs["input_ids"][0].cpu()
            n = seq.shape[0]
            ids[row, :n] = seq
            attn[row, :n] = e.inputs["attention_mask"][0].cpu()
            mask = e.loss_mask.cpu().bool()
            labels[row, :n] = torch.where(mask, seq, torch.full_like(seq, -100))
            if "pixel_values" in e.inputs:
                pixels.append(e.inputs["pixel_values"].cpu())
                grids.append(e.inputs["image_grid_thw"].cpu())
        batch: dict[str, Any] = {"input_ids": ids, "attention_mask": attn, "labels": labels}
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
            batch["image_grid_thw"] = torch.cat(grids)
        return batch


def _examples(conversations: Sequence[list[dict[str, Any]]]):
    """A ``datasets.Dataset`` of replayed conversations: ``{"conversation": JSON text, "index"}``.

    The conversation is stored as JSON text: Arrow would merge the differing content blocks
    (text, frame references) into one schema and fill the missing keys with nulls.
    """
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "conversation": [json.dumps(c) for c in conversations],
            "index": list(range(len(conversations))),
        }
    )


def _apply_dry_run(config: SFTConfig) -> SFTConfig:
    """The recipe with the tiny untrained policy and encoder on CPU, one step, no tracker
    (:func:`training.dry_run.dry_run_overrides`)."""
    from agent_tools.policies.tiny import build_tiny_policy_dir
    from training.dry_run import dry_run_overrides

    tiny = Path(tempfile.mkdtemp(prefix="videoseek-dry-run-")) / "tiny-policy"
    build_tiny_policy_dir(tiny)
    return replace(config, **dry_run_overrides(SFTConfig, str(tiny)), dry_run=False)


def _zero_stage() -> int:
    from training.memory import zero_settings_from_env

    return zero_settings_from_env()[0]


def _trl_args(config: SFTConfig, has_eval: bool = False):
    """The ``trl.SFTConfig`` for ``config`` (created before the model load, so ZeRO-3 partitions it)."""
    import trl

    if config.bf16 and not config.device.startswith("cuda"):
        raise TrainingConfigError("bf16 needs device 'cuda'; set --bf16 false for a CPU run (or --dry_run true)")
    warmup: float = config.warmup_steps
    return trl.SFTConfig(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=int(warmup) if warmup >= 1 else warmup,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16,
        activation_checkpointing=config.gradient_checkpointing,  # transformers 5 name of gradient_checkpointing
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if (has_eval and config.eval_steps) else "no",
        eval_steps=config.eval_steps or None,
        logging_steps=config.logging_steps or 1,
        report_to=config.report_to,
        run_name=config.run_name or Path(config.output_dir).name,
        seed=config.seed,
        use_cpu=not config.device.startswith("cuda"),
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        max_length=None,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def _load_policy(config: SFTConfig):
    import torch

    from agent_tools.policies import load_policy
    from agent_tools.policies.transformers_policy import TransformersPolicy

    dtype = torch.bfloat16 if config.bf16 else torch.float32
    # weights stay on the CPU here; the Trainer (or DeepSpeed) places them
    policy = load_policy(config.model, device="cpu", dtype=dtype)
    if not isinstance(policy, TransformersPolicy):
        raise TrainingConfigError(
            f"model {config.model!r} is a {type(policy).__name__}; SFT needs a transformers checkpoint"
        )
    policy.model.train()
    return policy


def _memory_line(config: SFTConfig, policy: Any) -> str:
    import re

    from training.common import lora_target_modules
    from training.memory import estimate_for_model

    trainable = None
    if config.lora_r:  # r x (in + out) for every projection the adapters wrap
        targets = lora_target_modules(policy.model, config.lora_layers)
        trainable = sum(
            config.lora_r * (int(m.in_features) + int(m.out_features))
            for name, m in policy.model.named_modules()
            if re.fullmatch(targets, name) and hasattr(m, "in_features")
        )
    return estimate_for_model(policy.model, trainable=trainable)


def _lora_config(config: SFTConfig, model: Any):
    from peft import LoraConfig

    from training.common import lora_target_modules

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_modules(model, config.lora_layers),
        task_type="CAUSAL_LM",
    )


def _manifest_callback(policy: Any, config: SFTConfig):
    """A ``TrainerCallback`` that makes every ``checkpoint-N`` folder loadable by ``load_policy``."""
    from transformers import TrainerCallback

    class _WriteManifest(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                policy.processor.save_pretrained(ckpt)
                manifest = checkpoint_manifest(
                    policy.manifest, ckpt, config=config, trainer="sft", name=config.run_name,
                    encoder=config.encoder, notes=f"step {state.global_step}" + (" (LoRA adapter)" if config.lora_r else ""),
                )
                write_run_files(ckpt, manifest, config=config, trainer="sft")

    return _WriteManifest()


def _timer_callback(times: list[float]):
    from transformers import TrainerCallback

    class _Timer(TrainerCallback):
        t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    return _Timer()


def _resume_point(config: SFTConfig) -> Optional[str]:
    if not config.resume_from_checkpoint:
        return None
    if config.resume_from_checkpoint != "last":
        if not Path(config.resume_from_checkpoint).is_dir():
            raise TrainingConfigError(f"resume_from_checkpoint {config.resume_from_checkpoint!r} is not a folder")
        return config.resume_from_checkpoint
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(config.output_dir) if Path(config.output_dir).is_dir() else None
    if last is None:
        raise TrainingConfigError(
            f"resume_from_checkpoint 'last': no checkpoint-N folder in {config.output_dir!r} (set save_steps to write them)"
        )
    return last


def _final_save(trainer: Any, policy: Any, config: SFTConfig) -> Path:
    """Write the final policy: LoRA merged, ``use_cache`` back on, manifest with the run's settings."""
    model = trainer.model
    if config.lora_r:  # ZeRO-3 is refused up front: its sharded weights cannot be merged here
        policy.model = model.merge_and_unload()
        model = policy.model
    out = Path(config.output_dir)
    for cfg in (getattr(model, "config", None), getattr(getattr(model, "config", None), "text_config", None)):
        if cfg is not None and hasattr(cfg, "use_cache"):
            cfg.use_cache = True
    if trainer.is_deepspeed_enabled and not config.lora_r:
        trainer.save_model(str(out))  # gathers the ZeRO-3 shards (zero3_save_16bit_model)
        if trainer.accelerator.is_main_process:
            policy.processor.save_pretrained(out)
            manifest = checkpoint_manifest(
                policy.manifest, out, config=config, trainer="sft", name=config.run_name, encoder=config.encoder
            )
            write_run_files(out, manifest, config=config, trainer="sft")
        return out
    if trainer.accelerator.is_main_process:
        save_checkpoint(policy, out, config=config, trainer="sft", name=config.run_name, encoder=config.encoder)
    return out


def train_sft(
    config: SFTConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    trajectories: Optional[Sequence[Trajectory]] = None,
    eval_trajectories: Optional[Sequence[Trajectory]] = None,
    conversations: Optional[Sequence[list[dict[str, Any]]]] = None,
) -> SFTResult:
    """Run SFT with ``trl.SFTTrainer`` and save a loadable policy checkpoint.

    Args:
        config: The recipe (``dry_run`` swaps in the tiny policy and encoder, one CPU step).
        searcher: The ``TemporalSearcher`` (default: built from ``config.encoder``).
        policy: The policy to train (default: loaded from ``config.model``).
        trajectories: The training rows (default: read from ``config.data``).
        eval_trajectories: Held-out rows (default: read from ``config.eval_data`` if set).
        conversations: Ready conversations trained as they are, after the replayed trajectories
            (chat messages, frames as references; e.g. the completeness check's re-answer,
            :func:`agent_tools.graphs.temporal.verify_messages` plus the assistant's reply).

    Returns:
        The :class:`SFTResult`.

    Raises:
        TrainingDataError: On an unusable trajectory (names it and why).
        TrainingConfigError: On settings that cannot run (bf16 without a GPU, no checkpoint to resume).
    """
    import trl

    if config.dry_run:
        config = _apply_dry_run(config)
    if config.device == "auto":
        import torch

        config = replace(config, device="cuda" if torch.cuda.is_available() else "cpu")
    set_seed(config.seed)
    if config.lora_r and _zero_stage() == 3:
        raise TrainingConfigError(
            "lora_r > 0 under DeepSpeed ZeRO-3 is not supported (the sharded weights are not merged into the "
            "saved policy); launch with training/launch/zero2.yaml, or full fine-tune (lora_r 0) under ZeRO-3"
        )
    # before the model load: with ZeRO-3 the load is then partitioned
    args = _trl_args(config, has_eval=bool(eval_trajectories) or bool(config.eval_data))
    resume = _resume_point(config)
    if policy is None:
        policy = _load_policy(config)
    if searcher is None:  # under accelerate each process encodes on its own GPU
        local = os.environ.get("LOCAL_RANK")
        device = f"cuda:{local}" if config.device == "cuda" and local is not None else config.device
        searcher = build_searcher(config.encoder, cache_dir=config.cache_dir, device=device)
    trajs = list(trajectories) if trajectories is not None else load_trajectories(config.data)
    if eval_trajectories is None and config.eval_data:
        eval_trajectories = load_trajectories(config.eval_data)
    train_set = _examples(replay_conversations(trajs, searcher, policy, config) + [list(c) for c in conversations or ()])
    eval_set = _examples(replay_conversations(eval_trajectories, searcher, policy, config)) if eval_trajectories else None
    if args.process_index == 0:
        print(_memory_line(config, policy), flush=True)
    collator = ConversationCollator(policy, searcher.frames)
    times: list[float] = []
    trainer = trl.SFTTrainer(
        model=policy.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=policy.processor,
        data_collator=collator,
        peft_config=_lora_config(config, policy.model) if config.lora_r else None,
        callbacks=[_timer_callback(times), _manifest_callback(policy, config)],
    )
    trainer.train(resume_from_checkpoint=resume)
    eval_losses: list[float] = []
    if eval_set is not None:
        trainer.evaluate()
    history = trainer.state.log_history
    losses = [float(h["loss"]) for h in history if "loss" in h]
    eval_losses = [float(h["eval_loss"]) for h in history if "eval_loss" in h]
    out = _final_save(trainer, policy, config)
    tokens = [collator.tokens.get(i, 0) for i in range(len(train_set))]
    return SFTResult(out, losses, times, len(train_set), tokens, eval_losses, int(trainer.state.global_step))


def _main(argv: Optional[Sequence[str]]) -> SFTResult:
    config = parse_args(SFTConfig, argv, prog="python -m training.sft")
    result = train_sft(config)
    mean = sum(result.step_seconds) / max(1, len(result.step_seconds))
    print(
        json.dumps(
            {
                "output_dir": str(result.output_dir),
                "first_loss": result.losses[0] if result.losses else None,
                "last_loss": result.losses[-1] if result.losses else None,
                "eval_loss": result.eval_losses[-1] if result.eval_losses else None,
                "global_step": result.global_step,
                "seconds_per_step": round(mean, 3),
            }
        ),
        flush=True,
    )
    return result


def main(argv: Optional[Sequence[str]] = None) -> SFTResult:
    """``python -m training.sft --config PATH [--field value ...]``; errors print one line, exit 2."""
    return run_cli(_main, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
