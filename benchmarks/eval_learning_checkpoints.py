"""Held-out accuracy of saved text-policy checkpoints on a fresh synthetic world (a larger held-out set).

``bench_learning_text.py`` scores each policy on its world's 12 held-out questions, where one
question is 0.083. This script renders another world (``--world-seed``, default 1: videos,
events and questions none of the checkpoints trained on), asks every colour question of its
test split (``--test-videos`` videos, ~1.6 questions each) through the same text-mode graph and
the same rule (:func:`learning_text_tasks.evaluate`), and writes the figures per checkpoint.

Two more views of the same policies:

- ``--world WORK/world --test-questions 12``: the proof's own held-out questions again (greedy
  turns are deterministic, so this reproduces the proof's figures), now with each question's
  result and the split by ``shape_shared`` (the video has another event of the asked shape,
  which one frame's tag cannot tell apart).
- ``--samples K --temperature T``: each question asked K times with sampled turns; the accuracy
  is the mean over the samples. GRPO optimises exactly this (the expected reward of sampled
  rollouts at its rollout temperature, 1.0 in the proof), which a greedy answer shows only when
  it flips.

Every run also scores the reference ``demonstrated_protocol``: the SFT demonstrations' search
and reading with no policy (:func:`learning_text_tasks.demonstrated_protocol`).

Usage::

    python benchmarks/eval_learning_checkpoints.py --encoder-dir DIR \\
        sft0=WORK/sft-seed0 grpo0=WORK/grpo-seed0 [...] --out benchmarks/results/learning_text_fresh_world.json
    python benchmarks/eval_learning_checkpoints.py --encoder-dir DIR --world WORK/world --test-questions 12 \\
        --samples 4 --temperature 1.0 sft0=WORK/sft-seed0 grpo0=WORK/grpo-seed0 --out sampled.json
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

__all__ = ["main", "plot"]


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
    p.add_argument("--num-frames", type=int, default=2,
                   help="frames per search of the demonstrated protocol (the reference; bench_learning_text's default)")
    p.add_argument("--samples", type=int, default=1,
                   help="episodes per question; with --temperature > 0 the accuracy is the mean over these samples")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy turns (the default); > 0: sampled turns, e.g. GRPO's rollout temperature 1.0")
    p.add_argument("--sample-seed", type=int, default=0, help="torch seed set before each checkpoint's sampled episodes")
    p.add_argument("--world", default=None,
                   help="score an existing world folder's test split instead of rendering one (e.g. the proof's WORK/world)")
    p.add_argument("--test-questions", type=int, default=None, help="only the first N test questions (12 with --world WORK/world: the proof's held-out set)")
    p.add_argument("--work", default=None, help="world and embedding cache (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args(argv)
    if args.samples < 1 or args.temperature < 0:
        p.error("--samples must be at least 1 and --temperature at least 0")
    if args.samples > 1 and args.temperature == 0:
        p.error("--samples > 1 needs --temperature > 0: greedy episodes of one question are all the same")
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
    if args.world:
        world = Path(args.world)
        if not (world / "world.json").is_file():
            p.error(f"--world {world}: not a world folder (no world.json)")
    else:
        world = B.build_world(work, n_train=1, n_test=args.test_videos, seed=args.world_seed)
    _, searcher = B._searcher(args, work)
    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=1)
    questions = B.load_questions(world, "test", args.test_questions)
    sampled = args.temperature > 0
    results: dict[str, Any] = {"world": str(world) if args.world else None,
                               "world_seed": None if args.world else args.world_seed, "questions": len(questions),
                               "samples": args.samples, "temperature": args.temperature,
                               "shape_shared": [q["shape_shared"] for q in questions], "checkpoints": {}}
    # the reference: the SFT demonstrations' search and reading, with no policy (what a perfect imitator scores)
    results["demonstrated_protocol"] = B.demonstrated_protocol(
        questions, searcher, tagger, num_frames=args.num_frames, max_turns=args.max_turns, preview_frames=args.preview_frames)
    ref = results["demonstrated_protocol"]
    print(f"demonstrated protocol (no policy): accuracy {ref['accuracy']:.3f} ({sum(ref['correct'])}/{len(questions)}), "
          f"shape unique / shared {_fmt(ref['accuracy_shape_unique'])} / {_fmt(ref['accuracy_shape_shared'])}", flush=True)
    for label, path in pairs:
        kw = {"do_sample": True, "temperature": args.temperature} if sampled else {}
        policy = load_smollm2(path=path, tagger=tagger, max_new_tokens=args.max_new_tokens, **kw)
        policy.model.eval()
        torch.manual_seed(args.sample_seed)  # the same seed for every checkpoint
        ev = B.evaluate(policy, searcher, questions * args.samples, max_turns=args.max_turns,
                        preview_frames=args.preview_frames, batch=args.eval_batch)
        # per question: the share of its samples answered right (samples of question i are i, i + n, ...)
        n = len(questions)
        ev["per_question"] = [sum(ev["correct"][i::n]) / args.samples for i in range(n)]
        ev["path"] = path
        results["checkpoints"][label] = ev
        print(f"{label}: accuracy {ev['accuracy']:.3f} ({sum(ev['correct'])}/{len(ev['correct'])} episodes"
              f"{f', {args.samples} sampled per question at T={args.temperature}' if sampled else ''}), "
              f"shape unique / shared {_fmt(ev['accuracy_shape_unique'])} / {_fmt(ev['accuracy_shape_shared'])}, "
              f"valid-turn rate {ev['valid_turn_rate']:.2f}, search precision {ev['search_precision']:.2f} "
              f"({ev['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))
        print(f"plot: {plot(results, Path(args.out).with_suffix('.png'))}")
    return results


def plot(results: dict[str, Any], path: Path) -> Path:
    """Bars of each checkpoint's held-out accuracy and answered rate, in the order given; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results["checkpoints"])
    evs = [results["checkpoints"][k] for k in labels]
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 1.5), 3.4))
    ax.bar([i - 0.2 for i in x], [e["accuracy"] for e in evs], width=0.4, label="accuracy")
    ax.bar([i + 0.2 for i in x], [e["answered"] for e in evs], width=0.4, label="answered", alpha=0.6)
    for i, e in zip(x, evs):
        ax.text(i - 0.2, e["accuracy"] + 0.02, f"{e['accuracy']:.2f}", ha="center", fontsize=7)
    if results.get("demonstrated_protocol"):
        ref = results["demonstrated_protocol"]["accuracy"]
        ax.axhline(ref, color="grey", linestyle="--", linewidth=1, label=f"demonstrated protocol, no policy ({ref:.2f})")
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("held-out rate")
    how = (f"{results['samples']} sampled episodes per question, T={results['temperature']}"
           if results.get("temperature") else "greedy")
    ax.set_title(f"{results['questions']} held-out questions, {how}", fontsize=9)
    ax.legend(fontsize=7, loc="upper center", ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
