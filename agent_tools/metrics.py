"""Retrieval and grounding metrics shared by evaluation and training code.

Pure python/numpy, no I/O. Times are seconds; a *window* is a ``(start, end)`` pair
with ``start <= end``.

- :func:`temporal_iou` - IoU of two windows (or element-wise over ``(..., 2)`` arrays).
- :func:`vr_recall_at_k` - Video Retrieval R@K: the ground-truth video among the top K.
- :func:`svmr_recall_at_k` - Single-Video Moment Retrieval R@K at IoU thresholds (0.3/0.5/0.7):
  a moment among the top K predicted windows of the ground-truth video overlaps the GT by >= IoU.
- :func:`vcmr_recall_at_k` - Video Corpus Moment Retrieval R@K at IoU thresholds: a top-K
  ``(video, start, end)`` prediction names the GT video *and* overlaps the GT window by >= IoU.
- :func:`tvr_recall_at_k` - VR / SVMR / VCMR R@K by the *official* TVR rule (jayleicn/TVRetrieval
  ``standalone_eval/eval.py`` ``eval_by_task_type``): float32 IoU, ``>=`` threshold, and with four or
  more GT windows (DiDeMo) one prediction must reach the threshold on at least two of them. The
  evaluation harness uses this one.
- :func:`mean_iou` - mean IoU of the top-1 window (0 when the predicted video is wrong, if videos
  are given).
- :func:`haystack_temporal_prf` - LV-Haystack temporal precision / recall / F1 of one sample
  (a prediction or GT counts as covered when within ``threshold`` seconds, default 5, of the
  other set), as in T*'s ``val_tstar_results.py`` / TimeSearch-R's ``eval_temporal_search.py``.
- :func:`haystack_temporal_prf_dataset` - the dataset average of the per-sample P/R/F1, skipping
  samples whose GT or prediction is empty, as the reference eval does.

Recall dictionaries are keyed ``"R@{k}"`` (VR) or ``"R@{k},IoU={iou:g}"`` (SVMR/VCMR), values
in ``[0, 1]``.

A ground truth window may also be a list of windows (several annotators); in the functions above
the best IoU over them counts (a lenient convenience rule); :func:`tvr_recall_at_k` applies the
official two-of-four rule instead.

Usage::

    from agent_tools.metrics import temporal_iou, vcmr_recall_at_k
    temporal_iou((0, 10), (5, 15))                        # 0.3333
    vcmr_recall_at_k([[("v1", 4, 9), ("v2", 0, 3)]], [("v1", (5, 10))], ks=(1,))
    # {'R@1,IoU=0.3': 1.0, 'R@1,IoU=0.5': 1.0, 'R@1,IoU=0.7': 1.0}
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple, Optional, Sequence

import numpy as np

from agent_tools.errors import InvalidArgumentError, InvalidWindowError

__all__ = [
    "IOU_THRESHOLDS",
    "PRF",
    "temporal_iou",
    "best_iou",
    "vr_recall_at_k",
    "svmr_recall_at_k",
    "vcmr_recall_at_k",
    "mean_iou",
    "tvr_recall_at_k",
    "TVR_MIN_WINDOWS_FOR_MULTI",
    "TVR_MIN_MATCHED",
    "haystack_temporal_prf",
    "haystack_temporal_prf_dataset",
]

IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
"""IoU thresholds of the TVR / VideoSearch-R1 tables."""


class PRF(NamedTuple):
    """Precision, recall and F1, each in ``[0, 1]``."""

    precision: float
    recall: float
    f1: float


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise InvalidArgumentError(f"ks must be a non-empty list of integers >= 1, got {ks!r}")
    return ks


def _check_lengths(a: Sequence, b: Sequence, what_a: str, what_b: str) -> None:
    if len(a) != len(b):
        raise InvalidArgumentError(
            f"{what_a} and {what_b} must have one entry per query; got {len(a)} and {len(b)}"
        )
    if len(a) == 0:
        raise InvalidArgumentError(f"{what_a} is empty; pass at least one query")


def temporal_iou(a: Any, b: Any) -> Any:
    """Intersection over union of time windows.

    Args:
        a: A window ``(start, end)`` or an array of shape ``(..., 2)``.
        b: A window or an array broadcastable against ``a``.

    Returns:
        A float for two windows, else an array of IoUs. Disjoint windows give 0; a pair whose
        union has zero length (two identical instants) gives 0.

    Raises:
        InvalidWindowError: If a window has ``start > end`` or is not a pair.
    """
    aa = np.asarray(a, dtype=np.float64)
    bb = np.asarray(b, dtype=np.float64)
    if aa.shape[-1:] != (2,) or bb.shape[-1:] != (2,):
        raise InvalidWindowError(f"windows must be (start, end) pairs; got shapes {aa.shape} and {bb.shape}")
    if np.any(aa[..., 0] > aa[..., 1]) or np.any(bb[..., 0] > bb[..., 1]):
        raise InvalidWindowError("a window has start > end; windows must satisfy start <= end")
    inter = np.clip(np.minimum(aa[..., 1], bb[..., 1]) - np.maximum(aa[..., 0], bb[..., 0]), 0.0, None)
    union = np.maximum(aa[..., 1], bb[..., 1]) - np.minimum(aa[..., 0], bb[..., 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou) if iou.ndim == 0 else iou


def _gt_windows(gt: Any) -> np.ndarray:
    arr = np.asarray(gt, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise InvalidWindowError(
            f"a ground truth must be a (start, end) window or a list of them; got {gt!r}"
        )
    return arr


def best_iou(pred: Any, gt: Any) -> float:
    """IoU of one predicted window with a GT window, or the best over several GT windows.

    Args:
        pred: ``(start, end)``.
        gt: ``(start, end)`` or a list of ``(start, end)``.

    Returns:
        The largest IoU, in ``[0, 1]``.
    """
    return _best_iou(pred, _gt_windows(gt))


def _best_iou(pred: Any, gts: np.ndarray) -> float:
    """:func:`best_iou` against GT windows already checked by :func:`_gt_windows`."""
    return float(np.max(temporal_iou(np.asarray(pred, dtype=np.float64)[None, :], gts)))


def vr_recall_at_k(
    ranked_videos: Sequence[Sequence[Hashable]],
    gt_videos: Sequence[Hashable],
    ks: Sequence[int] = (1, 5, 10, 100),
) -> dict[str, float]:
    """Video Retrieval recall: the share of queries whose GT video is among the top K.

    Args:
        ranked_videos: Per query, video ids best first (duplicates are counted once, at their
            first rank).
        gt_videos: Per query, the ground-truth video id.
        ks: Cut-offs.

    Returns:
        ``{"R@1": ..., "R@5": ..., ...}``.

    Raises:
        InvalidArgumentError: If the lists differ in length or are empty, or a K is < 1.
    """
    ks = _check_ks(ks)
    _check_lengths(ranked_videos, gt_videos, "ranked_videos", "gt_videos")
    hits = {k: 0 for k in ks}
    for ranked, gt in zip(ranked_videos, gt_videos):
        seen: list[Hashable] = []
        for v in ranked:
            if v not in seen:
                seen.append(v)
        rank = seen.index(gt) if gt in seen else None
        for k in ks:
            hits[k] += int(rank is not None and rank < k)
    n = len(gt_videos)
    return {f"R@{k}": hits[k] / n for k in ks}


def svmr_recall_at_k(
    ranked_windows: Sequence[Sequence[Sequence[float]]],
    gt_windows: Sequence[Any],
    ks: Sequence[int] = (1, 5, 10, 100),
    ious: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """Single-Video Moment Retrieval recall at IoU thresholds.

    A query counts as a hit at ``(K, θ)`` when one of its top-K windows (inside the GT video)
    has IoU >= θ with the GT window.

    Args:
        ranked_windows: Per query, predicted ``(start, end)`` windows best first.
        gt_windows: Per query, the GT window (or a list of GT windows).
        ks: Cut-offs.
        ious: IoU thresholds.

    Returns:
        ``{"R@1,IoU=0.3": ..., ...}`` for every K and threshold.

    Raises:
        InvalidArgumentError: On mismatched or empty inputs.
        InvalidWindowError: On a reversed window.
    """
    ks = _check_ks(ks)
    _check_lengths(ranked_windows, gt_windows, "ranked_windows", "gt_windows")
    preds = [[(None, w[0], w[1]) for w in ranked] for ranked in ranked_windows]
    gts = [(None, g) for g in gt_windows]
    return vcmr_recall_at_k(preds, gts, ks=ks, ious=ious)


def vcmr_recall_at_k(
    ranked_moments: Sequence[Sequence[Sequence[Any]]],
    gt_moments: Sequence[Sequence[Any]],
    ks: Sequence[int] = (1, 5, 10, 100),
    ious: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """Video Corpus Moment Retrieval recall at IoU thresholds.

    A query counts as a hit at ``(K, θ)`` when one of its top-K ``(video, start, end)``
    predictions names the GT video and has IoU >= θ with the GT window.

    Args:
        ranked_moments: Per query, ``(video_id, start, end)`` predictions best first.
        gt_moments: Per query, ``(video_id, (start, end))`` (the window may be a list of
            windows).
        ks: Cut-offs.
        ious: IoU thresholds.

    Returns:
        ``{"R@1,IoU=0.3": ..., ...}`` for every K and threshold.

    Raises:
        InvalidArgumentError: On mismatched or empty inputs, or a threshold outside ``(0, 1]``.
        InvalidWindowError: On a reversed window.
    """
    ks = _check_ks(ks)
    ious = tuple(float(t) for t in ious)
    if not ious or any(not 0 < t <= 1 for t in ious):
        raise InvalidArgumentError(f"IoU thresholds must lie in (0, 1]; got {ious!r}")
    _check_lengths(ranked_moments, gt_moments, "ranked_moments", "gt_moments")
    kmax = max(ks)
    hits = {(k, t): 0 for k in ks for t in ious}
    for ranked, (gt_video, gt_win) in zip(ranked_moments, gt_moments):
        gts = _gt_windows(gt_win)
        # best IoU reached within the first r predictions, for r = 1..kmax
        best_so_far = np.zeros(kmax)
        best = 0.0
        for r in range(kmax):
            if r < len(ranked):
                video, start, end = ranked[r][0], ranked[r][1], ranked[r][2]
                if video == gt_video:
                    best = max(best, _best_iou((start, end), gts))
            best_so_far[r] = best
        for k in ks:
            for t in ious:
                hits[(k, t)] += int(best_so_far[k - 1] >= t - 1e-12)
    n = len(gt_moments)
    return {f"R@{k},IoU={t:g}": hits[(k, t)] / n for k in ks for t in ious}


TVR_MIN_WINDOWS_FOR_MULTI = 4
"""With this many GT windows or more (DiDeMo's four annotators), the multi-window rule applies."""
TVR_MIN_MATCHED = 2
"""How many of those GT windows one prediction must match (IoU >= threshold)."""


def _iou32(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of ``(n, 2)`` float32 predictions with one float32 GT window, computed in float32."""
    inter = np.maximum(np.float32(0), np.minimum(pred[:, 1], gt[1]) - np.maximum(pred[:, 0], gt[0]))
    union = np.maximum(pred[:, 1], gt[1]) - np.minimum(pred[:, 0], gt[0])
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union != 0)
    return out


def tvr_recall_at_k(
    ranked_moments: Sequence[Sequence[Sequence[Any]]],
    gt_moments: Sequence[Sequence[Any]],
    task: str = "VCMR",
    ks: Sequence[int] = (1, 5, 10, 100),
    ious: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """R@K by the official TVR evaluation (``standalone_eval/eval.py`` ``eval_by_task_type``).

    - Windows and IoUs are float32 and a hit needs ``IoU >= θ`` exactly (no tolerance).
    - A GT given as ``TVR_MIN_WINDOWS_FOR_MULTI`` (4) or more windows counts a prediction as correct
      only when it reaches ``θ`` on at least ``TVR_MIN_MATCHED`` (2) of them (DiDeMo's rule); a
      single window is compared directly. (Two or three windows never occur in the official data;
      here any one of them suffices.)
    - ``VCMR``: a prediction must name the GT video; the top K of the ranked list count.
    - ``SVMR``: predictions in other videos are dropped first, then the top K count.
    - ``VR``: the top K predictions' videos (repeats kept, as the official eval expects distinct
      videos per query) must include the GT video; windows are ignored and keys are ``"R@{k}"``.

    Args:
        ranked_moments: Per query, ``(video_id, start, end)`` predictions best first.
        gt_moments: Per query, ``(video_id, window)`` with a window ``(start, end)`` or a list of them.
        task: ``"VCMR"``, ``"SVMR"`` or ``"VR"``.
        ks: Cut-offs.
        ious: IoU thresholds (ignored for VR).

    Returns:
        ``{"R@{k},IoU={θ:g}": ...}`` (VCMR/SVMR) or ``{"R@{k}": ...}`` (VR), values in ``[0, 1]``.

    Raises:
        InvalidArgumentError: Unknown task, mismatched or empty inputs, a threshold outside ``(0, 1]``.
        InvalidWindowError: A malformed GT window.
    """
    task = str(task).upper()
    if task not in ("VCMR", "SVMR", "VR"):
        raise InvalidArgumentError(f"task must be 'VCMR', 'SVMR' or 'VR', got {task!r}")
    ks = _check_ks(ks)
    _check_lengths(ranked_moments, gt_moments, "ranked_moments", "gt_moments")
    n = len(gt_moments)
    if task == "VR":
        hits = {k: 0 for k in ks}
        for ranked, (gt_video, _) in zip(ranked_moments, gt_moments):
            videos = [m[0] for m in ranked]
            for k in ks:
                hits[k] += int(gt_video in videos[:k])
        return {f"R@{k}": hits[k] / n for k in ks}
    ious = tuple(float(t) for t in ious)
    if not ious or any(not 0 < t <= 1 for t in ious):
        raise InvalidArgumentError(f"IoU thresholds must lie in (0, 1]; got {ious!r}")
    hits2 = {(k, t): 0 for k in ks for t in ious}
    for ranked, (gt_video, gt_win) in zip(ranked_moments, gt_moments):
        gts = _gt_windows(gt_win).astype(np.float32)
        if task == "SVMR":
            ranked = [m for m in ranked if m[0] == gt_video]
        if not ranked:
            continue
        match = np.array([m[0] == gt_video for m in ranked], dtype=bool)
        win = np.array([[m[1], m[2]] for m in ranked], dtype=np.float32)
        per_gt = np.stack([_iou32(win, g) * match for g in gts])  # (n_gt, n_pred)
        need = TVR_MIN_MATCHED if len(gts) >= TVR_MIN_WINDOWS_FOR_MULTI else 1
        for t in ious:
            correct = (per_gt >= np.float32(t)).sum(axis=0) >= need  # (n_pred,)
            for k in ks:
                hits2[(k, t)] += int(correct[:k].any())
    return {f"R@{k},IoU={t:g}": hits2[(k, t)] / n for k in ks for t in ious}


def mean_iou(
    pred_windows: Sequence[Sequence[float]],
    gt_windows: Sequence[Any],
    pred_videos: Optional[Sequence[Hashable]] = None,
    gt_videos: Optional[Sequence[Hashable]] = None,
) -> float:
    """Mean IoU of the top-1 predicted window per query (mIoU, or mIoU@R1 for VCMR).

    Args:
        pred_windows: Per query, the top-1 ``(start, end)``.
        gt_windows: Per query, the GT window (or a list of GT windows).
        pred_videos: Optional per-query top-1 video ids; with ``gt_videos``, a query whose
            predicted video is wrong scores 0 (VCMR convention).
        gt_videos: Optional per-query GT video ids.

    Returns:
        The mean IoU in ``[0, 1]``.

    Raises:
        InvalidArgumentError: On mismatched or empty inputs, or only one of the video lists.
        InvalidWindowError: On a reversed window.
    """
    _check_lengths(pred_windows, gt_windows, "pred_windows", "gt_windows")
    if (pred_videos is None) != (gt_videos is None):
        raise InvalidArgumentError("pass both pred_videos and gt_videos, or neither")
    if pred_videos is not None:
        _check_lengths(pred_videos, gt_videos, "pred_videos", "gt_videos")
        _check_lengths(pred_videos, pred_windows, "pred_videos", "pred_windows")
    total = 0.0
    for i, (p, g) in enumerate(zip(pred_windows, gt_windows)):
        if pred_videos is not None and pred_videos[i] != gt_videos[i]:
            continue
        total += best_iou(p, g)
    return total / len(pred_windows)


def haystack_temporal_prf(
    pred_times: Sequence[float], gt_times: Sequence[float], threshold: float = 5.0
) -> Optional[PRF]:
    """LV-Haystack temporal precision / recall / F1 of one sample.

    precision = (predictions within ``threshold`` seconds of some GT time) / (predictions);
    recall = (GT times within ``threshold`` seconds of some prediction) / (GT times);
    F1 = their harmonic mean (0 when both are 0). Distances ``<= threshold`` count.

    Args:
        pred_times: Predicted keyframe times, in seconds.
        gt_times: Ground-truth keyframe times, in seconds (``frame_index / fps``).
        threshold: Tolerance in seconds (the reference eval's default is 5).

    Returns:
        A :class:`PRF`, or ``None`` when either list is empty (undefined; the dataset average
        skips such samples).

    Raises:
        InvalidArgumentError: If the threshold is negative or a time is not finite.
    """
    if not threshold >= 0:  # also refuses NaN
        raise InvalidArgumentError(f"threshold must be >= 0 seconds, got {threshold}")
    pred = np.asarray(pred_times, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt_times, dtype=np.float64).reshape(-1)
    if pred.size == 0 or gt.size == 0:
        return None
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise InvalidArgumentError("times must be finite numbers of seconds")
    dist = np.abs(gt[:, None] - pred[None, :])  # (n_gt, n_pred)
    recall = float(np.mean(dist.min(axis=1) <= threshold))
    precision = float(np.mean(dist.min(axis=0) <= threshold))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PRF(precision, recall, f1)


def haystack_temporal_prf_dataset(
    preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]], threshold: float = 5.0
) -> dict[str, float]:
    """Dataset-level LV-Haystack temporal P/R/F1: the mean of the per-sample values.

    Samples whose prediction or GT is empty are skipped (not counted as zero), as in the
    reference eval; F1 is the mean of per-sample F1s, not the F1 of the mean P and R.

    Args:
        preds: Per sample, predicted times in seconds.
        gts: Per sample, GT times in seconds.
        threshold: Tolerance in seconds.

    Returns:
        ``{"precision", "recall", "f1", "num_scored", "num_skipped"}``; the three means are 0
        when no sample could be scored.

    Raises:
        InvalidArgumentError: If the lists differ in length or are empty.
    """
    _check_lengths(preds, gts, "preds", "gts")
    per_sample = (haystack_temporal_prf(p, g, threshold) for p, g in zip(preds, gts))
    scored = [s for s in per_sample if s is not None]
    n = len(scored)
    return {
        "precision": float(np.mean([s.precision for s in scored])) if n else 0.0,
        "recall": float(np.mean([s.recall for s in scored])) if n else 0.0,
        "f1": float(np.mean([s.f1 for s in scored])) if n else 0.0,
        "num_scored": n,
        "num_skipped": len(preds) - n,
    }
