"""Methods the harness runs side by side: baselines, and a policy through the real graph.

Every method maps an :class:`EvalItem` to a :class:`Prediction`. Frame-selecting methods work on
the frame-embedding store (the video's frames embedded once at ``sample_fps``), so their choices
are exact stored timestamps; the baselines then answer with :class:`ZeroShotAnswerer`.

| method | selects | answers |
|---|---|---|
| ``uniform`` | ``k`` frames evenly spread over the video | zero-shot |
| ``topk`` | the ``k`` frames most similar to the question (no DPP) | zero-shot |
| ``dpp`` | :meth:`TemporalSearcher.seek` (relevance-conditioned DPP, no policy) | zero-shot |
| ``dpp-legacy`` | the DPP with the pre-issue-10 floor ``1e-4`` and time-first fill | zero-shot |
| ``retrieval`` | grounding: the corpus index + :class:`MomentSearcher`, the query as given (no refinement) | - |
| ``policy`` | the policy's own searches through the temporal graph | the policy |

**Zero-shot answerer** (the baselines' answers): of the selected frames, the ``focus`` (2) most
similar to the question are looked at; each option (multiple choice), or each
``hypothesis_template.format(a)`` over the item's ``answer_space`` (open-ended), is embedded with
the same encoder; an option's score is its best cosine similarity over those frames; the
best-scoring option is the answer. Open-ended items without an answer space get no answer.

- :class:`EvalContext` - encoder, store, searcher, ``k``, the corpus index (built on demand).
- :class:`ZeroShotAnswerer`, :func:`parse_choice`.
- :class:`Method` and the methods above; :data:`BASELINES`; :func:`make_methods`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..dpp import greedy_map_dpp, minmax_relevance, uniform_indices
from ..errors import InvalidArgumentError
from .items import LETTERS, EvalItem, Prediction

__all__ = [
    "EvalContext",
    "ZeroShotAnswerer",
    "parse_choice",
    "normalize_answer",
    "Method",
    "UniformMethod",
    "TopKMethod",
    "DppMethod",
    "RetrievalMethod",
    "PolicyMethod",
    "BASELINES",
    "make_methods",
]

QA_TASKS = {"mcq", "haystack", "open"}


def normalize_answer(text: Optional[str]) -> str:
    """Lower case, no surrounding space or final punctuation (exact-match comparison)."""
    return re.sub(r"[\s.!?]+$", "", (text or "").strip().lower())


def parse_choice(text: Optional[str], options: list[str]) -> Optional[str]:
    """The letter a free-text answer picks: a leading/standalone letter, else an option's text."""
    if not text:
        return None
    letters = LETTERS[: len(options)]
    m = re.match(rf"^\s*\(?([{letters}])\)?(?:[.):\s]|$)", text.strip())
    if m:
        return m.group(1)
    m = re.search(rf"\b([{letters}])\b", text)
    if m and len(text.strip()) <= 3:
        return m.group(1)
    low = normalize_answer(text)
    for i, o in enumerate(options):
        if normalize_answer(o) and normalize_answer(o) in low:
            return letters[i]
    return None


@dataclass
class EvalContext:
    """What the methods share during one run."""

    encoder: Any
    searcher: Any  # TemporalSearcher
    k: int = 8
    work_dir: Optional[Path] = None
    _text: dict = field(default_factory=dict)
    _corpus: Any = None
    _corpus_paths: dict = field(default_factory=dict)

    @property
    def store(self):
        return self.searcher.store

    def text_vectors(self, texts: list[str]) -> np.ndarray:
        """Unit text embeddings (cached per text)."""
        todo = [t for t in texts if t not in self._text]
        if todo:
            for t, v in zip(todo, self.encoder.encode_text(todo)):
                self._text[t] = np.asarray(v, dtype=np.float32)
        return np.stack([self._text[t] for t in texts])

    def entry(self, item: EvalItem):
        """The item's stored frame embeddings."""
        return self.store.get(item.video_path)


