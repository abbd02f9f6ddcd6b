"""The GRPO-CSV recipe: :class:`GRPOConfig` (our fields + the ``trl.GRPOConfig`` fields a recipe sets).

A recipe is a JSON file under ``training/configs/`` (``python -m training.grpo --config FILE``);
:func:`trl_config` turns it into the ``trl.GRPOConfig`` that :func:`training.grpo.build_trainer`
hands TRL's ``GRPOTrainer``. :data:`REWARD_SETS` names the reward functions and their weights.
Everything is re-exported by :mod:`training.grpo`, the trainer's module.

Names: :class:`GRPOConfig`, :data:`REWARD_SETS`, :func:`trl_config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from training import rewards as R
from training.errors import TrainingConfigError

__all__ = ["GRPOConfig", "REWARD_SETS", "trl_config"]


#: Reward sets by name (``reward_set``): the functions and their default weights.
REWARD_SETS: dict[str, tuple[Sequence[Callable[..., list[float]]], Sequence[float]]] = {
    "timesearch_v7": (R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS),
}


@dataclass
class GRPOConfig:
    """GRPO-CSV on TRL's GRPOTrainer: our fields plus the trl.GRPOConfig fields a recipe sets."""

    model: str = field(metadata={"help": "Policy checkpoint to start from (usually the SFT output)."})
    data: str = field(
        metadata={"help": "JSONL of prompts: question, video, answer, problem_type (+ optional window)."}
    )
    output_dir: str = field(metadata={"help": "Checkpoints (checkpoint-N/) and the final policy go here."})
    eval_data: Optional[str] = field(
        default=None, metadata={"help": "JSONL of held-out prompts, evaluated per eval_strategy."}
    )
    encoder: str = field(default="siglip-b16", metadata={"help": "Encoder of the rollouts' TemporalSearcher."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Frame-embedding cache of the searcher."})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto (accelerate places the model)."})
    # --- the episode (ours; written into the checkpoint manifest)
    max_turns: int = field(default=8, metadata={"help": "Turns per rollout (TimeSearch-R: 8); tool calls <= max_turns - 1."})
    max_new_tokens: int = field(
        default=256, metadata={"help": "Tokens per turn (TimeSearch-R: 256); also the CSV re-answer's budget."}
    )
    preview_frames: int = field(default=8, metadata={"help": "Preview frames in the first user turn."})
    max_completion_length: Optional[int] = field(
        default=None,
        metadata={
            "help": "TRL: tokens of a whole episode after the prompt, tool results included "
            "(default: max_turns * (max_new_tokens + 1) plus what max_turns - 1 tool results of 8 frames take)."
        },
    )
    observation: str = field(
        default="images",
        metadata={"help": "images | text: frames as images, or as text lines (timestamp, score, zero-shot tags) "
                  "for a text-only policy."},
    )
    tag_vocabulary: Optional[Union[str, list[str]]] = field(
        default=None,
        metadata={"help": "Text observations: zero-shot tag vocabulary, a list or 'world' (the synthetic "
                  "world's captions); None: timestamps and scores only."},
    )
    tag_top_k: int = field(default=1, metadata={"help": "Text observations: tags per frame."})
    verify: bool = field(default=True, metadata={"help": "Run the frames-only re-answer (the CSV reward's input)."})
    filter_uniform_frames: int = field(
        default=0,
        metadata={"help": "TimeSearch-R's stage-1 data filter (training.filtering): before training, drop the prompts "
                  "the starting policy answers right from this many uniform frames alone (paper: 4; 0: off)."},
    )
    reward_set: str = field(
        default="timesearch_v7", metadata={"help": "Reward functions: timesearch_v7 = format, accuracy, CSV."}
    )
    reward_weights: Optional[list[float]] = field(
        default=None, metadata={"help": "TRL reward_weights (default: the set's, [1.0, 0.5, 0.5])."}
    )
    # --- TRL fields (same names and meaning as trl.GRPOConfig)
    num_generations: int = field(default=8, metadata={"help": "TRL: rollouts per prompt, G (TimeSearch-R: 8)."})
    per_device_train_batch_size: Optional[int] = field(
        default=None, metadata={"help": "TRL: completions per device per micro-batch (default num_generations)."}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "TRL: micro-batches per optimizer step."})
    temperature: float = field(default=1.0, metadata={"help": "TRL: sampling temperature (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "TRL: nucleus sampling mass."})
    beta: float = field(default=0.005, metadata={"help": "TRL: KL coefficient (TimeSearch-R 0.005; 0 = no reference)."})
    loss_type: str = field(default="dapo", metadata={"help": "TRL: loss normalisation (dapo, grpo, dr_grpo, bnpo...)."})
    scale_rewards: Union[bool, str] = field(
        default="none", metadata={"help": "TRL: group | batch | none (TimeSearch-R: none)."}
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "TRL: peak learning rate."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "TRL: linear, cosine, constant..."})
    warmup_steps: float = field(
        default=0.0, metadata={"help": "TRL: warm-up steps (an int) or fraction of max_steps (a float < 1)."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "TRL: gradient clipping norm."})
    max_steps: int = field(default=100, metadata={"help": "TRL: optimizer steps."})
    seed: int = field(default=0, metadata={"help": "TRL: seed of sampling, data order and init."})
    bf16: Optional[bool] = field(default=None, metadata={"help": "TRL: bfloat16 (default: on when CUDA has it)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "TRL: gradient checkpointing."})
    logging_steps: int = field(default=1, metadata={"help": "TRL: log every N steps."})
    report_to: Union[str, list[str]] = field(
        default="none", metadata={"help": "TRL: none, tensorboard, wandb, trackio... (list or name)."}
    )
    save_steps: Union[int, float] = field(default=500, metadata={"help": "TRL: write checkpoint-N every N steps."})
    policy_steps: list[int] = field(
        default_factory=list,
        metadata={"help": "Also write a loadable policy to output_dir/policy-step-N after each of these steps "
                  "(LoRA merged into a copy), e.g. to evaluate the learning curve; a LoRA run's TRL "
                  "checkpoint-N holds adapters only. The copy takes the model's memory once more while it is "
                  "written. Not under DeepSpeed ZeRO-3."},
    )
    save_total_limit: Optional[int] = field(default=None, metadata={"help": "TRL: checkpoints kept."})
    eval_strategy: str = field(default="no", metadata={"help": "TRL: no | steps | epoch (needs eval_data)."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "TRL: evaluate every N steps."})
    use_vllm: bool = field(default=False, metadata={"help": "TRL: generate rollouts with vLLM (GPU only)."})
    vllm_mode: str = field(default="colocate", metadata={"help": "TRL: colocate | server."})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={"help": "TRL: vLLM share of GPU memory (colocate)."})
    resume_from_checkpoint: Optional[Union[bool, str]] = field(
        default=None, metadata={"help": "true: the last checkpoint-N in output_dir; or a checkpoint folder."}
    )
    trl_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Any other trl.GRPOConfig field, by its TRL name."}
    )
    # --- LoRA (peft)
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (merged into the saved policy)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: Union[str, list[str]] = field(
        default="all-linear", metadata={"help": "peft target_modules (all-linear or module names)."}
    )
    lora_layers: int = field(
        default=0, metadata={"help": "LoRA in the last N decoder layers only; the backward pass stops below them (0: all)."}
    )
    run_name: Optional[str] = field(default=None, metadata={"help": "Manifest name of the checkpoint."})
    # --- replay (TimeSearch-R's trainer; training.replay)
    replay_buffer: str = field(
        default="none",
        metadata={"help": "none | dapo | ssr: a step whose advantages are all zero trains on a stored step "
                  "(TimeSearch-R's train.sh: dapo)."},
    )
    replay_buffer_capacity: int = field(default=16, metadata={"help": "Generation batches the replay buffer keeps."})
    replay_buffer_alpha: float = field(default=1.0, metadata={"help": "ssr: priority exponent on mean |advantage|."})

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise TrainingConfigError(
                f"num_generations must be >= 2 (advantages are relative to the group), got {self.num_generations}"
            )
        if self.temperature <= 0:
            raise TrainingConfigError(f"temperature must be > 0 for GRPO rollouts, got {self.temperature}")
        for name in ("max_turns", "max_new_tokens", "max_steps", "gradient_accumulation_steps"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.observation not in ("images", "text"):
            raise TrainingConfigError(f"observation must be images or text, got {self.observation!r}")
        if self.tag_vocabulary is not None and self.observation != "text":
            raise TrainingConfigError("tag_vocabulary is read only with observation 'text'")
        if isinstance(self.tag_vocabulary, str) and self.tag_vocabulary != "world":
            raise TrainingConfigError(
                f"tag_vocabulary must be a list of tags or 'world', got {self.tag_vocabulary!r}"
            )
        if self.tag_top_k < 1:
            raise TrainingConfigError(f"tag_top_k must be >= 1, got {self.tag_top_k}")
        if self.preview_frames < 0:
            raise TrainingConfigError(f"preview_frames must be >= 0, got {self.preview_frames}")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.policy_steps):
            raise TrainingConfigError(f"policy_steps must be a list of step numbers >= 1, got {self.policy_steps!r}")
        late = [n for n in self.policy_steps if n > self.max_steps]
        if late:
            raise TrainingConfigError(f"policy_steps {late} come after max_steps {self.max_steps}: valid 1..{self.max_steps}")
        if self.filter_uniform_frames < 0:
            raise TrainingConfigError(f"filter_uniform_frames must be >= 0 (0: no filter), got {self.filter_uniform_frames}")
        if self.reward_set not in REWARD_SETS:
            raise TrainingConfigError(f"unknown reward_set {self.reward_set!r}; valid: {', '.join(REWARD_SETS)}")
        n = len(REWARD_SETS[self.reward_set][0])
        if self.reward_weights is not None and len(self.reward_weights) != n:
            raise TrainingConfigError(f"reward_weights needs {n} values for reward_set {self.reward_set!r}")
        if self.lora_layers < 0:
            raise TrainingConfigError(f"lora_layers must be >= 0 (0: every layer), got {self.lora_layers}")
        if self.beta < 0:
            raise TrainingConfigError(f"beta must be >= 0, got {self.beta}")
        from training.replay import REPLAY_BUFFERS

        if self.replay_buffer not in REPLAY_BUFFERS:
            raise TrainingConfigError(
                f"replay_buffer must be one of {', '.join(REPLAY_BUFFERS)}, got {self.replay_buffer!r}"
            )
        if self.replay_buffer_capacity < 1:
            raise TrainingConfigError(f"replay_buffer_capacity must be >= 1, got {self.replay_buffer_capacity}")
        if isinstance(self.scale_rewards, bool):
            self.scale_rewards = "group" if self.scale_rewards else "none"
        if self.scale_rewards not in ("group", "batch", "none"):
            raise TrainingConfigError(f"scale_rewards must be group, batch or none, got {self.scale_rewards!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise TrainingConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.eval_strategy != "no" and not self.eval_data:
            raise TrainingConfigError(f"eval_strategy {self.eval_strategy!r} needs eval_data (a JSONL of prompts)")
        if self.use_vllm and self.device == "cpu":
            raise TrainingConfigError("use_vllm needs a GPU; set device to cuda or auto, or use_vllm false")
        ours = {f.name for f in dataclasses.fields(self)}
        clash = sorted(set(self.trl_args) & ours)
        if clash:
            raise TrainingConfigError(f"trl_args repeats top-level field(s) {clash}; set them at the top level")

    @property
    def episode_tokens(self) -> int:
        """TRL's ``max_completion_length`` for this recipe (see the field's help)."""
        if self.max_completion_length:
            return int(self.max_completion_length)
        # a tool result: 8 frames, each a timestamp and (at most) 256 image tokens, plus ~80 text tokens;
        # in text mode each frame is one line (timestamp, score, tags: <= 24 tokens per tag)
        per_frame = 12 + 24 * self.tag_top_k if self.observation == "text" else 262
        return self.max_turns * (self.max_new_tokens + 1) + (self.max_turns - 1) * (8 * per_frame + 80)

    def vocabulary(self) -> Optional[list[str]]:
        """The tag vocabulary as a list (``'world'`` expanded), or None."""
        if self.tag_vocabulary == "world":
            from agent_tools.observations import world_vocabulary

            return world_vocabulary()
        return list(self.tag_vocabulary) if self.tag_vocabulary is not None else None

    def manifest_updates(self) -> dict[str, Any]:
        """Manifest fields of the observation mode (empty for images: the base's stay)."""
        if self.observation != "text":
            return {}
        vocab = self.vocabulary()
        if vocab is None:  # the tagger's own vocabulary (if any) is recorded by save_checkpoint
            return {"observation": "text"}
        return {"observation": "text", "tag_vocabulary": vocab, "tag_top_k": int(self.tag_top_k)}


def trl_config(config: GRPOConfig, **overrides: Any):
    """The ``trl.GRPOConfig`` of a recipe (TRL fields as they are, our episode fields mapped).

    Raises:
        TrainingConfigError: On a ``trl_args`` key that is not a ``trl.GRPOConfig`` field.
    """
    import torch
    import trl

    valid = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    bad = sorted(set(config.trl_args) - valid)
    if bad:
        raise TrainingConfigError(f"trl_args: {bad} are not trl.GRPOConfig fields (see `trl.GRPOConfig` docs)")
    cuda = config.device != "cpu" and torch.cuda.is_available()
    bf16 = config.bf16 if config.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    kwargs: dict[str, Any] = dict(
        output_dir=config.output_dir,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size or config.num_generations,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_completion_length=config.episode_tokens,
        max_tool_calling_iterations=config.max_turns - 1,
        temperature=config.temperature,
        top_p=config.top_p,
        beta=config.beta,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        reward_weights=list(config.reward_weights or REWARD_SETS[config.reward_set][1]),
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        activation_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        report_to=config.report_to,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy=config.eval_strategy,
        eval_steps=config.eval_steps,
        per_device_eval_batch_size=config.per_device_train_batch_size or config.num_generations,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        use_cpu=config.device == "cpu" or not cuda,
        remove_unused_columns=False,  # the environment reads question/video/window, the rewards answer/...
        run_name=config.run_name,
        disable_tqdm=True,
    )
    # tokens per turn: TRL's own per-call generation budget is the whole episode's
    per_turn = {"max_tokens": config.max_new_tokens} if config.use_vllm else {"max_new_tokens": config.max_new_tokens}
    kwargs.update(config.trl_args)
    kwargs.update(overrides)
    kwargs["generation_kwargs"] = {**per_turn, **(kwargs.get("generation_kwargs") or {})}
    return trl.GRPOConfig(**kwargs)
