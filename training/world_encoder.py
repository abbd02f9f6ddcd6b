"""Train a tiny image-text encoder on the synthetic world's frame/caption pairs (CPU, minutes).

The model is open_clip's own ``CustomTextCLIP`` (a small ViT and text transformer, the bundled
CLIP BPE ``SimpleTokenizer``) trained with open_clip's ``ClipLoss`` (InfoNCE both ways) on pairs
from :func:`agent_tools.world.pairs.caption_pairs`: frames rendered from the world's vocabulary
on random backgrounds (never a frame of a test-split video) with their captions, partial
descriptions and question phrasings. Within a batch no two pairs share a text or a caption, so
the contrastive targets are unambiguous.

The result is a *local open_clip checkpoint*: a folder with ``open_clip_config.json``
(``model_cfg`` + ``preprocess_cfg``) and ``open_clip_pytorch_model.bin``, loadable with
``open_clip.create_model("local-dir:<folder>")``. The registry entry ``world-tiny``
(``agent_tools/encoders/configs/world-tiny.json``) points at ``{cache_dir}/encoders/world-tiny``,
the default output folder. It knows the synthetic world only: never use it for real videos.

Usage::

    python -m training.world_encoder                      # -> ~/.cache/videoseek/encoders/world-tiny
    python -m training.world_encoder --steps 50 --out /tmp/wt --pairs 2000

- :data:`MODEL_CFG` - the architecture.
- :func:`train_world_encoder` - train and write the checkpoint; returns a summary dict.
- :func:`default_output_dir` - where the registry expects the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["MODEL_CFG", "PREPROCESS_CFG", "train_world_encoder", "default_output_dir", "main"]

MODEL_CFG = {
    "embed_dim": 64,
    "custom_text": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bilinear", "resize_mode": "shortest"}


def default_output_dir() -> Path:
    """``<VIDEOSEEK_CACHE_DIR>/encoders/world-tiny`` (the registry entry's location)."""
    from agent_tools.config import get_settings

    return Path(get_settings().cache_dir) / "encoders" / "world-tiny"


def _preprocess(images: np.ndarray, size: int):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - 0.5) / 0.5


def _batch(rng: np.random.Generator, texts: list[str], captions: list[str], size: int) -> np.ndarray:
    """Indices of up to ``size`` pairs, no text or caption twice."""
    seen_t, seen_c, out = set(), set(), []
    for i in rng.permutation(len(texts)):
        if texts[i] in seen_t or captions[i] in seen_c:
            continue
        seen_t.add(texts[i])
        seen_c.add(captions[i])
        out.append(int(i))
        if len(out) == size:
            break
    return np.asarray(out)


def train_world_encoder(
    out_dir: Optional[str | Path] = None,
    steps: int = 300,
    batch_size: int = 64,
    pairs: int = 4000,
    lr: float = 1e-3,
    seed: int = 0,
    threads: Optional[int] = None,
    log_every: int = 50,
    frame_size: int = 128,
) -> dict:
    """Train the encoder and write the local open_clip checkpoint.

    Args:
        out_dir: Output folder (default :func:`default_output_dir`).
        steps: Optimiser steps.
        batch_size: Pairs per step (fewer when the pool has too few distinct texts).
        pairs: Rendered pairs in the training pool.
        lr: Peak learning rate (AdamW, linear warm-up then cosine decay).
        seed: Seed for the pairs, the initialisation and the batches.
        threads: torch CPU threads (default: torch's).
        log_every: Print the loss every this many steps (0: silent).
        frame_size: Rendered frame side (the world's video size).

    Returns:
        ``{"out_dir", "stale_embeddings_removed", "steps", "seconds", "loss_first", "loss_last",
        "train_top1"}``; ``train_top1`` is image→text top-1 accuracy on a held-back batch of rendered
        pairs (64 distinct full captions). Retraining into the registry's location also removes the
        cached frame embeddings of the previous weights.
    """
    # isort: off
    import agent_tools._tvshim  # noqa: F401  (must precede open_clip / torchvision)
    import open_clip
    import torch
    from open_clip.loss import ClipLoss

    # isort: on
    from agent_tools.world.pairs import caption_pairs

    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out_dir) if out_dir else default_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images, texts, captions = caption_pairs(pairs, seed=seed, size=frame_size)
    img_size = MODEL_CFG["vision_cfg"]["image_size"]
    x_all = _preprocess(images, img_size)
    tok = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    uniq = sorted(set(texts))
    tok_of = dict(zip(uniq, tok(uniq)))
    cfg = {k: v for k, v in MODEL_CFG.items() if k != "custom_text"}
    model = open_clip.model.CustomTextCLIP(**cfg, output_dict=True)
    model.train()
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
    )
    losses = []
    for step in range(steps):
        idx = _batch(rng, texts, captions, batch_size)
        x = x_all[idx]
        t = torch.stack([tok_of[texts[i]] for i in idx])
        feats = model(x, t)
        loss = loss_fn(feats["image_features"], feats["text_features"], feats["logit_scale"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {np.mean(losses[-log_every:]):.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    # held-back check: fresh pairs (another seed), full captions only
    vimg, _, vcap = caption_pairs(256, seed=seed + 7919, size=frame_size)
    keep = _batch(np.random.default_rng(0), vcap, vcap, 64)
    with torch.no_grad():
        fi = model.encode_image(_preprocess(vimg[keep], img_size), normalize=True)
        ft = model.encode_text(tok([vcap[i] for i in keep]), normalize=True)
        top1 = float((fi @ ft.T).argmax(dim=1).eq(torch.arange(len(keep))).float().mean())
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    (out / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": MODEL_CFG,
        "preprocess_cfg": PREPROCESS_CFG,
        "videoseek": {"trained_on": "agent_tools.world synthetic frames only", "steps": steps, "seed": seed,
                      "pairs": pairs, "batch_size": batch_size},
    }, indent=2))
    stale = _purge_stale_embeddings(out)
    summary = {
        "out_dir": str(out), "stale_embeddings_removed": stale, "steps": steps, "seconds": round(time.perf_counter() - t0, 1),
        "loss_first": float(np.mean(losses[: max(1, min(20, steps))])), "loss_last": float(np.mean(losses[-max(1, min(20, steps)):])),
        "train_top1": top1,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _purge_stale_embeddings(out: Path) -> int:
    """Remove cached world-tiny frame embeddings after retraining into the registry's location.

    The store keys embeddings by the encoder's registry entry, which names the folder, not its
    weights; embeddings of the previous weights would otherwise be served again.
    """
    try:
        if out.resolve() != default_output_dir().resolve():
            return 0
        from agent_tools.config import get_settings

        frames = Path(get_settings().cache_dir) / "frames"
        stale = list(frames.glob("*/*/world-tiny-*")) if frames.is_dir() else []
        for f in stale:
            f.unlink(missing_ok=True)
        return len(stale)
    except OSError:  # pragma: no cover - best effort
        return 0


def main(argv: Optional[list[str]] = None) -> None:
    """Command line: ``python -m training.world_encoder [--out DIR] [--steps N] ...``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output folder (default: the registry's world-tiny location)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    print(json.dumps(train_world_encoder(a.out, a.steps, a.batch_size, a.pairs, a.lr, a.seed, a.threads), indent=2))


if __name__ == "__main__":
    main()
