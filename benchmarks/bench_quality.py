"""Search quality offline: synthetic world -> world encoder training -> ``videoseek eval``.

Builds a world (:mod:`agent_tools.world`), trains the tiny ``world-tiny`` image-text encoder on the
world renderer's frame/caption pairs (:mod:`training.world_encoder`), then runs the evaluation
harness on the world's held-out (test) split with every baseline side by side:

- LV-Haystack format (every shape event + the needle): temporal P/R/F1 (5 s) and QA accuracy for
  ``uniform``, ``topk``, ``dpp`` and ``dpp-legacy`` (the pre-issue-10 DPP floor and fill);
- open-ended numbers (exact answers): accuracy;
- TVR format (grounding across the test corpus): VR R@K, SVMR / VCMR R@K at IoU 0.3/0.5/0.7, mIoU
  for ``retrieval`` (the corpus index + moment localisation, no query refinement).

Answers of the baselines come from the documented zero-shot answerer
(:class:`agent_tools.evaluation.baselines.ZeroShotAnswerer`: each option is embedded with the
same encoder and scored by its best cosine similarity over the selected frames).

Usage::

    python benchmarks/bench_quality.py                 # default size (see --help), results in benchmarks/results/
    python benchmarks/bench_quality.py --quick         # a smaller world and fewer steps
    python benchmarks/bench_quality.py --encoder-dir runs/world-tiny   # trained before: python -m training.world_encoder --out runs/world-tiny

Prints the tables and writes ``benchmarks/results/quality.md``, ``quality.json`` and
``quality_<task>.png``; the world, the cache and the checkpoint go to ``--work`` (a temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-videos", type=int, default=4)
    p.add_argument("--min-duration", type=float, default=120.0)
    p.add_argument("--max-duration", type=float, default=300.0)
    p.add_argument("--needle-duration", type=float, default=3600.0, help="seconds of the needle video (1 per split)")
    p.add_argument("--steps", type=int, default=None, help="encoder training steps (default: training.world_encoder's)")
    p.add_argument("--pairs", type=int, default=None)
    p.add_argument("--encoder-dir", default=None, help="use this trained world encoder folder instead of training one")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="2 test videos of 1-2 min, a 5-min needle video, 120 steps")
    p.add_argument("--results", default=str(RESULTS))
    a = p.parse_args(argv)
    from training.world_encoder import DEFAULTS

    a.steps = a.steps or DEFAULTS["steps"]
    a.pairs = a.pairs or DEFAULTS["pairs"]
    if a.quick:
        a.test_videos, a.min_duration, a.max_duration, a.needle_duration, a.steps, a.pairs = 2, 60.0, 120.0, 300.0, 300, 3000
    work = Path(a.work or tempfile.mkdtemp(prefix="videoseek-quality-"))
    cache = work / "cache"
    os.environ["VIDEOSEEK_CACHE_DIR"] = str(cache)  # the registry resolves world-tiny under it
    import torch

    torch.set_num_threads(a.threads)
    from agent_tools.evaluation import run_eval
    from agent_tools.world import WorldConfig, make_world
    from training.world_encoder import train_world_encoder

    t0 = time.perf_counter()
    cfg = WorldConfig(seed=a.seed, n_train=1, n_test=a.test_videos, min_duration=a.min_duration,
                      max_duration=a.max_duration, needle_videos=1, needle_duration=a.needle_duration)
    make_world(work / "world", cfg)
    t_world = time.perf_counter() - t0
    print(f"world: {len(list((work / 'world' / 'videos').glob('*.mp4')))} videos in {t_world:.0f}s -> {work / 'world'}", flush=True)
    enc_dir = cache / "encoders" / "world-tiny"
    if a.encoder_dir:  # a checkpoint trained elsewhere: its own summary, tags measured here
        from training.world_encoder import evaluate_tags

        shutil.copytree(a.encoder_dir, enc_dir, dirs_exist_ok=True)
        summary = json.loads((enc_dir / "train_summary.json").read_text())
        summary.update(out_dir=str(enc_dir), source=str(a.encoder_dir), tag_accuracy=evaluate_tags(enc_dir))
        a.steps = summary.get("steps", a.steps)
    else:
        summary = train_world_encoder(enc_dir, steps=a.steps, pairs=a.pairs, seed=a.seed,
                                      threads=a.threads, log_every=max(1, a.steps // 6))
    print(f"encoder: {summary}", flush=True)
    runs = {
        "lv_haystack.json": ["uniform", "topk", "dpp", "dpp-legacy"],
        "open_qa.json": ["uniform", "topk", "dpp"],
        "tvr.jsonl": ["retrieval"],
    }
    metrics, files = {}, {}
    for name, methods in runs.items():
        t1 = time.perf_counter()
        res = run_eval(work / "world" / "test" / name, work / "world" / "videos", work / "eval" / name,
                       encoder="world-tiny", methods=methods, k=a.k, progress=False)
        metrics.update(res["metrics"])
        files[name] = res["files"]
        print(f"eval {name}: {time.perf_counter() - t1:.0f}s", flush=True)
    total = time.perf_counter() - t0
    from agent_tools.evaluation import markdown_report

    hay = metrics["haystack"]
    ratio_f1 = hay["dpp"]["f1"] / max(hay["uniform"]["f1"], 1e-9)
    ratio_acc = hay["dpp"]["accuracy"] / max(hay["uniform"]["accuracy"], 1e-9)
    head = (
        f"world seed {a.seed}: {a.test_videos} test videos of {a.min_duration:g}-{a.max_duration:g} s + a "
        f"{a.needle_duration:g} s needle video; encoder world-tiny {a.steps} steps ({summary['seconds']:.0f}s, "
        f"held-back image->caption top-1 {summary['train_top1']:.2f}); k={a.k}; total {total:.0f}s"
    )
    if summary.get("tag_accuracy"):
        from training.world_encoder import format_tags

        head += "\n\n" + format_tags(summary["tag_accuracy"])
    md = markdown_report(metrics, title="Search quality on the synthetic world (held-out split)")
    g = metrics["grounding"]["retrieval"]
    head += (f"\n\ndpp vs uniform: temporal F1 x{ratio_f1:.2f}, QA accuracy x{ratio_acc:.2f}; corpus retrieval "
             f"VR R@1 {100 * g['VR R@1']:.1f}, VCMR R@1 (IoU 0.5) {100 * g['VCMR R@1,IoU=0.5']:.1f}")
    md = md.replace("\n", f"\n{head}\n", 1)
    print(md)
    out = Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.md").write_text(md)
    (out / "quality.json").write_text(json.dumps({"metrics": metrics, "encoder": summary, "args": vars(a),
                                                  "seconds": round(total, 1), "world_seconds": round(t_world, 1)}, indent=2))
    for f in files.values():
        for png in f["plots"]:
            shutil.copy(png, out / f"quality_{png.name}")
    return metrics


if __name__ == "__main__":
    main()
