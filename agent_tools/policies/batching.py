"""Batched turns for concurrent episodes: many graph runs, one ``generate`` call per round.

A local model decodes several sequences in one forward pass for little more than the cost of
one: at one CPU thread, 12 SmolLM2-135M episodes ran 1.63x faster 6 at a time than one by one
(``benchmarks/bench_batched_eval.py``); a GPU gains more. :func:`run_batched`
runs one episode per worker thread over a shared list of items; every worker's graph calls the
same :class:`BatchedPolicy`, which holds each request until every live worker has one waiting
(a *round*) and then serves them all with the inner policy's ``generate_batch``
(:meth:`~agent_tools.policies.TransformersPolicy.generate_batch`; a policy without one is served
row by row). Every worker advances one turn per round, so the rounds hold the same
conversations from run to run, whatever the threads' timing.

Names: :class:`BatchedPolicy`, :func:`run_batched`.

Usage::

    batched = BatchedPolicy(policy)
    runner = AgentRunner(build_temporal_graph(batched, searcher, observation="text"))
    results = run_batched(batched, lambda q: runner.run(q["question"], q["video"]), questions, workers=8)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.base import ChatMessage, FrameResolver, Generation, Policy

__all__ = ["BatchedPolicy", "run_batched"]

T = TypeVar("T")
R = TypeVar("R")


class BatchedPolicy(Policy):
    """A policy that serves the turns of concurrent episodes as batches of ``inner``.

    Outside :func:`run_batched` (no live workers) every call goes straight to ``inner``.
    Attributes the graphs read (``max_new_tokens``, ``text_only``, ``tagger``, ``manifest``, ...)
    are ``inner``'s.

    Args:
        inner: The policy that generates; its ``generate_batch(conversations, max_new_tokens)``
            is used when it has one.

    Attributes:
        batch_sizes: The number of rows of every round served so far.
    """

    def __init__(self, inner: Policy):
        # no Policy.__init__: the settings are inner's (read through __getattr__)
        self.inner = inner
        self.batch_sizes: list[int] = []
        self._cond = threading.Condition()
        self._live = 0
        self._pending: dict[int, tuple[list[ChatMessage], int]] = {}
        self._results: dict[int, Any] = {}
        self._next_id = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"batched({self.inner.name})"

    def __getattr__(self, key: str) -> Any:
        if key == "inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(key)
        return getattr(self.inner, key)

    def prepare(self, messages: Sequence[ChatMessage], frames: FrameResolver | None) -> list[ChatMessage]:
        """``inner``'s preparation (frame references resolved or rendered as text)."""
        return self.inner.prepare(messages, frames)

    def _generate(self, messages: list[ChatMessage], max_new_tokens: int) -> Generation:
        with self._cond:
            if self._live == 0:
                direct = True
            else:
                direct = False
                rid = self._next_id
                self._next_id += 1
                self._pending[rid] = (messages, max_new_tokens)
                self._serve_if_round()
                while rid not in self._results:
                    self._cond.wait()
                out = self._results.pop(rid)
        if direct:
            return self.inner._generate(messages, max_new_tokens)
        if isinstance(out, BaseException):
            raise out
        return out

    def _join(self, workers: int) -> None:
        with self._cond:
            self._live += workers

    def _retire(self) -> None:
        with self._cond:
            self._live -= 1
            self._serve_if_round()

    def _serve_if_round(self) -> None:
        """With the lock held: when every live worker waits, generate all their turns and wake them."""
        if not self._pending or len(self._pending) < self._live:
            return
        pending, self._pending = self._pending, {}
        by_budget: dict[int, list[int]] = {}
        for rid, (_, budget) in pending.items():
            by_budget.setdefault(budget, []).append(rid)
        for budget, rids in sorted(by_budget.items()):
            # rows in a fixed order (by content), so a round's batch is the same in every run
            rids.sort(key=lambda r: json.dumps(pending[r][0], sort_keys=True, default=str))
            convs = [pending[r][0] for r in rids]
            try:
                batch = getattr(self.inner, "generate_batch", None)
                gens = batch(convs, budget) if batch else [self.inner._generate(c, budget) for c in convs]
                self.batch_sizes.append(len(convs))
                self._results.update(zip(rids, gens))
            except Exception as exc:  # noqa: BLE001 - every waiting worker gets the error, none hangs
                self._results.update({r: exc for r in rids})
        self._cond.notify_all()


def run_batched(
    policy: BatchedPolicy,
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int = 8,
    on_done: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, ``workers`` episodes at a time, their turns batched by ``policy``.

    Args:
        policy: The :class:`BatchedPolicy` that ``fn``'s graph calls.
        fn: Runs one episode (e.g. ``lambda q: runner.run(q["question"], q["video"])``).
        items: The episodes' inputs.
        workers: Episodes in flight, hence the largest batch (1: one at a time).
        on_done: Called with ``(index, result)`` as each episode ends (progress), from its worker thread.

    Returns:
        The results, in the order of ``items``.

    Raises:
        InvalidArgumentError: On ``workers < 1`` or a policy that is not a :class:`BatchedPolicy`.
        Exception: The first failing item's exception (by index), after every episode ended.
    """
    if workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1, got {workers}")
    if not isinstance(policy, BatchedPolicy):
        raise InvalidArgumentError(f"run_batched needs a BatchedPolicy, got {type(policy).__name__}")
    items = list(items)
    results: list[Any] = [None] * len(items)
    failed: dict[int, BaseException] = {}
    queue = iter(range(len(items)))
    take = threading.Lock()
    n = min(workers, len(items))

    def work() -> None:
        try:
            while True:
                with take:
                    i = next(queue, None)
                if i is None:
                    return
                try:
                    results[i] = fn(items[i])
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the other episodes
                    failed[i] = exc
                    continue
                if on_done is not None:
                    on_done(i, results[i])
        finally:
            policy._retire()

    policy._join(n)
    threads = [threading.Thread(target=work, name=f"episode-{k}", daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[min(failed)]
    return results
