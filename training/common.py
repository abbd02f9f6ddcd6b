"""Pieces every trainer shares: seeding, loading a trainable policy, the searcher, checkpoints.

- :func:`set_seed` - python, numpy and torch seeds.
- :func:`load_trainable_policy` - a :class:`~agent_tools.policies.TransformersPolicy` from a
  checkpoint directory (``load_policy``), model in float32 train mode.
- :func:`build_searcher` - the real ``TemporalSearcher`` over a registered encoder.
- :func:`prepare_run` - seed, then the given searcher and policy or those the config names.
- :func:`save_checkpoint` - ``save_pretrained`` model + processor, ``videoseek_policy.json``
  (the base manifest with ``trained: true`` and the run's notes) and ``training_config.json``:
  a directory :func:`agent_tools.policies.load_policy` and ``videoseek ask --policy`` load.
- :func:`checkpoint_manifest` / :func:`write_run_files` - that manifest (plus the turn budget,
  tokens per turn and preview frames of the run, :func:`manifest_fields_from_config`) and
  ``training_config.json`` for a folder whose weights another writer saved (TRL/DeepSpeed).
- :func:`lora_target_modules` - the LoRA target regex (language-model projections, optionally only
  in the top decoder layers).
- :func:`run_cli` - a trainer's ``main``: a ``VideoseekError`` becomes one ``error:`` line on
  stderr and exit status 2 instead of a traceback.

Usage::

    policy = load_trainable_policy("runs/sft", device="cpu")
    save_checkpoint(policy, "runs/grpo", config=cfg, trainer="grpo")
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Optional

from training.config import config_to_dict
from training.errors import TrainingConfigError

__all__ = [
    "set_seed",
    "load_trainable_policy",
    "build_searcher",
    "prepare_run",
    "save_checkpoint",
    "checkpoint_manifest",
    "write_run_files",
    "manifest_fields_from_config",
    "observation_fields",
    "gathered_parameters",
    "lora_target_modules",
    "run_cli",
    "TRAINING_CONFIG_NAME",
]

TRAINING_CONFIG_NAME = "training_config.json"


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_trainable_policy(path: str | Path, *, device: str = "cpu", **kwargs: Any):
    """Load a policy checkpoint for training.

    Args:
        path: A directory with ``save_pretrained`` files and ``videoseek_policy.json``.
        device: Torch device.
        **kwargs: :class:`~agent_tools.policies.TransformersPolicy` arguments (``do_sample``...).

    Returns:
        The policy; its model is float32 and in train mode.

    Raises:
        TrainingConfigError: If the checkpoint is not a transformers policy.
    """
    import torch

    from agent_tools.policies import load_policy
    from agent_tools.policies.transformers_policy import TransformersPolicy

    policy = load_policy(path, device=device, dtype=torch.float32, **kwargs)
    if not isinstance(policy, TransformersPolicy):
        raise TrainingConfigError(
            f"model {str(path)!r} is a {type(policy).__name__}; training needs a transformers checkpoint "
            "(backend 'transformers' in its videoseek_policy.json)"
        )
    policy.model.train()
    return policy


def build_searcher(encoder: str, *, cache_dir: Optional[str] = None, device: str = "cpu"):
    """The real ``TemporalSearcher`` over the registered encoder ``encoder``.

    Args:
        encoder: Registry name (``videoseek encoders`` lists them).
        cache_dir: Embedding cache folder (default: the settings' cache).
        device: Encoder device.

    Returns:
        The searcher.
    """
    from agent_tools.config import get_settings
    from agent_tools.encoders import load_encoder
    from agent_tools.temporal import TemporalSearcher

    settings = get_settings(cache_dir=cache_dir, device=device, encoder=encoder)
    return TemporalSearcher(load_encoder(encoder, device=device), settings=settings)


def prepare_run(config: Any, *, searcher: Any = None, policy: Any = None) -> tuple[Any, Any]:
    """Seed, then the run's searcher and trainable policy: the ones given, else built from ``config``.

    Args:
        config: A trainer config (``seed``, ``encoder``, ``cache_dir``, ``device``, ``model``).
        searcher: A ready ``TemporalSearcher`` (default: :func:`build_searcher`).
        policy: A ready policy (default: :func:`load_trainable_policy` of ``config.model``).

    Returns:
        ``(searcher, policy)``.
    """
    set_seed(config.seed)
    if searcher is None:
        searcher = build_searcher(config.encoder, cache_dir=config.cache_dir, device=config.device)
    if policy is None:
        policy = load_trainable_policy(config.model, device=config.device)
    return searcher, policy


def gathered_parameters(module: Any) -> Any:
    """A context holding ``module``'s ZeRO-3-partitioned parameters whole on every rank (else a no-op).

    Every rank must enter it (the gather is collective); write files inside it on one rank only.
    Without it, ``save_pretrained`` under ZeRO-3 writes empty tensors.
    """
    import contextlib

    params = [p for p in module.parameters() if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


#: The language model's projections LoRA wraps (the vision tower's MLP uses the same names in
#: Qwen2.5-VL, hence the negative look-ahead on ``visual`` in :func:`lora_target_modules`).
LORA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_target_modules(model: Any, last_layers: int = 0, projections: Any = LORA_PROJECTIONS) -> str:
    """The peft ``target_modules`` regex: the language model's ``projections``, in its last ``last_layers`` layers.

    With ``last_layers`` > 0 the adapters sit in the top decoder layers only, so the backward pass
    stops below them: on SmolLM2-135M (30 layers, 700 tokens, one CPU thread) a LoRA step takes
    3.2 s with the last 8 layers against 6.0 s with all 30.

    Args:
        model: The model (its module names give the decoder layers: ``...layers.<i>...``).
        last_layers: How many of the top decoder layers get adapters (0: every layer).
        projections: Module names to wrap.

    Returns:
        A regex peft matches against full module names (vision modules excluded).

    Raises:
        TrainingConfigError: ``last_layers`` is negative or more than the model's decoder layers.
    """
    import re

    names = "|".join(re.escape(p) for p in projections)
    if last_layers < 0:
        raise TrainingConfigError(f"lora_layers must be >= 0 (0: every layer), got {last_layers}")
    if not last_layers:
        return rf"^(?!.*visual).*\.({names})$"
    layers = {int(m.group(1)) for n, _ in model.named_modules() if "visual" not in n
              for m in [re.search(r"\.layers\.(\d+)\.", n)] if m}
    if last_layers > len(layers):
        raise TrainingConfigError(f"lora_layers {last_layers} is more than the model's {len(layers)} decoder layers")
    top = "|".join(str(i) for i in sorted(layers)[-last_layers:])
    return rf"^(?!.*visual).*\.layers\.({top})\..*\.({names})$"


def save_checkpoint(
    policy: Any,
    output_dir: str | Path,
    *,
    config: Any = None,
    trainer: str = "training",
    name: Optional[str] = None,
    encoder: Optional[str] = None,
    notes: Optional[str] = None,
    **manifest_updates: Any,
) -> Path:
    """Write a loadable policy checkpoint.

    Args:
        policy: The trained :class:`~agent_tools.policies.TransformersPolicy`.
        output_dir: Target directory (created).
        config: The trainer config (written as ``training_config.json``).
        trainer: Trainer name recorded in the manifest notes.
        name: Manifest ``name`` (default: the output folder's name).
        encoder: Encoder the searches used (default: the base manifest's).
        notes: Extra notes.
        **manifest_updates: Other manifest fields (e.g. ``soft_refinement=True``).

    Returns:
        The directory.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    was_training = policy.model.training
    policy.model.eval()
    policy.model.save_pretrained(out)
    policy.processor.save_pretrained(out)
    if was_training:
        policy.model.train()
    for key, value in observation_fields(policy).items():
        manifest_updates.setdefault(key, value)
    write_run_files(
        out,
        checkpoint_manifest(
            policy.manifest, out, config=config, trainer=trainer, name=name, encoder=encoder,
            notes=notes, **manifest_updates,
        ),
        config=config,
        trainer=trainer,
    )
    return out


def observation_fields(policy: Any) -> dict[str, Any]:
    """How a text-only policy read its frames, for the manifest (so ``ask`` / ``eval`` feed it the same).

    Args:
        policy: The trained policy.

    Returns:
        ``{}`` for an image policy; for a ``text_only`` one ``observation="text"`` and, when its
        tagger has a vocabulary (:class:`~agent_tools.observations.EncoderTagger`),
        ``tag_vocabulary`` and ``tag_top_k``.
    """
    if not getattr(policy, "text_only", False):
        return {}
    out: dict[str, Any] = {"observation": "text"}
    tagger = getattr(policy, "tagger", None)
    vocabulary = getattr(tagger, "vocabulary", None)
    if vocabulary:
        out["tag_vocabulary"] = list(vocabulary)
        out["tag_top_k"] = int(getattr(tagger, "top_k", 1))
    return out


def manifest_fields_from_config(config: Any) -> dict[str, Any]:
    """The inference settings a run trained with, for the manifest.

    Args:
        config: A trainer config; its ``max_turns``, ``max_new_tokens`` and ``preview_frames``
            fields are used when it has them (``None`` values are skipped).

    Returns:
        The manifest fields (``videoseek ask`` uses them as its defaults).
    """
    out: dict[str, Any] = {}
    for key in ("max_turns", "max_new_tokens", "preview_frames"):
        value = getattr(config, key, None) if config is not None else None
        if value is not None:
            out[key] = int(value)
    return out


def checkpoint_manifest(
    base: Any,
    output_dir: str | Path,
    *,
    config: Any = None,
    trainer: str = "training",
    name: Optional[str] = None,
    encoder: Optional[str] = None,
    notes: Optional[str] = None,
    **manifest_updates: Any,
):
    """The manifest of a trained checkpoint: the base's, updated with the run's facts.

    Args:
        base: The starting policy's :class:`~agent_tools.policies.manifest.PolicyManifest`
            (anything else: the defaults).
        output_dir: The checkpoint folder (its name is the default ``name``).
        config: The trainer config (:func:`manifest_fields_from_config` is applied).
        trainer: Trainer name recorded in the notes.
        name: Manifest ``name``.
        encoder: Encoder the searches used (default: the base's).
        notes: Extra notes.
        **manifest_updates: Other manifest fields; they win over the config's.

    Returns:
        The new manifest (not written).
    """
    from agent_tools.policies.manifest import PolicyManifest

    base = base if isinstance(base, PolicyManifest) else PolicyManifest()
    text = f"trained by training.{trainer} from {base.name or 'an unnamed policy'}"
    if base.trained is False:
        # a few steps on top of random weights do not make a usable policy: keep the flag, so
        # `videoseek ask` still warns that its turns are noise
        text += " (base had random weights; still marked trained: false)"
    updates: dict[str, Any] = dict(
        name=name or Path(output_dir).name,
        trained=bool(base.trained),
        encoder=encoder or base.encoder,
        notes=text + (f"; {notes}" if notes else ""),
    )
    updates.update(manifest_fields_from_config(config))
    updates.update(manifest_updates)
    return base.model_copy(update=updates)


def write_run_files(output_dir: str | Path, manifest: Any, *, config: Any = None, trainer: str = "training") -> Path:
    """Write ``videoseek_policy.json`` (and ``training_config.json`` when ``config`` is given).

    Args:
        output_dir: The checkpoint folder (created).
        manifest: The :class:`~agent_tools.policies.manifest.PolicyManifest` to write.
        config: The trainer config.
        trainer: Trainer name stored with the config.

    Returns:
        The folder.
    """
    from agent_tools.policies.manifest import write_manifest

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, manifest)
    if config is not None:
        (out / TRAINING_CONFIG_NAME).write_text(
            json.dumps({"trainer": trainer, **config_to_dict(config)}, indent=2) + "\n"
        )
    return out


def run_cli(main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a trainer's entry point; a ``VideoseekError`` becomes one line and exit status 2.

    Args:
        main: The function doing the work (parses the config, trains).
        *args: Its arguments.
        **kwargs: Its keyword arguments.

    Returns:
        What ``main`` returns.

    Raises:
        SystemExit: With status 2 after printing ``error: <message>`` to stderr, when ``main``
            raised a :class:`agent_tools.errors.VideoseekError`.
    """
    import sys

    from agent_tools.errors import VideoseekError

    try:
        return main(*args, **kwargs)
    except VideoseekError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
