"""Zero-shot frame tags of the world encoder on held-out videos, through the real text-observation path.

The text-only policy of ``bench_learning_text.py`` sees each frame as its timestamp plus the
encoder's zero-shot tags (:class:`agent_tools.observations.EncoderTagger` over
:func:`agent_tools.observations.world_vocabulary`). This benchmark measures whether those tags
name the event on screen, on the same world as that benchmark (seed 0, 6 train / 3 held-out
minute-long videos, 3 events a minute; ``--test-videos`` adds more held-out videos after those
3): the videos are rendered and encoded to H.264, the searcher decodes and embeds them at the
store's rate, and the tagger takes the stored frame nearest each of 25/50/75 % of every
held-out event (:func:`agent_tools.world.tags.tag_accuracy`).

Printed and written to ``benchmarks/results/world_tags.json``: top-1 / top-k accuracy by
attributes (shape or digit + colour: what one frame shows) and by exact caption, each next to a
uniformly random ranking (chance) and its ratio to chance, plus the figure
``bench_learning_text`` prints (top-1 exact caption at event midpoints).

Usage::

    python benchmarks/bench_world_tags.py --encoder-dir runs/world-tiny  # from: python -m training.world_encoder --out runs/world-tiny
    python benchmarks/bench_world_tags.py                  # trains an encoder first (training.world_encoder defaults)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder-dir", default=None, help="a local open_clip folder (default: train one into the work folder)")
    p.add_argument("--test-videos", type=int, default=3, help="held-out videos (the first 3 are bench_learning_text's)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="work folder (world, caches); default a temporary one")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from agent_tools.encoders.registry import EncoderSpec, register_encoder
    from agent_tools.observations import EncoderTagger, world_vocabulary
    from agent_tools.world import WorldConfig, make_world
    from agent_tools.world.tags import tag_accuracy
    from training.common import build_searcher
    from training.world_encoder import format_tags, train_world_encoder

    work = Path(a.work or tempfile.mkdtemp(prefix="bench-world-tags-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = work / "world"
    if not (world / "world.json").is_file():
        make_world(world, WorldConfig(seed=0, n_train=6, n_test=a.test_videos, min_duration=60, max_duration=80,
                                      needle_videos=0, events_per_minute=3.0, size=128))
    train = None
    enc_dir = Path(a.encoder_dir) if a.encoder_dir else work / "encoder"
    if not a.encoder_dir and not (enc_dir / "open_clip_config.json").is_file():
        train = train_world_encoder(enc_dir, threads=a.threads, log_every=0, eval_tags=False)
    register_encoder(EncoderSpec(name="world-tiny-tags", description="world encoder under bench_world_tags",
                                 model=f"local-dir:{enc_dir.resolve()}", tokenizer="clip-bpe", trained=True))
    searcher = build_searcher("world-tiny-tags", cache_dir=str(work / "cache"), device="cpu")
    vocab = world_vocabulary()
    tagger = EncoderTagger(searcher, vocab, top_k=a.top_k)
    t1 = time.perf_counter()
    figures = tag_accuracy(tagger, world, vocab, split="test", top_k=a.top_k)
    midpoint = tag_accuracy(tagger, world, vocab, split="test", top_k=a.top_k, points=(0.5,))
    seconds = time.perf_counter() - t1
    figures["bench_learning_text_figure"] = midpoint["top1_exact"]
    print(f"world {world} (seed 0, {a.test_videos} held-out videos); encoder {enc_dir}")
    print(format_tags(figures))
    print("\n| figure | world encoder | chance | ratio |")
    print("|---|---|---|---|")
    for key, chance in (("top1_attributes", "chance_top1_attributes"), ("topk_attributes", "chance_topk_attributes"),
                        ("top1_exact", "chance_top1_exact"), ("topk_exact", "chance_topk_exact")):
        label = key.replace("topk", f"top{a.top_k}")
        print(f"| {label} | {figures[key]:.2f} | {figures[chance]:.3f} | x{figures[key] / max(figures[chance], 1e-9):.0f} |")
    print(f"\nbench_learning_text's figure (top-1 exact caption at event midpoints): {midpoint['top1_exact']:.2f}; "
          f"attributes at midpoints {midpoint['top1_attributes']:.2f}")
    print(f"time: setup (world{', encoder training' if train else ''}) {t1 - t0:.0f} s, tagging {seconds:.1f} s")
    out = Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    result = {"figures": figures, "midpoint": midpoint, "encoder_dir": str(enc_dir), "train": train, "args": vars(a),
              "seconds": {"setup": round(t1 - t0, 1), "tagging": round(seconds, 1)}}
    (out / "world_tags.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
