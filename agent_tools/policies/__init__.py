"""Search policies: one interface (:class:`Policy`), several backends, checkpoint loading.

- :class:`Policy`, :class:`Generation`, :class:`FrameResolver` - the interface (``base``), with
  the conversation helpers :func:`frame_block`, :func:`text_block`, :func:`resolve_frames`,
  :func:`to_chat_messages`.
- :class:`TransformersPolicy` - a local VLM (Qwen2.5-VL, Qwen3-VL, any image-text-to-text model).
- :class:`OpenAIPolicy` - an OpenAI-compatible server such as ``vllm serve``.
- :class:`LangChainPolicy` - any LangChain chat model.
- :class:`ScriptedPolicy` - replays a script (tests, examples).
- :func:`load_policy`, :class:`PolicyManifest`, :func:`write_manifest`, :func:`read_manifest` -
  checkpoints (``save_pretrained`` directory + ``videoseek_policy.json``).
- ``agent_tools.policies.tiny`` - a tiny UNTRAINED Qwen2.5-VL for tests (never a default).
- ``agent_tools.policies.soft_refine`` - soft query refinement of ``training.sqr`` checkpoints
  (``load_policy`` attaches it as ``policy.refine_query_vector``).

Backends that need heavy imports (transformers, httpx) load on first attribute access.

Usage::

    from agent_tools.policies import load_policy
    policy = load_policy("runs/grpo/checkpoint-500")
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
    "TransformersPolicy",
    "OpenAIPolicy",
    "LangChainPolicy",
]

_LAZY = {
    "TransformersPolicy": "agent_tools.policies.transformers_policy",
    "OpenAIPolicy": "agent_tools.policies.openai_policy",
    "LangChainPolicy": "agent_tools.policies.langchain_policy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent_tools.policies' has no attribute {name!r}")