class ZeroShotAnswerer:
    """Answers from frame embeddings alone (see the module docstring)."""

    def __init__(self, ctx: EvalContext, focus: int = 2):
        self.ctx = ctx
        self.focus = focus

    def hypotheses(self, item: EvalItem) -> tuple[list[str], list[str]]:
        """``(texts to embed, answers they stand for)``; empty when the item cannot be answered."""
        if item.options:
            return list(item.options), list(LETTERS[: len(item.options)])
        if item.answer_space and item.hypothesis_template:
            return [item.hypothesis_template.format(a) for a in item.answer_space], list(item.answer_space)
        return [], []

    def answer(self, item: EvalItem, frame_embeddings: np.ndarray) -> Optional[str]:
        """The best answer given the selected frames' embeddings (``(k, D)``), or None."""
        texts, answers = self.hypotheses(item)
        if not texts or len(frame_embeddings) == 0:
            return None
        emb = np.asarray(frame_embeddings, np.float32)
        if self.focus and len(emb) > self.focus:  # the frames that best match the question
            rel = emb @ self.ctx.text_vectors([item.question])[0]
            emb = emb[np.argsort(-rel, kind="stable")[: self.focus]]
        sims = emb @ self.ctx.text_vectors(texts).T  # (frames, options)
        return answers[int(np.argmax(sims.max(axis=0)))]


def score(item: EvalItem, answer: Optional[str]) -> Optional[bool]:
    """Whether ``answer`` is right (None for grounding items)."""
    if item.task == "grounding":
        return None
    if item.task == "open":
        return normalize_answer(answer) == normalize_answer(item.answer)
    return answer is not None and answer == item.answer


class Method:
    """A named way of answering items of some tasks."""

    name = "method"
    tasks: set = QA_TASKS

    def __init__(self, ctx: EvalContext):
        self.ctx = ctx
        self.answerer = ZeroShotAnswerer(ctx)

    def select(self, item: EvalItem, entry) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, item: EvalItem) -> Prediction:
        """Select frames, answer from them, and score."""
        t0 = time.perf_counter()
        entry = self.ctx.entry(item)
        idx = sorted(self.select(item, entry))
        emb = entry.embeddings_f32[idx]
        answer = self.answerer.answer(item, emb)
        return Prediction(
            item_id=item.item_id, method=self.name, task=item.task, video_id=item.video_id,
            timestamps=[float(entry.timestamps[i]) for i in idx], answer=answer, correct=score(item, answer),
            seconds=time.perf_counter() - t0,
        )

    def _scores(self, item: EvalItem, entry) -> np.ndarray:
        q = self.ctx.text_vectors([item.question])[0]
        return entry.embeddings_f32 @ q


class UniformMethod(Method):
    """``k`` frames evenly spread over the whole video."""

    name = "uniform"

    def select(self, item, entry):
        return uniform_indices(len(entry), self.ctx.k)


class TopKMethod(Method):
    """The ``k`` frames most similar to the question (relevance only, no diversity)."""

    name = "topk"

    def select(self, item, entry):
        s = self._scores(item, entry)
        return np.argsort(-s, kind="stable")[: self.ctx.k].tolist()


class DppMethod(Method):
    """The temporal search without a policy: :meth:`TemporalSearcher.seek` on the question."""

    name = "dpp"

    def __init__(self, ctx: EvalContext, legacy: bool = False):
        super().__init__(ctx)
        self.legacy = legacy
        if legacy:
            self.name = "dpp-legacy"

    def select(self, item, entry):
        if self.legacy:
            rel = minmax_relevance(self._scores(item, entry))
            return greedy_map_dpp(entry.embeddings_f32, rel, self.ctx.k, times=entry.timestamps, eps=1e-4, fill="time")
        sel = self.ctx.searcher.seek(item.video_path, item.question, num_frames=min(self.ctx.k, self.ctx.searcher.max_frames))
        return [f.sample_index for f in sel.frames]


