"""The trainer/library split: agent_tools never imports training; training's public names resolve."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agent_tools
import training

ROOT = Path(agent_tools.__file__).parent


def test_agent_tools_never_imports_training():
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "training"
            ]
    assert offenders == []


def test_public_names_resolve_and_import_is_light():
    for name in training.__all__:
        assert getattr(training, name) is not None, name
    out = subprocess.run(
        [sys.executable, "-c", "import sys, training; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_every_recipe_parses():
    import importlib

    from training.config import load_config
    from training.dry_run import TRAINERS

    # every recipe's name says its trainer (training.dry_run.TRAINERS), and it parses
    recipes = sorted((Path(training.__file__).parent / "configs").glob("*.json"))
    assert {p.name.split("_")[0] for p in recipes} <= set(TRAINERS)
    for p in recipes:
        module, cls = TRAINERS[p.name.split("_")[0]]
        load_config(getattr(importlib.import_module(module), cls), p)
