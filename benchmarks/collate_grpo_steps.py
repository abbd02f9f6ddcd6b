"""Held-out accuracy against GRPO-CSV steps: one SFT start, GRPO-CSV runs of different lengths.

Each run is a results folder of the text proof (``bench_learning_text.py --out R`` plus the
``eval_learning_checkpoints.py`` views written into it) holding, with labels ``sft<seed>`` and
``grpo<seed>``:

- ``learning_text.json`` - greedy on the proof's 12 held-out questions, and the GRPO rewards;
- ``learning_text_fresh_world.json`` - greedy on a fresh world's 39 questions;
- ``learning_proof_sampled.json`` - the 12, each asked 4 times at the rollout temperature;
- ``learning_text_sampled_fresh_world.json`` - the 39, each asked twice.

The runs must start from the same SFT checkpoints (the SFT phase is deterministic); step 0 is
read from the first run. Counts are pooled per seed: greedy over 51 questions, sampled over 126
episodes. Writes ``OUT.json`` and ``OUT.png`` (reward per step of the longest run; both pooled
accuracies against steps) and prints the table.

Usage::

    python benchmarks/bench_learning_text.py --parallel --grpo-steps 16 --encoder-dir DIR --work W16 --out R16
    python benchmarks/eval_learning_checkpoints.py ... grpo0=W16/grpo-seed0 --out R16/learning_text_fresh_world.json
    #   (and the two sampled views, as in benchmarks/README.md)
    python benchmarks/collate_grpo_steps.py --run 8=benchmarks/results --run 16=R16 \\
        --out benchmarks/results/learning_text_grpo16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["collate", "main"]

VIEWS = {
    "greedy_12": "learning_text.json",
    "greedy_39": "learning_text_fresh_world.json",
    "sampled_12x4": "learning_proof_sampled.json",
    "sampled_39x2": "learning_text_sampled_fresh_world.json",
}


def _evals(folder: Path, view: str, seed: str) -> dict[str, dict[str, Any]]:
    """``{"sft": eval, "grpo": eval}`` of one seed in one view of a results folder."""
    path = folder / VIEWS[view]
    if not path.is_file():
        raise SystemExit(f"{path} is missing: a run folder needs {', '.join(VIEWS.values())}")
    data = json.loads(path.read_text())
    if view == "greedy_12":
        run = data["sft"][seed]
        return {"sft": run["eval"], "grpo": run["grpo"]["eval"]}
    ck = data["checkpoints"]
    if f"grpo{seed}" not in ck:
        raise SystemExit(f"{path} has no checkpoint grpo{seed} (it holds {', '.join(ck)})")
    return {"sft": ck.get(f"sft{seed}"), "grpo": ck[f"grpo{seed}"]}


def collate(runs: dict[int, Path]) -> dict[str, Any]:
    """Per seed and view, ``[right, episodes]`` at step 0 (SFT) and at each run's GRPO step count."""
    steps = sorted(runs)
    first = json.loads((runs[steps[0]] / "learning_text.json").read_text())
    out: dict[str, Any] = {"steps": [0, *steps], "runs": {str(k): str(v) for k, v in runs.items()}, "seeds": {}}
    for seed in first["sft"]:
        rec: dict[str, Any] = {}
        for view in VIEWS:
            points = {0: _evals(runs[steps[0]], view, seed)["sft"]}
            if points[0] is None:
                raise SystemExit(f"{runs[steps[0]] / VIEWS[view]} has no checkpoint sft{seed}: the first run "
                                 "(fewest steps) must hold the SFT start")
            points.update({k: _evals(runs[k], view, seed)["grpo"] for k in steps})
            rec[view] = {str(k): [int(sum(bool(x) for x in e["correct"])), len(e["correct"])] for k, e in points.items()}
            rec[view + "_answered"] = {str(k): e["answered"] for k, e in points.items()}
        for name, parts in (("greedy_51", ("greedy_12", "greedy_39")), ("sampled_126", ("sampled_12x4", "sampled_39x2"))):
            rec[name] = {k: [sum(rec[p][k][0] for p in parts), sum(rec[p][k][1] for p in parts)] for k in rec[parts[0]]}
        for k in steps:
            g = json.loads((runs[k] / "learning_text.json").read_text())["sft"][seed]["grpo"]
            rec[f"rewards_{k}"] = g["rewards"]
            rec[f"frac_reward_zero_std_{k}"] = g["frac_reward_zero_std"]
        out["seeds"][seed] = rec
    return out


def plot(res: dict[str, Any], path: Path) -> Path:
    """Reward per step of the longest run, and the pooled held-out accuracies against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = res["steps"]
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.4))
    for s, v in res["seeds"].items():
        r = v[f"rewards_{steps[-1]}"]
        axs[0].plot(range(1, len(r) + 1), r, marker="o", ms=3, label=f"seed {s}")
        for ax, name in ((axs[1], "greedy_51"), (axs[2], "sampled_126")):
            ax.plot(steps, [v[name][str(k)][0] / v[name][str(k)][1] for k in steps], marker="o", label=f"seed {s}")
    axs[0].set(xlabel="GRPO-CSV step", ylabel="mean reward of the step's rollouts", title=f"training reward ({steps[-1]} steps)")
    any_seed = next(iter(res["seeds"].values()))
    n51, n126 = any_seed["greedy_51"]["0"][1], any_seed["sampled_126"]["0"][1]
    axs[1].set(xlabel="GRPO-CSV steps", ylabel="held-out accuracy", title=f"greedy, {n51} held-out questions")
    axs[2].set(xlabel="GRPO-CSV steps", ylabel="held-out accuracy", title=f"sampled, {n126} held-out episodes")
    for ax in axs[1:]:
        ax.set_xticks(steps)
        ax.set_ylim(0, 1)
    for ax in axs:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, metavar="STEPS=FOLDER",
                   help="a results folder and its GRPO-CSV step count (repeat; the first run's SFT is step 0)")
    p.add_argument("--out", required=True, help="output path without suffix (.json and .png are written)")
    args = p.parse_args(argv)
    runs: dict[int, Path] = {}
    for item in args.run:
        k, sep, folder = item.partition("=")
        if not sep or not k.isdigit() or int(k) < 1:
            p.error(f"--run takes STEPS=FOLDER with STEPS a positive step count; got {item!r}")
        runs[int(k)] = Path(folder)
    res = collate(runs)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    plot(res, out.with_suffix(".png"))
    steps = res["steps"]
    print(f"| seed | greedy 51: {' -> '.join(map(str, steps))} steps | sampled 126 | steps all alike (longest run) |")
    print("|---|---|---|---|")
    for s, v in res["seeds"].items():
        z = v[f"frac_reward_zero_std_{steps[-1]}"]
        print(f"| {s} | {' -> '.join(str(v['greedy_51'][str(k)][0]) for k in steps)} | "
              f"{' -> '.join(str(v['sampled_126'][str(k)][0]) for k in steps)} | {sum(1 for x in z if x == 1)} of {len(z)} |")
    return res


if __name__ == "__main__":
    main()
