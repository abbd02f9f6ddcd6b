"""Reward functions with TRL's reward-function contract: pure, deterministic, no I/O.

Every function is ``f(prompts, completions, **kwargs) -> list[float]``; dataset columns
arrive as keyword arguments holding one value per completion (TRL's convention), extra
keywords (``trainer_state``, ``environments``...) are ignored. A *completion* is either a
string (one assistant turn) or a list of chat messages (a multi-turn episode: the assistant
and tool turns after the prompt, as :class:`agent_tools.graphs.Rollout` ``.messages[2:]``).

TimeSearch-R (v7 reward set, weights :data:`TIMESEARCH_REWARD_WEIGHTS` = ``[1.0, 0.5, 0.5]``):

- :func:`multiturn_format_reward` - 1 when every assistant turn is exactly ``<think>`` +
  ``<tool_call>`` or ``<think>`` + ``<answer>`` and at least one turn answers; a turn with
  both blocks scores the episode 0.
- :func:`accuracy_reward` / :func:`make_accuracy_reward` - scored only when exactly one
  ``<answer>`` appears across the turns; by ``problem_type``: ``multiple_choice`` (letter
  match), ``grounding`` (IoU of ``{"start_time", "end_time"}`` windows, merged), ``open_ended``
  (a judge callable if given, else normalised exact match).
- :func:`csv_reward` / :func:`make_csv_reward` - completeness self-verification:
  ``[answer score > 0.5] * [frames-only re-answer score > 0.5]``; the re-answer comes from
  the ``verification`` column (the temporal graph's ``verify`` node output).

VideoSearch-R1 (weights :data:`VIDEOSEARCH_REWARD_WEIGHTS` = ``[1.6, 0.05, 0.05, 0.35, 0.8, 0.5]``):

- :func:`answer_binary_reward` (+1 / -1), :func:`think_format_reward`, :func:`time_format_reward`,
  :func:`time_iou_reward`, :func:`refine_presence_reward`, :func:`query_refine_quality_reward`.

Helpers: :func:`score_answer` (one answer vs one truth), :func:`weighted_rewards` (TRL's
``reward_weights`` sum), :func:`assistant_turns`, :func:`normalize_text`, :func:`infonce_margin`.

Usage::

    from training.rewards import TIMESEARCH_REWARDS, TIMESEARCH_REWARD_WEIGHTS, weighted_rewards
    totals = weighted_rewards(TIMESEARCH_REWARDS, TIMESEARCH_REWARD_WEIGHTS, prompts, completions,
                              answer=["B"], problem_type=["multiple_choice"], verification=[v])
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Callable, Optional, Sequence

import numpy as np

from agent_tools import protocol
from agent_tools.errors import VideoseekError
from agent_tools.metrics import temporal_iou
from training.errors import TrainingDataError

__all__ = [
    "RewardFunc",
    "Judge",
    "PROBLEM_TYPES",
    "CSV_THRESHOLD",
    "REFINE_TOKEN",
    "REFINE_TAU",
    "TIMESEARCH_REWARDS",
    "TIMESEARCH_REWARD_WEIGHTS",
    "VIDEOSEARCH_REWARDS",
    "VIDEOSEARCH_REWARD_WEIGHTS",
    "assistant_turns",
    "normalize_text",
    "score_answer",
    "multiturn_format_reward",
    "make_accuracy_reward",
    "accuracy_reward",
    "make_csv_reward",
    "csv_reward",
    "answer_binary_reward",
    "think_format_reward",
    "time_format_reward",
    "time_iou_reward",
    "refine_presence_reward",
    "infonce_margin",
    "query_refine_quality_reward",
    "weighted_rewards",
]

RewardFunc = Callable[..., list[float]]
#: ``judge(question, prediction, truth) -> score in [0, 1]`` for open-ended answers.
Judge = Callable[[str, str, str], float]

PROBLEM_TYPES = ("multiple_choice", "grounding", "open_ended")
#: Binarisation threshold of the CSV reward: a score counts as correct when it is *above* it.
CSV_THRESHOLD = 0.5
#: The soft-query-refinement token of VideoSearch-R1's output format (one definition, in the protocol).
REFINE_TOKEN = protocol.REFINE_TOKEN
#: Temperature of the query-refine quality reward (VideoSearch-R1's ``tau``).
REFINE_TAU = 0.1


# --------------------------------------------------------------------------- helpers


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return "" if content is None else str(content)


def assistant_turns(completion: Any) -> list[str]:
    """The assistant turns of one completion, as text.

    Args:
        completion: A string (one turn), a chat-message list, or a message dict.

    Returns:
        One string per assistant turn, in order.
    """
    if isinstance(completion, str):
        return [completion]
    if isinstance(completion, dict):
        completion = [completion]
    return [_content_text(m.get("content")) for m in completion if m.get("role") == "assistant"]


def _column(kwargs: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
    """One value per completion from a dataset column (a scalar is broadcast)."""
    value = kwargs.get(name, default)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise TrainingDataError(
                f"column {name!r} has {len(value)} values for {n} completions; give one per completion"
            )
        return list(value)
    return [value] * n


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(text: Optional[str]) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD-style)."""
    t = (text or "").lower().replace("\u2019", "'")
    t = "".join(ch if ch not in string.punctuation else " " for ch in t)
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


