"""Back-of-the-envelope GPU memory for a training run, printed when a trainer starts.

Arithmetic only (no allocation): parameter count x bytes per value for each resident copy,
divided over the data-parallel ranks the way DeepSpeed ZeRO shards it. Activations, the
CUDA context, fragmentation and vLLM's KV cache are NOT included; the printout says so.

Bytes per parameter (mixed precision with AdamW, the DeepSpeed/ZeRO paper's accounting):

- weights in bf16: 2; gradients in bf16: 2 (trainable parameters only);
- optimizer: fp32 master copy 4 + Adam m 4 + Adam v 4 = 12 (trainable parameters only);
- a frozen reference model for the KL term (``beta > 0``): 2 in bf16. With LoRA none is
  kept (TRL disables the adapter to get reference log-probs);
- vLLM colocated rollouts: one more bf16 copy of the weights per tensor-parallel group.

ZeRO stage 1 shards the optimizer, stage 2 also the gradients, stage 3 also the weights (and
the reference model, which TRL prepares with the same DeepSpeed config). ``offload``
moves the optimizer state to CPU RAM (``zero3_offload.json``).

- :func:`count_parameters` - exact count from a checkpoint's safetensors headers (no load).
- :func:`lora_parameters` - trainable parameters of LoRA adapters from the model config.
- :class:`MemoryEstimate`, :func:`estimate_memory`, :func:`format_estimate`.
- :func:`zero_settings_from_env` - ZeRO stage and optimizer offload of an ``accelerate launch`` run.
- :func:`estimate_for_model` - the lines a trainer prints at start for a loaded model (any trainer).
- :data:`KNOWN_MODELS` - parameter counts of the recipe models, for estimates without weights.
- ``python -m training.memory --params 8.29e9 --gpus 32 --zero 3 [--lora-r 64] [--beta 0.005] [--vllm]``

Usage::

    est = estimate_memory(8.29e9, world_size=32, zero_stage=3, beta=0.005, vllm=True)
    print(format_estimate(est))
"""

from __future__ import annotations

import argparse
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from training.errors import TrainingConfigError

__all__ = [
    "KNOWN_MODELS",
    "MemoryEstimate",
    "count_parameters",
    "lora_parameters",
    "estimate_memory",
    "format_estimate",
    "zero_settings_from_env",
    "estimate_for_model",
    "main",
]

GIB = 1024**3

#: Approximate parameter counts (vision tower included) of the models the scale recipes name,
#: as rounded on their hub pages; :func:`count_parameters` gives the exact count from the weights.
KNOWN_MODELS = {
    "Qwen/Qwen2.5-VL-7B-Instruct": 8.29e9,
    "Qwen/Qwen3-VL-8B-Instruct": 8.77e9,
}


@dataclass
class MemoryEstimate:
    """Per-GPU bytes of each resident copy, plus the inputs they came from.

    Attributes:
        params: Total parameters of the policy.
        trainable: Parameters that get gradients and optimizer state.
        world_size: Data-parallel ranks (GPUs) sharing the ZeRO shards.
        zero_stage: 0 (plain DDP), 1, 2 or 3.
        parts: ``name -> bytes per GPU``.
        notes: What the figures leave out or assume.
    """

    params: int
    trainable: int
    world_size: int
    zero_stage: int
    parts: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        """Bytes per GPU, all parts."""
        return float(sum(self.parts.values()))


def _safetensors_count(path: Path) -> int:
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    total = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in meta["shape"]:
            count *= int(dim)
        total += count
    return total


