"""Held-out accuracy of saved text-policy checkpoints on a fresh synthetic world (a larger held-out set).

``bench_learning_text.py`` scores each policy on its world's 12 held-out questions, where one
question is 0.083. This script renders another world (``--world-seed``, default 1: videos,
events and questions none of the checkpoints trained on), asks every colour question of its
test split (``--test-videos`` videos, ~1.6 questions each) through the same text-mode graph and
the same rule (:func:`bench_learning_text.evaluate`), and writes the figures per checkpoint.

Usage::

    python benchmarks/eval_learning_checkpoints.py --encoder-dir DIR \\
        sft0=WORK/sft-seed0 grpo0=WORK/grpo-seed0 [...] --out benchmarks/results/learning_text_fresh_world.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="LABEL=PATH of a saved SmolLM2 text policy")
    p.add_argument("--world-seed", type=int, default=1)
    p.add_argument("--test-videos", type=int, default=24)
    p.add_argument("--encoder", default="world-tiny")
    p.add_argument("--encoder-dir", default=None, help="a local open_clip folder trained on the world")
    p.add_argument("--encoder-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--preview-frames", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--eval-batch", type=int, default=6, help="episodes at a time, their turns generated as one batch")
    p.add_argument("--work", default=None, help="world and embedding cache (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args(argv)
    pairs = []
    for item in args.checkpoints:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            p.error(f"checkpoint {item!r}: expected LABEL=PATH with PATH a policy folder")
        pairs.append((label, path))
    import torch

    torch.set_num_threads(1)
    import bench_learning_text as B

    from agent_tools.observations import EncoderTagger, world_vocabulary
    from agent_tools.policies.smollm2 import load_smollm2

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="eval-learning-"))
    world = B.build_world(work, n_train=1, n_test=args.test_videos, seed=args.world_seed)
    _, searcher = B._searcher(args, work)
    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=1)
    questions = B.load_questions(world, "test")
    results: dict[str, Any] = {"world_seed": args.world_seed, "questions": len(questions), "checkpoints": {}}
    for label, path in pairs:
        policy = load_smollm2(path=path, tagger=tagger, max_new_tokens=args.max_new_tokens)
        policy.model.eval()
        ev = B.evaluate(policy, searcher, questions, max_turns=args.max_turns, preview_frames=args.preview_frames,
                        batch=args.eval_batch)
        ev["path"] = path
        results["checkpoints"][label] = ev
        print(f"{label}: accuracy {ev['accuracy']:.3f} ({round(ev['accuracy'] * len(questions))}/{len(questions)}), "
              f"valid-turn rate {ev['valid_turn_rate']:.2f}, search precision {ev['search_precision']:.2f} "
              f"({ev['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
