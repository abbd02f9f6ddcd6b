"""Check a scale recipe on CPU: the same entry point and code path, with the tiny models and one step.

``python -m training.dry_run training/configs/grpo_qwen25vl_7b.json --data PROMPTS.jsonl [--field value ...]``

The trainer is picked from the recipe's file name (``sft_*``, ``grpo_*``, ``sqr_*``, ``vsr1_*``; see
:data:`TRAINERS`), its own ``main`` runs with the recipe plus :func:`dry_run_overrides`: a
tiny untrained policy of the recipe model's family (built in a temporary folder; Qwen3-VL for
a ``Qwen3-VL``/``qwen3vl`` model name, else Qwen2.5-VL: :func:`tiny_family`) and the ``tiny-untrained``
encoder instead of the 7B/8B weights, CPU, one optimizer step, no bf16/vLLM/tracker, and the
smallest batch that keeps the recipe's batch arithmetic valid (2 rollouts per prompt), and no
``deepspeed`` JSON (DeepSpeed needs a launcher; ``accelerate launch`` with ``training/launch/``
runs the same dry run under ZeRO-3, slowly, on CPU). Only
fields the trainer's config has are overridden; everything else (turn budget, rewards,
schedule, LoRA, gradient checkpointing ...) is the recipe's. Extra ``--field value`` pairs
(the data file, a cache folder, an output folder) come last and win.

A stage-2 recipe (``vsr1_*``: VideoSearch-R1's GRPO) starts from a stage-1 SQR checkpoint, so
its dry run takes ``--model`` = the output folder of the stage-1 recipe's dry run (the tiny
policy with ``<REFINE>`` and the SQR maps); without it the dry run is refused (see
:data:`NEEDS_STAGE_ONE`). Whenever ``--model`` is given, no tiny policy is built.

- :data:`TRAINERS` - recipe prefix -> ``(module, config class name)``.
- :data:`NEEDS_STAGE_ONE` - recipe prefix -> the stage-1 recipe whose dry-run output it starts from.
- :func:`dry_run_overrides` - the overrides for a config class.
- :func:`tiny_family` - the tiny model family standing in for a recipe's model.
- :func:`dry_run` - run one recipe; returns what the trainer's ``main`` returns.

Usage::

    result = dry_run("training/configs/sft_qwen25vl_7b.json", ["--data", "traj.jsonl", "--output_dir", "/tmp/x"])
    dry_run("training/configs/sqr_qwen3vl_8b.json", ["--data", "sqr.jsonl", "--eval_data", "sqr.jsonl", "--output_dir", "/tmp/s1"])
    dry_run("training/configs/vsr1_grpo_qwen3vl_8b.json", ["--model", "/tmp/s1", "--data", "sqr.jsonl", "--output_dir", "/tmp/s2"])
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.errors import TrainingConfigError

__all__ = ["NEEDS_STAGE_ONE", "TRAINERS", "dry_run", "dry_run_overrides", "main", "tiny_family"]

#: Recipe file prefix -> (trainer module, its config class).
TRAINERS = {
    "sft": ("training.sft", "SFTConfig"),
    "grpo": ("training.grpo", "GRPOConfig"),
    "sqr": ("training.sqr", "SQRConfig"),
    "vsr1": ("training.sqr_grpo", "VSR1GRPOConfig"),
}

#: Recipe prefix -> the stage-1 recipe whose (dry-run) checkpoint it must be given as ``--model``.
NEEDS_STAGE_ONE = {"vsr1": "training/configs/sqr_qwen3vl_8b.json"}


def tiny_family(recipe: str | Path) -> str:
    """The tiny model family (:data:`agent_tools.policies.tiny.FAMILIES`) for ``recipe``'s model.

    Args:
        recipe: A JSON recipe; its ``model`` names the real checkpoint (``models/Qwen3-VL-8B-Instruct``,
            ``runs/sqr-qwen3vl-8b``, ...).

    Returns:
        ``"qwen3_vl"`` when the name says Qwen3-VL, else ``"qwen2_5_vl"``.
    """
    try:
        model = str(json.loads(Path(recipe).read_text()).get("model") or "")
    except (OSError, ValueError):
        model = ""  # the trainer reports an unreadable recipe itself
    return "qwen3_vl" if re.search(r"qwen3[-_.]?vl", model, re.IGNORECASE) else "qwen2_5_vl"


def dry_run_overrides(config_cls: type, tiny_policy: str | None) -> dict[str, Any]:
    """CPU/tiny/one-step values for the fields ``config_cls`` has.

    Args:
        config_cls: The trainer's config dataclass.
        tiny_policy: A tiny policy checkpoint folder (``None``: ``model`` is not overridden).

    Returns:
        ``field -> value`` (JSON-ready), only for fields that exist.
    """
    wanted: dict[str, Any] = {
        "model": tiny_policy,
        "encoder": "tiny-untrained",
        "device": "cpu",
        "max_steps": 1,
        "logging_steps": 1,
        "bf16": False,
        "use_vllm": False,
        "report_to": "none",
        "save_steps": 0,
        "eval_steps": 0,
        "resume_from_checkpoint": None,
        "num_generations": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "trl_args": {},
        "deepspeed": None,  # in-process on CPU; `accelerate launch --config_file training/launch/zero3.yaml` runs it
    }
    if tiny_policy is None:
        del wanted["model"]
    names = {f.name for f in dataclasses.fields(config_cls)}
    return {k: v for k, v in wanted.items() if k in names}


def _argv(overrides: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in overrides.items():
        text = "none" if v is None else json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)
        out += [f"--{k}", text]
    return out


def dry_run(recipe: str | Path, extra: Sequence[str] = ()) -> Any:
    """Run ``recipe``'s trainer on CPU with the tiny models for one step.

    Args:
        recipe: A JSON recipe under ``training/configs/`` (its name starts with a key of :data:`TRAINERS`).
        extra: More ``--field value`` arguments (they win over the dry-run values).

    Returns:
        What the trainer's ``main`` returns.

    Raises:
        TrainingConfigError: If the recipe's trainer cannot be told from its name, or a stage-2
            recipe is not given its stage-1 checkpoint as ``--model``.
    """
    from agent_tools.policies.tiny import build_tiny_policy_dir

    prefix = Path(recipe).name.split("_")[0]
    if prefix not in TRAINERS:
        raise TrainingConfigError(
            f"cannot tell the trainer of {str(recipe)!r}: its name must start with one of {', '.join(TRAINERS)}_"
        )
    given_model = "--model" in extra
    if prefix in NEEDS_STAGE_ONE and not given_model:
        raise TrainingConfigError(
            f"{str(recipe)!r} starts from a stage-1 checkpoint: dry-run {NEEDS_STAGE_ONE[prefix]} first and "
            "pass its --output_dir here as --model"
        )
    module_name, cls_name = TRAINERS[prefix]
    module = importlib.import_module(module_name)
    if given_model:  # the caller's checkpoint (e.g. a stage-1 dry run's output); extras win anyway
        tiny = None
    else:
        tiny = Path(tempfile.mkdtemp(prefix="videoseek-dry-run-")) / "tiny-policy"
        build_tiny_policy_dir(tiny, family=tiny_family(recipe))
    overrides = dry_run_overrides(getattr(module, cls_name), str(tiny) if tiny else None)
    print(f"dry run of {recipe}: {json.dumps(overrides)}", file=sys.stderr, flush=True)
    return module.main(["--config", str(recipe), *_argv(overrides), *extra])


def main(argv: Sequence[str] | None = None) -> Any:
    """``python -m training.dry_run RECIPE [--field value ...]``."""
    args = list(argv if argv is not None else sys.argv[1:])
    if not args or args[0].startswith("-"):
        print("usage: python -m training.dry_run RECIPE.json [--field value ...]", file=sys.stderr)
        raise SystemExit(2)
    from training.common import run_cli

    return run_cli(dry_run, args[0], args[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
