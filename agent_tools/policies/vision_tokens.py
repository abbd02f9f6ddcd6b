"""Vision placeholder tokens: only the processor may place them, so a policy must never generate them.

A vision-language model's processor expands each image of a prompt into ``n`` copies of a
placeholder token (Qwen2.5-VL / Qwen3-VL: ``<|image_pad|>``, framed by ``<|vision_start|>`` and
``<|vision_end|>``; videos: ``<|video_pad|>``), and the model's forward checks that the number of
placeholders equals the number of vision features it computed from ``pixel_values``. The ids
are ordinary vocabulary entries, though: an untrained or RL-sampled policy can *generate* one.
The text of such a reply looks clean (decoding with ``skip_special_tokens`` drops it), but any
code that appends the generated *ids* to the prompt and runs the model again (SQR's hidden state
at ``<REFINE>``, a GRPO log-probability pass, a multi-turn rollout re-fed by ids) then fails
with "Image features and image tokens do not match, tokens: 98, features: 96". TRL's
``GRPOTrainer`` suppresses the image token in its own generation for this reason.

- :func:`vision_placeholder_ids` - the placeholder ids a model config declares.
- :func:`suppress_vision_placeholders` - make a policy's ``generate`` (and the generation
  config its checkpoint saves) never sample them.
- :func:`placeholder_generation_kwargs` - the same for TRL's ``generation_kwargs`` (transformers
  ``suppress_tokens``, or vLLM ``logit_bias``).
- :func:`drop_vision_placeholders` - remove them from generated ids about to be re-fed.

Usage::

    suppress_vision_placeholders(policy)          # before any rollout
    ids = drop_vision_placeholders(policy, gen.completion_ids)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "PLACEHOLDER_CONFIG_KEYS",
    "drop_vision_placeholders",
    "placeholder_generation_kwargs",
    "suppress_vision_placeholders",
    "vision_placeholder_ids",
]

#: Model-config attributes naming processor-only tokens (Qwen2/2.5/3-VL; LLaVA-style ``*_index``).
PLACEHOLDER_CONFIG_KEYS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "image_token_index",
    "video_token_index",
)

#: vLLM ``logit_bias`` that makes a token unsampleable (the OpenAI-style bias range is [-100, 100]).
_VLLM_BAN = -100.0


def vision_placeholder_ids(model_or_policy: Any) -> list[int]:
    """The vision placeholder token ids the model's config declares.

    Args:
        model_or_policy: A transformers model, or a policy with a ``.model``.

    Returns:
        Sorted ids; empty for a text-only model.
    """
    model = getattr(model_or_policy, "model", model_or_policy)
    config = getattr(model, "config", None)  # a peft wrapper forwards .config to the wrapped model
    ids: set[int] = set()
    for key in PLACEHOLDER_CONFIG_KEYS:
        value = getattr(config, key, None) if config is not None else None
        if isinstance(value, int) and value >= 0:
            ids.add(value)
    return sorted(ids)


def suppress_vision_placeholders(policy: Any) -> list[int]:
    """Never sample a vision placeholder: in ``policy.generate`` and in the saved generation config.

    Sets ``suppress_tokens`` in the policy's ``generation_kwargs`` (every ``generate_details``
    call) and in ``policy.model.generation_config`` (written with the checkpoint, so a policy
    loaded from it suppresses them too). Ids already suppressed are kept.

    Args:
        policy: A :class:`~agent_tools.policies.TransformersPolicy` (anything with ``.model``).

    Returns:
        The suppressed placeholder ids (empty for a text-only model: nothing is changed).
    """
    ids = vision_placeholder_ids(policy)
    if not ids:
        return []
    kwargs = getattr(policy, "generation_kwargs", None)
    if isinstance(kwargs, dict):
        kwargs["suppress_tokens"] = sorted(set(kwargs.get("suppress_tokens") or []) | set(ids))
    gen_config = getattr(getattr(policy, "model", None), "generation_config", None)
    if gen_config is not None:
        gen_config.suppress_tokens = sorted(
            set(getattr(gen_config, "suppress_tokens", None) or []) | set(ids)
        )
    return ids


def placeholder_generation_kwargs(policy: Any, *, vllm: bool = False) -> dict[str, Any]:
    """TRL ``generation_kwargs`` that ban the vision placeholders from sampled completions.

    TRL passes these to ``transformers.GenerationConfig`` (its own default suppresses only the
    image token) or to vLLM's ``SamplingParams``, which has no ``suppress_tokens`` but a
    ``logit_bias``.

    Args:
        policy: The policy (or model) being trained.
        vllm: Rollouts come from vLLM.

    Returns:
        ``{"suppress_tokens": ids}``, ``{"logit_bias": {id: -100.0}}``, or ``{}`` for a text-only model.
    """
    ids = vision_placeholder_ids(policy)
    if not ids:
        return {}
    return {"logit_bias": {i: _VLLM_BAN for i in ids}} if vllm else {"suppress_tokens": ids}


def drop_vision_placeholders(model_or_policy: Any, ids: Sequence[int]) -> list[int]:
    """``ids`` without vision placeholders (they carry no text; only the processor may place them).

    Args:
        model_or_policy: The model (or policy) whose placeholders are meant.
        ids: Generated token ids about to be appended to a prompt with its images.

    Returns:
        The ids, placeholders removed, order kept.
    """
    banned = set(vision_placeholder_ids(model_or_policy))
    return [int(t) for t in ids if int(t) not in banned]
