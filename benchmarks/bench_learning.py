"""The whole learning proof as one command (issue 10, deliverable 4): SFT, GRPO-CSV and SQR, three seeds each.

Runs, one after the other, in child processes of this interpreter:

1. ``bench_learning_text.py --parallel``: SmolLM2-135M as a text-only search policy on the
   synthetic world; SFT raises valid turns over the base model, GRPO-CSV then trains from the SFT
   start (held-out accuracy, SFT start vs GRPO; mean reward per step);
2. ``bench_learning_sqr.py --task world --steps 80``: Soft Query Refinement with the frozen
   SmolLM2 over the world's corpus (held-out VCMR R@1, unrefined vs refined, at steps 0, 40 and 80;
   ``--sqr-steps``).
3. only with ``--sampled-eval K``: ``eval_learning_checkpoints.py --samples K --temperature T``
   on the SFT and GRPO-CSV checkpoints of phase 1 (one process per seed): the same held-out
   questions, each asked K times with sampled turns at T, phase 1's GRPO rollout temperature
   (1.0), so the accuracy is the expected reward GRPO optimises rather than one greedy answer
   per question. It writes ``learning_proof_sampled.{json,png}``; with K = 4 it adds about 15
   minutes (14.4 measured) to the other phases' 38.

Both read the same world encoder (``--encoder-dir``; without it ``world-tiny`` from the registry,
else each script trains one). The text script writes its JSON and PNGs under ``--out``, the SQR
phase's land there as ``learning_proof_sqr_world.{json,png}``; this one prints their headline
figures side by side with the wall time of each phase and writes ``learning_proof.json``.

Usage::

    python benchmarks/bench_learning.py --encoder-dir /path/to/world-encoder   # or: make bench-learning
    python benchmarks/bench_learning.py --skip-sqr                             # the text phases only
    python benchmarks/bench_learning.py --encoder-dir DIR --work WORK --sampled-eval 4   # + the sampled held-out eval
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["main", "sampled_eval", "summary"]


def _run(script: str, argv: list[str]) -> float:
    """Run ``benchmarks/<script>`` with ``argv`` (output streamed); return its wall seconds."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *argv]
    print(f"[proof] {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    if rc != 0:
        raise SystemExit(f"{script} failed with exit status {rc}")
    return time.perf_counter() - t0


def _halves(rewards: list[float]) -> dict[str, float]:
    """Mean reward of the first and the last half of the steps (one step's 8 rollouts are a noisy figure)."""
    h = max(1, len(rewards) // 2)
    return {"reward_mean_first_half": sum(rewards[:h]) / h, "reward_mean_last_half": sum(rewards[-h:]) / h}


def summary(out: Path, seconds: dict[str, float]) -> dict[str, Any]:
    """The headline figures of the phases' result files under ``out``."""
    res: dict[str, Any] = {"seconds": seconds}
    text = out / "learning_text.json"
    if text.is_file():
        r = json.loads(text.read_text())
        seeds = r["sft"]
        res["text"] = {
            "base": {k: r["base"][k] for k in ("valid_turn_rate", "accuracy")},
            "sft": {s: {k: v["eval"][k] for k in ("valid_turn_rate", "accuracy")} for s, v in seeds.items()},
            "grpo": {s: {"accuracy": v["grpo"]["eval"]["accuracy"], "reward_first": v["grpo"]["rewards"][0],
                         "reward_last": v["grpo"]["rewards"][-1], **_halves(v["grpo"]["rewards"])}
                     for s, v in seeds.items() if v.get("grpo")},
        }
    sampled = out / "learning_proof_sampled.json"
    if sampled.is_file() and "text" in res:
        r = json.loads(sampled.read_text())
        cps = r["checkpoints"]
        res["text"]["sampled"] = {
            "samples": r["samples"], "temperature": r["temperature"],
            **{s: {"sft": cps[f"sft{s}"]["accuracy"], "grpo": cps[f"grpo{s}"]["accuracy"]}
               for s in res["text"]["sft"] if f"sft{s}" in cps and f"grpo{s}" in cps},
        }
    sqr = out / "learning_proof_sqr_world.json"
    if sqr.is_file():
        rows = json.loads(sqr.read_text())
        rows = rows.get("seeds", rows) if isinstance(rows, dict) else rows
        res["sqr"] = {str(r.get("seed")): {k: r.get(k) for k in ("r1_unrefined", "r1_refined", "r1_refined_target_reply", "chance")}
                      for r in rows}
    return res


def sampled_eval(work: Path, out: Path, samples: int, encoder: list[str]) -> float:
    """Sampled held-out accuracy of each seed's SFT and GRPO-CSV checkpoints; ``out/learning_proof_sampled.{json,png}``.

    One ``eval_learning_checkpoints.py`` process per seed (one thread each), on the text phase's
    world and held-out questions, at the GRPO rollout temperature of its config. The sampling seed
    is reset before every checkpoint, so a checkpoint's figure does not depend on the process it
    ran in. Returns the wall seconds.
    """
    config = json.loads((out / "learning_text.json").read_text())["config"]
    seeds = [s for s in config["seeds"] if (work / f"grpo-seed{s}").is_dir()]
    if not seeds:
        raise SystemExit(f"--sampled-eval: no grpo-seed* checkpoints under {work}")
    t0 = time.perf_counter()
    procs = []
    for s in seeds:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_learning_checkpoints.py"), *encoder, "--work", str(work),
               "--world", str(work / "world"), "--test-questions", str(config["test_questions"]),
               "--samples", str(samples), "--temperature", str(config["grpo_temperature"]), "--eval-batch", "12",
               "--max-turns", str(config["max_turns"]), "--preview-frames", str(config["preview_frames"]),
               "--max-new-tokens", str(config["max_new_tokens"]),
               f"sft{s}={work / f'sft-seed{s}'}", f"grpo{s}={work / f'grpo-seed{s}'}", "--out", str(work / f"sampled-seed{s}.json")]
        print(f"[proof] {' '.join(cmd)}", flush=True)
        log = open(work / f"sampled-seed{s}.log", "w")  # noqa: SIM115 - closed after the child exits
        procs.append((s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    merged: dict[str, Any] = {}
    for s, proc, log in procs:
        rc = proc.wait()
        log.close()
        if rc != 0:
            raise SystemExit(f"sampled eval of seed {s} failed (rc {rc}); see {work / f'sampled-seed{s}.log'}")
        part = json.loads((work / f"sampled-seed{s}.json").read_text())
        merged = {**part, "checkpoints": {**merged.get("checkpoints", {}), **part["checkpoints"]}}
    (out / "learning_proof_sampled.json").write_text(json.dumps(merged, indent=1, default=str))
    from eval_learning_checkpoints import plot  # a sibling script: benchmarks/ is on sys.path

    plot(merged, out / "learning_proof_sampled.png")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder-dir", default=None, help="a local open_clip folder trained on the world (both phases)")
    p.add_argument("--work", default=None, help="work folder of the text phase (world, caches)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--skip-sqr", action="store_true")
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--sqr-steps", type=int, default=80,
                   help="SQR optimizer steps per seed (held-out R@1 at steps 0, 40, 80; bench_learning_sqr.py alone: 120)")
    p.add_argument("--sampled-eval", type=int, default=0, metavar="K",
                   help="after the text phase, ask each held-out question K times with sampled turns (SFT and "
                        "GRPO-CSV checkpoints; about 15 min for K=4); 0: off")
    args = p.parse_args(argv)
    if args.sampled_eval < 0:
        p.error("--sampled-eval must be 0 (off) or a number of samples per question")
    if args.sampled_eval and args.skip_text and not args.work:
        p.error("--sampled-eval with --skip-text needs --work: the folder holding the text phase's checkpoints")
    if args.sampled_eval and not args.work:
        args.work = tempfile.mkdtemp(prefix="bench-learning-text-")  # the checkpoints must outlive the text phase
    encoder = ["--encoder-dir", args.encoder_dir] if args.encoder_dir else []
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if not args.skip_text:
        seconds["text"] = _run("bench_learning_text.py", ["--parallel", "--out", args.out, *encoder,
                                                          *(["--work", args.work] if args.work else [])])
    if args.sampled_eval:
        seconds["sampled_eval"] = sampled_eval(Path(args.work), Path(args.out), args.sampled_eval, encoder)
    if not args.skip_sqr:
        # its own folder first: the standalone SQR run's sqr_world_learning.* (120 steps) stay as they are
        sqr_out = Path(tempfile.mkdtemp(prefix="bench-learning-sqr-"))
        seconds["sqr"] = _run("bench_learning_sqr.py", ["--task", "world", "--steps", str(args.sqr_steps), "--eval-every", "40",
                                                        "--out", str(sqr_out), *encoder])
        for ext in ("json", "png"):
            shutil.move(sqr_out / f"sqr_world_learning.{ext}", Path(args.out) / f"learning_proof_sqr_world.{ext}")
    seconds["total"] = time.perf_counter() - t0
    res = summary(Path(args.out), seconds)
    Path(args.out, "learning_proof.json").write_text(json.dumps(res, indent=1))
    t = res.get("text")
    if t:
        print("\n| seed | base valid turns | SFT valid turns | SFT accuracy | GRPO-CSV accuracy | GRPO reward, mean of first -> last half of steps |")
        print("|---|---|---|---|---|---|")
        nan = float("nan")
        for s, v in t["sft"].items():
            g = t["grpo"].get(s, {})
            print(f"| {s} | {t['base']['valid_turn_rate']:.2f} | {v['valid_turn_rate']:.2f} | {v['accuracy']:.2f} | "
                  f"{g.get('accuracy', nan):.2f} | {g.get('reward_mean_first_half', nan):.3f} -> {g.get('reward_mean_last_half', nan):.3f} |")
        if t.get("sampled"):
            sm = t["sampled"]
            print(f"\nheld-out accuracy over {sm['samples']} sampled episodes per question (T={sm['temperature']}):")
            print("| seed | SFT | GRPO-CSV |\n|---|---|---|")
            for s, v in sm.items():
                if isinstance(v, dict):
                    print(f"| {s} | {v['sft']:.2f} | {v['grpo']:.2f} |")
    if res.get("sqr"):
        print("\n| seed | VCMR R@1 unrefined | refined (own reply) | refined (target reply) | chance |")
        print("|---|---|---|---|---|")
        for s, v in res["sqr"].items():
            print(f"| {s} | {v['r1_unrefined']:.3f} | {v['r1_refined']:.3f} | {v['r1_refined_target_reply']:.3f} | {v['chance']:.3f} |")
    print("\ntime: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()))
    return res


if __name__ == "__main__":
    main()
