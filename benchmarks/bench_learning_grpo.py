"""Learning curves of GRPO-CSV on TRL's GRPOTrainer: the toy task, 3 seeds, against a no-learning baseline.

Runs :func:`training.grpo.train_grpo` (the real trainer: environment, preview frames, TRL's
GRPOTrainer, checkpoint) on :mod:`training.grpo_toy`'s task with the tiny untrained policy, for
seeds 0, 1, 2, plus a baseline run of seed 0 with ``learning_rate=0`` (same sampling, no update).
Per step it records

- **reward**: TRL's logged mean reward of the step's 8 sampled rollouts (the letter reward);
- **accuracy**: the probability that the policy answers the toy prompt right (the right letter's
  share of the probability of the tokens it may sample), before training and after each
  optimizer step, measured by a callback (one forward pass).

It writes ``benchmarks/results/grpo_learning_reward.png`` and ``grpo_learning_accuracy.png`` and
prints per-seed figures and the ratio of the last steps' mean reward to the baseline's.

Usage::

    python benchmarks/bench_learning_grpo.py --steps 12          # about 8 min on the busy 2-core box
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["run_seed", "main"]

RESULTS = Path(__file__).resolve().parent / "results"


def _accuracy_callback(searcher, video, tokenizer, record: list):
    """A TrainerCallback recording, before training and after every step, the probability that the
    policy answers the toy prompt right: P(right letter) among the tokens it may sample."""
    import torch
    from transformers import TrainerCallback

    from agent_tools import protocol
    from agent_tools.policies.transformers_policy import TransformersPolicy
    from training.csv_env import SeekVideoEnv
    from training.grpo_toy import TOY_ANSWER, TOY_LETTERS, TOY_QUESTION

    env = SeekVideoEnv(searcher, max_turns=1, preview_frames=1, max_side=112)
    messages = [
        {"role": "system", "content": protocol.system_prompt([protocol.SEEK_TOOL])},
        {"role": "user", "content": [{"type": "text", "text": ""}] + env.reset(question=TOY_QUESTION, video=str(video))},
    ]
    allowed = [tokenizer.convert_tokens_to_ids(t) for t in TOY_LETTERS] + [tokenizer.eos_token_id]
    right = allowed.index(tokenizer.convert_tokens_to_ids(TOY_ANSWER))

    def measure(model, processing_class):
        was = model.training
        model.eval()
        pol = TransformersPolicy(model, processing_class, max_side=112)
        with torch.no_grad():
            logits = model(**pol.build_inputs(pol.prepare(messages, None))).logits[0, -1]
        record.append(float(torch.softmax(logits[allowed].float(), dim=-1)[right]))
        model.train(was)

    class Accuracy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
            measure(model, processing_class)

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            measure(model, processing_class)

    return Accuracy()


def run_seed(seed: int, steps: int, work: Path, *, learning_rate: float = 0.005) -> dict:
    """One toy run; returns its per-step ``reward`` and ``accuracy`` lists and its wall time."""
    from agent_tools.policies import load_policy
    from training.common import build_searcher
    from training.demo import write_demo
    from training.grpo import build_trainer
    from training.grpo_toy import letter_reward, toy_config, toy_generation_kwargs, toy_rows

    paths = write_demo(work / "demo")
    tok = load_policy(paths["policy"], device="cpu").tokenizer
    gen_kwargs = toy_generation_kwargs(tok)
    cfg = toy_config(
        paths["policy"],
        work / "demo" / "cache",
        work / f"toy-{seed}-{learning_rate}",
        seed=seed,
        max_steps=steps,
        learning_rate=learning_rate,
    )
    searcher = build_searcher("tiny-untrained", cache_dir=str(work / "demo" / "cache"), device="cpu")
    accuracy: list[float] = []
    t0 = time.perf_counter()
    trainer, _ = build_trainer(
        cfg,
        searcher=searcher,
        rows=toy_rows(paths["video"]),
        reward_funcs=[letter_reward],
        trl_overrides={"generation_kwargs": gen_kwargs},
    )
    trainer.add_callback(_accuracy_callback(searcher, paths["video"], tok, accuracy))
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"seed": seed, "lr": learning_rate, "reward": rewards, "accuracy": accuracy, "seconds": time.perf_counter() - t0}


def _plot(runs: list[dict], baseline: dict, key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = 1 if key == "reward" else 0  # accuracy is also measured before the first step
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in runs:
        ax.plot(range(start, start + len(r[key])), r[key], marker="o", label=f"seed {r['seed']}")
    ax.plot(range(start, start + len(baseline[key])), baseline[key], "k--", label="seed 0, lr 0 (baseline)")
    ax.axhline(0.2, color="grey", lw=0.5)  # chance: 1 of the 5 tokens the policy may sample
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward of 8 rollouts" if key == "reward" else "P(right letter)")
    ax.set_title(f"GRPO-CSV (TRL) on the toy letter task: {key}")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        work = Path(tmp)
        runs = [run_seed(s, args.steps, work) for s in args.seeds]
        baseline = run_seed(args.seeds[0], args.steps, work, learning_rate=0.0)
    _plot(runs, baseline, "reward", RESULTS / "grpo_learning_reward.png")
    _plot(runs, baseline, "accuracy", RESULTS / "grpo_learning_accuracy.png")
    k = max(1, args.steps // 4)

    def tail(xs):
        return sum(xs[-k:]) / len(xs[-k:])

    def head(xs):
        return sum(xs[:k]) / len(xs[:k])

    print(f"toy letter task, {args.steps} steps x 8 rollouts, first/last {k} steps")
    print("| run | reward first | reward last | P(right) before | P(right) after | s/step |")
    print("|---|---|---|---|---|---|")
    for r in runs + [baseline]:
        name = f"seed {r['seed']}" + (" (lr 0 baseline)" if r["lr"] == 0 else "")
        print(
            f"| {name} | {head(r['reward']):.3f} | {tail(r['reward']):.3f} | {r['accuracy'][0]:.3f} | "
            f"{r['accuracy'][-1]:.3f} | "
            f"{r['seconds'] / args.steps:.1f} |"
        )
    mean_last = sum(tail(r["reward"]) for r in runs) / len(runs)
    ratio = mean_last / max(tail(baseline["reward"]), 1e-9)
    print(f"mean last-steps reward over seeds {mean_last:.3f} vs baseline {tail(baseline['reward']):.3f}: x{ratio:.2f}")
    summary = {"runs": runs, "baseline": baseline, "ratio_vs_baseline": ratio}
    (RESULTS / "grpo_learning.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
