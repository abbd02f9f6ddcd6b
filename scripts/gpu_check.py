#!/usr/bin/env python
"""A prepared GPU check: four short measurements, each printing one figure (or a SKIP line).

1. ``encode``   - frame encoding in fp16 on CUDA through our encoder registry (open_clip):
   images/s at batch 256. Uses ``--encoder`` (default: the ``VIDEOSEEK_ENCODER`` setting); when
   its weights are not on this machine it says so and measures ``tiny-untrained`` instead,
   labelled as such (the pipeline's throughput, not the real model's).
2. ``faiss``    - faiss-gpu against faiss-cpu: exact inner-product search of 2,000 queries over
   200k 512-d vectors; queries/s on each and the top-10 agreement (must be >= 0.99).
3. ``vllm``     - a rollout on vLLM: a randomly initialised 2-layer Qwen2 written to a temporary
   folder (no download; token ids in, token ids out), 64 prompts x 128 new tokens; tokens/s.
   ``--vllm-model DIR`` measures a real local model instead.
4. ``zero3``    - one DeepSpeed ZeRO-3 training step (bf16, AdamW) of a small Qwen2 on one GPU
   (a 1-process group); step time and that the loss is finite and the weights moved.

Exits 0; a part that cannot run here (no CUDA, no faiss-gpu, no vllm / deepspeed) prints
``SKIP <part>: <why>``. A part that runs and fails prints ``FAIL <part>: ...`` and the exit code
is 1. Minutes on one GPU.

Usage::

    python scripts/gpu_check.py                   # all parts
    python scripts/gpu_check.py --only encode,faiss --encoder siglip-b16
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["check_encode", "check_faiss", "check_vllm", "check_zero3", "main"]

PARTS = ("encode", "faiss", "vllm", "zero3")


class Skip(Exception):
    """The part cannot run on this machine (printed as a SKIP line)."""


def _cuda():
    import torch

    if not torch.cuda.is_available():
        raise Skip("no CUDA device visible to torch")
    return torch


def _tiny_qwen(folder: Path, layers: int = 2, hidden: int = 256):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=4096, hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(folder)
    return model, cfg


def check_encode(encoder: str) -> str:
    """Images/s of the registry encoder in fp16 on CUDA."""
    import numpy as np

    torch = _cuda()
    from agent_tools.encoders import load_encoder
    from agent_tools.errors import EncoderUnavailableError

    note = ""
    try:
        enc = load_encoder(encoder, device="cuda")
    except EncoderUnavailableError as exc:
        note = f" [{encoder} weights not here ({str(exc)[:80]}...); measured tiny-untrained: pipeline only]"
        enc = load_encoder("tiny-untrained", device="cuda")
    assert enc.dtype == torch.float16, f"expected fp16 on CUDA, got {enc.dtype}"
    imgs = np.random.default_rng(0).integers(0, 256, (1024, enc.image_size, enc.image_size, 3), dtype=np.uint8)
    enc.encode_images(imgs[:256], batch_size=256)  # warm-up (cuDNN autotune, allocator)
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = enc.encode_images(imgs, batch_size=256)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    assert out.shape == (1024, enc.dim) and np.isfinite(out).all()
    return f"{enc.name}: {len(imgs) / dt:,.0f} images/s fp16 at batch 256 on {torch.cuda.get_device_name()}{note}"


def check_faiss() -> str:
    """faiss-gpu vs faiss-cpu exact search: queries/s each and top-10 agreement."""
    import faiss
    import numpy as np

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise Skip("faiss has no GPU support here (install faiss-gpu / faiss-gpu-cu12)")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, 512)).astype(np.float32)
    faiss.normalize_L2(x)
    q = x[rng.choice(len(x), 2000, replace=False)] + 0.05 * rng.standard_normal((2000, 512)).astype(np.float32)
    faiss.normalize_L2(q)
    cpu = faiss.IndexFlatIP(512)
    cpu.add(x)
    t = time.perf_counter()
    _, ic = cpu.search(q, 10)
    t_cpu = time.perf_counter() - t
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
    gpu.search(q[:10], 10)
    t = time.perf_counter()
    _, ig = gpu.search(q, 10)
    t_gpu = time.perf_counter() - t
    agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ic.tolist(), ig.tolist())]))
    if agree < 0.99:
        raise AssertionError(f"GPU and CPU top-10 agree on only {agree:.3f}")
    return (
        f"200k x 512 exact IP, 2000 queries: CPU {len(q) / t_cpu:,.0f} q/s, GPU {len(q) / t_gpu:,.0f} q/s "
        f"({t_cpu / t_gpu:.1f}x), top-10 agreement {agree:.3f}"
    )


def check_vllm(model_dir: str | None) -> str:
    """Tokens/s of a vLLM rollout (random tiny Qwen2 unless ``model_dir``)."""
    _cuda()
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
    except ImportError:
        raise Skip("vllm is not installed (pip install vllm)") from None
    with tempfile.TemporaryDirectory() as tmp:
        label = model_dir
        if model_dir is None:
            _tiny_qwen(Path(tmp))
            model_dir, label = tmp, "random 2-layer Qwen2 (throughput only)"
        llm = LLM(
            model=model_dir, skip_tokenizer_init=True, dtype="bfloat16", gpu_memory_utilization=0.3,
            enforce_eager=True, max_model_len=512, seed=0,
        )
        prompts = [TokensPrompt(prompt_token_ids=[(7 * i + j) % 4000 + 10 for j in range(32)]) for i in range(64)]
        params = SamplingParams(max_tokens=128, min_tokens=128, temperature=1.0, detokenize=False, seed=0)
        t = time.perf_counter()
        outs = llm.generate(prompts, params)
        dt = time.perf_counter() - t
        n = sum(len(o.outputs[0].token_ids) for o in outs)
        assert n == 64 * 128, n
    return f"{label}: 64 prompts x 128 tokens, {n / dt:,.0f} generated tokens/s"


def check_zero3() -> str:
    """One DeepSpeed ZeRO-3 step on a small Qwen2 (one GPU, one process)."""
    torch = _cuda()
    try:
        import deepspeed
    except ImportError:
        raise Skip("deepspeed is not installed (pip install deepspeed)") from None
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        os.environ.setdefault(k, v)
    deepspeed.init_distributed(dist_backend="nccl")
    with tempfile.TemporaryDirectory() as tmp:
        model, cfg = _tiny_qwen(Path(tmp), layers=4, hidden=512)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
        "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}},
    }
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    ids = torch.randint(0, cfg.vocab_size, (4, 256), device=engine.device)
    times, losses = [], []
    for _ in range(3):
        t = time.perf_counter()
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(float(loss))
    assert all(math.isfinite(v) and abs(v) < 1e4 for v in losses), losses
    name, p = next(iter(engine.module.named_parameters()))
    with deepspeed.zero.GatheredParameters([p]):
        moved = not torch.equal(p.detach().float().cpu(), before[name].float())
    assert moved, "the weights did not change after three steps"
    params = sum(v.numel() for v in before.values())
    return (
        f"ZeRO-3 bf16 AdamW, {params / 1e6:.1f}M-param Qwen2, batch 4x256: step {min(times) * 1000:.0f} ms "
        f"(first {times[0] * 1000:.0f} ms), loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts; print one line each. Returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--encoder", default=None, help="registry encoder for 'encode' (default: the setting)")
    ap.add_argument("--vllm-model", default=None, help="a local model folder for 'vllm' (default: random tiny Qwen2)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {', '.join(PARTS)}")
    if args.encoder is None:
        from agent_tools.config import get_settings

        args.encoder = get_settings().encoder
    runners = {
        "encode": lambda: check_encode(args.encoder),
        "faiss": check_faiss,
        "vllm": lambda: check_vllm(args.vllm_model),
        "zero3": check_zero3,
    }
    failed = False
    for part in parts:
        t = time.perf_counter()
        try:
            line = runners[part]()
            print(f"OK   {part}: {line} [{time.perf_counter() - t:.1f}s]", flush=True)
        except Skip as why:
            print(f"SKIP {part}: {why}", flush=True)
        except Exception as exc:  # noqa: BLE001 - one part failing does not hide the others
            failed = True
            print(f"FAIL {part}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc(limit=3)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
