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
every checkpoint (:func:`ManifestCallback`), and with ``policy_steps`` a loadable policy after
those steps (:func:`PolicySnapshotCallback`: the learning curve of one run, evaluated afterwards).

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

The recipe itself (:class:`GRPOConfig`, :data:`REWARD_SETS`, :func:`trl_config`) lives in
:mod:`training.grpo_config` and is re-exported here.

Names: :class:`GRPOConfig`, :func:`build_trainer`, :func:`train_grpo`, :class:`GRPOResult`,
:func:`ManifestCallback`, :func:`PolicySnapshotCallback`, :func:`group_advantages`, :data:`REWARD_SETS`, :func:`main`
(``python -m training.grpo --config training/configs/grpo_tiny.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from training.config import parse_args
from training.errors import TrainingConfigError
from training.grpo_config import REWARD_SETS, GRPOConfig, trl_config

__all__ = [
    "GRPOConfig",
    "GRPOResult",
    "REWARD_SETS",
    "ManifestCallback",
    "PolicySnapshotCallback",
    "group_advantages",
    "trl_config",
    "build_trainer",
    "train_grpo",
    "main",
]


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


def _save_policy(policy: Any, out_dir: Any, config: GRPOConfig, *, name: Optional[str], notes: str) -> Path:
    """Write ``policy`` as a GRPO checkpoint (manifest of this recipe: encoder, observation mode)."""
    from training.common import save_checkpoint

    return save_checkpoint(policy, out_dir, config=config, trainer="grpo", name=name, encoder=config.encoder,
                           notes=notes, **config.manifest_updates())


def PolicySnapshotCallback(trainer: Any, policy: Any, config: GRPOConfig):
    """A ``TrainerCallback`` writing a loadable policy to ``output_dir/policy-step-N`` after each step in ``policy_steps``.

    The policy folder is what :func:`train_grpo` writes at the end (LoRA merged, manifest), taken
    from a copy of the model mid-run, so training goes on untouched: the learning curve of a
    run can be evaluated on held-out questions from one run. The copy sits on the model's device
    and takes its memory once more until it is written. :func:`build_trainer` refuses it under
    ZeRO-3, whose partitioned parameters cannot be copied this way.
    """
    import copy

    from transformers import TrainerCallback

    class _PolicySnapshotCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step not in config.policy_steps or not trainer.accelerator.is_main_process:
                return
            snap = copy.deepcopy(trainer.accelerator.unwrap_model(trainer.model))
            if hasattr(snap, "merge_and_unload"):
                snap = snap.merge_and_unload()
            view = copy.copy(policy)
            view.model = snap
            _save_policy(
                view,
                Path(config.output_dir) / f"policy-step-{state.global_step}",
                config,
                name=f"{config.run_name or Path(config.output_dir).name}@{state.global_step}",
                notes=f"TRL GRPOTrainer, snapshot after step {state.global_step} of {state.max_steps}, reward set "
                f"{config.reward_set}, {config.observation} observations",
            )

    return _PolicySnapshotCallback()


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
    if config.policy_steps:
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        if plugin is not None and getattr(plugin, "zero_stage", 0) == 3:
            raise TrainingConfigError("policy_steps is not supported under DeepSpeed ZeRO-3: use save_steps "
                                      "and merge the adapters of checkpoint-N afterwards")
        trainer.add_callback(PolicySnapshotCallback(trainer, policy, config))
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
    from training.common import gathered_parameters

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
            out = _save_policy(
                policy,
                config.output_dir,
                config,
                name=config.run_name,
                notes=f"TRL GRPOTrainer, {trainer.state.global_step} steps, reward set {config.reward_set}, "
                f"{config.observation} observations",
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
