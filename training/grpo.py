"""GRPO with completeness self-verification (TimeSearch-R's GRPO-CSV) on TRL's ``GRPOTrainer``.

One recipe (:class:`GRPOConfig`, a JSON file under ``training/configs/``) becomes a
``trl.GRPOConfig`` plus our fields, and :func:`train_grpo` runs::

    rows (question, video, answer, problem_type)            training.data.load_prompts
      -> TRL dataset rows: protocol system prompt + empty user turn        csv_env.prompt_row
      -> GRPOTrainer(environment_factory=SeekVideoEnv, tools loop)          TRL
           reset(): preview frames + question (the graph's preview node code)
           seek_video_frames(): TemporalSearcher.seek (the graph's seek node code), frames kept
      -> rewards: training.rewards (TimeSearch-R v7: format, accuracy, CSV; 1.0/0.5/0.5),
         the CSV column from the frames-only re-answer of the policy being trained
      -> advantages, DAPO loss, KL, optimiser, LR schedule, checkpoints, logging    TRL
      -> save_pretrained + videoseek_policy.json (turn budget, tokens per turn, preview frames)

What stays ours, and why (TRL cannot do it): the video-search environment, the CSV re-answer,
the chat-template prelude and response template that let TRL's tool loop speak our protocol,
and the raw-text completions the format reward needs: all in :mod:`training.csv_env`, whose
docstring gives each reason. Here: the recipe (TRL's fields we use, named as TRL names them,
plus ``trl_args`` for any other ``trl.GRPOConfig`` field), LoRA merge before saving so the
checkpoint loads with :func:`agent_tools.policies.load_policy`, and the manifest written into
every checkpoint (:func:`ManifestCallback`).

Data: with ``filter_uniform_frames`` (TimeSearch-R's stage-1 filter, :mod:`training.filtering`),
:func:`build_trainer` first drops the prompts the starting policy answers from that many uniform
frames alone (they need no search; their groups would all score alike).

Text observations (``observation: "text"``, e.g. ``training/configs/grpo_smollm2_text.json``):
a text-only policy (SmolLM2) reads every frame as a text line - timestamp, search score and the
encoder's zero-shot tags over ``tag_vocabulary`` (:class:`agent_tools.observations.EncoderTagger`
on the rollouts' searcher) - in the preview, the tool results and the CSV re-answer, as the
graph's ``observation="text"`` mode does; TRL gets the policy's tokenizer as ``processing_class``.
The checkpoint's manifest records ``observation``, ``tag_vocabulary`` and ``tag_top_k``.

Scale (not runnable on this CPU machine, passed through to TRL as they are): ``bf16``,
``gradient_checkpointing``, ``use_peft`` (LoRA), ``use_vllm`` + ``vllm_mode`` (``colocate`` or
``server``), DeepSpeed ZeRO-3 via ``accelerate launch --config_file <zero3.yaml> -m training.grpo
--config ...``, ``report_to`` (``tensorboard``, ``wandb``...), ``eval_data`` + ``eval_strategy``.

Names: :class:`GRPOConfig`, :func:`build_trainer`, :func:`train_grpo`, :class:`GRPOResult`,
:func:`ManifestCallback`, :func:`group_advantages`, :data:`REWARD_SETS`, :func:`main`
(``python -m training.grpo --config training/configs/grpo_tiny.json``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from training import rewards as R
from training.config import parse_args
from training.errors import TrainingConfigError

__all__ = [
    "GRPOConfig",
    "GRPOResult",
    "REWARD_SETS",
    "ManifestCallback",
    "group_advantages",
    "trl_config",
    "build_trainer",
    "train_grpo",
    "main",
]

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


def group_advantages(rewards: Sequence[float], *, num_generations: int, scale: str = "none") -> list[float]:
    """GRPO advantages as TRL computes them: reward minus its group's mean (``/ (std + 1e-4)`` if scaled).

    Rewards come grouped, ``num_generations`` consecutive rollouts per prompt; the std is the
    unbiased one. For cross-checking the trainer's logged advantages in tests and benchmarks.
    """
    import torch

    r = torch.tensor(list(rewards), dtype=torch.float64).view(-1, num_generations)
    a = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        a = a / (r.std(dim=1, keepdim=True) + 1e-4)
    elif scale == "batch":
        a = a / (r.std() + 1e-4)
    return [float(x) for x in a.flatten()]


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


def ManifestCallback(policy: Any, config: GRPOConfig):
    """A ``TrainerCallback`` writing ``videoseek_policy.json`` into each ``checkpoint-N`` TRL saves.

    Every mid-run checkpoint then loads with :func:`agent_tools.policies.load_policy`. A LoRA
    run's checkpoints hold adapters only; the final folder holds the merged policy.
    """
    from transformers import TrainerCallback

    from training.common import checkpoint_manifest, write_run_files

    class _ManifestCallback(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if (ckpt / "config.json").is_file():
                name = f"{config.run_name or Path(config.output_dir).name}@{state.global_step}"
                manifest = checkpoint_manifest(
                    policy.manifest,
                    ckpt,
                    config=config,
                    trainer="grpo",
                    name=name,
                    encoder=config.encoder,
                    **config.manifest_updates(),
                )
                write_run_files(ckpt, manifest, config=config, trainer="grpo")

    return _ManifestCallback()


@dataclass
class GRPOResult:
    """What a run produced: the final policy folder, TRL's log history (one dict per log) and,
    with ``filter_uniform_frames``, the data filter's :class:`~training.filtering.FilterReport`."""

    output_dir: Path
    log_history: list[dict[str, Any]]
    filter_report: Any = None

    @property
    def rewards(self) -> list[float]:
        """Mean reward of each logged training step."""
        return [h["reward"] for h in self.log_history if "reward" in h and "eval_reward" not in h]