def count_parameters(model_dir: str | Path) -> int:
    """Parameters in a ``save_pretrained`` folder, read from the safetensors headers only.

    Args:
        model_dir: The folder (``model.safetensors`` or sharded ``model-*.safetensors``).

    Returns:
        The number of parameters (tied weights stored once are counted once).

    Raises:
        TrainingConfigError: If the folder holds no ``*.safetensors`` file.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise TrainingConfigError(
            f"{str(model_dir)!r} holds no *.safetensors weights to count; give --params or a model folder"
        )
    return sum(_safetensors_count(f) for f in files)


def lora_parameters(hidden: int, intermediate: int, layers: int, r: int, kv_dim: Optional[int] = None) -> int:
    """Trainable LoRA parameters on every attention and MLP projection of a decoder.

    Args:
        hidden: Hidden size.
        intermediate: MLP intermediate size.
        layers: Decoder layers.
        r: LoRA rank.
        kv_dim: Width of the k/v projections (grouped-query attention; default ``hidden``).

    Returns:
        ``r x (in + out)`` summed over q, k, v, o, gate, up and down in every layer.
    """
    kv = kv_dim if kv_dim is not None else hidden
    per_layer = (
        (hidden + hidden)  # q
        + 2 * (hidden + kv)  # k, v
        + (hidden + hidden)  # o
        + 2 * (hidden + intermediate)  # gate, up
        + (intermediate + hidden)  # down
    )
    return int(r * per_layer * layers)


def estimate_memory(
    params: int | float,
    *,
    world_size: int = 1,
    zero_stage: int = 3,
    trainable: Optional[int | float] = None,
    beta: float = 0.0,
    vllm: bool = False,
    vllm_tensor_parallel: int = 1,
    offload_optimizer: bool = False,
) -> MemoryEstimate:
    """Per-GPU memory of weights, gradients, optimizer, reference model and vLLM copy.

    Args:
        params: Total parameters.
        world_size: GPUs in the data-parallel group.
        zero_stage: DeepSpeed ZeRO stage (0 = DDP, nothing sharded).
        trainable: Trainable parameters (default: all; LoRA: the adapters').
        beta: KL coefficient; > 0 keeps a frozen reference model unless training LoRA.
        vllm: Colocated vLLM rollouts (one bf16 weight copy per tensor-parallel group).
        vllm_tensor_parallel: vLLM tensor-parallel size.
        offload_optimizer: Optimizer state in CPU RAM (ZeRO-Offload).

    Returns:
        The :class:`MemoryEstimate`.

    Raises:
        TrainingConfigError: On a stage outside 0-3 or a non-positive size.
    """
    if zero_stage not in (0, 1, 2, 3):
        raise TrainingConfigError(f"zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    if params <= 0 or world_size < 1 or vllm_tensor_parallel < 1:
        raise TrainingConfigError("params must be > 0 and world_size, vllm_tensor_parallel >= 1")
    n = float(world_size)
    p = float(params)
    t = float(params if trainable is None else trainable)
    lora = t < p
    shard_w = n if zero_stage >= 3 else 1.0
    shard_g = n if zero_stage >= 2 else 1.0
    shard_o = n if zero_stage >= 1 else 1.0
    parts: dict[str, float] = {}
    parts["weights (bf16)"] = 2 * p / shard_w
    parts["gradients (bf16)"] = 2 * t / shard_g
    parts["optimizer (fp32 master + Adam m, v)"] = 0.0 if offload_optimizer else 12 * t / shard_o
    if beta > 0 and not lora:
        parts["reference model (bf16)"] = 2 * p / shard_w
    if vllm:
        parts["vLLM weights (bf16)"] = 2 * p / vllm_tensor_parallel
    notes = [
        "excludes activations (gradient checkpointing keeps one layer's), CUDA context, fragmentation"
        + (" and the vLLM KV cache (vllm_gpu_memory_utilization)" if vllm else ""),
    ]
    if offload_optimizer:
        notes.append(f"optimizer state in CPU RAM: {12 * t / GIB:.1f} GiB in total over the node(s)")
    if lora and beta > 0:
        notes.append("LoRA: the reference log-probs come from the base with the adapter disabled (no copy)")
    return MemoryEstimate(int(p), int(t), world_size, zero_stage, parts, notes)


def format_estimate(est: MemoryEstimate) -> str:
    """A few lines for the log: each part in GiB per GPU, the total and the caveats."""
    def count(n: float) -> str:
        return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M"

    head = (
        f"memory estimate per GPU: {count(est.params)} params ({count(est.trainable)} trainable),"
        f" ZeRO-{est.zero_stage} over {est.world_size} GPU(s)"
    )
    lines = [head]
    lines += [f"  {name:<38} {value / GIB:10.4f} GiB" for name, value in est.parts.items() if value]
    lines.append(f"  {'total before activations':<38} {est.total / GIB:10.4f} GiB")
    lines += [f"  note: {n}" for n in est.notes]
    return "\n".join(lines)


def zero_settings_from_env(environ: Optional[dict[str, str]] = None) -> tuple[int, bool]:
    """The ZeRO stage and optimizer offload an ``accelerate launch`` set for this process.

    Args:
        environ: The environment (default ``os.environ``). accelerate exports
            ``ACCELERATE_DEEPSPEED_ZERO_STAGE`` or, with a DeepSpeed JSON,
            ``ACCELERATE_DEEPSPEED_CONFIG_FILE``.

    Returns:
        ``(stage, offload_optimizer)``; ``(0, False)`` outside DeepSpeed.
    """
    import os

    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in ("1", "true"):
        return 0, False
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "")
    offload = env.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none") not in ("", "none")
    path = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if path and Path(path).is_file():
        zero = json.loads(Path(path).read_text()).get("zero_optimization", {})
        stage = str(zero.get("stage", stage))
        offload = (zero.get("offload_optimizer") or {}).get("device", "none") != "none"
    return (int(stage) if stage.isdigit() else 0), offload


def estimate_for_model(
    model: Any,
    *,
    trainable: Optional[int] = None,
    beta: float = 0.0,
    vllm: bool = False,
    vllm_tensor_parallel: int = 1,
) -> str:
    """The estimate a trainer prints at start, for its loaded model and this process's launch.

    Args:
        model: The torch model (ZeRO-3 partitioned parameters count with their ``ds_numel``).
        trainable: Trainable parameters (default: all; pass the adapters' count for LoRA).
        beta: KL coefficient (a reference model is kept when > 0 without LoRA).
        vllm: Colocated vLLM rollouts.
        vllm_tensor_parallel: vLLM tensor-parallel size.

    Returns:
        :func:`format_estimate`'s text, with the world size from ``WORLD_SIZE`` and the ZeRO
        settings from :func:`zero_settings_from_env`.
    """
    import os

    params = sum(int(getattr(p, "ds_numel", p.numel())) for p in model.parameters())
    stage, offload = zero_settings_from_env()
    est = estimate_memory(
        params,
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        zero_stage=stage,
        trainable=trainable,
        beta=beta,
        vllm=vllm,
        vllm_tensor_parallel=vllm_tensor_parallel,
        offload_optimizer=offload,
    )
    return format_estimate(est)


def main(argv: Optional[Sequence[str]] = None) -> MemoryEstimate:
    """``python -m training.memory``: print an estimate for a model folder or a parameter count."""
    parser = argparse.ArgumentParser(prog="python -m training.memory", description=__doc__.split("\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="save_pretrained folder (counted from its safetensors headers)")
    src.add_argument("--params", help=f"parameter count, or a name: {', '.join(KNOWN_MODELS)}")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--zero", type=int, default=3)
    parser.add_argument("--trainable", type=float, default=None, help="trainable params (LoRA)")
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--vllm", action="store_true")
    parser.add_argument("--vllm-tp", type=int, default=1)
    parser.add_argument("--offload", action="store_true")
    ns = parser.parse_args(argv)
    if ns.model:
        params: float = count_parameters(ns.model)
    else:
        params = KNOWN_MODELS[ns.params] if ns.params in KNOWN_MODELS else float(ns.params)
    est = estimate_memory(
        params,
        world_size=ns.gpus,
        zero_stage=ns.zero,
        trainable=ns.trainable,
        beta=ns.beta,
        vllm=ns.vllm,
        vllm_tensor_parallel=ns.vllm_tp,
        offload_optimizer=ns.offload,
    )
    print(format_estimate(est))
    return est


if __name__ == "__main__":  # pragma: no cover
    main()