_LETTER = re.compile(r"^\s*[\(\[]?\s*([A-Za-z])\s*(?:[\)\]\.:,]|$|\s)")
_OPTION = re.compile(r"(?:option|answer)\s*(?:is)?\s*[:\-]?\s*[\(\[]?([A-Za-z])\b", re.IGNORECASE)


def _choice_letter(text: Optional[str]) -> Optional[str]:
    """The option letter of a multiple-choice answer: ``B``, ``(B)``, ``B. a dog``, ``Option B``."""
    if not text:
        return None
    m = _LETTER.match(text)
    if m:
        return m.group(1).upper()
    m = _OPTION.search(text)
    return m.group(1).upper() if m else None


def _windows(value: Any) -> list[tuple[float, float]]:
    """Windows from a grounding answer: JSON text, a dict, a pair, or a list of those."""
    if isinstance(value, str):
        try:
            value = protocol.repair_json(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = [value]
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        value = [value]
    out: list[tuple[float, float]] = []
    for item in value if isinstance(value, (list, tuple)) else []:
        try:
            if isinstance(item, dict):
                s, e = float(item["start_time"]), float(item["end_time"])
            else:
                s, e = float(item[0]), float(item[1])
        except (KeyError, TypeError, ValueError, IndexError):
            return []
        if not (math.isfinite(s) and math.isfinite(e)):
            return []
        out.append((min(s, e), max(s, e)))
    return out


def _merge(windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for s, e in sorted(windows):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _merged_iou(pred: Sequence[tuple[float, float]], gt: Sequence[tuple[float, float]]) -> float:
    """IoU of the unions of two window sets (one window each: :func:`agent_tools.metrics.temporal_iou`)."""
    if not pred or not gt:
        return 0.0
    p, g = _merge(pred), _merge(gt)
    if len(p) == 1 and len(g) == 1:
        return float(temporal_iou(p[0], g[0]))
    inter = sum(max(0.0, min(pe, ge) - max(ps, gs)) for ps, pe in p for gs, ge in g)
    union = sum(e - s for s, e in p) + sum(e - s for s, e in g) - inter
    return inter / union if union > 0 else 0.0


def score_answer(
    prediction: Optional[str],
    truth: Any,
    problem_type: str = "open_ended",
    *,
    question: str = "",
    judge: Optional[Judge] = None,
) -> float:
    """Score one answer against the truth, in ``[0, 1]``.

    Args:
        prediction: The answer text (inside ``<answer>``), or None.
        truth: The reference: an option letter, ``{"start_time", "end_time"}`` (or a list of
            them, or JSON text), or free text.
        problem_type: One of :data:`PROBLEM_TYPES`.
        question: The question (passed to the judge).
        judge: Scores open-ended answers; without one, normalised exact match is used.

    Returns:
        The score.

    Raises:
        TrainingDataError: On an unknown ``problem_type``.
    """
    if problem_type not in PROBLEM_TYPES:
        raise TrainingDataError(f"unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}")
    if prediction is None or not str(prediction).strip():
        return 0.0
    if problem_type == "multiple_choice":
        p, t = _choice_letter(prediction), _choice_letter(str(truth))
        return 1.0 if p is not None and p == t else 0.0
    if problem_type == "grounding":
        return _merged_iou(_windows(prediction), _windows(truth))
    if judge is not None:
        return float(min(1.0, max(0.0, judge(question, str(prediction), str(truth)))))
    return 1.0 if normalize_text(prediction) == normalize_text(str(truth)) else 0.0


_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_TOOL_OPEN = re.compile(r"<tool_call>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_ANSWER_TURN = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.IGNORECASE | re.DOTALL)
_TOOL_TURN = re.compile(r"\s*<think>.*?</think>\s*<tool_call>.*?</tool_call>\s*", re.IGNORECASE | re.DOTALL)


def _answer_columns(kwargs: dict[str, Any], n: int) -> list[tuple[Any, str, str]]:
    """``(truth, problem_type, question)`` per completion from the ``answer``, ``problem_type``
    (default ``open_ended``) and ``question`` columns."""
    truths = _column(kwargs, "answer", n)
    types = _column(kwargs, "problem_type", n, "open_ended")
    questions = _column(kwargs, "question", n, "")
    return [(t, p or "open_ended", q or "") for t, p, q in zip(truths, types, questions)]


def _the_answer(turns: Sequence[str]) -> Optional[str]:
    """The answer of an episode when exactly one ``<answer>`` appears across its turns."""
    if sum(len(_ANSWER_OPEN.findall(t)) for t in turns) != 1:
        return None
    for t in turns:
        a = protocol.extract_answer(t)
        if a is not None:
            return a
    return None


# --------------------------------------------------------------------------- TimeSearch-R


def multiturn_format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when every assistant turn is well formed and one of them answers, else 0.0.

    A turn is well formed when it is, in full, ``<think>...</think>`` then either
    ``<tool_call>...</tool_call>`` or ``<answer>...</answer>`` (whitespace between allowed),
    with exactly one ``<think>`` and exactly one of the two blocks. A turn holding both a
    call and an answer fails, and so does the episode.
    """
    out = []
    for completion in completions:
        turns = assistant_turns(completion)
        ok = bool(turns)
        answered = False
        for t in turns:
            n_think, n_ans, n_tool = (
                len(_THINK_OPEN.findall(t)),
                len(_ANSWER_OPEN.findall(t)),
                len(_TOOL_OPEN.findall(t)),
            )
            if n_think != 1 or n_ans + n_tool != 1:
                ok = False
                break
            if n_ans and _ANSWER_TURN.fullmatch(t):
                answered = True
            elif not (n_tool and _TOOL_TURN.fullmatch(t)):
                ok = False
                break
        out.append(1.0 if ok and answered else 0.0)
    return out


def make_accuracy_reward(judge: Optional[Judge] = None) -> RewardFunc:
    """An accuracy reward using ``judge`` for open-ended questions.

    Columns: ``answer`` (the truth), ``problem_type`` (default ``open_ended``), ``question``
    (for the judge).

    Args:
        judge: ``(question, prediction, truth) -> [0, 1]``; None uses normalised exact match.

    Returns:
        The reward function (named ``accuracy_reward``).
    """

    def accuracy_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        out = []
        for completion, (truth, ptype, q) in zip(completions, _answer_columns(kwargs, len(completions))):
            pred = _the_answer(assistant_turns(completion))
            out.append(score_answer(pred, truth, ptype, question=q, judge=judge))
        return out

    return accuracy_reward


#: Accuracy reward without a judge (open-ended answers by normalised exact match).
accuracy_reward = make_accuracy_reward()


def make_csv_reward(judge: Optional[Judge] = None, threshold: float = CSV_THRESHOLD) -> RewardFunc:
    """The completeness self-verification (CSV) reward.

    ``[score(answer) > threshold] * [score(re-answer) > threshold]``, where the re-answer is
    the policy's reply to the question from the searched frames alone (column
    ``verification``: the temporal graph's ``verify`` output, a dict with ``answer`` and
    ``sufficient``, or the re-answer text). No verification, no searched frames, or an
    "I don't know" re-answer scores 0.

    Args:
        judge: As in :func:`make_accuracy_reward`.
        threshold: Scores strictly above it count as correct.

    Returns:
        The reward function (named ``csv_reward``).
    """

    def csv_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        n = len(completions)
        verifications = _column(kwargs, "verification", n)
        out = []
        for completion, (truth, ptype, q), ver in zip(completions, _answer_columns(kwargs, n), verifications):
            pred = _the_answer(assistant_turns(completion))
            main = score_answer(pred, truth, ptype, question=q, judge=judge)
            if isinstance(ver, dict):
                re_answer = ver.get("answer")
                if ver.get("sufficient") is False or not ver.get("num_frames", 1):
                    re_answer = None
            else:
                re_answer = ver
            if re_answer is None or protocol.is_insufficient(re_answer):
                counter = 0.0
            else:
                counter = score_answer(re_answer, truth, ptype, question=q, judge=judge)
            out.append(float(main > threshold) * float(counter > threshold))
        return out

    return csv_reward


#: CSV reward without a judge.
csv_reward = make_csv_reward()

TIMESEARCH_REWARDS: tuple[RewardFunc, ...] = (multiturn_format_reward, accuracy_reward, csv_reward)
TIMESEARCH_REWARD_WEIGHTS: tuple[float, ...] = (1.0, 0.5, 0.5)


# --------------------------------------------------------------------------- VideoSearch-R1


def _verdict(text: str) -> Optional[bool]:
    """True for ``matched``, False for ``not_matched``, None when the answer is missing or unusable."""
    return protocol.parse_verification(text).matched


def _truth_labels(kwargs: dict[str, Any], n: int) -> list[Optional[bool]]:
    """Truth per completion: column ``label`` ("matched"/"not_matched"), or
    ``retrieved_video`` == ``gt_video``."""
    if "label" in kwargs:
        out = []
        for v in _column(kwargs, "label", n):
            if isinstance(v, bool) or v is None:
                out.append(v)
            else:
                out.append(protocol.parse_verification(f"<answer>{v}</answer>").matched)
        return out
    if "retrieved_video" in kwargs and "gt_video" in kwargs:
        return [r == g for r, g in zip(_column(kwargs, "retrieved_video", n), _column(kwargs, "gt_video", n))]
    raise TrainingDataError(
        "VideoSearch-R1 rewards need a 'label' column (matched / not_matched) or both "
        "'retrieved_video' and 'gt_video' columns"
    )


def _text(completion: Any) -> str:
    turns = assistant_turns(completion)
    return turns[-1] if turns else ""


_TIME_TAG = re.compile(r"<(start|end)>", re.IGNORECASE)


def answer_binary_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """+1 when the ``<answer>`` label (matched / not_matched) equals the truth, else -1."""
    truths = _truth_labels(kwargs, len(completions))
    return [
        1.0 if (v := _verdict(_text(c))) is not None and v == t else -1.0 for c, t in zip(completions, truths)
    ]


def think_format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 when the last ``<think>...</think>`` block is non-empty, else 0."""
    out = []
    for c in completions:
        blocks = re.findall(r"<think>(.*?)</think>", _text(c), re.IGNORECASE | re.DOTALL)
        out.append(1.0 if blocks and blocks[-1].strip() else 0.0)
    return out


def _has_times(text: str) -> tuple[bool, bool]:
    tags = {m.lower() for m in _TIME_TAG.findall(text)}
    has_start = "start" in tags and re.search(r"</start>", text, re.IGNORECASE) is not None
    has_end = "end" in tags and re.search(r"</end>", text, re.IGNORECASE) is not None
    return has_start, has_end


def time_format_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 when ``<start>``/``<end>`` are both present exactly when the answer is ``matched``."""
    out = []
    for c in completions:
        text = _text(c)
        v = _verdict(text)
        s, e = _has_times(text)
        if v is True:
            out.append(1.0 if s and e else 0.0)
        elif v is False:
            out.append(1.0 if not s and not e else 0.0)
        else:
            out.append(0.0)
    return out


def time_iou_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """IoU with ``gt_time`` for a correct ``matched``; 0.5 for a correct ``not_matched`` without
    time tags; 0 otherwise (wrong answer, missing or reversed times)."""
    n = len(completions)
    truths = _truth_labels(kwargs, n)
    gts = _column(kwargs, "gt_time", n)
    out = []
    for c, t, gt in zip(completions, truths, gts):
        text = _text(c)
        verdict = protocol.parse_verification(text)
        v = verdict.matched
        if v is None or v != t:
            out.append(0.0)
            continue
        s, e = _has_times(text)
        if v is False:
            out.append(0.5 if not s and not e else 0.0)
            continue
        if verdict.start is None or verdict.end is None or gt is None:
            out.append(0.0)
            continue
        try:
            out.append(float(temporal_iou((verdict.start, verdict.end), tuple(float(x) for x in gt))))
        except VideoseekError:
            out.append(0.0)
    return out


def refine_presence_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1 when the completion emits :data:`REFINE_TOKEN`, else 0."""
    return [1.0 if REFINE_TOKEN in _text(c) else 0.0 for c in completions]


def infonce_margin(q: Any, v_pos: Any, v_negs: Any, tau: float = REFINE_TAU) -> float:
    """``sim(q, v_pos) - tau * logsumexp(sim(q, v_negs) / tau)`` with cosine similarity.

    Args:
        q: Query vector ``(D,)``.
        v_pos: Positive video vector ``(D,)``.
        v_negs: Negative video vectors ``(N, D)`` (N >= 1).
        tau: Temperature.

    Returns:
        The margin (higher is better).

    Raises:
        TrainingDataError: On shape mismatches or no negatives.
    """
    qv = np.asarray(q, dtype=np.float64).ravel()
    pos = np.asarray(v_pos, dtype=np.float64).ravel()
    negs = np.asarray(v_negs, dtype=np.float64)
    if negs.ndim == 1:
        negs = negs[None]
    if negs.shape[0] == 0 or negs.shape[1:] != qv.shape or pos.shape != qv.shape:
        raise TrainingDataError(
            f"q {qv.shape}, v_pos {pos.shape} and v_negs {negs.shape} must share the width D, with "
            "at least one negative"
        )

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

    qv, pos, negs = unit(qv), unit(pos), unit(negs)
    s_neg = negs @ qv / tau
    m = float(s_neg.max())
    lse = m + math.log(float(np.exp(s_neg - m).sum()))
    return float(pos @ qv) - tau * lse


def query_refine_quality_reward(
    prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
) -> list[float]:
    """The retrieval quality of the refined query (VideoSearch-R1's ``r_query_refine_quality``).

    Either a precomputed column ``refine_quality`` (the value a trainer injects), or the
    vectors ``q_final``, ``v_pos``, ``v_negs`` scored by :func:`infonce_margin` (``tau``
    keyword, default 0.1), times ``margin_scale`` (default 1). A completion without
    :data:`REFINE_TOKEN` or without a refined query scores 0.
    """
    n = len(completions)
    scale = 1.0 if kwargs.get("margin_scale") is None else float(kwargs["margin_scale"])  # 0 is a valid scale
    tau = REFINE_TAU if kwargs.get("tau") is None else float(kwargs["tau"])
    if not tau > 0:
        raise TrainingDataError(f"tau must be > 0, got {tau}")
    if "refine_quality" in kwargs:
        values = _column(kwargs, "refine_quality", n)
        return [
            0.0 if v is None or REFINE_TOKEN not in _text(c) else float(v) * scale
            for c, v in zip(completions, values)
        ]
    qs, pos, negs = (_column(kwargs, k, n) for k in ("q_final", "v_pos", "v_negs"))
    out = []
    for c, q, p, ng in zip(completions, qs, pos, negs):
        if q is None or p is None or ng is None or REFINE_TOKEN not in _text(c):
            out.append(0.0)
        else:
            out.append(infonce_margin(q, p, ng, tau) * scale)
    return out


VIDEOSEARCH_REWARDS: tuple[RewardFunc, ...] = (
    answer_binary_reward,
    think_format_reward,
    time_format_reward,
    time_iou_reward,
    refine_presence_reward,
    query_refine_quality_reward,
)
VIDEOSEARCH_REWARD_WEIGHTS: tuple[float, ...] = (1.6, 0.05, 0.05, 0.35, 0.8, 0.5)


def weighted_rewards(
    funcs: Sequence[RewardFunc],
    weights: Sequence[float],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    **kwargs: Any,
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted sum of reward functions, as TRL's ``reward_weights`` computes it.

    Args:
        funcs: Reward functions.
        weights: One weight per function.
        prompts: Passed through.
        completions: Passed through.
        **kwargs: Dataset columns.

    Returns:
        ``(totals, per_function)``: totals per completion, and each function's raw values by name.

    Raises:
        TrainingDataError: If the weights do not match the functions.
    """
    if len(funcs) != len(weights):
        raise TrainingDataError(
            f"{len(weights)} reward weights for {len(funcs)} reward functions; give one each"
        )
    totals = [0.0] * len(completions)
    parts: dict[str, list[float]] = {}
    for f, w in zip(funcs, weights):
        values = [float(v) for v in f(prompts, completions, **kwargs)]
        parts[getattr(f, "__name__", repr(f))] = values
        totals = [t + float(w) * v for t, v in zip(totals, values)]
    return totals, parts
