"""training.rewards: every reward against hand-computed values (pure functions, no model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training import rewards as R
from training.errors import TrainingDataError


def call(query="red car", start=0, end=10):
    args = {"query": query, "start_time": start, "end_time": end}
    return f"<think>look</think><tool_call>{json.dumps({'name': 'seek_video_frames', 'arguments': args})}</tool_call>"


def ans(text, think="seen"):
    return f"<think>{think}</think><answer>{text}</answer>"


def episode(*turns):
    """Completion in the chat format: assistant turns with tool turns between them."""
    out = []
    for i, t in enumerate(turns):
        out.append({"role": "assistant", "content": t})
        if i < len(turns) - 1:
            out.append({"role": "tool", "content": [{"type": "text", "text": "12.5s"}]})
    return out


# --------------------------------------------------------------------------- TimeSearch-R


def test_format_reward_cases():
    comps = [
        episode(call(), ans("B")),  # good
        episode(call(), call()),  # never answers
        episode(call() + "<answer>B</answer>"),  # both blocks in one turn
        episode("<think>x</think> trailing <answer>B</answer>"),  # text between think and answer
        episode(ans("B") + " extra"),  # text after the closing tag
        episode("<answer>B</answer>"),  # no think
        episode("  <think>a</think>\n<answer>B</answer>\n"),  # whitespace allowed
        "<think>one turn</think><answer>yes</answer>",  # plain-string completion
        episode(ans("<tool_call>x</tool_call>")),  # a call hidden inside the answer
    ]
    assert R.multiturn_format_reward([None] * len(comps), comps) == [1, 0, 0, 0, 0, 0, 1, 1, 0]


def test_accuracy_multiple_choice_and_single_answer_rule():
    comps = [
        episode(call(), ans("B")),
        episode(call(), ans("(b) a dog")),
        episode(call(), ans("C")),
        episode(ans("B"), ans("B")),  # two answers across turns: not scored
        episode(call()),  # no answer
        episode(ans("Option B")),
    ]
    got = R.accuracy_reward([None] * 6, comps, answer=["B"] * 6, problem_type="multiple_choice")
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_accuracy_grounding_iou_by_hand():
    truth = {"start_time": 10, "end_time": 20}
    preds = [
        json.dumps({"start_time": 15, "end_time": 25}),  # inter 5, union 15 -> 1/3
        json.dumps({"start_time": 10, "end_time": 20}),  # 1
        "{start_time: 30, end_time: 40}",  # repaired JSON, disjoint -> 0
        json.dumps(
            [{"start_time": 10, "end_time": 12}, {"start_time": 11, "end_time": 14}]
        ),  # merged 10-14: 0.4
        json.dumps(
            [{"start_time": 8, "end_time": 12}, {"start_time": 18, "end_time": 22}]
        ),  # inter 2+2=4 / union 8+10-4=14
        "not json",
    ]
    got = R.accuracy_reward(
        [None] * 6, [episode(ans(p)) for p in preds], answer=[truth] * 6, problem_type="grounding"
    )
    assert got == pytest.approx([1 / 3, 1.0, 0.0, 0.4, 4 / 14, 0.0])


def test_accuracy_open_ended_exact_and_judge():
    comps = [episode(ans("The red car.")), episode(ans("a blue car"))]
    assert R.accuracy_reward([None] * 2, comps, answer=["red car"] * 2) == [1.0, 0.0]
    seen = []

    def judge(q, pred, truth):
        seen.append((q, pred, truth))
        return 0.7 if "car" in pred else 0.0

    f = R.make_accuracy_reward(judge=judge)
    assert f(
        [None] * 2, comps, answer=["red car"] * 2, question=["what?"] * 2, problem_type="open_ended"
    ) == [0.7, 0.7]
    assert seen[0] == ("what?", "The red car.", "red car")


def test_csv_reward_binarises_both_scores():
    good = episode(call(), ans("B"))
    wrong = episode(call(), ans("C"))
    v_ok = {"answer": "B", "sufficient": True, "num_frames": 3}
    v_bad = {"answer": "D", "sufficient": True, "num_frames": 3}
    v_unk = {"answer": "I don't know", "sufficient": False, "num_frames": 3}
    v_none = {"answer": "I don't know", "sufficient": False, "num_frames": 0}
    comps = [good, good, good, good, wrong, good]
    vers = [v_ok, v_bad, v_unk, v_none, v_ok, "(B)"]
    got = R.csv_reward([None] * 6, comps, answer=["B"] * 6, problem_type="multiple_choice", verification=vers)
    assert got == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def test_csv_grounding_threshold_is_strictly_above_half():
    truth = {"start_time": 0, "end_time": 10}
    main = episode(ans(json.dumps({"start_time": 0, "end_time": 10})))
    half = json.dumps({"start_time": 0, "end_time": 5})  # IoU exactly 0.5 -> not above
    more = json.dumps({"start_time": 0, "end_time": 6})  # 0.6
    got = R.csv_reward(
        [None] * 2,
        [main, main],
        answer=[truth] * 2,
        problem_type="grounding",
        verification=[{"answer": half, "sufficient": True}, {"answer": more, "sufficient": True}],
    )
    assert got == [0.0, 1.0]


def test_timesearch_weighted_total():
    comps = [episode(call(), ans("B")), episode(call(), ans("C")), episode(ans("B") + "junk")]
    vers = [{"answer": "B", "sufficient": True}] * 3
    totals, parts = R.weighted_rewards(
        R.TIMESEARCH_REWARDS,
        R.TIMESEARCH_REWARD_WEIGHTS,
        [None] * 3,
        comps,
        answer=["B"] * 3,
        problem_type="multiple_choice",
        verification=vers,
    )
    # format, accuracy, csv = (1,1,1), (1,0,0), (0,1,1) -> 1+.5+.5, 1, .5+.5
    assert totals == pytest.approx([2.0, 1.0, 1.0])
    assert parts["multiturn_format_reward"] == [1.0, 1.0, 0.0]
    with pytest.raises(TrainingDataError, match="reward weights"):
        R.weighted_rewards(R.TIMESEARCH_REWARDS, (1.0,), [None], comps[:1])


def test_bad_columns_raise_with_what_is_valid():
    with pytest.raises(TrainingDataError, match="problem_type"):
        R.accuracy_reward([None], [episode(ans("B"))], answer=["B"], problem_type=["essay"])
    with pytest.raises(TrainingDataError, match="one per completion"):
        R.accuracy_reward([None] * 2, [episode(ans("B"))] * 2, answer=["B"])


# --------------------------------------------------------------------------- VideoSearch-R1

M = "<think>the dog jumps</think> <answer>matched</answer> <start>4</start> <end>9</end> <REFINE>"
N = "<think>wrong kitchen</think> <answer>not_matched</answer> <REFINE>"
N_TAGS = "<think>x</think> <answer>not_matched</answer> <start>1</start><end>2</end>"
EMPTY_THINK = "<think> </think><answer>matched</answer><start>0</start><end>10</end>"
JUNK = "no tags at all"


def test_videosearch_rewards_by_hand():
    comps = [M, N, N_TAGS, EMPTY_THINK, JUNK, M]
    labels = ["matched", "not_matched", "not_matched", "matched", "matched", "not_matched"]
    kw = dict(label=labels, gt_time=[[5, 10]] * 6)
    p = [None] * 6
    assert R.answer_binary_reward(p, comps, **kw) == [1, 1, 1, 1, -1, -1]
    assert R.think_format_reward(p, comps, **kw) == [1, 1, 1, 0, 0, 1]
    assert R.time_format_reward(p, comps, **kw) == [1, 1, 0, 1, 0, 1]
    # M: [4,9] vs [5,10] -> 4/6; N: correct not_matched, no tags -> 0.5; N_TAGS: tags -> 0;
    # EMPTY_THINK: [0,10] vs [5,10] -> 0.5; JUNK: 0; last M is wrong -> 0
    assert R.time_iou_reward(p, comps, **kw) == pytest.approx([4 / 6, 0.5, 0.0, 0.5, 0.0, 0.0])
    assert R.refine_presence_reward(p, comps, **kw) == [1, 1, 0, 0, 0, 1]


def test_truth_from_video_ids():
    got = R.answer_binary_reward([None] * 2, [M, M], retrieved_video=["a", "b"], gt_video=["a", "a"])
    assert got == [1.0, -1.0]
    with pytest.raises(TrainingDataError, match="label"):
        R.answer_binary_reward([None], [M])


def test_infonce_margin_by_hand():
    q = [1.0, 0.0]
    pos = [1.0, 0.0]
    negs = [[0.0, 1.0], [-1.0, 0.0]]
    # sims: pos 1; negs 0 and -1 -> 1 - 0.1*log(exp(0) + exp(-10))
    want = 1 - 0.1 * math.log(1 + math.exp(-10))
    assert R.infonce_margin(q, pos, negs) == pytest.approx(want)
    # unnormalised inputs are normalised (cosine similarity)
    assert R.infonce_margin([3.0, 0.0], [2.0, 0.0], np.array(negs) * 5) == pytest.approx(want)
    tau = 0.5
    assert R.infonce_margin(q, [0.0, 1.0], negs, tau) == pytest.approx(
        0 - tau * math.log(math.exp(0) + math.exp(-2))
    )
    with pytest.raises(TrainingDataError, match="width"):
        R.infonce_margin(q, pos, [[1.0, 0.0, 0.0]])


def test_query_refine_quality_reward():
    q, pos, negs = [1.0, 0.0], [1.0, 0.0], [[0.0, 1.0], [-1.0, 0.0]]
    want = 1 - 0.1 * math.log(1 + math.exp(-10))
    got = R.query_refine_quality_reward(
        [None] * 2, [M, N_TAGS], q_final=[q, q], v_pos=[pos, pos], v_negs=[negs, negs]
    )
    assert got == pytest.approx([want, 0.0])  # no <REFINE> -> 0
    assert R.query_refine_quality_reward([None], [M], refine_quality=[0.3], margin_scale=2.0) == [0.6]
    assert R.query_refine_quality_reward([None], [M], refine_quality=[0.3], margin_scale=0.0) == [0.0]
    with pytest.raises(TrainingDataError, match="tau must be > 0"):
        R.query_refine_quality_reward([None], [M], refine_quality=[0.3], tau=0)


def test_videosearch_weighted_total():
    kw = dict(label=["matched"], gt_time=[[5, 10]], refine_quality=[0.2])
    totals, _ = R.weighted_rewards(R.VIDEOSEARCH_REWARDS, R.VIDEOSEARCH_REWARD_WEIGHTS, [None], [M], **kw)
    want = 1.6 * 1 + 0.05 * 1 + 0.05 * 1 + 0.35 * (4 / 6) + 0.8 * 1 + 0.5 * 0.2
    assert totals == pytest.approx([want])


def test_rewards_are_deterministic_and_pure():
    comps = [episode(call(), ans("B"))]
    kw = dict(
        answer=["B"], problem_type=["multiple_choice"], verification=[{"answer": "B", "sufficient": True}]
    )
    before = json.dumps(comps)
    a = R.weighted_rewards(R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS, [None], comps, **kw)
    b = R.weighted_rewards(R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS, [None], comps, **kw)
    assert a == b and json.dumps(comps) == before
