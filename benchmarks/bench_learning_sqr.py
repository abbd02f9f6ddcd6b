"""Does Soft Query Refinement learn? Held-out R@1, unrefined vs refined, over seeds, with curves.

VideoSearch-R1 stage 1 (:mod:`training.sqr`: 8-latent rollout from the policy's ``<REFINE>``
state after its own reply, LM + 0.3 x InfoNCE with re-mined hard negatives, policy tuned) on
the toy task of :mod:`training.sqr_toy` (the untrained tiny retriever ranks a wrong moment first
for every query kept; a key word in the query names the right moment; held-out queries use
templates never trained on). The refined query is made from the policy's *own generated* reply.

Prints, per seed and as mean +- std: held-out R@1 of the plain query and of the refined query
(and chance); writes ``benchmarks/results/sqr_learning.png`` (loss and InfoNCE per step, held-out
R@1 at the evaluation points) and ``benchmarks/results/sqr_learning.json``.

Usage::

    python benchmarks/bench_learning_sqr.py [--seeds 3] [--steps 100] [--moments 8] [--eval-every 25] [--jobs 3]

Defaults are the toy's tuning (InfoNCE weight 1.0, projector lr 3e-2, policy lr 3e-3: a random
2-layer policy needs more retrieval pressure than VideoSearch-R1's pretrained VLM, whose 0.3 /
5e-5 / 2e-5 the 8B recipe keeps); ``--weight 0.3`` runs the reference weight.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict:
    from agent_tools.config import get_settings
    from agent_tools.encoders import load_encoder
    from agent_tools.policies.tiny import build_tiny_policy_dir
    from agent_tools.temporal import TemporalSearcher
    from training.common import load_trainable_policy
    from training.sqr import SQRConfig, train_sqr
    from training.sqr_toy import build_toy_task

    work.mkdir(parents=True, exist_ok=True)
    enc = load_encoder("tiny-untrained", device="cpu")
    settings = get_settings(
        cache_dir=work / "cache", index_dir=work / "index", device="cpu", encoder="tiny-untrained"
    )
    searcher = TemporalSearcher(enc, settings=settings)
    task = build_toy_task(work / "videos", searcher, num_moments=args.moments, videos=2, scenes_per_video=6)
    policy_dir = work / "policy"
    if not (policy_dir / "config.json").is_file():
        build_tiny_policy_dir(policy_dir)
    policy = load_trainable_policy(policy_dir)
    cfg = SQRConfig(
        model=str(policy_dir),
        data="given",
        output_dir=str(work / f"sqr-{seed}"),
        encoder="tiny-untrained",
        verify_frames=1,
        batch_size=8,
        num_tokens=8,
        max_steps=args.steps,
        learning_rate=args.lr,
        projector_lr=args.projector_lr,
        retrieval_loss_weight=args.weight,
        eval_steps=args.eval_every,
        eval_max_new_tokens=16,
        logging_steps=0,
        seed=seed,
    )
    res = train_sqr(
        cfg,
        searcher=searcher,
        policy=policy,
        examples=task.train,
        eval_examples=task.held_out,
        bank=task.bank,
    )
    return {
        "seed": seed,
        "train_rows": len(task.train),
        "held_out_rows": len(task.held_out),
        "chance": 1.0 / len(task.bank.moments),
        "r1_unrefined": res.eval["r1_unrefined"],
        "r1_refined": res.eval["r1_refined"],
        "loss": res.losses,
        "lm": res.lm_losses,
        "infonce": res.infonce_losses,
        "evals": res.eval_history,
        "seconds": res.seconds,
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for r in runs:
        ax[0].plot(r["lm"], label=f"seed {r['seed']}")
        ax[1].plot(r["infonce"], label=f"seed {r['seed']}")
        steps = [e["step"] for e in r["evals"]]
        ax[2].plot(steps, [e["r1_refined"] for e in r["evals"]], "o-", label=f"refined, seed {r['seed']}")
        ax[2].plot(steps, [e["r1_unrefined"] for e in r["evals"]], "x--", color="grey")
    ax[2].axhline(runs[0]["chance"], color="red", linestyle=":", label="chance")
    ax[0].set(title="LM loss (reply incl. <REFINE>)", xlabel="step")
    ax[1].set(title="InfoNCE (tau 0.1, re-mined negatives)", xlabel="step")
    ax[2].set(title="held-out R@1 (own reply)", xlabel="step", ylim=(-0.02, 1.02))
    for a in ax:
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--moments", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--lr", type=float, default=3e-3, help="policy learning rate")
    ap.add_argument("--projector-lr", type=float, default=3e-2)
    ap.add_argument("--weight", type=float, default=1.0, help="InfoNCE weight (VideoSearch-R1: 0.3)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel processes")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sqr-") as tmp:
        if args.jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                runs = list(
                    pool.map(
                        run_seed,
                        range(args.seeds),
                        [args] * args.seeds,
                        [Path(tmp) / f"s{i}" for i in range(args.seeds)],
                    )
                )
        else:
            runs = [run_seed(s, args, Path(tmp) / f"s{s}") for s in range(args.seeds)]
    plot(runs, args.out / "sqr_learning.png")
    (args.out / "sqr_learning.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(
        f"SQR toy task: {runs[0]['train_rows']} train rows, {runs[0]['held_out_rows']} held-out rows, "
        f"{args.moments} moments (chance R@1 {runs[0]['chance']:.3f}), {args.steps} steps x 8 rows, "
        f"lr {args.lr} / projector {args.projector_lr}, InfoNCE weight {args.weight}"
    )
    for r in runs:
        print(
            f"  seed {r['seed']}: held-out R@1 unrefined {r['r1_unrefined']:.3f} -> refined {r['r1_refined']:.3f}; "
            f"LM {r['lm'][0]:.2f} -> {r['lm'][-1]:.2f}, InfoNCE {r['infonce'][0]:.2f} -> {r['infonce'][-1]:.2f}; "
            f"{r['seconds']:.0f} s"
        )
    ref = [r["r1_refined"] for r in runs]
    plain = [r["r1_unrefined"] for r in runs]
    sd = statistics.pstdev
    print(
        f"mean held-out R@1: unrefined {statistics.mean(plain):.3f} +- {sd(plain):.3f}, "
        f"refined {statistics.mean(ref):.3f} +- {sd(ref):.3f} (ratio vs chance {statistics.mean(ref) / runs[0]['chance']:.1f}x)"
    )
    print(f"wrote {args.out / 'sqr_learning.png'} and sqr_learning.json in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
