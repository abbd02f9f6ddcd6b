"""Replay buffers for GRPO: a step whose groups all score alike trains on a stored step instead.

TimeSearch-R's trainer (``time_r1/trainer/grpo_trainer_env.py``: ``_prepare_inputs``,
``DapoReplayBuffer``, ``SSRReplayBuffer``, ``get_replay_buffer``; ``scripts/train.sh`` runs
``--replay_buffer_type dapo``) adds every scored generation batch to a buffer, and when all of
the batch's advantages are zero (every rollout of every group got the same reward, so the
policy gradient is zero) it trains on a batch drawn from the buffer instead. The rules kept
here, as the reference has them:

- the buffer takes every batch until it holds ``capacity``; after that a batch replaces the
  oldest entry only when one of its advantages is non-zero (``|a| > 1e-4``);
- ``dapo`` draws uniformly; ``ssr`` draws with weight ``mean|a| ** alpha`` (batches added while
  the buffer filled weigh ``|a| + 1e-4``, element-wise as the reference stores them, reduced by
  their mean here so that each entry has one weight);
- a replayed batch is used as stored: its log-probabilities were those of an earlier policy and
  are not recomputed (the reference does the same).

Names: :class:`ReplayBuffer`, :func:`make_replay_buffer`, :data:`REPLAY_BUFFERS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["REPLAY_BUFFERS", "ReplayBuffer", "make_replay_buffer"]

#: Valid ``replay_buffer`` values of :class:`training.grpo.GRPOConfig`.
REPLAY_BUFFERS = ("none", "dapo", "ssr")

_EPS = 1e-4


def _abs_advantages(batch: dict[str, Any]) -> np.ndarray:
    adv = batch["advantages"]
    adv = adv.detach().float().cpu().numpy() if hasattr(adv, "detach") else np.asarray(adv, dtype=float)
    return np.abs(adv)


class ReplayBuffer:
    """A FIFO of scored generation batches (dicts with an ``advantages`` entry).

    Args:
        kind: ``dapo`` (uniform draws) or ``ssr`` (draws weighted by mean |advantage| ** alpha).
        capacity: Batches kept (TimeSearch-R's default: 16).
        alpha: ``ssr`` priority exponent.
        seed: Seed of the draws.

    Raises:
        ValueError: On an unknown kind or a capacity below 1.
    """

    def __init__(self, kind: str = "dapo", *, capacity: int = 16, alpha: float = 1.0, seed: int | None = None):
        if kind not in ("dapo", "ssr"):
            raise ValueError(f"replay buffer kind must be dapo or ssr, got {kind!r}")
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.kind, self.capacity, self.alpha = kind, int(capacity), float(alpha)
        self.entries: list[dict[str, Any]] = []
        self.weights: list[float] = []
        self.replayed = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, batch: dict[str, Any]) -> bool:
        """Store a batch (see the module rules). Returns whether it was stored."""
        return self._add(batch, _abs_advantages(batch))

    def _add(self, batch: dict[str, Any], adv: np.ndarray) -> bool:
        if len(self.entries) < self.capacity:
            weight = float((adv + _EPS).mean()) if self.kind == "ssr" else 1.0
        elif bool((adv > _EPS).any()):
            self.entries.pop(0)
            self.weights.pop(0)
            weight = float(adv.mean()) if self.kind == "ssr" else 1.0
        else:
            return False
        self.entries.append(batch)
        self.weights.append(weight)
        return True

    def sample(self) -> dict[str, Any]:
        """A stored batch: uniform (``dapo``) or by priority (``ssr``).

        Raises:
            ValueError: When the buffer is empty.
        """
        if not self.entries:
            raise ValueError("the replay buffer is empty: nothing to sample")
        p = np.power(np.asarray(self.weights, dtype=float), self.alpha)
        i = int(self._rng.choice(len(self.entries), p=p / p.sum()))
        return self.entries[i]

    def step(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The reference's rule for one scored batch: store it; if its advantages are all zero, return a stored one."""
        adv = _abs_advantages(batch)  # one device-to-host copy per step
        self._add(batch, adv)
        if not bool((adv > 0).any()):
            self.replayed += 1
            return self.sample()
        return batch


def make_replay_buffer(kind: str, *, capacity: int = 16, alpha: float = 1.0, seed: int | None = None) -> ReplayBuffer | None:
    """The buffer of a recipe's ``replay_buffer`` field; None for ``none``.

    Raises:
        ValueError: On a kind not in :data:`REPLAY_BUFFERS`.
    """
    if kind not in REPLAY_BUFFERS:
        raise ValueError(f"replay_buffer must be one of {', '.join(REPLAY_BUFFERS)}, got {kind!r}")
    return None if kind == "none" else ReplayBuffer(kind, capacity=capacity, alpha=alpha, seed=seed)
