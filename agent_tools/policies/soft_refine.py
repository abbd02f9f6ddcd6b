"""Soft Query Refinement (SQR) as VideoSearch-R1 designs it: the model side, shared by training and inference.

After the policy has verified a retrieved moment it writes its reasoning and verdict and then
the ``<REFINE>`` token. Its last hidden state there starts a *recurrent latent rollout*:

1. ``z_1 = readout(h_REFINE)`` - :class:`SoftQueryProjector` ``.readout``: Linear(H->D) ->
   LayerNorm -> GELU -> Linear(D->D), last layer zero-initialised; ``D`` is the retriever's
   embedding width (VideoSearch-R1's ``refine_projector``).
2. ``z_k`` is mapped back to the policy's input space by ``.roll_in`` (LayerNorm + Linear
   D->H, partial-identity init; the reference's ``refine_latent_input_projector``), inserted
   right after ``<REFINE>`` as the next input embedding, and the hidden state read there gives
   ``z_{k+1} = readout(h)``; 8 steps by default (``refine_rollout_depth``). The rollout runs on
   the policy's KV cache: with causal attention, feeding the latents one by one after the
   prefix is exactly the reference's re-run of the whole sequence with the latents inserted
   (:func:`rollout_latents`; a test checks both agree).
3. The 8 latents go through ``.append`` (LayerNorm + Linear D->W, partial identity; the
   reference's ``refine_append_input_projector``) and enter the retriever's own text encoder
   as soft tokens next to the query tokens
   (:meth:`agent_tools.encoders.OpenClipEncoder.encode_text_with_soft_tokens`).
4. :func:`refined_query` = ``normalize(q + e(q, soft) - e(q, 0))``. Ours, not the reference's
   (which uses ``e(q, soft)`` alone): inserting K tokens moves the pooled embedding even when
   they are zero, so ``e(q, 0)`` is subtracted and a zero-initialised head returns exactly the
   plain query - training starts from the original query and "unrefined" is a clean baseline.
   An optional sigmoid gate on ``h`` (VideoSearch-R1's ``refine_gate``, off there) is kept.
5. ``center`` (ours; off by default = the reference): with ``center_momentum > 0`` the hidden
   state of rollout step ``k`` has ``center[k]`` subtracted before ``readout`` - a running mean
   of that step's states over training batches (BatchNorm's ``running_mean``, no scaling; frozen
   in eval mode and saved with the weights). A pretrained LM's last hidden states share a large
   common component (SmolLM2-135M: mean cosine 0.99 across rows), which ``readout``'s LayerNorm
   turns into nearly the same latent for every row; centred, the row-specific part drives them.

The hidden state is conditioned on the policy's own reply: :func:`refine_inputs` appends the
reply's tokens (cut at its ``<REFINE>``, or followed by one) to the verification prompt.

Checkpoint files: ``sqr_projector.safetensors`` + ``sqr_config.json`` next to the policy, which
also records the retriever it was trained for (:func:`encoder_fingerprint`: name, cache key
and a hash of the text tower); :func:`check_refiner_encoder` refuses another encoder. Those,
the inference-side :class:`SoftRefiner` and the file functions live in
:mod:`agent_tools.policies.soft_refine_refiner`; :func:`load_refiner` and :func:`refine_search`
in :mod:`agent_tools.policies.soft_refine_search`. This module re-exports all of them.

Names: :class:`SoftQueryProjector`, :func:`rollout_latents` (:func:`continue_rollout` after a cached prefix),
:func:`refined_query`,
:func:`refine_inputs`, :func:`refine_token_id`, :func:`encoder_fingerprint`,
:func:`check_refiner_encoder`, :class:`RefinerEncoderMismatchError`, :class:`SoftRefiner`,
:func:`save_projector`, :func:`load_projector`, :func:`attach_soft_refiner`,
:func:`load_refiner`, :func:`refine_search`, :data:`REFINE_TOKEN`, :data:`SQR_WEIGHTS_NAME`, :data:`SQR_CONFIG_NAME`.

Usage::

    policy = load_policy("runs/sqr")                  # manifest soft_refinement: true
    vec = policy.refine_query_vector(convo, frames=resolver, completion_ids=gen.completion_ids)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError

__all__ = [
    "REFINE_TOKEN",
    "SQR_CONFIG_NAME",
    "SQR_FORMAT",
    "SQR_WEIGHTS_NAME",
    "RefinerEncoderMismatchError",
    "SoftQueryProjector",
    "SoftRefiner",
    "attach_soft_refiner",
    "check_refiner_encoder",
    "continue_rollout",
    "encoder_fingerprint",
    "load_projector",
    "load_refiner",
    "refine_inputs",
    "refine_search",
    "refine_token_id",
    "refined_query",
    "rollout_latents",
    "save_projector",
]

REFINE_TOKEN = protocol.REFINE_TOKEN
SQR_WEIGHTS_NAME = "sqr_projector.safetensors"
SQR_CONFIG_NAME = "sqr_config.json"
SQR_FORMAT = "videoseek-sqr-v2"


class RefinerEncoderMismatchError(InvalidArgumentError):
    """A refiner trained for one retriever encoder used with another."""


def _partial_identity(linear: nn.Linear) -> None:
    with torch.no_grad():
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        n = min(linear.in_features, linear.out_features)
        linear.weight[torch.arange(n), torch.arange(n)] = 1.0


class SoftQueryProjector(nn.Module):
    """The three SQR maps: ``readout`` (H->D), ``roll_in`` (D->H), ``append`` (D->W), and a gate.

    Args:
        hidden_size: The policy's hidden size H.
        latent_dim: Latent width D (VideoSearch-R1: the retrieval embedding width).
        text_width: The retriever's text-token width W (``encoder.text_width``).
        num_tokens: Rollout depth = number of soft tokens (VideoSearch-R1: 8).
        use_gate: Multiply each latent by ``sigmoid(gate(h))`` (the reference ships it off).
        center_momentum: Track and subtract each rollout step's mean hidden state (0: off).

    Raises:
        InvalidArgumentError: If a size is below 1.
    """

    def __init__(
        self,
        hidden_size: int,
        latent_dim: int,
        text_width: int,
        num_tokens: int = 8,
        use_gate: bool = False,
        center_momentum: float = 0.0,
    ):
        super().__init__()
        if min(hidden_size, latent_dim, text_width, num_tokens) < 1:
            raise InvalidArgumentError("hidden_size, latent_dim, text_width and num_tokens must be >= 1")
        self.hidden_size, self.latent_dim, self.text_width = (
            int(hidden_size),
            int(latent_dim),
            int(text_width),
        )
        self.num_tokens, self.use_gate = int(num_tokens), bool(use_gate)
        self.center_momentum = float(center_momentum)
        d = self.latent_dim
        self.readout = nn.Sequential(nn.Linear(hidden_size, d), nn.LayerNorm(d), nn.GELU(), nn.Linear(d, d))
        nn.init.zeros_(self.readout[-1].weight)
        nn.init.zeros_(self.readout[-1].bias)
        self.roll_in = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden_size))
        _partial_identity(self.roll_in[1])
        self.append = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, text_width))
        _partial_identity(self.append[1])
        self.gate = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.gate.requires_grad_(self.use_gate)
        # per rollout step: running mean of the hidden states and how many batches it has seen
        self.register_buffer("center", torch.zeros(self.num_tokens, int(hidden_size)))
        self.register_buffer("center_seen", torch.zeros(self.num_tokens))

    def latent(self, hidden: torch.Tensor, step: int = 0) -> torch.Tensor:
        """``readout(h - center[step])`` (times the gate when enabled): ``(B, H) -> (B, D)``."""
        dtype = self.readout[0].weight.dtype
        hidden = hidden.to(dtype)
        if self.center_momentum > 0:
            k = min(int(step), self.num_tokens - 1)
            if self.training:  # BatchNorm-style running mean; the first batch sets it
                with torch.no_grad():
                    mean = hidden.detach().float().mean(0).to(self.center)
                    m = 1.0 if self.center_seen[k] == 0 else self.center_momentum
                    self.center[k].lerp_(mean, m)
                    self.center_seen[k] += 1
            hidden = hidden - self.center[k].to(dtype)
        z = self.readout(hidden)
        if self.use_gate:
            z = z * torch.sigmoid(self.gate(hidden.to(dtype)))
        return z.float()

    def soft_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """``append(z)``: ``(B, K, D) -> (B, K, W)`` soft tokens for the retriever's text encoder."""
        return self.append(latents.to(self.append[1].weight.dtype)).float()

    def config(self) -> dict[str, Any]:
        """Constructor arguments (saved next to the weights)."""
        return {
            "hidden_size": self.hidden_size,
            "latent_dim": self.latent_dim,
            "text_width": self.text_width,
            "num_tokens": self.num_tokens,
            "use_gate": self.use_gate,
            "center_momentum": self.center_momentum,
        }


