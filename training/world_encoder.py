"""Train a tiny image-text encoder on the synthetic world's frame/caption pairs (CPU, minutes).

The model is open_clip's own ``CustomTextCLIP`` (a small ViT and text transformer, the bundled
CLIP BPE ``SimpleTokenizer``) trained on pairs from :func:`agent_tools.world.pairs.caption_pairs`:
frames rendered from the world's vocabulary on random backgrounds (never a frame of a world
video) with their captions, partial descriptions and question phrasings. Two losses:

- open_clip's ``ClipLoss`` (InfoNCE both ways) in the batch - within a batch no two pairs share a
  text or a caption, so the contrastive targets are unambiguous - which makes queries find frames;
- the *vocabulary loss*: each frame classified against the text embeddings of all 133 world
  captions (cross-entropy), which is exactly the ranking the zero-shot tagger
  (:class:`agent_tools.observations.EncoderTagger`) makes. With in-batch negatives alone a frame
  rarely meets the captions that differ from its own only in colour, shape or digit, and the
  tags of a short run were wrong on every held-out event.

During training the text tower's 49k-row BPE token table is swapped for the few hundred rows the
texts use (written back before saving), and one torch thread is the default: on a shared
2-core machine two threads spin-wait and each step runs several times slower.

The result is a *local open_clip checkpoint*: a folder with ``open_clip_config.json``
(``model_cfg`` + ``preprocess_cfg``) and ``open_clip_pytorch_model.bin``, loadable with
``open_clip.create_model("local-dir:<folder>")``. The registry entry ``world-tiny``
(``agent_tools/encoders/configs/world-tiny.json``) points at ``{cache_dir}/encoders/world-tiny``,
the default output folder. It knows the synthetic world only: never use it for real videos.
After training, the zero-shot tag accuracy on held-out events is measured and printed
(:func:`evaluate_tags`; :mod:`agent_tools.world.tags` defines the figures).

Usage::

    python -m training.world_encoder                      # -> ~/.cache/videoseek/encoders/world-tiny
    python -m training.world_encoder --steps 50 --out /tmp/wt --pairs 2000
    python -m training.world_encoder --eval /tmp/wt       # tag accuracy of an existing folder

- :data:`MODEL_CFG` - the architecture; :data:`DEFAULTS` - the recipe.
- :func:`train_world_encoder` - train and write the checkpoint; returns a summary dict.
- :func:`evaluate_tags` / :func:`format_tags` - held-out tag accuracy of a checkpoint, as a dict / one line.
- :func:`eval_world_config` - the held-out world it is measured on.
- :func:`default_output_dir` - where the registry expects the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULTS",
    "MODEL_CFG",
    "PREPROCESS_CFG",
    "default_output_dir",
    "eval_world_config",
    "evaluate_tags",
    "format_tags",
    "main",
    "train_world_encoder",
]

MODEL_CFG = {
    "embed_dim": 64,
    "custom_text": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DEFAULTS = {"steps": 1500, "batch_size": 64, "pairs": 8000, "lr": 2e-3}
"""The recipe ``python -m training.world_encoder`` runs (see training/README.md for its figures)."""
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


def _compact_token_table(model, token_ids):
    """Swap the text tower's 49k-row token table for the rows the training texts use.

    AdamW then updates a few hundred rows instead of the whole CLIP BPE table (most of the
    model's parameters), which makes a step several times faster on CPU. The id map is
    monotonic, so the end-of-text token keeps the largest id (open_clip's ``argmax`` pooling).

    Returns:
        ``(full_embedding_module, used_ids)`` for :func:`_restore_token_table`.
    """
    import torch

    if model.text.pool_type != "argmax":  # pragma: no cover - MODEL_CFG uses argmax pooling
        raise RuntimeError(f"compact token table needs argmax pooling, got {model.text.pool_type!r}")
    used = torch.unique(token_ids)  # sorted
    full = model.text.token_embedding
    small = torch.nn.Embedding(len(used), full.embedding_dim)
    with torch.no_grad():
        small.weight.copy_(full.weight[used])
    model.text.token_embedding = small
    return full, used


def _remap(ids, used):
    import torch

    return torch.searchsorted(used, ids)


def _restore_token_table(model, full, used) -> None:
    """Write the trained rows back into the full table and put it back in the model."""
    import torch

    with torch.no_grad():
        full.weight[used] = model.text.token_embedding.weight
    model.text.token_embedding = full


def train_world_encoder(
    out_dir: str | Path | None = None,
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    pairs: int = DEFAULTS["pairs"],
    lr: float = DEFAULTS["lr"],
    seed: int = 0,
    threads: int | None = 1,
    log_every: int = 50,
    frame_size: int = 128,
    vocab_weight: float = 1.0,
    eval_tags: bool = True,
) -> dict:
    """Train the encoder and write the local open_clip checkpoint.

    Args:
        out_dir: Output folder (default :func:`default_output_dir`).
        steps: Optimiser steps.
        batch_size: Pairs per step (fewer when the pool has too few distinct texts).
        pairs: Rendered pairs in the training pool.
        lr: Peak learning rate (AdamW, linear warm-up then cosine decay).
        seed: Seed for the pairs, the initialisation and the batches.
        threads: torch CPU threads (default 1: this model's matrices are tiny, and on a shared
            2-core machine two threads spin-wait and run several times slower than one).
        log_every: Print the loss every this many steps (0: silent).
        frame_size: Rendered frame side (the world's video size).
        vocab_weight: Weight of the vocabulary loss: each frame's image embedding classified
            against the text embeddings of every world caption (cross-entropy), next to
            open_clip's in-batch ``ClipLoss``. This is what the zero-shot tagger ranks; 0 turns it off.
        eval_tags: Measure the tag accuracy on held-out events (:func:`evaluate_tags`) after training.

    Returns:
        ``{"out_dir", "stale_embeddings_removed", "steps", "seconds", "loss_first", "loss_last",
        "train_top1", "train_seconds", "train_cpu_seconds", "threads", "tag_accuracy"}``
        (``train_cpu_seconds``: this process's CPU time, the figure to read on a shared machine); ``tag_accuracy`` is
        :func:`evaluate_tags`'s dict (when ``eval_tags``); ``train_top1`` is image→text top-1 accuracy on a held-back batch of rendered
        pairs (64 distinct full captions). Retraining into the registry's location also removes the
        cached frame embeddings of the previous weights.
    """
    # isort: off
    import agent_tools._tvshim  # noqa: F401  (must precede open_clip / torchvision)
    import open_clip
    import torch
    import torch.nn.functional as F
    from open_clip.loss import ClipLoss

    # isort: on
    from agent_tools.world.pairs import caption_pairs, world_captions

    if threads:
        torch.set_num_threads(int(threads))
    out = Path(out_dir) if out_dir else default_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
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
    vocab = world_captions()
    vocab_tok = tok(vocab)
    label_of = {c: i for i, c in enumerate(vocab)}
    labels_all = torch.tensor([label_of[c] for c in captions])
    full_table, used = _compact_token_table(model, torch.cat([torch.stack(list(tok_of.values())), vocab_tok]))
    tok_of = {k: _remap(v, used) for k, v in tok_of.items()}
    vocab_tok = _remap(vocab_tok, used)
    for step in range(steps):
        idx = _batch(rng, texts, captions, batch_size)
        x = x_all[idx]
        t = torch.stack([tok_of[texts[i]] for i in idx])
        feats = model(x, t)
        loss = loss_fn(feats["image_features"], feats["text_features"], feats["logit_scale"])
        if vocab_weight > 0:  # every frame against the whole caption vocabulary (what the tagger ranks)
            vt = model.encode_text(vocab_tok, normalize=True)
            logits = feats["logit_scale"] * feats["image_features"] @ vt.T
            loss = loss + vocab_weight * F.cross_entropy(logits, labels_all[torch.from_numpy(idx)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step:5d}  loss {np.mean(losses[-log_every:]):.4f}  {time.perf_counter() - t0:.0f}s", flush=True)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    _restore_token_table(model, full_table, used)
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
                      "pairs": pairs, "batch_size": batch_size, "lr": lr, "vocab_weight": vocab_weight},
    }, indent=2))
    stale = _purge_stale_embeddings(out)
    tags = evaluate_tags(out) if eval_tags else None
    summary = {
        "out_dir": str(out), "stale_embeddings_removed": stale, "steps": steps, "seconds": round(time.perf_counter() - t0, 1),
        "loss_first": float(np.mean(losses[: max(1, min(20, steps))])), "loss_last": float(np.mean(losses[-max(1, min(20, steps)):])),
        "train_top1": top1,
        "train_seconds": round(t_train, 1),
        "train_cpu_seconds": round(c_train, 1),
        "threads": torch.get_num_threads(),
    }
    if tags is not None:
        summary["tag_accuracy"] = tags
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def eval_world_config(n_test: int = 16):
    """The held-out world the tag accuracy is measured on.

    ``bench_learning_text``'s world (seed 0, 6 train videos, minute-long test videos, 3 events a
    minute) with ``n_test`` test videos; its first 3 test videos are that benchmark's held-out
    videos. The encoder never sees a frame of them: training frames are rendered from the
    vocabulary on fresh random backgrounds.
    """
    from agent_tools.world import WorldConfig

    return WorldConfig(seed=0, n_train=6, n_test=n_test, min_duration=60, max_duration=80, needle_videos=0,
                       events_per_minute=3.0, size=128)


def evaluate_tags(encoder_dir: str | Path, world_cfg=None, split: str = "test", top_k: int = 3) -> dict:
    """Zero-shot tag accuracy of a trained checkpoint on a world plan's held-out events.

    Loads the folder as the registry does (``local-dir:`` open_clip checkpoint, CLIP BPE) and
    ranks every world caption for frames rendered at 25/50/75 % of each event
    (:func:`agent_tools.world.tags.rendered_tag_accuracy`).

    Args:
        encoder_dir: A folder written by :func:`train_world_encoder`.
        world_cfg: The world (default :func:`eval_world_config`).
        split: The plan's split (``"test"``: held out).
        top_k: The k of the top-k figures.

    Returns:
        The figures (top-1 / top-k, exact caption and attributes, chance), plus ``"world"``: the
        config's seed, split and sizes.
    """
    from agent_tools.encoders import OpenClipEncoder
    from agent_tools.encoders.registry import EncoderSpec
    from agent_tools.world import plan_world
    from agent_tools.world.tags import rendered_tag_accuracy

    cfg = world_cfg or eval_world_config()
    spec = EncoderSpec(name="world-tiny-eval", description="world encoder under evaluation",
                       model=f"local-dir:{Path(encoder_dir).resolve()}", tokenizer="clip-bpe", trained=True)
    enc = OpenClipEncoder(spec, device="cpu")
    figures = rendered_tag_accuracy(enc, plan_world(cfg)[split], size=cfg.size, top_k=top_k)
    figures["world"] = {"seed": cfg.seed, "split": split, "n_train": cfg.n_train, "n_test": cfg.n_test,
                        "min_duration": cfg.min_duration, "max_duration": cfg.max_duration,
                        "events_per_minute": cfg.events_per_minute}
    return figures


def format_tags(t: dict) -> str:
    """One line of :func:`evaluate_tags`'s figures, each against chance."""
    k = t["top_k"]
    return (f"tag accuracy on {t['events']} held-out events ({t['frames']} frames): "
            f"top-1 attributes {t['top1_attributes']:.2f} (chance {t['chance_top1_attributes']:.3f}), "
            f"top-{k} attributes {t['topk_attributes']:.2f} (chance {t['chance_topk_attributes']:.3f}), "
            f"top-1 exact caption {t['top1_exact']:.2f} (chance {t['chance_top1_exact']:.3f}), "
            f"top-{k} exact {t['topk_exact']:.2f}, top-1 colour {t['top1_colour']:.2f}")


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


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m training.world_encoder [--out DIR] [--steps N] ...`` or ``--eval DIR``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output folder (default: the registry's world-tiny location)")
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--pairs", type=int, default=DEFAULTS["pairs"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for this model on a shared CPU)")
    p.add_argument("--vocab-weight", type=float, default=1.0, help="weight of the caption-vocabulary loss (0: off)")
    p.add_argument("--eval", metavar="DIR", default=None, help="only measure the tag accuracy of an existing checkpoint folder")
    a = p.parse_args(argv)
    if a.eval:
        import torch

        torch.set_num_threads(a.threads)
        figures = evaluate_tags(a.eval)
        print(json.dumps(figures, indent=2))
        print(format_tags(figures))
        return
    summary = train_world_encoder(a.out, a.steps, a.batch_size, a.pairs, a.lr, a.seed, a.threads, vocab_weight=a.vocab_weight)
    print(json.dumps(summary, indent=2))
    if "tag_accuracy" in summary:
        print(format_tags(summary["tag_accuracy"]))


if __name__ == "__main__":
    main()
