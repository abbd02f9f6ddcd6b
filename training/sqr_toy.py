"""A small SQR task that can be learned and measured honestly on CPU with the untrained tiny encoder.

Split from :mod:`training.sqr`. The retriever is the *untrained* ``tiny-untrained`` encoder, so a
plain text query points at an arbitrary moment. The task is built so that refinement is needed
and possible:

- Moments: scenes of synthetic videos (:func:`agent_tools.synthetic.write_indexed_video`),
  embedded by the retriever; ``num_moments`` of them, chosen greedily so no two are
  near-duplicates under that encoder (farthest-point selection on cosine similarity).
- Each moment gets a key word (``amber``, ``azure``...). A query names its key inside a template
  ("find the amber scene"); the right moment is the key's moment. The information is in what
  the policy sees (the query), not in what the untrained text tower makes of it.
- The policy's target reply restates the key and rejects the shown moment:
  ``<think>The query asks for amber.</think><answer>not_matched</answer>``
  (then ``<REFINE>``).
- Only queries whose plain text embedding ranks a *wrong* moment first are kept (the situation
  SQR exists for: the first search failed); the shown moment is that wrong top-1. So the
  unrefined R@1 is 0 by construction; chance is ``1 / num_moments``.
- Held out: the evaluation queries use templates never seen in training (the keys and moments
  are shared: a key never trained on cannot be learned from anything). ``train_templates``
  picks how many of the 12 training phrasings are used (more rows, better generalisation; the
  test takes 4, the benchmark 8).

Names: :data:`KEYS`, :data:`TRAIN_TEMPLATES`, :data:`HELD_OUT_TEMPLATES`, :class:`ToyTask`,
:func:`build_toy_task`, :func:`write_toy_jsonl`.

Usage::

    task = build_toy_task("runs/sqr-toy", searcher)
    result = train_sqr(cfg, searcher=searcher, policy=policy, examples=task.train,
                       eval_examples=task.held_out, bank=task.bank)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.sqr import MomentBank, SQRExample, moment_vector

__all__ = ["HELD_OUT_TEMPLATES", "KEYS", "TRAIN_TEMPLATES", "ToyTask", "build_toy_task", "write_toy_jsonl"]

KEYS = (
    "amber", "azure", "coral", "crimson", "indigo", "ivory", "jade", "lemon", "lilac", "maroon",
    "navy", "ochre", "olive", "peach", "plum", "ruby", "sable", "teal", "umber", "violet",
)  # fmt: skip
TRAIN_TEMPLATES = (
    "find the {} scene", "show me where the {} part is", "the moment that looks {}", "where is {}",
    "the {} shot please", "I need the part with {}", "go to the {} moment", "{} scene",
    "locate the clip that is {}", "which part shows {}", "the section colored {}", "search for {} frames",
)  # fmt: skip
HELD_OUT_TEMPLATES = ("I am looking for the {} segment of the video", "jump to {}")
REPLY = "<think>The query asks for {}.</think><answer>not_matched</answer>"


@dataclass
class ToyTask:
    """Training rows, held-out rows, the moment bank and each key's moment."""

    train: list[SQRExample]
    held_out: list[SQRExample]
    bank: MomentBank
    key_moments: dict[str, tuple[str, float, float]]


def _farthest(vectors: torch.Tensor, k: int) -> list[int]:
    sims = vectors @ vectors.T
    chosen = [int(torch.argmin(sims.mean(1)))]
    while len(chosen) < k:
        worst = sims[:, chosen].max(1).values
        worst[chosen] = float("inf")
        chosen.append(int(torch.argmin(worst)))
    return chosen


def build_toy_task(
    workdir: str | Path,
    searcher: Any,
    *,
    num_moments: int = 20,
    videos: int = 3,
    scenes_per_video: int = 10,
    train_templates: Sequence[str] = TRAIN_TEMPLATES,
) -> ToyTask:
    """Write the videos under ``workdir`` and build the task over ``searcher``'s encoder.

    Args:
        workdir: Folder for the synthetic videos (created; reused when present).
        searcher: ``TemporalSearcher`` over the retriever encoder (``tiny-untrained`` in tests).
        num_moments: Moments (= keys) in the bank; at most ``len(KEYS)``.
        videos: Synthetic videos written.
        scenes_per_video: Scenes per video (2 s each).
        train_templates: Training phrasings (``{}`` is the key; default :data:`TRAIN_TEMPLATES`).

    Returns:
        The :class:`ToyTask`.
    """
    from agent_tools.errors import InvalidArgumentError
    from agent_tools.synthetic import write_indexed_video

    if not 2 <= num_moments <= min(len(KEYS), videos * scenes_per_video):
        raise InvalidArgumentError(
            f"num_moments must be 2..{min(len(KEYS), videos * scenes_per_video)}, got {num_moments}"
        )
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    cands = []
    for v in range(videos):
        path = d / f"toy{v}.mp4"
        if not path.is_file():
            write_indexed_video(
                path, duration=2.0 * scenes_per_video, fps=10, size=(160, 120), scene_seconds=2.0, seed=v + 1
            )
        cands += [(str(path), 2.0 * i + 0.25, 2.0 * i + 1.75) for i in range(scenes_per_video)]
    vecs = torch.stack([moment_vector(searcher, *m) for m in cands])
    pick = _farthest(vecs, num_moments)
    moments = [cands[i] for i in pick]
    bank = MomentBank(moments, vecs[pick])
    keys = dict(zip(KEYS, moments))

    def rows(templates: Sequence[str]) -> list[SQRExample]:
        out = []
        for key, m in keys.items():
            for t in templates:
                q = t.format(key)
                plain = torch.as_tensor(searcher.encoder.encode_text([q]))[0]
                top = int(torch.argmax(bank.vectors @ plain))
                if top == bank.id(m):
                    continue  # the plain query already finds it: not a refinement case
                out.append(SQRExample(q, bank.moments[top], m, [], REPLY.format(key)))
        return out

    return ToyTask(rows(train_templates), rows(HELD_OUT_TEMPLATES), bank, keys)


def write_toy_jsonl(task: ToyTask, directory: str | Path) -> tuple[Path, Path]:
    """Write ``sqr_train.jsonl`` and ``sqr_heldout.jsonl`` (``training.sqr``'s row format)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)

    def m(x: tuple) -> dict:
        return {"video": x[0], "start": x[1], "end": x[2]}

    paths = []
    for name, exs in (("sqr_train.jsonl", task.train), ("sqr_heldout.jsonl", task.held_out)):
        p = d / name
        p.write_text(
            "".join(
                json.dumps(
                    {
                        "query": e.query,
                        "shown": m(e.shown),
                        "positive": m(e.positive),
                        "negatives": [m(n) for n in e.negatives],
                        "reply": e.reply,
                    }
                )
                + "\n"
                for e in exs
            )
        )
        paths.append(p)
    return paths[0], paths[1]
