"""Stage 2 of VideoSearch-R1: GRPO of an SQR checkpoint with its six rewards, on TRL's ``GRPOTrainer``.

The rollout is one verification turn, exactly the corpus graph's: the prompt is
:func:`~agent_tools.graphs.corpus.verification_messages` of the moment the first search
returned (frames resolved and sized as the policy sees them), the policy writes
``<think>..</think><answer>matched|not_matched</answer>[<start>S</start><end>E</end>]<REFINE>``,
8 generations per prompt (``num_generations``), ``beta`` 0.01, learning rate 5e-7 constant with
warm-up (``scripts/internal/stage2/train_stage2.bash``).

Rewards, in the reference's order and weights (1.6 / 0.05 / 0.05 / 0.35 / 0.8 / 0.5): the
five text rewards of :mod:`training.rewards` as they are (helper-owned, reproduced from
``videosearch_r1/reward/reward.py``), and the refine-quality reward fed by
:class:`RefineQualityReward`: for every completion that emits ``<REFINE>``, the *current*
policy's hidden state there runs the stage-1 latent rollout, the soft tokens refine the query
in the retriever, and ``p_after - p_before`` (InfoNCE probability of the positive under the
refined vs the original query; tau 0.1; negatives: the row's hard negatives, the moment shown
and the other prompts' positives in the generation batch, as
``_populate_latent_improve_meta``) is passed to
:data:`training.rewards.query_refine_quality_reward` as its ``q_orig``/``q_final``/``v_pos``/``v_negs``
columns. The SQR maps stay as stage 1 left them; the reference's extra latent losses in stage 2
(a Gaussian-policy PPO term on the latents, ``SQR_LATENT_SIGMA`` 0.05 / clip 0.2, and an InfoNCE
auxiliary loss) are not reproduced here.

Rollouts never sample a vision placeholder (``<|image_pad|>`` ...: TRL's ``generation_kwargs``
from :func:`agent_tools.policies.vision_tokens.placeholder_generation_kwargs`, for transformers
and vLLM alike): a completion is re-run with the prompt's frames for log-probabilities and the
refine reward, and one sampled placeholder would end the run ("image tokens 98 vs features 96").
The memory estimate is printed at start.

Own code only where TRL has no hook: building the dataset from our data rows, and the reward
that needs the policy's hidden states. Everything else (generation incl. vLLM, the GRPO loss,
reference model, accelerate/DeepSpeed, LR schedule, ``save_steps``/resume, ``report_to``) is TRL's.

Names: :class:`VSR1GRPOConfig`, :class:`GRPOExample`, :func:`load_grpo_examples`,
:func:`build_grpo_dataset`, :class:`RefineQualityReward`, :func:`build_rewards`,
:func:`train_sqr_grpo`, :func:`main` (``python -m training.sqr_grpo --config training/configs/vsr1_grpo_tiny.json``).
Data rows: ``{"query", "shown": M, "positive": M, "negatives": [M...]}``; the truth label is
``matched`` iff ``shown`` is in the positive's video (the reference: retrieved id == GT video), and
``gt_time`` is the positive's window.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agent_tools.policies.soft_refine import (
    SQR_CONFIG_NAME,
    SQR_WEIGHTS_NAME,
    check_refiner_encoder,
    load_projector,
    refined_query,
    rollout_latents,
)
from training.errors import TrainingConfigError, TrainingDataError
from training.rewards import REFINE_TAU, REFINE_TOKEN, VIDEOSEARCH_REWARD_WEIGHTS, VIDEOSEARCH_REWARDS
from training.sqr import MomentBank, SQRExample, corpus_conversation, load_sqr_examples

__all__ = [
    "GRPOExample",
    "RefineQualityReward",
    "VSR1GRPOConfig",
    "build_grpo_dataset",
    "build_rewards",
    "load_grpo_examples",
    "main",
    "train_sqr_grpo",
]

GRPOExample = SQRExample
load_grpo_examples = load_sqr_examples


@dataclass
class VSR1GRPOConfig:
    """VideoSearch-R1 stage 2: GRPO on an SQR checkpoint (``train_stage2.bash`` defaults)."""

    model: str = field(metadata={"help": "Stage-1 SQR checkpoint (python -m training.sqr)."})
    data: str = field(metadata={"help": "JSONL rows: query, shown, positive, negatives."})
    output_dir: str = field(metadata={"help": "Checkpoint directory (policy + the SQR maps)."})
    encoder: str = field(
        default="siglip-b16", metadata={"help": "Retriever encoder (the refiner's and the index's)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Frame-embedding cache."})
    device: str = field(default="cpu", metadata={"help": "Torch device (single process)."})
    verify_frames: int = field(
        default=4, metadata={"help": "Frames of the shown moment, as in the corpus graph."}
    )
    num_generations: int = field(default=8, metadata={"help": "Completions per prompt (8)."})
    per_device_train_batch_size: int = field(
        default=2, metadata={"help": "Completions per device per step (2)."}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "= steps_per_generation in the reference."}
    )
    steps_per_generation: int | None = field(default=None, metadata={"help": "TRL steps_per_generation."})
    max_steps: int = field(default=100, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=5e-7, metadata={"help": "5e-7 in the reference."})
    lr_scheduler_type: str = field(default="constant_with_warmup", metadata={"help": "LR schedule."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Warm-up fraction."})
    weight_decay: float = field(default=0.01, metadata={"help": "0.01 in the reference."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    beta: float = field(default=0.01, metadata={"help": "KL coefficient (0.01)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    max_completion_length: int = field(default=768, metadata={"help": "Completion tokens (768)."})
    reward_weights: list = field(
        default_factory=lambda: list(VIDEOSEARCH_REWARD_WEIGHTS),
        metadata={"help": "answer, think, time format, time IoU, refine presence, refine quality."},
    )
    tau: float = field(default=REFINE_TAU, metadata={"help": "Refine-quality temperature (0.1)."})
    use_vllm: bool = field(default=False, metadata={"help": "vLLM rollouts (GPU)."})
    vllm_mode: str = field(default="colocate", metadata={"help": "colocate (the reference) or server."})
    vllm_gpu_memory_utilization: float = field(default=0.2, metadata={"help": "0.20 in the reference."})
    bf16: bool = field(default=False, metadata={"help": "bf16 (GPU)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Gradient checkpointing."})
    deepspeed: str | None = field(default=None, metadata={"help": "DeepSpeed JSON (training/launch/)."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0: full)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    save_steps: int = field(default=0, metadata={"help": "Mid-run checkpoints every N steps (0: none)."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "Trainer checkpoint."})
    report_to: str = field(default="none", metadata={"help": "none, tensorboard, wandb."})
    logging_steps: int = field(default=1, metadata={"help": "Log every N steps."})
    seed: int = field(default=0, metadata={"help": "Seed."})
    run_name: str | None = field(default=None, metadata={"help": "Manifest name."})

    def __post_init__(self) -> None:
        if len(self.reward_weights) != len(VIDEOSEARCH_REWARDS):
            raise TrainingConfigError(
                f"reward_weights needs {len(VIDEOSEARCH_REWARDS)} numbers (answer, think, time format, time IoU, "
                f"refine presence, refine quality), got {self.reward_weights!r}"
            )
        for name in ("num_generations", "per_device_train_batch_size", "max_steps", "verify_frames"):
            if int(getattr(self, name)) < 1:
                raise TrainingConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise TrainingConfigError(
                "num_generations must be >= 2 (GRPO compares completions of one prompt)"
            )


def build_grpo_dataset(
    policy: Any, examples: Sequence[SQRExample], bank: MomentBank, frames: Any, verify_frames: int
):
    """A ``datasets.Dataset`` of verification prompts with their truth and bank ids.

    Columns: ``prompt`` (chat messages with image placeholders), ``images``, ``label``,
    ``gt_time``, ``query``, ``positive_id``, ``shown_id``, ``negative_ids``.
    """
    from datasets import Dataset

    from agent_tools.policies.transformers_policy import split_images

    rows = []
    for ex in examples:
        convo = corpus_conversation(ex.query, *ex.shown, frames=verify_frames)
        prompt, images = split_images(policy.prepare(convo, frames))
        prompt = [
            {**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m
            for m in prompt
        ]
        pos, shown = bank.id(ex.positive), bank.id(ex.shown)
        rows.append(
            {
                "prompt": prompt,
                "images": images,
                "label": "matched" if ex.shown[0] == ex.positive[0] else "not_matched",
                "gt_time": [float(ex.positive[1]), float(ex.positive[2])],
                "query": ex.query,
                "positive_id": pos,
                "shown_id": shown,
                "negative_ids": [bank.id(m) for m in ex.negatives if bank.id(m) != pos],
            }
        )
    return Dataset.from_list(rows)


class RefineQualityReward:
    """VideoSearch-R1's ``r_query_refine_quality`` fed by the current policy's latent rollout.

    Args:
        projector: The stage-1 SQR maps.
        encoder: The retriever.
        bank: The moment bank (vectors of positives and negatives).
        refine_id: ``<REFINE>``'s token id.
        tau: InfoNCE temperature.

    The trainer's model is set as :attr:`model` after the trainer is built (so the reward reads
    the weights being trained).
    """

    __name__ = "query_refine_quality_reward"

    def __init__(
        self, projector: Any, encoder: Any, bank: MomentBank, refine_id: int, tau: float = REFINE_TAU
    ):
        from training.rewards import query_refine_quality_reward

        self.projector, self.encoder, self.bank = projector, encoder, bank
        self.refine_id, self.tau = int(refine_id), float(tau)
        self.model: Any = None
        self.policy: Any = None
        self._score = query_refine_quality_reward
        self.last: dict[str, list] = {}

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]],
        **kw: Any,
    ):
        from agent_tools.policies.transformers_policy import append_token_ids

        n = len(completions)
        batch_pos = sorted({int(p) for p in kw["positive_id"]})
        cols: dict[str, list] = {"q_orig": [], "q_final": [], "v_pos": [], "v_negs": []}
        model = self.model if self.model is not None else self.policy.model
        was = model.training
        model.eval()
        try:
            for i in range(n):
                ids = [int(t) for t in completion_ids[i]]
                if self.refine_id not in ids:
                    for values in cols.values():
                        values.append(None)
                    continue
                ids = ids[: len(ids) - ids[::-1].index(self.refine_id)]
                inputs = append_token_ids(self.policy.build_inputs(prompts[i]), ids)
                latents, _ = rollout_latents(model, self.projector, dict(inputs))
                query = kw["query"][i]
                pos = int(kw["positive_id"][i])
                negs = {int(j) for j in kw["negative_ids"][i]} | {int(kw["shown_id"][i])} | set(batch_pos)
                negs.discard(pos)
                cols["q_orig"].append(self.encoder.encode_text([query])[0])
                cols["q_final"].append(
                    refined_query(self.encoder, [query], self.projector.soft_tokens(latents))[0].numpy()
                )
                cols["v_pos"].append(self.bank.vectors[pos].numpy())
                cols["v_negs"].append(self.bank.vectors[sorted(negs)].numpy())
        finally:
            model.train(was)
        self.last = cols
        return self._score(completions=completions, tau=self.tau, **cols)


def build_rewards(refine: RefineQualityReward) -> list[Any]:
    """The six reward functions, VideoSearch-R1's order, the last one fed by ``refine``."""
    return [*VIDEOSEARCH_REWARDS[:5], refine]


