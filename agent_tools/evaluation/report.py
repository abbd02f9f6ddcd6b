"""Metrics from per-item predictions, and the report files (JSON, markdown, PNG).

Per method and task:

- ``mcq``: ``accuracy``;
- ``haystack``: LV-Haystack temporal ``precision`` / ``recall`` / ``f1`` (T*'s ``calculate_prf``:
  5-second threshold, per-sample means, samples with an empty side skipped) and ``accuracy``;
  ``needle_*`` repeat them over the needle items when the file marks any;
- ``open``: exact-match ``accuracy`` (case and final punctuation ignored);
- ``grounding``: ``VR R@K``, ``SVMR R@K,IoU=θ`` and ``VCMR R@K,IoU=θ`` by the official TVR rule
  (:func:`agent_tools.metrics.tvr_recall_at_k`), ``SVMR mIoU`` (top-1 window in the GT video) and
  ``VCMR mIoU`` (0 when the top-1 video is wrong).

- :func:`compute_metrics` - ``{task: {method: {metric: value}}}``.
- :func:`markdown_report` - the tables as markdown.
- :func:`write_report` - ``metrics.json``, ``report.md`` and one PNG bar chart per task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..metrics import IOU_THRESHOLDS, best_iou, haystack_temporal_prf_dataset, tvr_recall_at_k
from .items import EvalItem, Prediction

__all__ = ["compute_metrics", "markdown_report", "write_report", "HEADLINE"]

KS = (1, 5, 10)
HEADLINE = {"mcq": "accuracy", "haystack": "f1", "open": "accuracy", "grounding": "VCMR R@1,IoU=0.5"}


def _qa(preds: Sequence[Prediction]) -> dict[str, float]:
    return {"accuracy": float(np.mean([bool(p.correct) for p in preds])) if preds else 0.0, "n": len(preds)}


def _haystack(items: dict[str, EvalItem], preds: Sequence[Prediction], threshold: float) -> dict[str, float]:
    out = _qa(preds)
    prf = haystack_temporal_prf_dataset([p.timestamps for p in preds], [items[p.item_id].gt_times or [] for p in preds], threshold)
    out.update({k: prf[k] for k in ("precision", "recall", "f1")})
    needles = [p for p in preds if items[p.item_id].meta.get("needle")]
    if needles:
        nprf = haystack_temporal_prf_dataset([p.timestamps for p in needles], [items[p.item_id].gt_times or [] for p in needles], threshold)
        out.update({"needle_accuracy": _qa(needles)["accuracy"], "needle_f1": nprf["f1"], "needle_n": len(needles)})
    return out


def _grounding(items: dict[str, EvalItem], preds: Sequence[Prediction]) -> dict[str, float]:
    gts = [(items[p.item_id].video_id, items[p.item_id].gt_windows) for p in preds]
    out: dict[str, float] = {"n": len(preds)}
    vr = tvr_recall_at_k([[(v, 0.0, 0.0) for v in p.extra.get("ranked_videos", [m[0] for m in p.moments])] for p in preds], gts, task="VR", ks=KS)
    out.update({f"VR {k}": v for k, v in vr.items()})
    svmr = tvr_recall_at_k([[(g[0], s, e) for s, e in p.windows] for p, g in zip(preds, gts)], gts, task="SVMR", ks=KS, ious=IOU_THRESHOLDS)
    out.update({f"SVMR {k}": v for k, v in svmr.items()})
    vcmr = tvr_recall_at_k([p.moments for p in preds], gts, task="VCMR", ks=KS, ious=IOU_THRESHOLDS)
    out.update({f"VCMR {k}": v for k, v in vcmr.items()})
    out["SVMR mIoU"] = float(np.mean([best_iou(p.windows[0], g[1]) if p.windows else 0.0 for p, g in zip(preds, gts)]))
    out["VCMR mIoU"] = float(np.mean([
        best_iou(p.moments[0][1:], g[1]) if p.moments and p.moments[0][0] == g[0] else 0.0 for p, g in zip(preds, gts)
    ]))
    return out


def compute_metrics(items: Iterable[EvalItem], preds: Iterable[Prediction], threshold: float = 5.0) -> dict[str, dict[str, dict[str, Any]]]:
    """Aggregate predictions into metrics.

    Args:
        items: The benchmark's items (GT).
        preds: Predictions (several methods; items without a prediction are left out).
        threshold: LV-Haystack temporal threshold in seconds.

    Returns:
        ``{task: {method: {metric: value}}}``; every dict also holds ``n`` (items scored) and
        ``errors`` (predictions that failed and count as wrong / empty).
    """
    by_id = {it.item_id: it for it in items}
    groups: dict[tuple[str, str], list[Prediction]] = {}
    for p in preds:
        if p.item_id in by_id:
            groups.setdefault((p.task, p.method), []).append(p)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, method), ps in sorted(groups.items()):
        if task == "grounding":
            m = _grounding(by_id, ps)
        elif task == "haystack":
            m = _haystack(by_id, ps, threshold)
        else:
            m = _qa(ps)
        m["errors"] = sum(p.error is not None for p in ps)
        m["seconds_per_item"] = float(np.mean([p.seconds for p in ps]))
        out.setdefault(task, {})[method] = m
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{100 * v:.1f}" if 0.0 <= v <= 1.0 else f"{v:.3g}"
    return str(v)


def markdown_report(metrics: dict, title: str = "videoseek eval") -> str:
    """The metrics as markdown tables (rates in percent), one table per task."""
    lines = [f"# {title}", ""]
    for task, by_method in metrics.items():
        cols: list[str] = []
        for m in by_method.values():
            cols += [c for c in m if c not in cols and c not in ("seconds_per_item",)]
        lines += [f"## {task}", "", "| method | " + " | ".join(cols) + " | s/item |", "|---" * (len(cols) + 2) + "|"]
        for method, m in by_method.items():
            cells = [_fmt(m.get(c, "")) for c in cols]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {m.get('seconds_per_item', 0):.3f} |")
        lines.append("")
    lines.append("Rates are percentages (n, errors and needle_n are counts).")
    return "\n".join(lines) + "\n"


def _plot(task: str, by_method: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if task == "grounding":
        keys = ["VR R@1", "SVMR R@1,IoU=0.5", "VCMR R@1,IoU=0.5", "SVMR mIoU"]
    elif task == "haystack":
        keys = ["precision", "recall", "f1", "accuracy"]
    else:
        keys = ["accuracy"]
    methods = list(by_method)
    x = np.arange(len(keys))
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(keys), 3.2))
    for i, m in enumerate(methods):
        ax.bar(x + i * width, [100 * float(by_method[m].get(k, 0.0)) for k in keys], width, label=m)
    ax.set_xticks(x + width * (len(methods) - 1) / 2, keys)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(task)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(metrics: dict, out_dir: str | Path, meta: dict | None = None, title: str = "videoseek eval") -> dict[str, Path]:
    """Write ``metrics.json`` (metrics + run facts), ``report.md`` and ``<task>.png`` files.

    Returns:
        ``{"json": ..., "markdown": ..., "plots": [...]}`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "metrics.json"
    js.write_text(json.dumps({"metrics": metrics, "run": meta or {}}, indent=2))
    md = out / "report.md"
    md.write_text(markdown_report(metrics, title))
    plots = []
    for task, by_method in metrics.items():
        p = out / f"{task}.png"
        _plot(task, by_method, p)
        plots.append(p)
    return {"json": js, "markdown": md, "plots": plots}