class RetrievalMethod(Method):
    """Plain corpus retrieval without query refinement (grounding items)."""

    name = "retrieval"
    tasks = {"grounding"}

    def __init__(self, ctx: EvalContext, top_k: int = 10):
        super().__init__(ctx)
        self.top_k = top_k

    def predict(self, item: EvalItem) -> Prediction:
        from ..corpus.moments import MomentSearcher

        t0 = time.perf_counter()
        index, path_to_id = self.ctx._corpus, self.ctx._corpus_paths
        if index is None:
            raise InvalidArgumentError("the corpus index was not built; call the runner's prepare step first")
        ms = MomentSearcher(index, self.ctx.encoder, per_video=3, rerank_videos=self.top_k)
        res = ms.search(item.question, top_k=self.top_k)
        moments = [(path_to_id.get(str(Path(m.path).resolve()), m.video_id), float(m.start), float(m.end)) for m in res.moments]
        inside = ms.search(item.question, top_k=self.top_k, video=str(item.video_path))
        windows = [(float(m.start), float(m.end)) for m in inside.moments]
        q = self.ctx.text_vectors([item.question])[0]
        ranked = [path_to_id.get(str(Path(index.get_video(v).path).resolve()), v) for v, _ in ms.rank_videos(q, self.top_k)]
        return Prediction(
            item_id=item.item_id, method=self.name, task=item.task, video_id=item.video_id,
            moments=moments, windows=windows, seconds=time.perf_counter() - t0, extra={"ranked_videos": ranked},
        )


class PolicyMethod(Method):
    """A policy through the real temporal graph (``build_temporal_graph`` + ``AgentRunner``).

    Args:
        ctx: The run's context (its searcher serves the policy's searches).
        policy: The policy.
        max_turns: Turn budget (default: the policy's manifest's, else 8).
        label: Name of the policy's rows (default ``policy``).
        observation: ``"images"`` or ``"text"`` (default: as the policy reads them - text for a
            ``text_only`` policy, see :func:`~agent_tools.graphs.build_temporal_graph`).
        tagger: The text observations' :class:`~agent_tools.observations.FrameTagger` (default:
            the manifest's ``tag_vocabulary`` over the run's encoder, if any).
    """

    name = "policy"

    def __init__(
        self,
        ctx: EvalContext,
        policy: Any,
        max_turns: Optional[int] = None,
        label: Optional[str] = None,
        *,
        observation: Optional[str] = None,
        tagger: Any = None,
    ):
        super().__init__(ctx)
        from ..agent_cli import episode_settings
        from ..graphs import AgentRunner, build_temporal_graph

        self.policy = policy
        episode = episode_settings(getattr(policy, "manifest", None), max_turns=max_turns)
        self.max_turns = episode["max_turns"]
        graph = build_temporal_graph(
            policy, ctx.searcher, force_answer=True, observation=observation, tagger=tagger, **episode
        )
        self.runner = AgentRunner(graph, max_turns=self.max_turns)
        if label:
            self.name = label

    def predict(self, item: EvalItem) -> Prediction:
        t0 = time.perf_counter()
        rollout = self.runner.run(item.prompt(), str(item.video_path))
        raw = rollout.answer
        answer = parse_choice(raw, item.options) if item.options else raw
        return Prediction(
            item_id=item.item_id, method=self.name, task=item.task, video_id=item.video_id,
            timestamps=rollout.searched_timestamps, answer=answer, correct=score(item, answer),
            seconds=time.perf_counter() - t0, extra={"raw_answer": raw, "status": rollout.status, "turns": len(rollout.turns)},
        )


BASELINES: dict[str, Any] = {
    "uniform": UniformMethod,
    "topk": TopKMethod,
    "dpp": DppMethod,
    "dpp-legacy": lambda ctx: DppMethod(ctx, legacy=True),
    "retrieval": RetrievalMethod,
}


def make_methods(ctx: EvalContext, names: list[str]) -> list[Method]:
    """Instantiate baselines by name.

    Raises:
        InvalidArgumentError: An unknown name (the message lists the valid ones).
    """
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise InvalidArgumentError(f"unknown method(s) {', '.join(bad)}; valid: {', '.join(BASELINES)} (and --policy)")
    return [BASELINES[n](ctx) for n in names]
