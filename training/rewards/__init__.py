"""Reward functions that reproduce the reference implementations, with TRL's reward contract.

Every reward function is ``fn(completions, **kwargs) -> list[float | None]``, called by keyword
as TRL's ``GRPOTrainer`` calls it (``prompts=``, ``completions=``, ``completion_ids=``,
``trainer_state=``, ``environments=`` ... are accepted and ignored unless named below), or
positionally as ``fn(completions)`` / ``fn(prompts, completions)`` (:func:`trl_reward`).
Dataset columns arrive as keywords holding one value per completion (a scalar is broadcast).
A completion is a string (one assistant turn) or a list of chat messages (a multi-turn
episode; only ``assistant`` messages are read; TRL's parsed ``tool_calls`` and
``reasoning_content`` are rendered back into ``<tool_call>``/``<think>`` text). The defaults
reproduce the reference code; tolerant parsers are named opt-in variants, because in RL every
tolerance is a surface the policy can learn to exploit.

Map (modules):

- :mod:`training.rewards.timesearch` - TimeSearch-R v7 (``time_r1/reward/v7.py``), its rules
  and where we differ, in its docstring.
- :mod:`training.rewards.videosearch` - VideoSearch-R1 stage 2 (``reward.py`` + the
  ``grpo_vllm_trainer_qwen3_vl.py`` reward meta), its rules in its docstring.
- :mod:`training.rewards._common` - completion reading, columns, :func:`weighted_rewards`.
- :mod:`training.judge` - LLM judges for open-ended answers (LangChain chat model or an
  OpenAI-compatible endpoint); exact match is the documented offline fallback.

Public names and their keyword columns:

TimeSearch-R (weights :data:`TIMESEARCH_REWARD_WEIGHTS` = ``(1.0, 0.5, 0.5)``;
:data:`TIMESEARCH_REWARDS` = format, accuracy, CSV):

- :func:`multiturn_format_reward` (no columns); opt-in :func:`multiturn_format_reward_strict`.
- :func:`accuracy_reward` (``answer``, ``problem_type`` = ``multiple_choice`` | ``grounding`` |
  ``open_ended`` | ``sequence``, default ``open_ended``; ``question``);
  :func:`make_accuracy_reward` ``(judge=None, *, lenient=False)``; opt-in :data:`accuracy_reward_lenient`.
- :func:`csv_reward` (the accuracy columns plus ``verification``: the temporal graph's
  verify dict or the re-answer text; or ``visual_trace_completions``; or ``environments`` with
  a ``.verification`` attribute); :func:`make_csv_reward` ``(judge=None, *, lenient=False,
  binary=False, threshold=0.5)``; opt-in :data:`csv_reward_lenient`.
- Helpers: :func:`score_answer` ``(prediction, truth, problem_type, *, question, judge, lenient)``,
  :func:`episode_answer`, :func:`extract_choice_letter`, :func:`extract_sequence_index`,
  :func:`compute_iou`; constants :data:`PROBLEM_TYPES`, :data:`CSV_THRESHOLD`,
  :data:`NO_VISUAL_TRACE_ANSWER`.

VideoSearch-R1 (weights :data:`VIDEOSEARCH_REWARD_WEIGHTS` = ``(1.6, 0.05, 0.05, 0.35, 0.8, 0.5)``,
:data:`VIDEOSEARCH_REWARDS` in that order; truth ``label`` or ``retrieved_video`` + ``gt_video``):

- :func:`answer_binary_reward` (truth), :func:`think_format_reward` (none),
  :func:`time_format_reward` (none), :func:`time_iou_reward` (truth, ``gt_time``),
  :func:`refine_presence_reward` (none), :func:`query_refine_quality_reward` (``refine_quality``,
  or ``q_orig``, ``q_final``, ``v_pos``, ``v_negs``; optional ``tau``).
- :func:`make_videosearch_rewards` ``(*, lenient=False, refine_mode="delta_p")``, opt-in
  :data:`VIDEOSEARCH_REWARDS_LENIENT`; :func:`make_query_refine_quality_reward`
  ``(mode="delta_p" | "p_after" | "margin", *, margin_scale, no_refine_value, tau)``.
- Helpers: :func:`extract_answer_label`, :func:`infonce_positive_probability`,
  :func:`refine_quality_delta`, :func:`infonce_margin`; :data:`REFINE_TOKEN`, :data:`REFINE_TAU`.

Shared: :func:`weighted_rewards` ``(funcs, weights, prompts, completions, **columns)`` ->
``(totals, per_function)``; :func:`trl_reward`, :func:`assistant_turns`, :func:`normalize_text`; types
:data:`RewardFunc`, :data:`Judge`.

Usage::

    from training.judge import build_judge
    from training.rewards import make_accuracy_reward, make_csv_reward, multiturn_format_reward
    judge = build_judge(base_url="http://judge:8000/v1", model="Qwen2.5-72B-Instruct")
    funcs = [multiturn_format_reward, make_accuracy_reward(judge), make_csv_reward(judge)]
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=[1.0, 0.5, 0.5], ...))
"""

from __future__ import annotations

from training.rewards._common import (
    Judge,
    RewardFunc,
    assistant_turns,
    normalize_text,
    trl_reward,
    weighted_rewards,
)
from training.rewards.timesearch import (
    CSV_THRESHOLD,
    NO_VISUAL_TRACE_ANSWER,
    PROBLEM_TYPES,
    TIMESEARCH_REWARD_WEIGHTS,
    TIMESEARCH_REWARDS,
    accuracy_reward,
    accuracy_reward_lenient,
    compute_iou,
    csv_reward,
    csv_reward_lenient,
    episode_answer,
    extract_choice_letter,
    extract_sequence_index,
    make_accuracy_reward,
    make_csv_reward,
    multiturn_format_reward,
    multiturn_format_reward_strict,
    score_answer,
)
from training.rewards.videosearch import (
    REFINE_TAU,
    REFINE_TOKEN,
    VIDEOSEARCH_REWARD_WEIGHTS,
    VIDEOSEARCH_REWARDS,
    VIDEOSEARCH_REWARDS_LENIENT,
    answer_binary_reward,
    extract_answer_label,
    infonce_margin,
    infonce_positive_probability,
    make_query_refine_quality_reward,
    make_videosearch_rewards,
    query_refine_quality_reward,
    refine_presence_reward,
    refine_quality_delta,
    think_format_reward,
    time_format_reward,
    time_iou_reward,
)

__all__ = [
    "RewardFunc",
    "Judge",
    "PROBLEM_TYPES",
    "CSV_THRESHOLD",
    "NO_VISUAL_TRACE_ANSWER",
    "REFINE_TOKEN",
    "REFINE_TAU",
    "TIMESEARCH_REWARDS",
    "TIMESEARCH_REWARD_WEIGHTS",
    "VIDEOSEARCH_REWARDS",
    "VIDEOSEARCH_REWARDS_LENIENT",
    "VIDEOSEARCH_REWARD_WEIGHTS",
    "assistant_turns",
    "normalize_text",
    "trl_reward",
    "weighted_rewards",
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
