"""SQR on the synthetic world: paraphrased queries the world-trained retriever misreads, held-out videos.

The situation Soft Query Refinement exists for is a first search that fails because the
retriever misreads the query. Here the retriever is the image-text encoder trained on the
synthetic world only (``world-tiny``, :mod:`training.world_encoder`), whose text tower saw a
closed vocabulary (``red``, ``square``, ``moves from left to right``, ``the number 7``...;
:func:`agent_tools.world.pairs.texts_for`). The queries paraphrase each event's caption with
words that tower never saw but a pretrained LM knows - colour synonyms (``crimson`` for red,
``azure`` for blue...), shape synonyms (``box`` for square, ``disc`` for circle...), action
paraphrases (``slides rightward``...) and digit words (``seven``). Their BPE tokens were never
trained, so a plain query embeds as little more than its template words.

- Corpus: :func:`agent_tools.world.make_world` (``train`` and ``test`` splits of short videos,
  deterministic by ``seed``). Each split's *moment bank* holds every event window and every
  empty stretch between events (cut into pieces of at most ``gap_s``) of every video of that
  split, embedded as the tools embed a moment (:func:`training.sqr.moment_vector`). The top-1
  bank moment for a query is its VCMR top-1 over the split's corpus with these proposals: it
  names the right video and has IoU 1 with the truth window exactly when it is the event's own
  window (every other proposal has IoU 0), so bank R@1 is VCMR R@1 at any IoU threshold.
- Rows: ``per_event`` paraphrases per event. Only queries whose *plain* embedding ranks a
  wrong bank moment first are kept (unrefined R@1 = 0 by construction); the shown (verified,
  rejected) moment is that wrong top-1. :attr:`WorldSQRTask.stats` records, per split, how many
  paraphrases were made and what share the plain query already found, so nothing is hidden.
- Train rows: events of the train-split videos, phrased with :data:`TRAIN_TEMPLATES`; held-out
  rows: events of the test-split videos (moments never trained on, in videos never trained on),
  phrased with :data:`HELD_OUT_TEMPLATES` (never trained on). The synonyms are shared: a word
  never trained on could only be learned from the LM's prior, which this task does not claim.
- Target reply: the canonical caption restated, then the verdict
  (``<think>The query asks for a red square that moves from left to right.</think><answer>not_matched</answer>``;
  ``rewrite=True`` appends the system prompt's ``<query>CAPTION</query>``).
- :func:`corpus_vcmr` - VCMR R@1 through the tools' corpus search (:class:`MomentSearcher` over
  a :class:`CorpusIndex` of the split's videos, variable-length moments) for text or vector
  queries, scored with :func:`agent_tools.metrics.vcmr_recall_at_k`.
- :func:`refined_vectors` - each row's refined query from a frozen policy's cached prefixes.

Names: :data:`COLOUR_WORDS`, :data:`SHAPE_WORDS`, :data:`ACTION_WORDS`, :data:`DIGIT_WORDS`,
:data:`TRAIN_TEMPLATES`, :data:`HELD_OUT_TEMPLATES`, :func:`paraphrase`, :func:`target_reply`,
:class:`WorldSQRTask`, :func:`build_world_task`, :func:`open_corpus`, :func:`corpus_vcmr`,
:func:`refined_vectors`.

Usage::

    task = build_world_task("runs/sqr-world", searcher, seed=0)
    result = train_sqr(cfg, searcher=searcher, policy=policy, examples=task.train,
                       eval_examples=task.held_out, bank=task.train_bank, eval_bank=task.test_bank)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent_tools.errors import InvalidArgumentError
from training.sqr import MomentBank, SQRExample, moment_vector

__all__ = [
    "ACTION_WORDS",
    "COLOUR_WORDS",
    "DIGIT_WORDS",
    "HELD_OUT_TEMPLATES",
    "SHAPE_WORDS",
    "TRAIN_TEMPLATES",
    "WorldSQRTask",
    "build_world_task",
    "corpus_vcmr",
    "open_corpus",
    "paraphrase",
    "refined_vectors",
    "target_reply",
]

# words the world encoder's text tower never saw (tests/test_sqr_world.py checks it against
# agent_tools.world.pairs.texts_for), each meaning one word of the world's vocabulary
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet", "ruby"),
    "green": ("emerald", "lime", "jade"),
    "blue": ("azure", "cobalt", "sapphire"),
    "yellow": ("golden", "lemon", "amber"),
    "magenta": ("fuchsia", "pink", "purple"),
    "cyan": ("turquoise", "aqua", "teal"),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "ring", "ball"),
    "square": ("box", "block", "tile"),
    "triangle": ("wedge", "pyramid", "delta"),
    "cross": ("plus sign", "x mark", "crosshair"),
}
ACTION_WORDS: dict[str, tuple[str, ...]] = {
    "appears": ("pops up", "shows up", "sits still"),
    "moves from left to right": ("slides rightward", "drifts east", "glides rightwards"),
    "moves from right to left": ("slides leftward", "drifts west", "glides leftwards"),
}
DIGIT_WORDS: dict[str, str] = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four",
    "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip
# {c} colour word, {s} shape word, {a} action words, {d} digit word; short: the tower's context is 20
TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a {c} {s} {a}", "the {c} {s} {a}", "{c} {s} {a}", "some {c} {s} {a}"),
    "number": ("a {c} {d}", "the {d} in {c}", "{c} digit {d}", "a {d} coloured {c}"),
}
HELD_OUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("when the {c} {s} {a}", "look for a {c} {s} that {a}"),
    "number": ("when a {c} {d} is displayed", "look for the {c} {d}"),
}
REPLY = "<think>The query asks for {}.</think><answer>not_matched</answer>"
REWRITE = "<query>{}</query>"  # the corpus system prompt's rewritten query after not_matched


def paraphrase(event: Any, template: str, rng: np.random.Generator) -> str:
    """One paraphrase of ``event``'s caption: ``template`` with synonyms drawn by ``rng``.

    Args:
        event: An :class:`agent_tools.world.Event` (shape or number).
        template: A template of its kind (:data:`TRAIN_TEMPLATES` / :data:`HELD_OUT_TEMPLATES`).
        rng: Draws the synonyms.

    Returns:
        The query text.
    """
    c = str(rng.choice(COLOUR_WORDS[event.colour]))
    if event.kind == "number":
        return template.format(c=c, d=DIGIT_WORDS[event.digit])
    return template.format(
        c=c, s=str(rng.choice(SHAPE_WORDS[event.shape])), a=str(rng.choice(ACTION_WORDS[event.action]))
    )


def target_reply(event: Any, rewrite: bool = False) -> str:
    """The reply a row is trained on: the canonical caption restated, ``not_matched``, and the rewritten query.

    Args:
        event: The row's event.
        rewrite: End with ``<query>CAPTION</query>``, the rewritten query the corpus system prompt
            asks for after ``not_matched`` (:data:`agent_tools.protocol.CORPUS_SYSTEM_PROMPT`);
            ``<REFINE>`` then follows the caption's words. Off by default: with the policy frozen
            it learned less (seed 0, 120 steps: held-out R@1 0.29 with it, 0.48 without).
    """
    what = (
        f"the number {event.digit} shown in {event.colour}"
        if event.kind == "number"
        else f"a {event.colour} {event.shape} that {event.action}"
    )
    return REPLY.format(what) + (REWRITE.format(event.caption) if rewrite else "")


@dataclass
class WorldSQRTask:
    """Rows, per-split moment banks and the bookkeeping of the world task.

    Attributes:
        train: Training rows (train-split events, training templates).
        held_out: Held-out rows (test-split events, held-out templates).
        train_bank: Moments of the train split (negatives are mined here).
        test_bank: Moments of the test split (held-out R@1 is ranked here).
        world: The world folder (``world.json``, ``videos/``).
        videos: ``{split: [video paths]}``.
        truths: ``{query: (video path, start, end)}`` of every row.
        stats: Per split: ``events``, ``paraphrases``, ``plain_found`` (share the plain query already
            ranks first, before filtering), ``kept``, ``moments``.
    """

    train: list[SQRExample]
    held_out: list[SQRExample]
    train_bank: MomentBank
    test_bank: MomentBank
    world: Path
    videos: dict[str, list[str]]
    truths: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)


def _gaps(
    events: Sequence[Any], duration: float, gap_s: float, min_s: float = 3.0
) -> list[tuple[float, float]]:
    """Empty stretches between events (and at both ends), cut into pieces of at most ``gap_s``."""
    out, t = [], 0.0
    for lo, hi in [(e.start, e.end) for e in sorted(events, key=lambda e: e.start)] + [(duration, duration)]:
        span = lo - t
        if span >= min_s:
            n = max(1, int(np.ceil(span / gap_s)))
            step = span / n
            out += [(round(t + i * step, 3), round(t + (i + 1) * step, 3)) for i in range(n)]
        t = max(t, hi)
    return out


def _bank(searcher: Any, videos: Sequence[dict], folder: Path, gap_s: float) -> tuple[MomentBank, list]:
    moments, owners = [], []
    for v in videos:
        path = str(folder / f"{v['video_id']}.mp4")
        for e in v["events"]:
            moments.append((path, float(e.start), float(e.end)))
            owners.append(e)
        for lo, hi in _gaps(v["events"], float(v["duration"]), gap_s):
            moments.append((path, lo, hi))
            owners.append(None)
    vecs = torch.stack([moment_vector(searcher, *m) for m in moments])
    return MomentBank(moments, vecs), owners


def build_world_task(
    workdir: str | Path,
    searcher: Any,
    *,
    seed: int = 0,
    n_train: int = 12,
    n_test: int = 6,
    per_event: int = 4,
    held_out_per_event: int = 2,
    kinds: Sequence[str] = ("shape", "number"),
    rewrite: bool = False,
    gap_s: float = 12.0,
    min_duration: float = 60.0,
    max_duration: float = 80.0,
    events_per_minute: float = 3.0,
) -> WorldSQRTask:
    """Render the world under ``workdir`` (reused when present) and build the task over ``searcher``'s encoder.

    Args:
        workdir: Folder for the world (``workdir/world``).
        searcher: ``TemporalSearcher`` over the world-trained encoder (the retriever).
        seed: World and paraphrase seed (the task is a pure function of it and the encoder).
        n_train: Train-split videos.
        n_test: Test-split (held-out) videos.
        per_event: Paraphrases tried per train event (distinct ones kept).
        held_out_per_event: Paraphrases tried per test event.
        kinds: Event kinds used (``shape``, ``number``).
        rewrite: Target replies end with the rewritten query (:func:`target_reply`).
        gap_s: Longest empty-stretch proposal in a bank, seconds.
        min_duration: Shortest video, seconds.
        max_duration: Longest video, seconds.
        events_per_minute: Event density of the world.

    Returns:
        The :class:`WorldSQRTask`.

    Raises:
        InvalidArgumentError: On an unknown kind, non-positive counts, or a split without a kept row.
    """
    from agent_tools.world import WorldConfig, load_manifest, make_world

    bad = set(kinds) - {"shape", "number"}
    if bad or not kinds:
        raise InvalidArgumentError(
            f"kinds must be a non-empty subset of ('shape', 'number'), got {tuple(kinds)!r}"
        )
    if min(n_train, n_test, per_event, held_out_per_event) < 1:
        raise InvalidArgumentError("n_train, n_test, per_event and held_out_per_event must all be >= 1")
    wdir = Path(workdir) / "world"
    cfg = WorldConfig(
        seed=seed, n_train=n_train, n_test=n_test, min_duration=min_duration, max_duration=max_duration,
        needle_videos=0, events_per_minute=events_per_minute,
    )  # fmt: skip
    if not (wdir / "world.json").is_file() or load_manifest(wdir).get("config") != cfg.model_dump():
        make_world(wdir, cfg)
    manifest = load_manifest(wdir)
    rng = np.random.default_rng(seed)
    banks, rows, stats, videos, truths = {}, {}, {}, {}, {}
    for split, templates, tries in (
        ("train", TRAIN_TEMPLATES, per_event),
        ("test", HELD_OUT_TEMPLATES, held_out_per_event),
    ):
        vids = [v for v in manifest["videos"] if v["split"] == split]
        videos[split] = [str(wdir / "videos" / f"{v['video_id']}.mp4") for v in vids]
        bank, owners = _bank(searcher, vids, wdir / "videos", gap_s)
        banks[split] = bank
        out, made, found = [], 0, 0
        for pos, ev in enumerate(owners):
            if ev is None or ev.kind not in kinds:
                continue
            queries = list(dict.fromkeys(
                paraphrase(ev, templates[ev.kind][int(rng.integers(len(templates[ev.kind])))], rng) for _ in range(tries)
            ))  # fmt: skip
            plain = torch.as_tensor(searcher.encoder.encode_text(queries), dtype=torch.float32)
            tops = torch.argmax(plain @ bank.vectors.T, dim=-1).tolist()
            for q, top in zip(queries, tops):
                made += 1
                if top == pos:
                    found += 1  # the plain query already finds it: not a refinement case
                    continue
                out.append(SQRExample(q, bank.moments[top], bank.moments[pos], [], target_reply(ev, rewrite)))
                truths[q] = bank.moments[pos]
        if not out:
            raise InvalidArgumentError(
                f"no {split} paraphrase was misread by the retriever; nothing to refine"
            )
        rows[split] = out
        n_events = sum(o is not None and o.kind in kinds for o in owners)
        stats[split] = {
            "videos": float(len(vids)), "events": float(n_events), "moments": float(len(bank.moments)),
            "paraphrases": float(made), "plain_found": found / max(1, made), "kept": float(len(out)),
        }  # fmt: skip
    return WorldSQRTask(
        rows["train"], rows["test"], banks["train"], banks["test"], wdir, videos, truths, stats
    )


def open_corpus(index_dir: str | Path, encoder: Any, store: Any, videos: Sequence[str]) -> Any:
    """A :class:`~agent_tools.corpus.builder.CorpusIndex` of ``videos`` (built or updated) for ``encoder``.

    Args:
        index_dir: Index folder.
        encoder: The retriever (the searcher's encoder).
        store: The searcher's frame-embedding store (frames are embedded once).
        videos: Video paths of the corpus.

    Returns:
        The index.
    """
    from agent_tools.corpus.builder import CorpusIndex

    index = CorpusIndex.open(Path(index_dir), encoder=encoder, store=store)
    index.update(list(videos))
    return index


def corpus_vcmr(
    moment_searcher: Any,
    queries: Sequence[Any],
    truths: Sequence[tuple[str, float, float]],
    *,
    iou: float = 0.5,
    top_k: int = 1,
) -> tuple[float, list[tuple[str, float, float] | None]]:
    """VCMR R@1 at ``iou`` through the tools' corpus search, for text or vector queries.

    Args:
        moment_searcher: A :class:`~agent_tools.corpus.moments.MomentSearcher` over the split's corpus.
        queries: Query texts or unit vectors (``(D,)`` arrays / tensors).
        truths: Per query ``(video path, start, end)``.
        iou: IoU threshold.
        top_k: Moments asked of the search (R@1 uses the first).

    Returns:
        ``(R@1, each query's top-1 (video path, start, end) or None)``.

    Raises:
        InvalidArgumentError: If the lists differ in length or are empty.
    """
    from agent_tools.metrics import vcmr_recall_at_k

    ranked, gts, tops = [], [], []
    for q, (video, start, end) in zip(queries, truths, strict=True):
        if isinstance(q, torch.Tensor):
            q = q.detach().float().cpu().numpy()
        res = moment_searcher.search(q, top_k=top_k)
        preds = [(str(Path(m.path).resolve()), float(m.start), float(m.end)) for m in res.moments]
        ranked.append(preds)
        gts.append((str(Path(video).resolve()), (float(start), float(end))))
        tops.append(preds[0] if preds else None)
    return vcmr_recall_at_k(ranked, gts, ks=(1,), ious=(iou,))[f"R@1,IoU={iou:g}"], tops


@torch.no_grad()
def refined_vectors(
    model: Any, projector: Any, encoder: Any, examples: Sequence[SQRExample], prefixes: Any
) -> torch.Tensor:
    """Each row's refined query vector from a frozen policy's :class:`~training.sqr_frozen.PrefixCache`.

    Returns:
        ``(N, D)`` unit vectors.
    """
    from agent_tools.policies.soft_refine import refined_query

    was = projector.training
    projector.eval()
    try:
        out = []
        for s in range(0, len(examples), 16):
            idx = list(range(s, min(len(examples), s + 16)))
            latents, _ = prefixes.rollout(model, projector, idx)
            out.append(
                refined_query(encoder, [examples[i].query for i in idx], projector.soft_tokens(latents))
            )
    finally:
        projector.train(was)
    return torch.cat(out)
