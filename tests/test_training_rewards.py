"""training.rewards against values computed by hand from the reference code.

References (read at these commits):
- TimeSearch-R ``Time-Search/TimeSearch-R`` @ 8d51dbc: ``time_r1/reward/v7.py``
  (``extract_characters_regex``, ``answer_format_check``, ``multiturn_format_check``,
  ``compute_answer_score``, ``general_answer_score``, ``is_valid_json_time_format``,
  ``compute_iou``, ``compute_counterfactual_reasoning_score``) and
  ``time_r1/trainer/grpo_trainer_env.py`` (``get_visual_trace``, the "I don't know" default).
- VideoSearch-R1 ``mlvlab/VideoSearch-R1`` @ f6f2113: ``videosearch_r1/reward/reward.py``
  (``r_*``), ``videosearch_r1/trainer/grpo_vllm_trainer_qwen3_vl.py`` (``_extract_answer_tag``,
  ``_generate_and_score_completions_search``: turns, ``completions_text``;
  ``_populate_latent_improve_meta``: ``p_after - p_before``),
  ``scripts/internal/stage2/train_stage2.bash`` (weights).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training import rewards as R
from training.errors import TrainingDataError


def call(query="red car", start=0, end=10):
    args = {"query": query, "start_time": start, "end_time": end}
    body = json.dumps({"name": "seek_video_frames", "arguments": args})
    return f"<think>look</think><tool_call>{body}</tool_call>"


def ans(text, think="seen"):
    return f"<think>{think}</think><answer>{text}</answer>"


def episode(*turns):
    """A TRL conversational completion: assistant turns with tool turns between them."""
    out = []
    for i, t in enumerate(turns):
        out.append({"role": "assistant", "content": t})
        if i < len(turns) - 1:
            out.append({"role": "tool", "content": [{"type": "text", "text": "12.5s"}]})
    return out


def mc(completions, truth="B", **kw):
    n = len(completions)
    return dict(completions=completions, answer=[truth] * n, problem_type=["multiple_choice"] * n, **kw)


def window(s, e):
    return json.dumps({"start_time": s, "end_time": e})


# --------------------------------------------------------------------------- TimeSearch-R: letters


def test_strict_letter_regex():
    # v7.py extract_characters_regex(strict=True): re.search(r'^[A-J][\.\s]|^[A-J]$', s.strip())
    cases = {
        "B": "B", "B.": "B", "B. a dog": "B", "  C  ": "C", "B text": "B",
        "(B)": "", "b": "", "Option B": "", "The answer is B": "", "B)": "", "K": "",
        "A dog": "A",  # the strict regex reads a leading article as option A
    }  # fmt: skip
    assert {k: R.extract_choice_letter(k) for k in cases} == cases
    lenient = {"(B)": "B", "b": "B", "Option B": "B", "The answer is B": "B", "B)": "B"}
    assert {k: R.extract_choice_letter(k, lenient=True) for k in lenient} == lenient


def test_accuracy_multiple_choice_strict_vs_lenient():
    # v7.py general_answer_score 'multiple_choice': extract(answer) == extract(truth), strict letters.
    answers = ["B", "B. a dog", "(B)", "b", "Option B", "The answer is B", "C"]
    comps = [episode(call(), ans(a)) for a in answers]
    assert R.accuracy_reward(**mc(comps)) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert R.accuracy_reward_lenient(**mc(comps)) == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_multiple_choice_truth_without_a_letter_is_a_data_error():
    # v7.py would compare "" == "" and score every non-letter answer 1; we refuse the row instead.
    with pytest.raises(TrainingDataError, match="option letter"):
        R.accuracy_reward(**mc([episode(ans("(C)"))], truth="(B)"))


# --------------------------------------------------------------------------- TimeSearch-R: reading turns


def test_unclosed_answer_scores_zero():
    # v7.py: has_tag('answer') sends '<think>x</think><answer>B' to answer_format_check (fullmatch
    # fails) and compute_answer_score's r'<answer>(.*?)</answer>' finds nothing.
    comps = [episode(call(), "<think>x</think><answer>B")]
    assert R.multiturn_format_reward(comps) == [0.0]
    assert R.accuracy_reward(**mc(comps)) == [0.0]
    assert R.accuracy_reward_lenient(**mc(comps)) == [1.0]  # opt-in: closing tag optional


def test_tool_call_and_answer_in_one_turn_score_zero():
    # v7.py multiturn_format_check / compute_answer_score / compute_counterfactual_reasoning_score:
    # `if has_tag(text, "answer") and has_tag(text, "tool_call"): return 0.0`, even after a good turn.
    both = call() + "<answer>B</answer>"
    comps = [episode(both), episode(ans("B"), both)]
    ver = [{"answer": "B", "num_frames": 2}] * 2
    assert R.multiturn_format_reward(comps) == [0.0, 0.0]
    assert R.accuracy_reward(**mc(comps)) == [0.0, 0.0]
    assert R.csv_reward(**mc(comps, verification=ver)) == [0.0, 0.0]


def test_tags_are_case_sensitive():
    # v7.py has_tag: re.search(fr"<{tag}>", text) without IGNORECASE: '<Answer>' is no answer.
    comps = [episode(call(), "<Think>x</Think><Answer>B</Answer>")]
    assert R.multiturn_format_reward(comps) == [0.0]  # no answer part at all
    assert R.accuracy_reward(**mc(comps)) == [0.0]
    assert R.accuracy_reward_lenient(**mc(comps)) == [1.0]


def test_format_reward_reference_cases():
    # v7.py multiturn_format_check: per text part; answer parts must fullmatch
    # r'<think>.*?</think>\s*<answer>.*?</answer>' (DOTALL) after strip, tool parts likewise;
    # untagged parts are not checked; at least one answer part.
    comps = [
        episode(call(), ans("B")),  # 1
        episode(call(), call()),  # 0: never answers
        episode("<think>x</think> trailing <answer>B</answer>"),  # 0: text between the blocks
        episode(ans("B") + " extra"),  # 0: text after the closing tag
        episode("<answer>B</answer>"),  # 0: no think
        episode("  <think>a</think>\n<answer>B</answer>\n"),  # 1: stripped first
        "<think>one turn</think><answer>yes</answer>",  # 1: plain-string completion
        episode('<tool_call>{"name": "seek_video_frames"}</tool_call>', ans("B")),  # 0: call without think
        episode("<think>a</think><think>b</think><answer>B</answer>"),  # 1: repeated think accepted
        episode("<think>a</think><answer>B</answer><answer>C</answer>"),  # 1: repeated answer accepted
        episode("Let me look at the video first.", ans("B")),  # 1: an untagged chatter turn is not checked
    ]
    assert R.multiturn_format_reward(comps) == [1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    # opt-in strict variant refuses the last three (repeated blocks, chatter)
    assert R.multiturn_format_reward_strict(comps) == [1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]


def test_answer_count_is_per_text_part_and_first_block_wins():
    # v7.py compute_answer_score: re.search (first block) per part; scored only if exactly one part answered.
    comps = [
        episode(ans("B"), ans("B")),  # two answering turns -> 0
        episode("<think>a</think><answer>B</answer><answer>C</answer>"),  # one part, first block 'B' -> 1
        episode("<think>a</think><answer>C</answer><answer>B</answer>"),  # first block 'C' -> 0
        episode(call()),  # no answer -> 0
    ]
    assert R.accuracy_reward(**mc(comps)) == [0.0, 1.0, 0.0, 0.0]


def test_list_content_parts_are_checked_one_by_one():
    # v7.py iterates message["content"] blocks of type text and checks each on its own: a think
    # block and an answer block in separate parts fail answer_format_check.
    split = [{"role": "assistant", "content": [{"type": "text", "text": "<think>a</think>"},
                                                {"type": "text", "text": "<answer>B</answer>"}]}]  # fmt: skip
    joined = [
        {"role": "assistant", "content": [{"type": "text", "text": "<think>a</think><answer>B</answer>"}]}
    ]
    assert R.multiturn_format_reward([split, joined]) == [0.0, 1.0]
    assert R.accuracy_reward(**mc([split, joined])) == [1.0, 1.0]


def test_trl_parsed_tool_calls_are_rendered_back():
    # TRL's parse_response moves <tool_call> text into message["tool_calls"]; the reference reads the
    # generated text, so the call is rendered back and checked by tool_call_format_check.
    tool_calls = [
        {"type": "function", "function": {"name": "seek_video_frames", "arguments": {"query": "car"}}}
    ]
    comp = [
        {"role": "assistant", "content": "<think>look</think>", "tool_calls": tool_calls},
        {"role": "tool", "name": "seek_video_frames", "content": "12.5s"},
        {"role": "assistant", "content": "<answer>B</answer>", "reasoning_content": "it is B"},
    ]
    bad = [{"role": "assistant", "content": "no reasoning", "tool_calls": tool_calls}, comp[1], comp[2]]
    assert R.multiturn_format_reward([comp, bad]) == [1.0, 0.0]
    assert R.assistant_turns(comp)[0].endswith("</tool_call>")


# --------------------------------------------------------------------------- TimeSearch-R: grounding


def test_grounding_parse_rules():
    # v7.py is_valid_json_time_format + compute_iou([[ps, pe]], [[gs, ge]]).
    truth = {"start_time": 10, "end_time": 20}
    preds = {
        window(15, 25): 5 / 15,  # inter [15,20] = 5, union 10 + 10 - 5
        window(10, 20): 1.0,
        "```json\n" + window(10, 20) + "\n```": 1.0,  # leading ```json fence removed
        window(20, 10): 0.0,  # reversed: start > end
        window(-1, 12): 0.0,  # negative
        "{'start_time': 10, 'end_time': 20}": 0.0,  # single quotes: json.loads fails
        "[10, 20]": 0.0,  # a bare list has no .get
        json.dumps({"start_time": "10", "end_time": "20"}): 0.0,  # strings: '10' < 0 raises TypeError
        window(15, 15): 0.0,  # zero-length inside: 'start < end' never holds, inter 0, union 10
        "not json": 0.0,
    }
    n = len(preds)
    kw = dict(answer=[truth] * n, problem_type=["grounding"] * n)
    got = R.accuracy_reward(completions=[episode(ans(p)) for p in preds], **kw)
    assert got == pytest.approx(list(preds.values()))
    lenient = R.accuracy_reward_lenient(completions=[episode(ans(p)) for p in preds], **kw)
    # opt-in: reversed swapped, negative kept ([-1,12]: inter 2 / union 21), single quotes repaired,
    # bare pair and string numbers accepted
    assert lenient == pytest.approx([1 / 3, 1, 1, 1, 2 / 21, 1, 1, 1, 0, 0])


def test_grounding_zero_length_union_scores_one():
    # v7.py compute_iou: `if union == 0: return 1.0`, so any zero-length answer against a
    # zero-length truth scores 1 (the issue says "equal"; the code does not compare the points).
    comps = [episode(ans(window(5, 5))), episode(ans(window(7, 7)))]
    got = R.accuracy_reward(completions=comps, answer=[window(5, 5)] * 2, problem_type="grounding")
    assert got == [1.0, 1.0]


def test_compute_iou_merges_intervals():
    # v7.py compute_iou docstring example: a = [[0,3],[2,4],[22,25]] -> [0,4],[22,25] (len 7);
    # b = [[1,5],[2,2],[2,4]] -> [1,5] (len 4); inter [1,4] = 3; union 7 + 4 - 3 = 8.
    assert R.compute_iou([[0, 3], [2, 4], [22, 25]], [[1, 5], [2, 2], [2, 4]]) == pytest.approx(3 / 8)


def test_sequence_answers():
    # v7.py extract_sequence_index: ''.join(re.findall(r'(\([a-g,1-6]\))', s)), equal strings score 1.
    comps = [episode(ans("First (a), then (c), last (b)")), episode(ans("(a)(b)(c)"))]
    got = R.accuracy_reward(completions=comps, answer="The order is (a)(c)(b)", problem_type="sequence")
    assert got == [1.0, 0.0]


# --------------------------------------------------------------------------- TimeSearch-R: open-ended


def test_open_ended_exact_fallback_and_judge_gets_the_raw_answer():
    # v7.py general_answer_score 'open_ended': llm_judge_score(answer, ground_truth, question) with
    # the unstripped answer; offline we use normalised exact match.
    comps = [episode(ans("The red car.")), episode(ans(" a blue car "))]
    assert R.accuracy_reward(completions=comps, answer="red car", problem_type="open_ended") == [1.0, 0.0]
    seen = []

    def judge(q, pred, truth):
        seen.append((q, pred, truth))
        return 1.0 if "car" in pred else 0.0

    f = R.make_accuracy_reward(judge)
    assert f(completions=comps, answer="red car", question="what?", problem_type="open_ended") == [1.0, 1.0]
    assert seen == [("what?", "The red car.", "red car"), ("what?", " a blue car ", "red car")]


# --------------------------------------------------------------------------- TimeSearch-R: CSV


def test_csv_keeps_fractional_scores():
    # v7.py compute_counterfactual_reasoning_score: a, c -> 1.0 when > 0.5, else kept; return a * c.
    truth = {"start_time": 0, "end_time": 10}
    cases = [  # (answer window, re-answer window, expected)
        ((0, 4), (0, 10), 0.4 * 1.0),
        ((0, 10), (0, 3), 1.0 * 0.3),
        ((0, 4), (0, 3), 0.4 * 0.3),
        ((0, 6), (0, 6), 1.0),  # both 0.6 -> rounded up
        ((0, 5), (0, 10), 0.5),  # exactly 0.5 is not above 0.5: kept
    ]
    comps = [episode(call(), ans(window(*a))) for a, _, _ in cases]
    ver = [{"answer": window(*c), "num_frames": 4} for _, c, _ in cases]
    kw = dict(answer=[truth] * 5, problem_type="grounding", verification=ver)
    assert R.csv_reward(completions=comps, **kw) == pytest.approx([e for _, _, e in cases])
    # opt-in binary variant: [a > 0.5] * [c > 0.5]
    assert R.make_csv_reward(binary=True)(completions=comps, **kw) == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_csv_re_answer_sources_and_the_i_dont_know_default():
    # grpo_trainer_env.py: visual_trace_batch_prediction_texts = ["I don't know"] * n for episodes
    # without frames; the raw re-answer text is scored by general_answer_score.
    good = episode(call(), ans("B"))
    ver = [
        {"answer": "B", "num_frames": 3},  # 1
        {"answer": "B. the dog", "num_frames": 3},  # 1
        {"answer": None, "num_frames": 0},  # "I don't know" -> letter 'I' != 'B' -> 0
        "(B)",  # text; strict letter fails -> 0
        {"answer": "D", "num_frames": 3},  # 0
    ]
    assert R.csv_reward(**mc([good] * 5, verification=ver)) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # the reference reads "I don't know" as option I (strict regex '^[A-J][.\s]')
    truth_i = episode(call(), ans("I"))
    assert R.csv_reward(**mc([truth_i], truth="I", verification=[None])) == [1.0]
    # TimeSearch-R's column name, and environments carrying the re-answer
    assert R.csv_reward(**mc([good], visual_trace_completions=["B"])) == [1.0]

    class Env:
        verification = {"answer": "B", "num_frames": 2}

    assert R.csv_reward(**mc([good], environments=[Env()])) == [1.0]
    with pytest.raises(TrainingDataError, match="re-answer"):
        R.csv_reward(**mc([good]))


def test_timesearch_weighted_total():
    # v7.py reward_weights = [1.0, 0.5, 0.5]; TRL sums weight * reward.
    truth = {"start_time": 0, "end_time": 10}
    comps = [
        episode(call(), ans(window(0, 4))),  # format 1, accuracy 0.4, csv 0.4 * 1
        episode(call(), ans(window(0, 10)) + "junk"),  # format 0, accuracy 1, csv 1
    ]
    ver = [{"answer": window(0, 10), "num_frames": 2}] * 2
    totals, parts = R.weighted_rewards(
        R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS, [None] * 2, comps,
        answer=[truth] * 2, problem_type="grounding", verification=ver,
    )  # fmt: skip
    assert R.TIMESEARCH_REWARD_WEIGHTS == (1.0, 0.5, 0.5)
    assert totals == pytest.approx([1.0 + 0.5 * 0.4 + 0.5 * 0.4, 0.0 + 0.5 + 0.5])
    assert parts["multiturn_format_reward"] == [1.0, 0.0]
    with pytest.raises(TrainingDataError, match="reward weights"):
        R.weighted_rewards(R.TIMESEARCH_REWARDS, (1.0,), [None], comps[:1])


def test_trl_keyword_call_and_none_rewards():
    # TRL GRPOTrainer._calculate_rewards: reward_func(prompts=, completions=, completion_ids=, **columns,
    # trainer_state=, log_extra=, log_metric=); a None reward is NaN and skipped by nansum.
    kw = dict(prompts=[[{"role": "user", "content": "q"}]], completion_ids=[[1, 2]], trainer_state=None,
              log_extra=None, log_metric=None)  # fmt: skip
    assert R.accuracy_reward(**mc([episode(ans("B"))]), **kw) == [1.0]

    def maybe(completions, **_):
        return [None]

    totals, parts = R.weighted_rewards([maybe, R.accuracy_reward], [3.0, 0.5], [None], [episode(ans("B"))],
                                       answer="B", problem_type="multiple_choice")  # fmt: skip
    assert totals == [0.5] and math.isnan(parts["maybe"][0])


def test_calling_conventions():
    # TRL: f(prompts=, completions=, ...); TRL docs: f(completions, **kw); older: f(prompts, completions).
    comps, kw = [episode(ans("B")), episode(ans("C"))], dict(answer="B", problem_type="multiple_choice")
    want = [1.0, 0.0]
    assert R.accuracy_reward(comps, **kw) == R.accuracy_reward([None] * 2, comps, **kw) == want
    assert R.accuracy_reward(prompts=[None] * 2, completions=comps, **kw) == want
    assert R.answer_binary_reward([None], ["<answer>matched</answer>"], label="matched") == [1.0]
    assert R.accuracy_reward.__name__ == "accuracy_reward"
    with pytest.raises(TypeError, match="completions"):
        R.accuracy_reward(**kw)


def test_bad_columns_raise_with_what_is_valid():
    with pytest.raises(TrainingDataError, match="problem_type"):
        R.accuracy_reward(completions=[episode(ans("B"))], answer=["B"], problem_type=["essay"])
    with pytest.raises(TrainingDataError, match="one per completion"):
        R.accuracy_reward(completions=[episode(ans("B"))] * 2, answer=["B"])
    with pytest.raises(TrainingDataError, match="grounding truth"):
        R.accuracy_reward(completions=[episode(ans(window(0, 1)))], answer="[0, 1]", problem_type="grounding")
    with pytest.raises(TrainingDataError, match="'answer' column"):
        R.accuracy_reward(completions=[episode(ans("B"))])


# --------------------------------------------------------------------------- VideoSearch-R1


def test_answer_label_normalisation():
    # grpo_vllm_trainer_qwen3_vl.py _extract_answer_tag: last <answer>, strip, lower, ' ' -> '_'.
    cases = {
        "<answer>matched</answer>": "matched",
        "<ANSWER> Match </ANSWER>": "matched",
        "<answer>not matched</answer>": "not_matched",
        "<answer>NOT_MATCH</answer>": "not_matched",
        "<answer>notmatch</answer>": "not_matched",
        "<answer>Matched.</answer>": "matched.",
        "<answer>yes</answer>": "yes",
        "<answer>mismatch</answer>": "mismatch",
        "<answer>not-matched</answer>": "not-matched",
        "<answer>matched</answer> then <answer>not_matched</answer>": "not_matched",  # the last counts
        "<answer>matched": "",  # unclosed
        "no tags": "",
    }
    assert {k: R.extract_answer_label(k) for k in cases} == cases


def test_answer_binary_unknown_labels_are_wrong():
    # reward.py r_answer_binary: 1.0 if answer == label else -1.0.
    comps = ["<answer>matched</answer>", "<answer>Matched.</answer>", "<answer>yes</answer>",
             "<answer>mismatch</answer>", "<answer>not matched</answer>", "", []]  # fmt: skip
    labels = ["matched", "matched", "matched", "not_matched", "not_matched", "matched", "matched"]
    assert R.answer_binary_reward(completions=comps, label=labels) == [1, -1, -1, -1, 1, -1, 0]
    # truth from ids: matched iff retrieved_id and retrieved_id == gt_video
    got = R.answer_binary_reward(completions=["<answer>matched</answer>"] * 3,
                                 retrieved_video=["a", "b", ""], gt_video=["a", "a", ""])  # fmt: skip
    assert got == [1.0, -1.0, -1.0]
    with pytest.raises(TrainingDataError, match="label"):
        R.answer_binary_reward(completions=["<answer>matched</answer>"])
    with pytest.raises(TrainingDataError, match="label"):
        R.answer_binary_reward(completions=["x"], label=["yes"])


def test_time_tags_by_reference_rules():
    # reward.py r_time_format / r_time_iou / _extract_start_end_seconds: numeric
    # r'<start>\s*([-+]?\d+(?:\.\d+)?)\s*</start>' (last hit), p_end <= p_start -> 0.
    think = "<think>the dog jumps</think>"
    comps = [
        think + "<answer>matched</answer><start>4</start><end>9</end>",  # IoU [4,9]/[5,10] = 4/6
        think + "<answer>matched</answer><start>3s</start><end>9</end>",  # tags yes, '3s' no number
        think + "<answer>matched</answer><start>9</start><end>4</end>",  # reversed
        think + "<answer>matched</answer><start>4<end>9</end>",  # unclosed start: no tag pair
        think + "<answer>matched</answer><start>0</start><end>1</end> <start>4</start><end>9</end>",  # last
        think + "<answer>not_matched</answer>",  # correct reject, no tags
        think + "<answer>not_matched</answer><start>1</start><end>2</end>",  # reject with tags
        think + "<answer>matched</answer><START>5</START><END>10</END>",  # case-insensitive
    ]
    labels = ["matched"] * 5 + ["not_matched"] * 2 + ["matched"]
    kw = dict(completions=comps, label=labels, gt_time=[[5, 10]] * 8)
    assert R.time_format_reward(**kw) == [1, 1, 1, 0, 1, 1, 0, 1]
    assert R.time_iou_reward(**kw) == pytest.approx([4 / 6, 0, 0, 0, 4 / 6, 0.5, 0, 1])
    # a wrong verdict scores 0 IoU (correct_accept / correct_reject False); gt with end <= start -> 0
    assert R.time_iou_reward(completions=comps[:1], label=["not_matched"], gt_time=[[5, 10]]) == [0.0]
    assert R.time_iou_reward(completions=comps[:1], label=["matched"], gt_time=[[10, 5]]) == [0.0]
    assert R.time_iou_reward(completions=comps[:1], label=["matched"], gt_time=[None]) == [0.0]


def test_assistant_turns_are_joined():
    # grpo_vllm_trainer_qwen3_vl.py: completions_text = "\n".join(assistant turns that are not pure
    # <search> calls); r_think_format / r_time_* read that text; the answer is the final turn's.
    a = {"role": "assistant"}
    env = {"role": "user", "content": "<information>video</information>"}
    early_tags = [
        dict(a, content="<think>a</think><answer>matched</answer><start>1</start><end>2</end>"),
        env,
        dict(a, content="<think>b</think><answer>not_matched</answer>"),
    ]
    think_early = [dict(a, content="<think>reasoned</think><answer>not_matched</answer>"), env,
                   dict(a, content="<answer>matched</answer><start>5</start><end>10</end>")]  # fmt: skip
    search_first = [dict(a, content="<think>plan</think><search>a red car</search>"), env,
                    dict(a, content="<answer>matched</answer><start>5</start><end>10</end>")]  # fmt: skip
    comps = [early_tags, think_early, search_first]
    kw = dict(completions=comps, label=["not_matched", "matched", "matched"], gt_time=[[5, 10]] * 3)
    assert R.answer_binary_reward(**kw) == [1, 1, 1]
    assert R.think_format_reward(**kw) == [1, 1, 0]  # the search turn's think is not in the text
    assert R.time_format_reward(**kw) == [0, 1, 1]  # earlier tags count against a final reject
    assert R.time_iou_reward(**kw) == [0, 1, 1]


def test_refine_presence_is_the_final_turn():
    # reward.py r_refine_presence: the final turn's has_refine_token; with no turn in reward_meta
    # (only a <search> call here), meta["improve_has_refine"] (the token anywhere after the prompt).
    a = {"role": "assistant"}
    early = [
        dict(a, content="<answer>not_matched</answer> <REFINE>"),
        dict(a, content="<answer>matched</answer>"),
    ]
    final = "<think>x</think><answer>not_matched</answer> <REFINE>"
    search_only = [dict(a, content="<think>x</think><search>red car</search> <REFINE>")]
    comps = [early, final, "<answer>matched</answer>", search_only]
    assert R.refine_presence_reward(completions=comps) == [0, 1, 0, 1]
    # r_answer_binary: no turns -> 0.0 (not -1)
    assert R.answer_binary_reward(completions=comps, label="matched") == [1, -1, 1, 0]


def test_refine_quality_is_the_probability_gain():
    # _populate_latent_improve_meta: logits = [q.gt, q.negs] / temp on unit vectors,
    # query_refine_quality = softmax(after)[0] - softmax(before)[0]; no negatives -> stays 0.0;
    # r_query_refine_quality: no <REFINE> -> GRPO_NO_REFINE_QUALITY_PENALTY (0.0).
    q_orig, q_final, pos, negs = [0.0, 2.0], [3.0, 0.0], [1.0, 0.0], [[0.0, 1.0]]
    p_after = math.exp(10) / (math.exp(10) + math.exp(0))
    p_before = math.exp(0) / (math.exp(0) + math.exp(10))
    want = p_after - p_before
    assert R.refine_quality_delta(q_orig, q_final, pos, negs) == pytest.approx(want)
    assert R.infonce_positive_probability(q_final, pos, negs) == pytest.approx(p_after)
    refine = "<think>x</think><answer>not_matched</answer> <REFINE>"
    plain = "<think>x</think><answer>not_matched</answer>"
    got = R.query_refine_quality_reward(
        completions=[refine, plain, refine, refine],
        q_orig=[q_orig] * 4, q_final=[q_final] * 4, v_pos=[pos] * 4, v_negs=[negs, negs, [], None],
    )  # fmt: skip
    assert got == pytest.approx([want, 0.0, 0.0, 0.0])
    assert R.query_refine_quality_reward(completions=[refine, plain], refine_quality=[0.3, 0.3]) == [0.3, 0.0]
    # opt-in margin mode (the reference docstring's formula): sim_pos - tau * logsumexp(sim_neg / tau)
    margin = R.make_query_refine_quality_reward("margin", margin_scale=2.0)
    got = margin(completions=[refine], q_orig=[q_orig], q_final=[q_final], v_pos=[pos], v_negs=[negs])
    assert got == pytest.approx([2.0 * (1.0 - 0.1 * math.log(math.exp(0.0)))])
    with pytest.raises(TrainingDataError, match="tau must be > 0"):
        R.query_refine_quality_reward(completions=[refine], refine_quality=[0.3], tau=0)
    with pytest.raises(TrainingDataError, match="width"):
        R.refine_quality_delta(q_orig, q_final, pos, [[1.0, 0.0, 0.0]])
    with pytest.raises(TrainingDataError, match="mode"):
        R.make_query_refine_quality_reward("cosine")
    with pytest.raises(TrainingDataError, match="missing: q_orig"):  # the old margin-era columns alone
        R.query_refine_quality_reward(completions=[refine], q_final=[q_final], v_pos=[pos], v_negs=[negs])


def test_lenient_labels_flip_the_weighted_reward_from_minus_1_55_to_plus_1_96():
    # train_stage2.bash: W_ACC 1.6, W_THINK_REWARD 0.05, W_TIME_FMT 0.05, W_TIME_IOU 0.35, W_FMT 0.8,
    # W_MARGIN 0.5. Reference on '<answer>Matched.</answer>' (truth matched): answer -1 (unknown label),
    # think 1, time format 0 (neither matched nor not_matched), IoU 0 (correct_accept False), no
    # <REFINE>: -1.6 + 0.05 = -1.55. The lenient parser reads it as matched: 1.6 + 0.05 + 0.05 +
    # 0.35 * IoU([0,26], [0,35]) = 1.7 + 0.35 * 26 / 35 = 1.96.
    assert R.VIDEOSEARCH_REWARD_WEIGHTS == (1.6, 0.05, 0.05, 0.35, 0.8, 0.5)
    t = "<start>0</start><end>26</end>"
    comps = [f"<think>the dog jumps</think><answer>{v}</answer>{t}" for v in ("Matched.", "yes")]
    comps.append("<think>wrong room</think><answer>mismatch</answer>")
    kw = dict(label=["matched", "matched", "not_matched"], gt_time=[[0, 35]] * 3, refine_quality=[0.4] * 3)
    ref, _ = R.weighted_rewards(R.VIDEOSEARCH_REWARDS, R.VIDEOSEARCH_REWARD_WEIGHTS, [None] * 3, comps, **kw)
    assert ref == pytest.approx([-1.55, -1.55, -1.55])
    lenient, _ = R.weighted_rewards(
        R.VIDEOSEARCH_REWARDS_LENIENT, R.VIDEOSEARCH_REWARD_WEIGHTS, [None] * 3, comps, **kw
    )
    # mismatch -> not_matched, correct, no tags: 1.6 + 0.05 + 0.05 + 0.35 * 0.5
    assert lenient == pytest.approx([1.96, 1.96, 1.875])


def test_videosearch_weighted_total():
    # all six, reference rules: answer 1, think 1, time format 1, IoU 4/6, refine 1, quality 0.2.
    m = "<think>the dog jumps</think> <answer>matched</answer> <start>4</start> <end>9</end> <REFINE>"
    kw = dict(label=["matched"], gt_time=[[5, 10]], refine_quality=[0.2])
    totals, parts = R.weighted_rewards(R.VIDEOSEARCH_REWARDS, R.VIDEOSEARCH_REWARD_WEIGHTS, [None], [m], **kw)
    assert totals == pytest.approx([1.6 + 0.05 + 0.05 + 0.35 * 4 / 6 + 0.8 + 0.5 * 0.2])
    assert list(parts) == [
        "answer_binary_reward", "think_format_reward", "time_format_reward",
        "time_iou_reward", "refine_presence_reward", "query_refine_quality_reward",
    ]  # fmt: skip


def test_rewards_are_deterministic_and_pure():
    comps = [episode(call(), ans("B"))]
    kw = dict(answer=["B"], problem_type=["multiple_choice"], verification=[{"answer": "B", "num_frames": 1}])
    before = json.dumps(comps)
    a = R.weighted_rewards(R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS, [None], comps, **kw)
    b = R.weighted_rewards(R.TIMESEARCH_REWARDS, R.TIMESEARCH_REWARD_WEIGHTS, [None], comps, **kw)
    assert (
        a == b == ([2.0], {"multiturn_format_reward": [1.0], "accuracy_reward": [1.0], "csv_reward": [1.0]})
    )
    assert json.dumps(comps) == before
    assert np.isfinite(a[0]).all()
