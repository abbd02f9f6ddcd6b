"""Batched episodes vs one by one: a SmolLM2 text policy over the world's held-out questions.

The same questions run through the same text-mode temporal graph
(:func:`learning_text_tasks.evaluate`) once per ``--batch`` value, in this process: 1 is the
baseline (one episode at a time, one sequence per ``generate``); N runs N episodes at a time
with their turns generated as one left-padded batch per round
(:class:`agent_tools.policies.BatchedPolicy`). Prints seconds, episodes per minute, the speed-up
over batch 1 and whether every episode wrote the same turns (greedy decoding: it should).

Usage::

    python benchmarks/bench_batched_eval.py --policy WORK/sft-seed0 --encoder-dir DIR --work WORK \\
        --batch 1 6 12 --out benchmarks/results/batched_eval.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--policy", default=None, help="a saved SmolLM2 text policy folder (default: the base model)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 6, 12], help="episodes at a time; the first is the baseline")
    p.add_argument("--questions", type=int, default=12)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--encoder", default="world-tiny")
    p.add_argument("--encoder-dir", default=None, help="a local open_clip folder trained on the world")
    p.add_argument("--encoder-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", default=None, help="world and embedding cache (default: a temporary folder)")
    p.add_argument("--train-videos", type=int, default=32, help="the world's train videos (bench_learning_text: 20 + 12)")
    p.add_argument("--test-videos", type=int, default=8)
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    import bench_learning_text as B  # this script's folder is on sys.path; it puts the repository there too

    from agent_tools.observations import EncoderTagger, world_vocabulary
    from agent_tools.policies.smollm2 import load_smollm2

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-batched-eval-"))
    world = B.build_world(work, n_train=args.train_videos, n_test=args.test_videos)
    _, searcher = B._searcher(args, work)
    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=1)
    questions = B.load_questions(world, "test", args.questions)
    policy = load_smollm2(path=args.policy, tagger=tagger, max_new_tokens=64)
    policy.model.eval()
    B.evaluate(policy, searcher, questions[:1], max_turns=2, preview_frames=2)  # warm-up: embeddings, tags
    rows, base = [], None
    for batch in args.batch:
        ev = B.evaluate(policy, searcher, questions, max_turns=2, preview_frames=2, batch=batch, keep_turns=True)
        base = base or ev
        row = {"batch": batch, "seconds": ev["seconds"], "episodes_per_min": 60 * len(questions) / ev["seconds"],
               "speedup": base["seconds"] / ev["seconds"], "accuracy": ev["accuracy"],
               "same_turns_as_baseline": ev["all_turns"] == base["all_turns"]}
        rows.append(row)
        print(f"batch {batch:>2}: {ev['seconds']:.0f} s for {len(questions)} episodes ({row['episodes_per_min']:.1f}/min), "
              f"x{row['speedup']:.2f} vs batch {args.batch[0]}, accuracy {ev['accuracy']:.2f}, "
              f"same turns: {row['same_turns_as_baseline']}", flush=True)
    res = {"policy": args.policy or "SmolLM2-135M-Instruct (base)", "questions": len(questions), "threads": args.threads,
           "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
