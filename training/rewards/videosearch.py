"""VideoSearch-R1's six stage-2 GRPO rewards, reproduced; plus a named opt-in lenient variant.

Reference: ``mlvlab/VideoSearch-R1`` @ f6f2113: ``videosearch_r1/reward/reward.py`` (the
functions), ``videosearch_r1/trainer/grpo_vllm_trainer_qwen3_vl.py`` (``_extract_answer_tag``,
the per-turn ``reward_meta``, the joined completion text, ``_populate_latent_improve_meta``),
``scripts/internal/stage2/train_stage2.bash`` (order and weights 1.6 / 0.05 / 0.05 / 0.35 /
0.8 / 0.5). Our code, their rules:

- The *final turn* is the last assistant turn that is not a pure search call (a turn with a
  non-empty ``<search>`` query, or here also a ``<tool_call>``, and no ``<answer>``). The
  *joined text* is those turns joined by ``"\\n"`` (the trainer's ``completions_text``).
- Label (:func:`extract_answer_label`): the *last* ``<answer>...</answer>`` (case-insensitive),
  stripped, lower-cased, spaces to ``_``; ``match``/``matched`` -> ``matched``;
  ``not_match``/``not_matched``/``notmatch`` -> ``not_matched``; anything else (``Matched.``,
  ``yes``, ``mismatch``, no tag) stays as is and is correct for no truth.
- :func:`answer_binary_reward` (``r_answer_binary``): +1 when the final label equals the truth,
  else -1 (0 when no turn answers: the reference's ``reward_meta`` then has no turn).
- :func:`think_format_reward` (``r_think_format``): 1 when the last ``<think>`` block of the
  joined text is non-empty.
- :func:`time_format_reward` (``r_time_format``): ``not_matched`` and no ``<start>..</start>`` +
  ``<end>..</end>`` pair anywhere in the joined text -> 1; ``matched`` with the pair -> 1; else 0.
- :func:`time_iou_reward` (``r_time_iou``): a wrong verdict -> 0; a correct ``not_matched``
  -> 0.5 without time tags, 0 with; a correct ``matched`` -> IoU of the *last* numeric
  ``<start>``/``<end>`` (``[-+]?\\d+(\\.\\d+)?``: ``3s`` is no time) with ``gt_time`` (``end >
  start`` required on both sides, else 0).
- :func:`refine_presence_reward` (``r_refine_presence``): 1 when the final turn holds ``<REFINE>``
  (when no turn answers, any assistant turn: the reference's ``improve_has_refine``).
- :func:`query_refine_quality_reward` (``r_query_refine_quality``): ``p_after - p_before``,
  the InfoNCE probability of the positive (tau 0.1, unit vectors) under the refined query
  vs the original one (:func:`refine_quality_delta`); 0 when there are no negatives; the
  no-refine value (0.0, ``GRPO_NO_REFINE_QUALITY_PENALTY``) when no assistant turn holds
  ``<REFINE>`` or the vectors are missing. The margin formula in the reference docstring is
  not what its trainer computes; it is kept as the opt-in ``mode="margin"``.

Truth columns: ``label`` (``matched`` / ``not_matched`` / bool), or ``retrieved_video`` and
``gt_video`` (matched iff the retrieved id is non-empty and equal). ``gt_time`` = ``[start, end]``.
Refine quality: ``refine_quality`` (precomputed), or ``q_orig``, ``q_final``, ``v_pos``, ``v_negs``.

Opt-in ``lenient=True`` (:data:`VIDEOSEARCH_REWARDS_LENIENT`, our inference-time parser
:func:`agent_tools.protocol.parse_verification`): ``Matched.``/``yes`` read as matched,
``mismatch``/``no`` as not matched, ``3s`` as 3, reversed times swapped, tags case-insensitive
and unclosed. With it a ``<answer>Matched.</answer>`` reply earns +1.96 where the reference
gives -1.55 (tested), which is why it is not the default for RL.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional, Sequence

import numpy as np

from agent_tools import protocol
from training.errors import TrainingDataError
from training.rewards._common import RewardFunc, assistant_turns, column, trl_reward

__all__ = [
    "REFINE_TOKEN",
    "REFINE_TAU",
    "VIDEOSEARCH_REWARDS",
    "VIDEOSEARCH_REWARDS_LENIENT",
    "VIDEOSEARCH_REWARD_WEIGHTS",
    "extract_answer_label",
    "answer_binary_reward",
    "think_format_reward",
    "time_format_reward",
    "time_iou_reward",
    "refine_presence_reward",
    "query_refine_quality_reward",
    "make_query_refine_quality_reward",
    "make_videosearch_rewards",
    "infonce_positive_probability",
    "refine_quality_delta",
    "infonce_margin",
]

#: The soft-query-refinement token (one definition, in the protocol).
REFINE_TOKEN = protocol.REFINE_TOKEN
#: Temperature of the refine-quality InfoNCE (``QUERY_REFINE_TEMP``).
REFINE_TAU = 0.1

_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.IGNORECASE | re.DOTALL)
_SEARCH = re.compile(r"<search>(.*?)</search>", re.IGNORECASE | re.DOTALL)
_THINK = re.compile(r"<think>([\s\S]*?)</think>", re.IGNORECASE)
_START_ANY = re.compile(r"<start>\s*[\s\S]*?\s*</start>", re.IGNORECASE)
_END_ANY = re.compile(r"<end>\s*[\s\S]*?\s*</end>", re.IGNORECASE)
_START = re.compile(r"<start>\s*([-+]?\d+(?:\.\d+)?)\s*</start>", re.IGNORECASE)
_END = re.compile(r"<end>\s*([-+]?\d+(?:\.\d+)?)\s*</end>", re.IGNORECASE)


def extract_answer_label(text: Optional[str], *, lenient: bool = False) -> str:
    """The verdict label of a reply (VideoSearch-R1 ``_extract_answer_tag``).

    Args:
        text: The reply.
        lenient: Use :func:`agent_tools.protocol.parse_verification` instead (opt-in).

    Returns:
        ``"matched"``, ``"not_matched"``, ``""`` (no answer) or the normalised unknown label.
    """
    if not text:
        return ""
    if lenient:
        m = protocol.parse_verification(text).matched
        return "" if m is None else ("matched" if m else "not_matched")
    hits = _ANSWER.findall(text)
    if not hits:
        return ""
    val = hits[-1].strip().lower().replace(" ", "_")
    if val in ("match", "matched"):
        return "matched"
    if val in ("not_match", "not_matched", "notmatch"):
        return "not_matched"
    return val


def _search_query(text: str) -> str:
    hits = _SEARCH.findall(text)
    if hits:
        return hits[-1].strip()
    start = text.lower().rfind("<search>")
    return text[start + len("<search>") :].strip() if start >= 0 else ""


def _is_search_call(text: str) -> bool:
    """A pure search-call turn (the reference drops these from the joined text)."""
    return bool(_search_query(text) or "<tool_call>" in text.lower()) and not extract_answer_label(text)


class _Episode:
    """One completion read as the stage-2 trainer reads it."""

    def __init__(self, completion: Any, lenient: bool) -> None:
        turns = [t.strip() for t in assistant_turns(completion)]  # _sanitize_generated_text strips
        answer_turns = [t for t in turns if not _is_search_call(t)]
        self.any_turn = bool(answer_turns)  # the reference's reward_meta "turns" are the answer steps
        self.all_text = "\n".join(turns)
        self.final = answer_turns[-1] if answer_turns else ""
        self.joined = "\n".join(answer_turns)
        self.lenient = lenient
        self.label = extract_answer_label(self.final, lenient=lenient)

    def has_time_tags(self) -> bool:
        if self.lenient:
            low = self.joined.lower()
            return "<start>" in low and "<end>" in low
        return bool(_START_ANY.search(self.joined) and _END_ANY.search(self.joined))

    def times(self) -> Optional[tuple[float, float]]:
        if self.lenient:
            v = protocol.parse_verification(self.final)
            return None if v.start is None or v.end is None else (v.start, v.end)
        s, e = _START.findall(self.joined), _END.findall(self.joined)
        if not s or not e:
            return None
        start, end = float(s[-1]), float(e[-1])
        return (start, end) if math.isfinite(start) and math.isfinite(end) else None


def _truth(kwargs: dict[str, Any], n: int) -> list[str]:
    """``"matched"`` / ``"not_matched"`` per completion."""
    if "label" in kwargs:
        out = []
        for v in column(kwargs, "label", n):
            if isinstance(v, bool):
                out.append("matched" if v else "not_matched")
                continue
            lab = extract_answer_label(f"<answer>{v}</answer>") if isinstance(v, str) else None
            if lab not in ("matched", "not_matched"):
                raise TrainingDataError(f"label {v!r} must be 'matched', 'not_matched' or a bool")
            out.append(lab)
        return out
    if "retrieved_video" in kwargs and "gt_video" in kwargs:
        pairs = zip(column(kwargs, "retrieved_video", n), column(kwargs, "gt_video", n))
        return ["matched" if r and str(r) == str(g) else "not_matched" for r, g in pairs]
    raise TrainingDataError(
        "VideoSearch-R1 rewards need a 'label' column (matched / not_matched) or both "
        "'retrieved_video' and 'gt_video' columns"
    )


def _gt_span(raw: Any) -> Optional[tuple[float, float]]:
    """VideoSearch-R1 ``_extract_gt_span``: ``[start, end]`` with finite ``end > start``."""
    if not isinstance(raw, (list, tuple)) or len(raw) < 2:
        return None
    try:
        s, e = float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        return None
    return (s, e) if math.isfinite(s) and math.isfinite(e) and e > s else None


def _make(lenient: bool) -> tuple[RewardFunc, ...]:
    suffix = "_lenient" if lenient else ""

    def answer_binary_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        """+1 when the final verdict equals the truth, -1 otherwise, 0 when no turn answers."""
        truths = _truth(kwargs, len(completions))
        eps = [_Episode(c, lenient) for c in completions]
        return [0.0 if not e.any_turn else (1.0 if e.label == t else -1.0) for e, t in zip(eps, truths)]

    def think_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        """1 when the last ``<think>`` block of the joined text is non-empty."""
        out: list[Optional[float]] = []
        for c in completions:
            blocks = _THINK.findall(_Episode(c, lenient).joined)
            out.append(1.0 if blocks and blocks[-1].strip() else 0.0)
        return out

    def time_format_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        """``matched`` with time tags, or ``not_matched`` without them: 1; else 0."""
        out: list[Optional[float]] = []
        for c in completions:
            e = _Episode(c, lenient)
            tags = e.has_time_tags()
            out.append(
                float(tags) if e.label == "matched" else float(not tags) if e.label == "not_matched" else 0.0
            )
        return out

    def time_iou_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        """IoU for a correct ``matched``; 0.5 for a correct ``not_matched`` without tags; else 0."""
        n = len(completions)
        truths, gts = _truth(kwargs, n), column(kwargs, "gt_time", n)
        out: list[Optional[float]] = []
        for c, t, gt in zip(completions, truths, gts):
            e = _Episode(c, lenient)
            if not e.any_turn or e.label != t:
                out.append(0.0)
                continue
            tags = e.has_time_tags()
            if e.label == "not_matched":
                out.append(0.0 if tags else 0.5)
                continue
            pred, span = e.times() if tags else None, _gt_span(gt)
            if pred is None or span is None:
                out.append(0.0)
                continue
            ps, pe = (min(pred), max(pred)) if lenient else pred
            if pe <= ps:
                out.append(0.0)
                continue
            inter = max(0.0, min(pe, span[1]) - max(ps, span[0]))
            union = max(pe, span[1]) - min(ps, span[0])
            out.append(float(max(0.0, min(1.0, inter / union))) if union > 0 else 0.0)
        return out

    def refine_presence_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        """1 when the final turn holds :data:`REFINE_TOKEN` (any turn, when none answers)."""
        eps = [_Episode(c, lenient) for c in completions]
        return [float(REFINE_TOKEN in (e.final if e.any_turn else e.all_text)) for e in eps]

    funcs = (
        answer_binary_reward,
        think_format_reward,
        time_format_reward,
        time_iou_reward,
        refine_presence_reward,
    )
    for f in funcs:
        f.__name__ = f.__qualname__ = f.__name__ + suffix
    return tuple(trl_reward(f) for f in funcs)


# --------------------------------------------------------------------------- refine quality


def _unit(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def _check(q: np.ndarray, pos: np.ndarray, negs: np.ndarray) -> None:
    if q.ndim != 1 or pos.shape != q.shape or negs.ndim != 2 or (negs.size and negs.shape[1] != q.shape[0]):
        raise TrainingDataError(
            f"query {q.shape}, v_pos {pos.shape} and v_negs {negs.shape} must share the width D "
            "(v_negs is (N, D))"
        )


def infonce_positive_probability(q: Any, v_pos: Any, v_negs: Any, tau: float = REFINE_TAU) -> float:
    """``softmax([q.v_pos, q.v_neg...] / tau)[0]`` on unit vectors (the InfoNCE probability).

    Args:
        q: Query vector ``(D,)``.
        v_pos: Positive video vector ``(D,)``.
        v_negs: Negative vectors ``(N, D)``, N >= 0 (N = 0 gives 1.0).
        tau: Temperature.

    Returns:
        The probability of the positive.

    Raises:
        TrainingDataError: On shape mismatches or ``tau <= 0``.
    """
    if not tau > 0:
        raise TrainingDataError(f"tau must be > 0, got {tau}")
    qv, pos = _unit(np.ravel(q)), _unit(np.ravel(v_pos))
    negs = np.asarray(v_negs, dtype=np.float64) if np.size(v_negs) else np.zeros((0, qv.shape[0]))
    negs = negs[None] if negs.ndim == 1 else negs
    _check(qv, pos, negs)
    logits = np.concatenate([[pos @ qv], _unit(negs) @ qv if len(negs) else []]) / tau
    logits -= logits.max()
    p = np.exp(logits)
    return float(p[0] / p.sum())


def refine_quality_delta(
    q_orig: Any, q_final: Any, v_pos: Any, v_negs: Any, tau: float = REFINE_TAU
) -> float:
    """``p_after - p_before``: VideoSearch-R1's ``query_refine_quality_infonce_with_qorig``.

    Args:
        q_orig: The original query's vector.
        q_final: The refined query's vector.
        v_pos: The positive (ground-truth video) vector.
        v_negs: Negatives ``(N, D)``; with none the reference leaves the quality at 0.
        tau: Temperature (0.1).

    Returns:
        The difference of the positive's InfoNCE probabilities.
    """
    if np.size(v_negs) == 0:
        return 0.0
    return infonce_positive_probability(q_final, v_pos, v_negs, tau) - infonce_positive_probability(
        q_orig, v_pos, v_negs, tau
    )


def infonce_margin(q: Any, v_pos: Any, v_negs: Any, tau: float = REFINE_TAU) -> float:
    """``sim(q, v_pos) - tau * logsumexp(sim(q, v_negs) / tau)`` (cosine; the opt-in ``margin`` mode).

    Raises:
        TrainingDataError: On shape mismatches, no negatives, or ``tau <= 0``.
    """
    if not tau > 0:
        raise TrainingDataError(f"tau must be > 0, got {tau}")
    qv, pos = _unit(np.ravel(q)), _unit(np.ravel(v_pos))
    negs = np.asarray(v_negs, dtype=np.float64)
    negs = negs[None] if negs.ndim == 1 else negs
    _check(qv, pos, negs)
    if negs.shape[0] == 0:
        raise TrainingDataError("infonce_margin needs at least one negative")
    s = _unit(negs) @ qv / tau
    m = float(s.max())
    return float(pos @ qv) - tau * (m + math.log(float(np.exp(s - m).sum())))


REFINE_MODES = ("delta_p", "p_after", "margin")


def make_query_refine_quality_reward(
    mode: str = "delta_p", *, margin_scale: float = 1.0, no_refine_value: float = 0.0, tau: float = REFINE_TAU
) -> RewardFunc:
    """The refine-quality reward.

    Args:
        mode: ``delta_p`` (the reference: ``p_after - p_before``), or opt-in ``p_after`` or
            ``margin`` (:func:`infonce_margin` of the refined query, times ``margin_scale``).
        margin_scale: Scale of the ``margin`` mode.
        no_refine_value: Reward without ``<REFINE>`` (``GRPO_NO_REFINE_QUALITY_PENALTY``, 0.0).
        tau: Temperature; a ``tau`` keyword at call time overrides it.

    Returns:
        The reward function (columns ``refine_quality``, or ``q_orig``/``q_final``/``v_pos``/``v_negs``).

    Raises:
        TrainingDataError: On an unknown mode or ``tau <= 0``.
    """
    if mode not in REFINE_MODES:
        raise TrainingDataError(f"unknown refine-quality mode {mode!r}; valid: {', '.join(REFINE_MODES)}")

    def query_refine_quality_reward(completions: Sequence[Any], **kwargs: Any) -> list[Optional[float]]:
        n = len(completions)
        t = tau if kwargs.get("tau") is None else float(kwargs["tau"])
        if not t > 0:
            raise TrainingDataError(f"tau must be > 0, got {t}")
        refined = [REFINE_TOKEN in "\n".join(assistant_turns(c)) for c in completions]
        if "refine_quality" in kwargs:
            return [
                float(v) if r and v is not None else no_refine_value
                for r, v in zip(refined, column(kwargs, "refine_quality", n))
            ]
        needed = (
            ("q_orig", "q_final", "v_pos", "v_negs") if mode == "delta_p" else ("q_final", "v_pos", "v_negs")
        )
        missing = [k for k in needed if k not in kwargs]
        if missing:
            raise TrainingDataError(
                f"the {mode} refine-quality reward needs a 'refine_quality' column or the vector columns "
                f"{', '.join(needed)} (missing: {', '.join(missing)})"
            )
        cols = [column(kwargs, k, n) for k in ("q_orig", "q_final", "v_pos", "v_negs")]
        out: list[Optional[float]] = []
        for r, qo, qf, pos, negs in zip(refined, *cols):
            if not r or qf is None or pos is None or negs is None or (mode == "delta_p" and qo is None):
                out.append(no_refine_value)
            elif mode == "delta_p":
                out.append(refine_quality_delta(qo, qf, pos, negs, t))
            elif np.size(negs) == 0:
                out.append(0.0)
            elif mode == "p_after":
                out.append(infonce_positive_probability(qf, pos, negs, t))
            else:
                out.append(infonce_margin(qf, pos, negs, t) * margin_scale)
        return out

    return trl_reward(query_refine_quality_reward)


(
    answer_binary_reward,
    think_format_reward,
    time_format_reward,
    time_iou_reward,
    refine_presence_reward,
) = _make(lenient=False)
query_refine_quality_reward = make_query_refine_quality_reward()


def make_videosearch_rewards(
    *, lenient: bool = False, refine_mode: str = "delta_p"
) -> tuple[RewardFunc, ...]:
    """The six rewards in ``train_stage2.bash`` order (pair with :data:`VIDEOSEARCH_REWARD_WEIGHTS`).

    Args:
        lenient: The opt-in tolerant parser (module docstring).
        refine_mode: See :func:`make_query_refine_quality_reward`.

    Returns:
        answer, think format, time format, time IoU, refine presence, refine quality.
    """
    five = (
        _make(lenient)
        if lenient
        else (
            answer_binary_reward,
            think_format_reward,
            time_format_reward,
            time_iou_reward,
            refine_presence_reward,
        )
    )
    quality = (
        query_refine_quality_reward
        if refine_mode == "delta_p"
        else make_query_refine_quality_reward(refine_mode)
    )
    return (*five, quality)


#: ``r_answer_binary, r_think_format, r_time_format, r_time_iou, r_refine_presence, r_query_refine_quality``.
VIDEOSEARCH_REWARDS: tuple[RewardFunc, ...] = make_videosearch_rewards()
#: Opt-in tolerant set (not for RL; see the module docstring).
VIDEOSEARCH_REWARDS_LENIENT: tuple[RewardFunc, ...] = make_videosearch_rewards(lenient=True)
#: ``W_ACC, W_THINK_REWARD, W_TIME_FMT, W_TIME_IOU, W_FMT, W_MARGIN`` of ``train_stage2.bash``.
VIDEOSEARCH_REWARD_WEIGHTS: tuple[float, ...] = (1.6, 0.05, 0.05, 0.35, 0.8, 0.5)
