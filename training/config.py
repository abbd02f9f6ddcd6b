"""Trainer configs as dataclasses, read from JSON recipes and overridden on the command line.

Each trainer pairs a config dataclass with its entry point (TRL's ``grpo_config.py`` /
``grpo_trainer.py`` convention); every field documents itself with
``field(metadata={"help": ...})``, and ``python -m training.<name> --help`` prints those.

- :func:`load_config` - a JSON file (keys = field names) plus overrides -> the dataclass;
  unknown keys raise :class:`~training.errors.TrainingConfigError` listing the valid ones.
- :func:`parse_args` - ``--config PATH`` plus ``--<field> VALUE`` overrides (lists/dicts as JSON).
- :func:`config_to_dict` - JSON-ready dict, written next to each checkpoint.

Usage::

    cfg = parse_args(SFTConfig, ["--config", "training/configs/sft_tiny.json", "--max_steps", "3"])
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Optional, Sequence, TypeVar

from training.errors import TrainingConfigError

__all__ = ["load_config", "parse_args", "config_to_dict"]

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def load_config(cls: type[C], path: Optional[str | Path] = None, **overrides: Any) -> C:
    """Build a config dataclass from a JSON recipe and keyword overrides.

    Args:
        cls: The config dataclass.
        path: JSON file whose keys are field names (keys starting with ``_`` are comments).
        **overrides: Field values applied on top.

    Returns:
        The config (its ``__post_init__`` validation has run).

    Raises:
        TrainingConfigError: On an unreadable file, unknown keys (the valid keys are listed) or
            missing required fields.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise TrainingConfigError(f"cannot read config {str(path)!r}: {exc}") from None
        if not isinstance(data, dict):
            raise TrainingConfigError(f"config {str(path)!r} must hold a JSON object of field: value")
        data = {k: v for k, v in data.items() if not k.startswith("_")}
    data.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrainingConfigError(
            f"unknown {cls.__name__} field(s) {unknown}; valid fields: {', '.join(sorted(names))}"
        )
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise TrainingConfigError(
            f"{cls.__name__} needs {missing} (set them in the recipe or as --{missing[0]} ...); "
            f"required fields: {', '.join(required)}"
        )
    return cls(**data)


def _coerce(text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if origin is typing.Union and len(args) == 1:
        kind, origin = args[0], typing.get_origin(args[0])
    elif origin is typing.Union:  # e.g. Union[int, float], Union[bool, str]: the first that parses
        if text.lower() in ("none", "null") and type(None) in typing.get_args(kind):
            return None
        for option in args:
            if option is not str:
                try:
                    return _coerce(text, option)
                except (ValueError, TrainingConfigError):
                    continue
        return text
    if kind is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise TrainingConfigError(f"expected true or false, got {text!r}")
    if kind in (int, float):
        return kind(text)
    if origin in (list, tuple, dict) or kind in (list, tuple, dict):
        return json.loads(text)
    if text.lower() in ("none", "null"):
        return None
    return text


def parse_args(cls: type[C], argv: Optional[Sequence[str]] = None, *, prog: Optional[str] = None) -> C:
    """Command line -> config: ``--config PATH`` and one ``--<field> VALUE`` per override.

    Args:
        cls: The config dataclass.
        argv: Arguments (default ``sys.argv[1:]``).
        prog: Program name for ``--help``.

    Returns:
        The config.

    Raises:
        TrainingConfigError: On an unknown key or a value of the wrong type.
    """
    parser = argparse.ArgumentParser(prog=prog, description=(cls.__doc__ or "").strip().split("\n")[0])
    parser.add_argument("--config", help="JSON recipe (see training/configs/).")
    types = _field_types(cls)
    for f in dataclasses.fields(cls):
        parser.add_argument(f"--{f.name}", default=None, help=f.metadata.get("help", ""))
    ns = parser.parse_args(list(argv) if argv is not None else None)
    overrides = {}
    for name, kind in types.items():
        raw = getattr(ns, name)
        if raw is not None:
            try:
                overrides[name] = _coerce(raw, kind)
            except (ValueError, TrainingConfigError) as exc:
                raise TrainingConfigError(f"--{name}: {exc}") from None
            if overrides[name] is None and type(None) not in typing.get_args(kind):
                overrides[name] = raw  # a field that cannot be None keeps the text (`--report_to none`)
    config = load_config(cls, ns.config, **overrides)
    cleared = {k: None for k, v in overrides.items() if v is None}  # `--field none` clears a recipe value
    return dataclasses.replace(config, **cleared) if cleared else config  # type: ignore[type-var]


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as a JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))