def _unwrap(model: Any) -> Any:
    """The transformers model under a PEFT / DeepSpeed wrapper."""
    inner = model
    for attr in ("module",):
        inner = getattr(inner, attr, inner)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner


def _cache_kw(model: Any) -> str:
    params = inspect.signature(_unwrap(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(out: Any) -> Any:
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    raise InvalidArgumentError("the policy model returned no KV cache; soft refinement needs use_cache=True")


def rollout_latents(
    model: Any,
    projector: SoftQueryProjector,
    inputs: dict[str, Any],
    *,
    labels: torch.Tensor | None = None,
    depth: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recurrent latent rollout for a batch of sequences that each end with ``<REFINE>``.

    Args:
        model: The policy model (a Qwen-VL ``...ForConditionalGeneration``, possibly PEFT-wrapped).
        projector: The SQR maps.
        inputs: Processor outputs, left-padded, every row's last token ``<REFINE>``.
        labels: LM labels (``-100`` where not trained); the LM loss is returned with the latents.
        depth: Latents to produce (default ``projector.num_tokens``).

    Returns:
        ``(latents (B, depth, D) float32, lm_loss or None)``; gradients flow into the model
        and the projector.
    """
    core = getattr(_unwrap(model), "model", None)
    if core is not None and hasattr(core, "rope_deltas"):
        core.rope_deltas = None  # set again by this prefix forward when it holds images
    mask = inputs.get("attention_mask")
    prefix = dict(inputs)
    if core is not None and not hasattr(core, "rope_deltas") and mask is not None and "position_ids" not in prefix:
        # 1-D RoPE (Llama / SmolLM2): a left-padded row counts its positions from its first real
        # token, as generate() does, so the latents continue at the row's own token count
        prefix["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(**prefix, labels=labels, use_cache=True, output_hidden_states=True)
    h = out.hidden_states[-1][:, -1]
    b, length = inputs["input_ids"].shape
    deltas = getattr(core, "rope_deltas", None)
    if deltas is not None:  # Qwen-VL mRoPE: text positions continue after the image grid
        base = length + deltas.to(h.device).long().view(b, 1)
    elif mask is not None:  # left padding: a row's next position is its own token count
        base = mask.long().sum(-1, keepdim=True)
    else:
        base = torch.full((b, 1), length, dtype=torch.long, device=h.device)
    latents = continue_rollout(
        model, projector, h, _output_cache(out), base, mask, depth=depth, mrope=deltas is not None
    )
    return latents, (out.loss if labels is not None else None)


def continue_rollout(
    model: Any,
    projector: SoftQueryProjector,
    hidden: torch.Tensor,
    cache: Any,
    base: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    depth: int | None = None,
    mrope: bool = False,
) -> torch.Tensor:
    """The rollout after the prefix: ``z_1 = readout(h)``, then each latent re-inserted on the KV cache.

    Args:
        model: The policy model.
        projector: The SQR maps.
        hidden: ``(B, H)`` last hidden state at ``<REFINE>``.
        cache: The prefix's KV cache (extended in place).
        base: ``(B, 1)`` position of each row's first latent.
        attention_mask: ``(B, L)`` prefix mask (left padding), or None.
        depth: Latents to produce (default ``projector.num_tokens``).
        mrope: Qwen-VL's 3-axis positions.

    Returns:
        ``(B, depth, D)`` float32 latents.
    """
    depth = int(depth or projector.num_tokens)
    kw = _cache_kw(model)
    b = hidden.shape[0]
    mask = attention_mask
    z = [projector.latent(hidden, 0)]
    for k in range(1, depth):
        emb = projector.roll_in(z[-1].to(projector.roll_in[1].weight.dtype)).unsqueeze(1)
        emb = emb.to(model.get_input_embeddings().weight.dtype)
        pos = base + (k - 1)
        step: dict[str, Any] = {
            "inputs_embeds": emb,
            kw: cache,
            "use_cache": True,
            "output_hidden_states": True,
        }
        step["position_ids"] = pos.unsqueeze(0).expand(3, b, 1) if mrope else pos
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step["attention_mask"] = mask
        o = model(**step)
        cache = _output_cache(o)
        z.append(projector.latent(o.hidden_states[-1][:, -1], k))
    return torch.stack(z, dim=1)


def refined_query(encoder: Any, texts: Sequence[str], soft_tokens: torch.Tensor) -> torch.Tensor:
    """``normalize(q + e(q, soft) - e(q, 0))`` for each text, shape ``(B, dim)``.

    Args:
        encoder: The retriever (``encode_text``, ``encode_text_with_soft_tokens``).
        texts: ``B`` query strings.
        soft_tokens: ``(B, K, W)`` or ``(K, W)``.

    Returns:
        Unit vectors (CPU, float32); gradients flow into ``soft_tokens``.
    """
    q = torch.as_tensor(encoder.encode_text(list(texts)), dtype=torch.float32)
    e = encoder.encode_text_with_soft_tokens(list(texts), soft_tokens).float().cpu()
    with torch.no_grad():
        e0 = encoder.encode_text_with_soft_tokens(list(texts), torch.zeros_like(soft_tokens)).float().cpu()
    return torch.nn.functional.normalize(q + e - e0, dim=-1)


def refine_token_id(policy: Any, token: str = REFINE_TOKEN) -> int:
    """Id of ``token`` in the policy's tokenizer.

    Raises:
        InvalidArgumentError: If the tokenizer does not have it (the policy was not trained for SQR).
    """
    vocab = policy.tokenizer.get_vocab()
    if token not in vocab:
        raise InvalidArgumentError(
            f"the policy's tokenizer has no {token!r} token; train soft refinement with training.sqr"
        )
    return int(vocab[token])


def refine_inputs(
    policy: Any,
    messages: Sequence[dict],
    frames: Any = None,
    *,
    reply: str | None = None,
    completion_ids: Sequence[int] | None = None,
    refine_id: int | None = None,
) -> tuple[dict[str, Any], int]:
    """Model inputs of one verification turn: prompt + the policy's reply, ending with ``<REFINE>``.

    The reply is ``completion_ids`` (the generated tokens: cut after their last ``<REFINE>``,
    else ``<REFINE>`` is appended) or ``reply`` text (tokenised; same rule). Neither: the bare
    prompt plus ``<REFINE>``. Vision placeholder ids in the reply are dropped: only the
    processor places them, one per vision feature of the prompt's images
    (:mod:`agent_tools.policies.vision_tokens`).

    Returns:
        ``(inputs on the model's device, number of reply tokens incl. <REFINE>)``.
    """
    from agent_tools.policies.transformers_policy import append_token_ids
    from agent_tools.policies.vision_tokens import drop_vision_placeholders

    rid = refine_id if refine_id is not None else refine_token_id(policy)
    if completion_ids is not None:
        ids = [int(t) for t in completion_ids]
    elif reply is not None:
        ids = list(policy.tokenizer(reply, add_special_tokens=False)["input_ids"])
    else:
        ids = []
    ids = drop_vision_placeholders(policy, ids)  # else "image features and image tokens do not match"
    eos = getattr(getattr(policy.model, "generation_config", None), "eos_token_id", None)
    stop = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    if rid in ids:
        ids = ids[: len(ids) - ids[::-1].index(rid)]
    else:
        while ids and ids[-1] in stop:  # the turn's end-of-message token does not precede <REFINE>
            ids.pop()
        ids.append(rid)
    inputs = append_token_ids(policy.build_inputs(policy.prepare(messages, frames)), ids)
    return inputs, len(ids)


# the refiner and its files (soft_refine_refiner) and the search-side helpers (soft_refine_search)
# live in their own modules, split for size; their names are served from here lazily (PEP 562), so
# importing any of the three modules first works (no import cycle at load time)
_MOVED = {
    "SoftRefiner": "soft_refine_refiner",
    "attach_soft_refiner": "soft_refine_refiner",
    "check_refiner_encoder": "soft_refine_refiner",
    "encoder_fingerprint": "soft_refine_refiner",
    "load_projector": "soft_refine_refiner",
    "save_projector": "soft_refine_refiner",
    "load_refiner": "soft_refine_search",
    "refine_search": "soft_refine_search",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"agent_tools.policies.{module}"), name)