def _process_device(config: GRPOConfig) -> str:
    """This process's device for the searcher's encoder: ``cuda:$LOCAL_RANK`` under accelerate."""
    import os

    import torch

    if config.device == "cpu" or not torch.cuda.is_available():
        return "cpu"
    if config.device.startswith("cuda:"):
        return config.device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"


def build_trainer(
    config: GRPOConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    rows: Optional[Sequence[Any]] = None,
    reward_funcs: Optional[Sequence[Callable[..., list[float]]]] = None,
    trl_overrides: Optional[dict[str, Any]] = None,
    tagger: Any = None,
):
    """The ``CSVGRPOTrainer`` of a recipe, ready to ``train()``.

    Args:
        config: The recipe.
        searcher: The ``TemporalSearcher`` (default: built from ``config.encoder``).
        policy: The starting :class:`~agent_tools.policies.TransformersPolicy` (default: loaded from ``config.model``).
        rows: Prompt rows (:class:`training.data.Trajectory`; default: read from ``config.data``).
        reward_funcs: TRL-signature reward functions replacing ``config.reward_set``'s (their
            weights then come from ``config.reward_weights`` or default to 1 each).
        trl_overrides: ``trl.GRPOConfig`` fields set on top of the recipe's.
        tagger: Text observations: the :class:`~agent_tools.observations.FrameTagger` (default:
            an ``EncoderTagger`` on ``searcher`` over ``config.tag_vocabulary``; else the policy's
            own ``tagger``; else one over its manifest's ``tag_vocabulary``; else none: timestamps
            and scores only).

    Returns:
        ``(trainer, policy)``.

    Raises:
        TrainingConfigError: On a policy that is not a transformers checkpoint, or one whose
            tool turns are rewritten as user turns (TRL's loop renders the tool role), or an
            image-observation recipe on a text-only policy.
    """
    import os

    import torch
    from peft import LoraConfig

    from agent_tools.policies.manifest import PolicyManifest
    from training import csv_env
    from training.common import build_searcher, load_trainable_policy, lora_target_modules, set_seed
    from training.data import load_prompts

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory: documented above
    set_seed(config.seed)
    if searcher is None:
        searcher = build_searcher(config.encoder, cache_dir=config.cache_dir, device=_process_device(config))
    text = config.observation == "text"
    if policy is None:  # loaded on the CPU; the trainer (accelerate / DeepSpeed) places it on this rank's device
        policy = load_trainable_policy(config.model, device="cpu", **({"text_only": True} if text else {}))
    if getattr(policy, "text_only", False) and not text:
        raise TrainingConfigError(
            f"policy {config.model!r} reads text only; set observation to 'text' (frames as text lines)"
        )
    if text and tagger is None:
        tagger = getattr(policy, "tagger", None)
        manifest = getattr(policy, "manifest", None)
        vocab, top_k = config.vocabulary(), config.tag_top_k
        if vocab is None and tagger is None and getattr(manifest, "tag_vocabulary", None):
            vocab, top_k = list(manifest.tag_vocabulary), int(manifest.tag_top_k)  # the tags it was trained on
        if vocab is not None:
            from agent_tools.observations import EncoderTagger

            tagger = EncoderTagger(searcher, vocab, top_k=top_k)
    if text:  # the policy itself (graph, eval after training) reads frames as the rollouts did
        policy.text_only, policy.tagger = True, tagger
    if policy.tool_role != "tool":
        raise TrainingConfigError(
            f"policy {config.model!r} sends tool results as {policy.tool_role!r} turns; TRL's tool loop renders "
            "them in the tool role, so only tool_role 'tool' policies can be trained here"
        )
    data = list(rows) if rows is not None else load_prompts(config.data)
    report = None
    if config.filter_uniform_frames:  # TimeSearch-R stage 1, with the policy about to be trained
        from training.filtering import filter_before_training

        data, report = filter_before_training(policy, searcher, data, num_frames=config.filter_uniform_frames,
                                              max_new_tokens=config.max_new_tokens)
    overrides = dict(trl_overrides or {})
    if reward_funcs is None:
        funcs = list(REWARD_SETS[config.reward_set][0])
    else:
        funcs = list(reward_funcs)
        overrides.setdefault("reward_weights", list(config.reward_weights or [1.0] * len(funcs)))
    from agent_tools.policies.vision_tokens import placeholder_generation_kwargs

    # rollouts re-feed sampled ids with the prompt's frames: a sampled image/video placeholder
    # breaks that forward (TRL bans only the image token, and not under vLLM)
    ban = placeholder_generation_kwargs(policy, vllm=config.use_vllm)
    if ban:
        gen = dict(overrides.get("generation_kwargs") or {})
        key = next(iter(ban))
        if key == "suppress_tokens":
            gen[key] = sorted(set(gen.get(key) or []) | set(ban[key]))
        else:
            gen[key] = {**ban[key], **(gen.get(key) or {})}
        overrides["generation_kwargs"] = gen
    args = trl_config(config, **overrides)
    if args.bf16:
        policy.model.to(torch.bfloat16)
    processor = csv_env.prepare_processing_class(policy.processor)
    verifier = csv_env.FramesOnlyVerifier(
        max_side=policy.max_side, max_new_tokens=config.max_new_tokens, observation=config.observation, tagger=tagger
    )
    funcs = csv_env.csv_reward_funcs(funcs, verifier if config.verify else None)
    env_factory = csv_env.make_env_factory(
        searcher,
        max_turns=config.max_turns,
        preview_frames=config.preview_frames,
        max_side=policy.max_side,
        observation=config.observation,
        tagger=tagger,
    )
    eval_dataset = None
    if config.eval_data:
        eval_dataset = csv_env.rows_dataset(load_prompts(config.eval_data))
    peft_config = None
    if config.use_peft:
        targets = config.lora_target_modules
        if config.lora_layers:  # the named projections (all-linear: the language model's) in the top layers only
            names = targets if isinstance(targets, list) else ([targets] if targets != "all-linear" else None)
            targets = lora_target_modules(policy.model, config.lora_layers, **({"projections": names} if names else {}))
        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
    if not isinstance(policy.manifest, PolicyManifest):
        policy.manifest = PolicyManifest(max_side=policy.max_side)
    trainer = csv_env.CSVGRPOTrainer(
        model=policy.model,
        args=args,
        reward_funcs=funcs,
        train_dataset=csv_env.rows_dataset(data),
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        environment_factory=env_factory,
        callbacks=[ManifestCallback(policy, config)],
    )
    verifier.bind(trainer)
    trainer.filter_report = report
    from training.replay import make_replay_buffer

    trainer.replay_buffer = make_replay_buffer(
        config.replay_buffer, capacity=config.replay_buffer_capacity, alpha=config.replay_buffer_alpha, seed=config.seed
    )
    return trainer, policy


