"""Evaluation harness: the papers' metrics for baselines and policies on public benchmark formats.

- :mod:`.readers` - LongVideoBench, Video-MME, LV-Haystack (T*), open QA, TVR, Charades-STA,
  ActivityNet Captions, DiDeMo → :class:`EvalItem`.
- :mod:`.baselines` - ``uniform``, ``topk``, ``dpp``, ``dpp-legacy``, ``retrieval``, a policy through
  the temporal graph; the zero-shot answerer.
- :mod:`.runner` - :func:`run_eval` (resumable JSONL, rich progress).
- :mod:`.report` - metrics (official TVR rule, T* temporal P/R/F1), markdown, PNG plots.
- :mod:`.cli` - ``videoseek eval``.

Usage::

    from agent_tools.evaluation import run_eval
    result = run_eval("world/test/lv_haystack.json", "world/videos", "runs/hay", encoder="world-tiny")
    result["metrics"]["haystack"]["dpp"]["f1"]
"""

from __future__ import annotations

from .baselines import BASELINES, EvalContext, Method, PolicyMethod, ZeroShotAnswerer, parse_choice
from .items import TASKS, EvalItem, Prediction
from .readers import FORMATS, READERS, detect_format, read_benchmark
from .report import compute_metrics, markdown_report, write_report
from .runner import DEFAULT_METHODS, read_predictions, run_eval

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "EvalContext",
    "EvalItem",
    "FORMATS",
    "Method",
    "PolicyMethod",
    "Prediction",
    "READERS",
    "TASKS",
    "ZeroShotAnswerer",
    "compute_metrics",
    "detect_format",
    "markdown_report",
    "parse_choice",
    "read_benchmark",
    "read_predictions",
    "run_eval",
    "write_report",
]
