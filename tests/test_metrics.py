"""Metrics against hand-computed cases (numbers worked out in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from agent_tools.errors import InvalidArgumentError, InvalidWindowError
from agent_tools.metrics import (
    PRF,
    best_iou,
    haystack_temporal_prf,
    haystack_temporal_prf_dataset,
    mean_iou,
    svmr_recall_at_k,
    temporal_iou,
    vcmr_recall_at_k,
    vr_recall_at_k,
)


def test_temporal_iou_hand_cases():
    # overlap 5 (5..10), union 15 (0..15)
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(1 / 3)
    # containment: 2..4 inside 0..10 -> 2/10
    assert temporal_iou((0, 10), (2, 4)) == pytest.approx(0.2)
    assert temporal_iou((1, 2), (1, 2)) == 1.0
    # disjoint and touching
    assert temporal_iou((0, 1), (2, 3)) == 0.0
    assert temporal_iou((0, 1), (1, 3)) == 0.0
    # degenerate union
    assert temporal_iou((3, 3), (3, 3)) == 0.0
    # vectorised
    out = temporal_iou(np.array([[0, 10], [0, 4]]), np.array([5, 15]))
    np.testing.assert_allclose(out, [1 / 3, 0.0])
    # best over several GT windows: (4,8) vs (0,6): 2/8; vs (5,9): 3/5
    assert best_iou((4, 8), [(0, 6), (5, 9)]) == pytest.approx(0.6)


def test_temporal_iou_rejects_reversed():
    with pytest.raises(InvalidWindowError, match="start <= end"):
        temporal_iou((5, 1), (0, 2))
    with pytest.raises(InvalidWindowError):
        temporal_iou((1, 2, 3), (0, 2))


def test_vr_recall():
    ranked = [["a", "b", "c"], ["b", "b", "a"], ["c", "d", "e"]]
    gt = ["a", "a", "a"]
    # q1: rank 0; q2: duplicates collapse -> ["b","a"] rank 1; q3: missing
    assert vr_recall_at_k(ranked, gt, ks=(1, 2, 5)) == {
        "R@1": pytest.approx(1 / 3),
        "R@2": pytest.approx(2 / 3),
        "R@5": pytest.approx(2 / 3),
    }
    with pytest.raises(InvalidArgumentError):
        vr_recall_at_k(ranked, gt[:2])
    with pytest.raises(InvalidArgumentError):
        vr_recall_at_k(ranked, gt, ks=(0,))


def test_svmr_recall():
    gt = [(10, 20), (0, 10)]
    ranked = [
        # IoUs with (10,20): (12,20) -> 8/10 = 0.8 ; (0, 15) -> 5/20 = 0.25
        [(12, 20), (0, 15)],
        # IoUs with (0,10): (6,16) -> 4/16 = 0.25 ; (0,6) -> 0.6 ; (0,20) -> 0.5
        [(6, 16), (0, 6), (0, 20)],
    ]
    r = svmr_recall_at_k(ranked, gt, ks=(1, 2, 5))
    # R@1: q1 0.8 hits 0.3/0.5/0.7, q2 0.25 hits none
    assert r["R@1,IoU=0.3"] == 0.5 and r["R@1,IoU=0.5"] == 0.5 and r["R@1,IoU=0.7"] == 0.5
    # R@2: q2 best 0.6 -> hits 0.3 and 0.5, not 0.7
    assert r["R@2,IoU=0.3"] == 1.0 and r["R@2,IoU=0.5"] == 1.0 and r["R@2,IoU=0.7"] == 0.5
    assert r["R@5,IoU=0.7"] == 0.5
    assert len(r) == 9


def test_vcmr_recall_requires_right_video():
    gt = [("v1", (10, 20)), ("v2", (0, 10))]
    ranked = [
        # perfect window in the wrong video first, then 0.8 IoU in the right one
        [("v9", 10, 20), ("v1", 12, 20)],
        # right video, IoU (5,10)/(0,10) = 0.5 exactly -> counts at 0.5 (>=)
        [("v2", 5, 10)],
    ]
    r = vcmr_recall_at_k(ranked, gt, ks=(1, 2), ious=(0.5, 0.7))
    assert r == {
        "R@1,IoU=0.5": 0.5,
        "R@1,IoU=0.7": 0.0,
        "R@2,IoU=0.5": 1.0,
        "R@2,IoU=0.7": 0.5,
    }
    # multiple GT windows: best one counts ((12,20) vs (11,21): 8/10)
    r2 = vcmr_recall_at_k([[("v1", 12, 20)]], [("v1", [(0, 5), (11, 21)])], ks=(1,), ious=(0.7,))
    assert r2 == {"R@1,IoU=0.7": 1.0}
    with pytest.raises(InvalidArgumentError):
        vcmr_recall_at_k(ranked, gt, ious=(1.5,))


def test_mean_iou():
    preds = [(0, 10), (5, 15), (0, 2)]
    gts = [(0, 10), (0, 10), (4, 6)]
    # 1.0, 5/15, 0
    assert mean_iou(preds, gts) == pytest.approx((1 + 1 / 3 + 0) / 3)
    # wrong video on the first query -> its IoU counts 0
    assert mean_iou(preds, gts, ["x", "a", "b"], ["a", "a", "b"]) == pytest.approx((1 / 3) / 3)
    with pytest.raises(InvalidArgumentError):
        mean_iou(preds, gts, pred_videos=["a", "a", "b"])


def test_haystack_prf_hand_case():
    # GT at 10, 50, 100 s; predictions at 12, 47, 200, 300 s.
    # pred 12 -> |12-10|=2 <= 5 ok; 47 -> 3 ok; 200, 300 -> no. precision 2/4 = 0.5
    # GT 10 ok, 50 ok, 100 -> nearest 47/200 -> no. recall 2/3
    # F1 = 2 * 0.5 * 2/3 / (0.5 + 2/3) = (2/3) / (7/6) = 4/7
    prf = haystack_temporal_prf([12, 47, 200, 300], [10, 50, 100])
    assert isinstance(prf, PRF)
    assert prf.precision == pytest.approx(0.5)
    assert prf.recall == pytest.approx(2 / 3)
    assert prf.f1 == pytest.approx(4 / 7)
    # exactly at the threshold counts (<=), just over does not
    assert haystack_temporal_prf([15.0], [10.0]) == PRF(1.0, 1.0, 1.0)
    assert haystack_temporal_prf([15.01], [10.0]) == PRF(0.0, 0.0, 0.0)
    assert haystack_temporal_prf([], [1.0]) is None
    assert haystack_temporal_prf([1.0], []) is None
    # custom threshold
    assert haystack_temporal_prf([12], [10], threshold=1.0).f1 == 0.0


def test_haystack_dataset_average_skips_empty():
    preds = [[12, 47, 200, 300], [0.0], [], [5.0]]
    gts = [[10, 50, 100], [100.0], [3.0], []]
    out = haystack_temporal_prf_dataset(preds, gts)
    # sample 1: (0.5, 2/3, 4/7); sample 2: (0, 0, 0); samples 3 and 4 skipped
    assert out["num_scored"] == 2 and out["num_skipped"] == 2
    assert out["precision"] == pytest.approx(0.25)
    assert out["recall"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(2 / 7)  # mean of per-sample F1s: (4/7 + 0) / 2
    # F1 of the means would be 2*.25*(1/3)/(.25+1/3) = 1/7 ~ 0.1429, different from 2/7
    assert out["f1"] != pytest.approx(1 / 7)
    empty = haystack_temporal_prf_dataset([[]], [[1.0]])
    assert empty == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "num_scored": 0, "num_skipped": 1}


# --- the official TVR rule (jayleicn/TVRetrieval standalone_eval/eval.py, eval_by_task_type) ---

from agent_tools.metrics import tvr_recall_at_k  # noqa: E402


def test_tvr_didemo_four_windows_need_two_matches():
    # DiDeMo: four annotators' windows (5-second segments). eval_by_task_type, len(ts) >= 4:
    # least_n_overlap = 2, i.e. a prediction counts only when its IoU >= thd with two windows.
    gt = [("d1", [(0, 5), (0, 5), (10, 15), (20, 25)])]
    # (0,5): IoU 1 with the first two windows -> 2 matches -> hit at every threshold
    assert tvr_recall_at_k([[("d1", 0, 5)]], gt, ks=(1,)) == {
        "R@1,IoU=0.3": 1.0, "R@1,IoU=0.5": 1.0, "R@1,IoU=0.7": 1.0}
    # (20,25): IoU 1 with one window only -> miss, although the lenient best-window rule says hit
    assert tvr_recall_at_k([[("d1", 20, 25)]], gt, ks=(1,)) == {
        "R@1,IoU=0.3": 0.0, "R@1,IoU=0.5": 0.0, "R@1,IoU=0.7": 0.0}
    assert vcmr_recall_at_k([[("d1", 20, 25)]], gt, ks=(1,))["R@1,IoU=0.7"] == 1.0
    # (0,10): IoU 0.5 with (0,5) twice -> two matches at 0.3 and 0.5 (>=), none at 0.7
    assert tvr_recall_at_k([[("d1", 0, 10)]], gt, ks=(1,)) == {
        "R@1,IoU=0.3": 1.0, "R@1,IoU=0.5": 1.0, "R@1,IoU=0.7": 0.0}
    # wrong video never counts; the right one at rank 2 counts for R@2 only
    r = tvr_recall_at_k([[("d9", 0, 5), ("d1", 0, 5)]], gt, ks=(1, 2), ious=(0.5,))
    assert r == {"R@1,IoU=0.5": 0.0, "R@2,IoU=0.5": 1.0}


def test_tvr_float32_threshold_and_tasks():
    # IoU computed in float32 against a float32 threshold: (0.3, 1.0) vs (0, 1.0) gives
    # float32(0.7) / float32(1.0) which equals float32(0.7) -> a hit at IoU=0.7 (>=)
    assert tvr_recall_at_k([[("v", 0.3, 1.0)]], [("v", (0.0, 1.0))], ks=(1,), ious=(0.7,)) == {"R@1,IoU=0.7": 1.0}
    preds = [[("v2", 0, 10), ("v1", 10, 20), ("v1", 0, 3)]]
    gt = [("v1", (10, 20))]
    # SVMR drops other videos first, so (10,20) is rank 1; VCMR keeps them, so it is rank 2
    assert tvr_recall_at_k(preds, gt, task="SVMR", ks=(1,), ious=(0.5,)) == {"R@1,IoU=0.5": 1.0}
    assert tvr_recall_at_k(preds, gt, task="VCMR", ks=(1,), ious=(0.5,)) == {"R@1,IoU=0.5": 0.0}
    assert tvr_recall_at_k(preds, gt, task="VR", ks=(1, 2)) == {"R@1": 0.0, "R@2": 1.0}
    with pytest.raises(InvalidArgumentError, match="task"):
        tvr_recall_at_k(preds, gt, task="XX")
