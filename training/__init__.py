"""videoseek's trainer side: tested pieces plus thin entry points that write policy checkpoints.

The library (:mod:`agent_tools`) never imports this package; this package builds on it
(open_clip's ``open_clip`` / ``open_clip_train`` split). Every trainer writes a
``save_pretrained`` directory plus ``videoseek_policy.json`` that
:func:`agent_tools.policies.load_policy` and ``videoseek ask --policy DIR`` load.

Map:

- :mod:`training.rewards` - TRL-signature reward functions: TimeSearch-R v7 (multi-turn
  format, accuracy, completeness self-verification) and VideoSearch-R1 (answer, think/time
  format, time IoU, refine presence, query-refine quality); :func:`weighted_rewards`.
- :mod:`training.data` - trajectories and prompts (JSONL, :func:`iter_jsonl`),
  :func:`replay_trajectory` (recorded turns through the real temporal graph and searcher),
  :func:`encode_conversation` (assistant-only loss mask), :func:`encode_turn` (a sampled turn
  in its sampling context), :func:`token_logprobs`.
- :mod:`training.sft` - :class:`SFTConfig`, :func:`train_sft`; ``python -m training.sft``.
- :mod:`training.grpo` - :class:`GRPOConfig`, :func:`build_trainer` (TRL's ``GRPOTrainer`` with the
  CSV environment of :mod:`training.csv_env`), :func:`train_grpo`, :func:`group_advantages`;
  ``python -m training.grpo``; the recipe (:class:`GRPOConfig`, ``REWARD_SETS``, ``trl_config``) is
  :mod:`training.grpo_config`, re-exported there.
- :mod:`training.filtering` - TimeSearch-R's stage-1 RL data filter:
  :func:`visual_dependency_filter` drops the prompts a policy answers from 4 uniform frames alone.
- :mod:`training.judge` - the LLM judge for open-ended answers (any LangChain chat model or an
  OpenAI-compatible endpoint; normalised exact match offline).
- :mod:`training.sqr` - :class:`SoftQueryProjector`, :func:`refined_query`, :func:`infonce_loss`,
  :class:`SQRConfig`, :func:`train_sqr`; ``python -m training.sqr``.
- :mod:`training.common` - seeding, :func:`load_trainable_policy`, :func:`build_searcher`,
  :func:`prepare_run` (all three for a trainer's config), :func:`save_checkpoint`.
- :mod:`training.config` - JSON recipes (``training/configs/``) and ``--field value`` overrides.
- :mod:`training.demo` - a toy offline setup for the ``*_tiny.json`` recipes.
- :mod:`training.errors` - :class:`TrainingConfigError`, :class:`TrainingDataError`
  (both :class:`agent_tools.errors.VideoseekError`).

Names load on first access, so ``import training`` stays light (no torch until needed).

Usage::

    python -m training.demo runs/demo
    python -m training.sft  --config training/configs/sft_tiny.json
    python -m training.grpo --config training/configs/grpo_tiny.json
    python -m training.sqr  --config training/configs/sqr_tiny.json
"""

from __future__ import annotations

import importlib
from typing import Any

from training.errors import TrainingConfigError, TrainingDataError

__all__ = [
    "TrainingConfigError",
    "TrainingDataError",
    # rewards
    "TIMESEARCH_REWARDS",
    "TIMESEARCH_REWARD_WEIGHTS",
    "VIDEOSEARCH_REWARDS",
    "VIDEOSEARCH_REWARD_WEIGHTS",
    "weighted_rewards",
    # data
    "Trajectory",
    "iter_jsonl",
    "load_trajectories",
    "load_prompts",
    "replay_trajectory",
    "encode_conversation",
    "encode_turn",
    "token_logprobs",
    # trainers
    "SFTConfig",
    "train_sft",
    "GRPOConfig",
    "train_grpo",
    "group_advantages",
    "build_trainer",
    "visual_dependency_filter",
    "SQRConfig",
    "train_sqr",
    "SoftQueryProjector",
    "refined_query",
    "infonce_loss",
    # shared
    "load_trainable_policy",
    "build_searcher",
    "prepare_run",
    "save_checkpoint",
    "load_config",
    "parse_args",
]

_LAZY = {
    "TIMESEARCH_REWARDS": "training.rewards",
    "TIMESEARCH_REWARD_WEIGHTS": "training.rewards",
    "VIDEOSEARCH_REWARDS": "training.rewards",
    "VIDEOSEARCH_REWARD_WEIGHTS": "training.rewards",
    "weighted_rewards": "training.rewards",
    "Trajectory": "training.data",
    "iter_jsonl": "training.data",
    "load_trajectories": "training.data",
    "load_prompts": "training.data",
    "replay_trajectory": "training.data",
    "encode_conversation": "training.data",
    "encode_turn": "training.data",
    "token_logprobs": "training.data",
    "SFTConfig": "training.sft",
    "train_sft": "training.sft",
    "GRPOConfig": "training.grpo",
    "train_grpo": "training.grpo",
    "group_advantages": "training.grpo",
    "build_trainer": "training.grpo",
    "visual_dependency_filter": "training.filtering",
    "SQRConfig": "training.sqr",
    "train_sqr": "training.sqr",
    "SoftQueryProjector": "training.sqr",
    "refined_query": "training.sqr",
    "infonce_loss": "training.sqr",
    "load_trainable_policy": "training.common",
    "build_searcher": "training.common",
    "prepare_run": "training.common",
    "save_checkpoint": "training.common",
    "load_config": "training.config",
    "parse_args": "training.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
