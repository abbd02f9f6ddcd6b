"""TimeSearch-R's v7 reward set (``--reward_func v7``), reproduced; plus named opt-in variants.

Reference: ``Time-Search/TimeSearch-R`` @ 8d51dbc, ``time_r1/reward/v7.py`` (the rewards and
weights ``[1.0, 0.5, 0.5]``) and ``time_r1/trainer/grpo_trainer_env.py`` (``get_visual_trace``
and the ``use_counterfactual_reasoning`` branch, which supply the re-answer). Our code, their rules:

- Tags are case-sensitive, as there (``<Answer>`` is not an answer).
- :func:`multiturn_format_reward` - per text part of each assistant message: a part with both
  ``<answer>`` and ``<tool_call>`` zeroes the episode; a part with ``<answer>`` must be, once
  stripped, ``<think>.*?</think>\\s*<answer>.*?</answer>`` in full (DOTALL, so repeated blocks
  pass); a part with only ``<tool_call>`` the same with ``<tool_call>``; parts with neither
  (chatter) are not checked; at least one answer part is required.
- :func:`accuracy_reward` - the first ``<answer>(.*?)</answer>`` of each part (an unclosed
  ``<answer>B`` is no answer); scored only when exactly one part holds one, and 0 when any
  part holds both an answer and a tool call. :func:`score_answer` then scores by type:
  ``multiple_choice`` - letters via :func:`extract_choice_letter` (``^[A-J][.\\s]|^[A-J]$``
  after ``strip``: ``B``, ``B.``, ``B text``; not ``(B)``, ``b``, ``Option B``);
  ``grounding`` - a JSON object ``{"start_time", "end_time"}`` (a leading ```` ```json ````
  fence removed), numbers, both >= 0, start <= end, else 0; IoU by :func:`compute_iou`
  (merged intervals; an empty union scores 1, so any zero-length answer against a
  zero-length truth scores 1); ``sequence`` - equal ``(a)(c)(b)`` index strings;
  ``open_ended`` - the judge (:mod:`training.judge`), or normalised exact match offline.
- :func:`csv_reward` - ``a * c`` where ``a`` is the accuracy score and ``c`` the score of
  the frames-only re-answer, each set to 1 when above 0.5 and kept as is otherwise
  (fractional products survive: 0.4 x 1 = 0.4). The re-answer is the raw reply text;
  without searched frames it is ``"I don't know"`` (so, as there, it reads as letter ``I``).

Where we differ on purpose (malformed data, not scoring): a ``multiple_choice`` truth without
a strict letter, a ``sequence`` truth without an index, an invalid ``grounding`` truth or an
unknown ``problem_type`` raise :class:`~training.errors.TrainingDataError` (the reference
would score every non-letter answer 1, or fall back to the judge); a non-finite time scores
0 (the reference computes NaN).

Named opt-in variants (not the reference; in RL every tolerance is a surface to hack):

- ``lenient=True`` (:data:`accuracy_reward_lenient`, :data:`csv_reward_lenient`): letters
  also from ``(B)``, ``b``, ``Option B``, ``The answer is B``; grounding JSON repaired
  (single quotes, bare ``[s, e]`` pairs, lists of windows, reversed ends swapped);
  case-insensitive tags and an unclosed ``<answer>``. For scoring models that were not
  trained on the strict format (evaluation of third-party policies), not for RL.
- :func:`multiturn_format_reward_strict`: the project's stricter check (every assistant turn
  is exactly one ``<think>`` plus exactly one ``<tool_call>`` or ``<answer>``; chatter turns
  and repeated blocks fail). It closes the two gaps the reference leaves open.
- ``make_csv_reward(binary=True)``: ``[a > 0.5] * [c > 0.5]`` (no fractional credit).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Optional, Sequence

from agent_tools import protocol
from training.errors import TrainingDataError
from training.rewards._common import (
    Judge,
    RewardFunc,
    assistant_messages,
    column,
    message_text_parts,
    normalize_text,
    trl_reward,
)

__all__ = [
    "PROBLEM_TYPES",
    "CSV_THRESHOLD",
    "NO_VISUAL_TRACE_ANSWER",
    "TIMESEARCH_REWARDS",
    "TIMESEARCH_REWARD_WEIGHTS",
    "extract_choice_letter",
    "extract_sequence_index",
    "compute_iou",
    "score_answer",
    "episode_answer",
    "multiturn_format_reward",
    "multiturn_format_reward_strict",
    "make_accuracy_reward",
    "accuracy_reward",
    "accuracy_reward_lenient",
    "make_csv_reward",
    "csv_reward",
    "csv_reward_lenient",
]

PROBLEM_TYPES = ("multiple_choice", "grounding", "open_ended", "sequence")
#: A score *above* this counts as fully correct in the CSV reward.
CSV_THRESHOLD = 0.5
#: The re-answer TimeSearch-R scores when the episode returned no frames.
NO_VISUAL_TRACE_ANSWER = "I don't know"

# --------------------------------------------------------------------------- answer scoring

_STRICT_LETTER = re.compile(r"^[ABCDEFGHIJ][\.\s]|^[ABCDEFGHIJ]$")
_LENIENT_LETTER = re.compile(r"^\s*[\(\[]?\s*([A-Ja-j])\s*(?:[\)\]\.:,]|$|\s)")
_LENIENT_OPTION = re.compile(r"(?:option|answer)\s*(?:is)?\s*[:\-]?\s*[\(\[]?([A-Ja-j])\b", re.IGNORECASE)
_SEQUENCE = re.compile(r"(\([a-g,1-6]\))")


def extract_choice_letter(text: Any, *, lenient: bool = False) -> str:
    """The option letter of a multiple-choice answer, or ``""``.

    Strict (TimeSearch-R v7 ``extract_characters_regex(strict=True)``): ``^[A-J][.\\s]`` or
    ``^[A-J]$`` after stripping. Lenient (opt-in): also ``(B)``, ``b``, ``Option B``,
    ``The answer is B``.

    Args:
        text: The answer text.
        lenient: Use the tolerant parser.

    Returns:
        The upper-case letter, or ``""``.
    """
    s = str(text or "").strip()
    m = _STRICT_LETTER.search(s)
    if m:
        return m.group(0)[0]
    if not lenient:
        return ""
    m = _LENIENT_LETTER.match(s) or _LENIENT_OPTION.search(s)
    return m.group(1).upper() if m else ""


def extract_sequence_index(text: Any) -> str:
    """``"(a)(c)(b)"`` from a sequence answer (TimeSearch-R v7 ``extract_sequence_index``)."""
    return "".join(_SEQUENCE.findall(str(text or "")))


def _merge(intervals: Sequence[Sequence[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for s, e in sorted(([float(a), float(b)] for a, b in intervals), key=lambda x: x[0]):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def compute_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """IoU of two sets of ``[start, end]`` intervals after merging (TimeSearch-R v7 ``compute_iou``).

    An empty union (both sets zero-length) scores 1.0, as there.
    """
    ma, mb = _merge(a), _merge(b)
    union_len = sum(e - s for s, e in ma) + sum(e - s for s, e in mb)
    inter = 0.0
    i = j = 0
    while i < len(ma) and j < len(mb):
        s, e = max(ma[i][0], mb[j][0]), min(ma[i][1], mb[j][1])
        if s < e:
            inter += e - s
        if ma[i][1] < mb[j][1]:
            i += 1
        else:
            j += 1
    union = union_len - inter
    return 1.0 if union == 0 else inter / union


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float))


def _strict_window(answer: str) -> Optional[list[float]]:
    """v7 ``is_valid_json_time_format``: a JSON object, numbers, both >= 0, start <= end."""
    if answer.startswith("```json"):
        answer = answer.replace("```json", "").replace("```", "").strip()
    try:
        item = json.loads(answer)
        s, e = item.get("start_time"), item.get("end_time")
        if s is None or e is None or s < 0 or e < 0 or s > e or not (_is_number(s) and _is_number(e)):
            return None
    except (ValueError, TypeError, AttributeError):
        return None
    s, e = float(s), float(e)
    return [s, e] if math.isfinite(s) and math.isfinite(e) else None


def _lenient_windows(value: Any) -> list[list[float]]:
    """Windows from repaired JSON, a dict, a pair, or a list of those (ends swapped if reversed)."""
    if isinstance(value, str):
        try:
            value = protocol.repair_json(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(x) for x in value):
        value = [value]
    out: list[list[float]] = []
    for item in value if isinstance(value, (list, tuple)) else []:
        try:
            s, e = (item["start_time"], item["end_time"]) if isinstance(item, dict) else (item[0], item[1])
            s, e = float(s), float(e)
        except (KeyError, TypeError, ValueError, IndexError):
            return []
        if not (math.isfinite(s) and math.isfinite(e)):
            return []
        out.append([min(s, e), max(s, e)])
    return out


def _truth_windows(truth: Any) -> list[list[float]]:
    """The truth of a grounding row: ``{"start_time", "end_time"}`` (dict or JSON text) or a list of them."""
    value = truth
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        try:
            s, e = float(item["start_time"]), float(item["end_time"])
        except (KeyError, TypeError, ValueError):
            s = e = math.nan
        if not (math.isfinite(s) and math.isfinite(e) and 0 <= s <= e):
            raise TrainingDataError(
                f"grounding truth {truth!r} must be {{'start_time': s, 'end_time': e}} with 0 <= s <= e "
                "(a dict, its JSON text, or a list of them)"
            )
        out.append([s, e])
    return out


def score_answer(
    prediction: Optional[str],
    truth: Any,
    problem_type: str = "open_ended",
    *,
    question: str = "",
    judge: Optional[Judge] = None,
    lenient: bool = False,
) -> float:
    """Score one answer against the truth, in ``[0, 1]`` (TimeSearch-R v7 ``general_answer_score``).

    Args:
        prediction: The answer text as written inside ``<answer>`` (not stripped, as there),
            or None (no answer: 0).
        truth: An option letter, ``{"start_time", "end_time"}`` (dict, JSON text, or a list),
            a ``(a)(b)`` sequence, or free text.
        problem_type: One of :data:`PROBLEM_TYPES`.
        question: Passed to the judge.
        judge: Scores open-ended answers (:mod:`training.judge`); None uses normalised exact
            match (the offline fallback).
        lenient: The tolerant letter and window parsers (module docstring).

    Returns:
        The score.

    Raises:
        TrainingDataError: On an unknown ``problem_type`` or a truth that cannot be scored.
    """
    if problem_type not in PROBLEM_TYPES:
        raise TrainingDataError(f"unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}")
    if problem_type == "multiple_choice":
        want = extract_choice_letter(truth, lenient=lenient)
        if not want:
            raise TrainingDataError(f"multiple_choice truth {truth!r} must start with an option letter A-J")
        return (
            1.0
            if prediction is not None and extract_choice_letter(prediction, lenient=lenient) == want
            else 0.0
        )
    if problem_type == "sequence":
        want = extract_sequence_index(truth)
        if not want:
            raise TrainingDataError(f"sequence truth {truth!r} holds no '(a)'-style index")
        return 1.0 if prediction is not None and extract_sequence_index(prediction) == want else 0.0
    if problem_type == "grounding":
        gt = _truth_windows(truth)
        if prediction is None:
            return 0.0
        if lenient:
            pred = _lenient_windows(prediction)
        else:
            one = _strict_window(str(prediction))
            pred = [one] if one is not None else []
        return compute_iou(pred, gt) if pred else 0.0
    if prediction is None:
        return 0.0
    if judge is not None:
        return float(min(1.0, max(0.0, float(judge(question, str(prediction), str(truth))))))
    return (
        1.0
        if normalize_text(prediction) and normalize_text(prediction) == normalize_text(str(truth))
        else 0.0
    )


# --------------------------------------------------------------------------- reading episodes

_FLAGS = {False: re.DOTALL, True: re.DOTALL | re.IGNORECASE}


def _has(text: str, tag: str, lenient: bool) -> bool:
    return re.search(f"<{tag}>", text, re.IGNORECASE if lenient else 0) is not None


def _parts(completion: Any) -> list[str]:
    return [p for m in assistant_messages(completion) for p in message_text_parts(m)]


def episode_answer(completion: Any, *, lenient: bool = False) -> tuple[Optional[str], bool]:
    """The answer of an episode as TimeSearch-R v7 ``compute_answer_score`` reads it.

    Args:
        completion: A completion (string, message, or message list).
        lenient: Case-insensitive tags and an unclosed ``<answer>`` accepted.

    Returns:
        ``(answer, refused)``: ``answer`` is the first ``<answer>...</answer>`` of the only text
        part holding one (None when zero or several parts do); ``refused`` is True when a part
        holds both ``<answer>`` and ``<tool_call>`` (the episode then scores 0).
    """
    pattern = r"<answer>(.*?)(?:</answer>|$)" if lenient else r"<answer>(.*?)</answer>"
    found: list[str] = []
    for text in _parts(completion):
        if _has(text, "answer", lenient) and _has(text, "tool_call", lenient):
            return None, True
        m = re.search(pattern, text, _FLAGS[lenient])
        if m:
            found.append(m.group(1))
    return (found[0] if len(found) == 1 else None), False


def _rows(kwargs: dict[str, Any], n: int) -> list[tuple[Any, str, str]]:
    """``(truth, problem_type, question)`` per completion (columns ``answer``, ``problem_type``
    (default ``open_ended``), ``question``)."""
    if "answer" not in kwargs:
        raise TrainingDataError("TimeSearch-R rewards need an 'answer' column (the ground truth)")
    truths = column(kwargs, "answer", n)
    types = column(kwargs, "problem_type", n, "open_ended")
    questions = column(kwargs, "question", n, "")
    return [(t, p or "open_ended", q or "") for t, p, q in zip(truths, types, questions)]


# --------------------------------------------------------------------------- format


_ANSWER_TURN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_TOOL_TURN = re.compile(r"<think>.*?</think>\s*<tool_call>.*?</tool_call>", re.DOTALL)


@trl_reward
def multiturn_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
    """1.0 when the episode's format passes TimeSearch-R v7 ``multiturn_format_check``, else 0.0.

    Args:
        completions: TRL completions (strings or message lists).
        **kwargs: Ignored.

    Returns:
        One reward per completion.
    """
    out: list[Optional[float]] = []
    for completion in completions:
        answers, calls, ok = 0, 0, True
        for text in _parts(completion):
            has_answer, has_call = "<answer>" in text, "<tool_call>" in text
            if has_answer and has_call:
                ok = False
                break
            if has_answer:
                answers += 1
                ok = ok and _ANSWER_TURN.fullmatch(text.strip()) is not None
            elif has_call:
                calls += 1
                ok = ok and _TOOL_TURN.fullmatch(text.strip()) is not None
        out.append(1.0 if ok and answers > 0 else 0.0)
    return out


_STRICT_ANSWER_TURN = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
_STRICT_TOOL_TURN = re.compile(r"\s*<think>.*?</think>\s*<tool_call>.*?</tool_call>\s*", re.DOTALL)


@trl_reward
def multiturn_format_reward_strict(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
    """Opt-in, stricter than the reference: every assistant turn is exactly one ``<think>`` block
    plus exactly one ``<tool_call>`` or ``<answer>`` block (chatter turns and repeated blocks
    fail), and one turn answers.

    Args:
        completions: TRL completions.
        **kwargs: Ignored.

    Returns:
        One reward per completion.
    """
    out: list[Optional[float]] = []
    for completion in completions:
        turns = ["".join(message_text_parts(m)) for m in assistant_messages(completion)]
        ok, answered = bool(turns), False
        for t in turns:
            n_think, n_ans, n_tool = t.count("<think>"), t.count("<answer>"), t.count("<tool_call>")
            if n_think != 1 or n_ans + n_tool != 1:
                ok = False
                break
            if n_ans and _STRICT_ANSWER_TURN.fullmatch(t):
                answered = True
            elif not (n_tool and _STRICT_TOOL_TURN.fullmatch(t)):
                ok = False
                break
        out.append(1.0 if ok and answered else 0.0)
    return out


# --------------------------------------------------------------------------- accuracy and CSV


def _prefetch(judge: Optional[Judge], items: list[tuple[str, Optional[str], Any]]) -> None:
    """Let a judge with ``prefetch`` (:class:`training.judge.LLMJudge`) score a batch concurrently."""
    if judge is not None and hasattr(judge, "prefetch"):
        judge.prefetch([(q, a, str(t)) for q, a, t in items if a is not None])


def make_accuracy_reward(judge: Optional[Judge] = None, *, lenient: bool = False) -> RewardFunc:
    """TimeSearch-R v7 ``accuracy_reward`` with a given open-ended judge.

    Columns: ``answer`` (the truth), ``problem_type`` (default ``open_ended``), ``question``.

    Args:
        judge: ``(question, prediction, truth) -> [0, 1]`` (:func:`training.judge.build_judge`);
            None uses normalised exact match (offline fallback).
        lenient: The opt-in tolerant parsers (module docstring).

    Returns:
        The reward function (named ``accuracy_reward`` or ``accuracy_reward_lenient``).
    """

    def accuracy_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        rows = _rows(kwargs, len(completions))
        answers = [episode_answer(c, lenient=lenient) for c in completions]
        _prefetch(
            judge, [(q, a, t) for (t, p, q), (a, r) in zip(rows, answers) if p == "open_ended" and not r]
        )
        return [
            0.0 if refused else score_answer(answer, truth, ptype, question=q, judge=judge, lenient=lenient)
            for (answer, refused), (truth, ptype, q) in zip(answers, rows)
        ]

    accuracy_reward.__name__ = accuracy_reward.__qualname__ = (
        "accuracy_reward_lenient" if lenient else "accuracy_reward"
    )
    return trl_reward(accuracy_reward)


def _re_answer(kwargs: dict[str, Any], n: int) -> list[str]:
    """The frames-only re-answer per completion.

    From the ``verification`` column (the temporal graph's ``verify`` output: a dict with
    ``answer`` and ``num_frames``, or the reply text), TimeSearch-R's ``visual_trace_completions``,
    or ``environments[i].verification``. No frames or no re-answer gives ``"I don't know"``.
    """
    if "verification" in kwargs:
        values = column(kwargs, "verification", n)
    elif "visual_trace_completions" in kwargs:
        values = column(kwargs, "visual_trace_completions", n)
    elif kwargs.get("environments") is not None:
        envs = list(kwargs["environments"])
        if len(envs) != n:
            raise TrainingDataError(f"{len(envs)} environments for {n} completions")
        values = [getattr(e, "verification", None) for e in envs]
    else:
        raise TrainingDataError(
            "the CSV reward needs the frames-only re-answer: a 'verification' column, "
            "'visual_trace_completions', or environments with a 'verification' attribute"
        )
    out = []
    for v in values:
        if isinstance(v, dict):
            v = v.get("answer") if v.get("num_frames", 1) else None
        out.append(NO_VISUAL_TRACE_ANSWER if v is None else str(v))
    return out


def make_csv_reward(
    judge: Optional[Judge] = None,
    *,
    lenient: bool = False,
    binary: bool = False,
    threshold: float = CSV_THRESHOLD,
) -> RewardFunc:
    """TimeSearch-R v7 ``counterfactual_reasoning_reward`` (completeness self-verification).

    ``a * c``: ``a`` the episode's answer score, ``c`` the score of the frames-only re-answer
    (the whole reply text, scored as an answer); each becomes 1 when above ``threshold``.

    Args:
        judge: As in :func:`make_accuracy_reward`.
        lenient: The opt-in tolerant parsers.
        binary: Opt-in: ``[a > threshold] * [c > threshold]`` (no fractional credit).
        threshold: 0.5 in the reference.

    Returns:
        The reward function (named ``csv_reward`` or ``csv_reward_lenient``).
    """

    def csv_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        n = len(completions)
        rows, re_answers = _rows(kwargs, n), _re_answer(kwargs, n)
        answers = [episode_answer(c, lenient=lenient) for c in completions]
        _prefetch(
            judge,
            [
                (q, x, t)
                for (t, p, q), (a, r), c in zip(rows, answers, re_answers)
                if p == "open_ended" and not r
                for x in (a, c)
            ],
        )
        out: list[Optional[float]] = []
        for (answer, refused), (truth, ptype, q), re_answer in zip(answers, rows, re_answers):
            if refused:
                out.append(0.0)
                continue
            a = score_answer(answer, truth, ptype, question=q, judge=judge, lenient=lenient)
            c = score_answer(re_answer, truth, ptype, question=q, judge=judge, lenient=lenient)
            if binary:
                out.append(float(a > threshold) * float(c > threshold))
            else:
                out.append((1.0 if a > threshold else a) * (1.0 if c > threshold else c))
        return out

    csv_reward.__name__ = csv_reward.__qualname__ = "csv_reward_lenient" if lenient else "csv_reward"
    return trl_reward(csv_reward)


#: Accuracy without a judge (open-ended answers by normalised exact match: the offline fallback).
accuracy_reward = make_accuracy_reward()
#: Opt-in tolerant accuracy (not for RL; see the module docstring).
accuracy_reward_lenient = make_accuracy_reward(lenient=True)
#: CSV without a judge.
csv_reward = make_csv_reward()
#: Opt-in tolerant CSV.
csv_reward_lenient = make_csv_reward(lenient=True)

#: The v7 set and its weights, in ``scripts/train.sh`` order.
TIMESEARCH_REWARDS: tuple[RewardFunc, ...] = (multiturn_format_reward, accuracy_reward, csv_reward)
TIMESEARCH_REWARD_WEIGHTS: tuple[float, ...] = (1.0, 0.5, 0.5)