def _fingerprints(model: torch.nn.Module) -> dict[str, tuple[float, float]]:
    """``name -> (sum, L2 norm)`` of each tensor, reduced in float64: tells a changed tensor without a copy."""
    with torch.no_grad():
        return {
            k: (float(v.sum(dtype=torch.float64)), float(torch.linalg.vector_norm(v, dtype=torch.float64)))
            for k, v in model.state_dict().items()
        }


def _memory_line(config: VSR1GRPOConfig, policy: Any) -> str:
    """The memory estimate printed at start (LoRA: ``r x (in + out)`` per wrapped linear layer)."""
    from training.memory import estimate_for_model

    trainable = None
    if config.lora_r > 0:  # target "all-linear" outside the vision tower, as the LoraConfig below
        trainable = sum(
            config.lora_r * (int(m.in_features) + int(m.out_features))
            for name, m in policy.model.named_modules()
            if isinstance(m, torch.nn.Linear) and "visual" not in name and not name.endswith("lm_head")
        )
    return estimate_for_model(policy.model, trainable=trainable, beta=config.beta, vllm=config.use_vllm)


def train_sqr_grpo(
    config: VSR1GRPOConfig,
    *,
    searcher: Any = None,
    policy: Any = None,
    examples: Sequence[SQRExample] | None = None,
    bank: MomentBank | None = None,
) -> dict[str, Any]:
    """Run stage-2 GRPO and save a checkpoint ``load_policy`` reads (with the refiner attached).

    Returns:
        ``{"output_dir", "log_history", "changed_tensors", "steps_with_advantage"}``: the last is
        how many logged steps had a group whose rewards differed (TRL's ``frac_reward_zero_std``
        < 1), i.e. non-zero advantages; ``changed_tensors`` alone is no evidence of learning,
        since AdamW's weight decay moves the weights even when every advantage is 0.

    Raises:
        TrainingConfigError: If ``config.model`` is not an SQR checkpoint or was trained for another encoder.
    """
    from trl import GRPOConfig, GRPOTrainer

    from agent_tools.policies.vision_tokens import placeholder_generation_kwargs, suppress_vision_placeholders
    from training.common import prepare_run, save_checkpoint
    from training.common import gathered_parameters  # the ZeRO-3 gather for the save

    model_dir = Path(config.model)
    if not (model_dir / SQR_WEIGHTS_NAME).is_file():
        raise TrainingConfigError(
            f"{config.model!r} has no {SQR_WEIGHTS_NAME}; stage 2 starts from a stage-1 SQR checkpoint "
            "(python -m training.sqr)"
        )
    searcher, policy = prepare_run(config, searcher=searcher, policy=policy)
    suppress_vision_placeholders(policy)  # the saved generation config keeps the ban for inference
    encoder = searcher.encoder
    projector, meta = load_projector(model_dir)
    check_refiner_encoder(meta, encoder, where=f"SQR checkpoint {config.model!r}")
    projector.requires_grad_(False)
    data = list(examples) if examples is not None else load_sqr_examples(config.data)
    if not data:
        raise TrainingDataError("no GRPO examples")
    bank = bank or MomentBank.from_examples(searcher, data)
    rid = int(policy.tokenizer.convert_tokens_to_ids(REFINE_TOKEN))
    dataset = build_grpo_dataset(policy, data, bank, searcher.frames, config.verify_frames)
    refine = RefineQualityReward(projector, encoder, bank, rid, config.tau)
    refine.policy = policy
    before = _fingerprints(policy.model)  # not a copy: at 8B a clone would be another 16 GB per process
    peft_config = None
    if config.lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules="all-linear",
            exclude_modules=r".*visual.*",
        )
    out_dir = Path(config.output_dir)
    args = GRPOConfig(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        steps_per_generation=config.steps_per_generation,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        # a sampled vision placeholder breaks every re-run of prompt + completion with the frames
        generation_kwargs=placeholder_generation_kwargs(policy, vllm=config.use_vllm),
        beta=config.beta,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=round(config.warmup_ratio * config.max_steps),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        reward_weights=[float(w) for w in config.reward_weights],
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        deepspeed=config.deepspeed,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(1, config.save_steps),
        logging_steps=max(1, config.logging_steps),
        report_to=[] if config.report_to in ("none", "") else [config.report_to],
        use_cpu=config.device == "cpu",
        seed=config.seed,
        disable_tqdm=True,
        log_completions=False,
    )
    if args.process_index == 0:
        print(_memory_line(config, policy), flush=True)
    trainer = GRPOTrainer(
        model=policy.model,
        reward_funcs=build_rewards(refine),
        args=args,
        train_dataset=dataset,
        processing_class=policy.processor,
        peft_config=peft_config,
    )
    refine.model = trainer.model
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    model = trainer.model
    history = trainer.state.log_history
    out = out_dir
    with gathered_parameters(model):  # ZeRO-3 shards the weights: whole on every rank to compare and save them
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        policy.model = model
        after = _fingerprints(policy.model)
        changed = sum(1 for k, f in before.items() if k in after and after[k] != f)
        if args.process_index == 0:  # one writer per checkpoint folder
            out = save_checkpoint(
                policy,
                out_dir,
                config=config,
                trainer="sqr_grpo",
                name=config.run_name,
                encoder=encoder.name,
                soft_refinement=True,
            )
            for name in (SQR_WEIGHTS_NAME, SQR_CONFIG_NAME):
                shutil.copyfile(model_dir / name, out / name)
            (out / "grpo_history.json").write_text(json.dumps(history, indent=1, default=str) + "\n")
    signal = sum(1 for h in history if "frac_reward_zero_std" in h and h["frac_reward_zero_std"] < 1)
    return {"output_dir": out, "log_history": history, "changed_tensors": changed, "steps_with_advantage": signal}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m training.sqr_grpo --config PATH [--field value ...]``; a ``VideoseekError`` ends in one line."""
    from training.common import run_cli
    from training.config import parse_args

    def run() -> dict[str, Any]:  # a bad recipe or override is one line too
        return train_sqr_grpo(parse_args(VSR1GRPOConfig, argv, prog="python -m training.sqr_grpo"))

    result = run_cli(run)
    keys = ("changed_tensors", "steps_with_advantage")
    print(json.dumps({"output_dir": str(result["output_dir"]), **{k: result[k] for k in keys}}))
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