def train_grpo(
    config: GRPOConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    rows: Optional[Sequence[Any]] = None,
    reward_funcs: Optional[Sequence[Callable[..., list[float]]]] = None,
    trl_overrides: Optional[dict[str, Any]] = None,
    tagger: Any = None,
) -> GRPOResult:
    """Run GRPO-CSV and save the policy (arguments as :func:`build_trainer`).

    Returns:
        The :class:`GRPOResult`; ``output_dir`` loads with :func:`agent_tools.policies.load_policy`.
    """
    from training.common import gathered_parameters, save_checkpoint

    trainer, policy = build_trainer(
        config,
        searcher=searcher,
        policy=policy,
        rows=rows,
        reward_funcs=reward_funcs,
        trl_overrides=trl_overrides,
        tagger=tagger,
    )
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # LoRA: fold the adapters in, so the folder is a plain policy
        model = model.merge_and_unload()
    policy.model = model
    out = Path(config.output_dir)
    # ZeRO-3 (the 7B recipe's launch) shards the weights: gather them on every rank, write on one
    with gathered_parameters(model):
        if trainer.accelerator.is_main_process:
            out = save_checkpoint(
                policy,
                config.output_dir,
                config=config,
                trainer="grpo",
                name=config.run_name,
                encoder=config.encoder,
                notes=f"TRL GRPOTrainer, {trainer.state.global_step} steps, reward set {config.reward_set}, "
                f"{config.observation} observations",
                **config.manifest_updates(),
            )
    return GRPOResult(out, list(trainer.state.log_history), trainer.filter_report)


def _run(argv: Optional[Sequence[str]]) -> GRPOResult:
    config = parse_args(GRPOConfig, argv, prog="python -m training.grpo")
    result = train_grpo(config)
    print(json.dumps({"output_dir": str(result.output_dir), "rewards": [round(r, 4) for r in result.rewards]}))
    return result


def main(argv: Optional[Sequence[str]] = None) -> GRPOResult:
    """``python -m training.grpo --config PATH [--field value ...]``; a ``VideoseekError`` exits 2 with one line."""
    from training.common import run_cli

    return run_cli(_run, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
