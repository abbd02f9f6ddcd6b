"""Soft query refinement at inference: a policy checkpoint's ``<REFINE>`` projector, run.

A checkpoint trained by ``training.sqr`` holds, next to the policy, ``sqr_projector.safetensors``
and ``sqr_config.json``, and says ``soft_refinement: true`` in its manifest. :func:`load_policy`
then attaches a :class:`SoftRefiner` as ``policy.refine_query_vector``, which the corpus graph
calls after a ``not_matched`` verdict to get the next search vector.

How a refined query is made (the same code trains it, so training and inference agree):

1. The policy reads the verification conversation, then a ``<REFINE>`` token; its last hidden
   state there is ``h`` (:func:`refine_hidden_state`).
2. :class:`SoftQueryProjector` maps ``h`` to ``K`` soft tokens of the retriever's text width
   (Linear -> LayerNorm -> GELU -> Linear, last layer zero-initialised).
3. :func:`refined_query` inserts them into the retriever's text encoder next to the query
   (``encode_text_with_soft_tokens``) and returns ``normalize(q + e(q, soft) - e(q, 0))``: the
   soft tokens' effect added to the plain query, so a zero projector returns the plain query.

Names: :class:`SoftQueryProjector`, :func:`refined_query`, :func:`refine_hidden_state`,
:class:`SoftRefiner`, :func:`load_projector`, :func:`attach_soft_refiner`, :data:`REFINE_TOKEN`,
:data:`SQR_WEIGHTS_NAME`, :data:`SQR_CONFIG_NAME`.

Usage::

    policy = load_policy("runs/sqr")                 # manifest soft_refinement: true
    vec = policy.refine_query_vector(convo, frames=resolver)   # (dim,) unit vector
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError

__all__ = [
    "REFINE_TOKEN",
    "SQR_WEIGHTS_NAME",
    "SQR_CONFIG_NAME",
    "SoftQueryProjector",
    "refined_query",
    "refine_token_id",
    "refine_hidden_state",
    "SoftRefiner",
    "load_projector",
    "attach_soft_refiner",
]

REFINE_TOKEN = protocol.REFINE_TOKEN
SQR_WEIGHTS_NAME = "sqr_projector.safetensors"
SQR_CONFIG_NAME = "sqr_config.json"


class SoftQueryProjector(nn.Module):
    """Policy hidden state ``(B, H)`` -> ``K`` soft tokens ``(B, K, W)``.

    Args:
        hidden_size: The policy's hidden size H.
        text_width: The retriever's text-token width W (``encoder.text_width``).
        num_tokens: K soft tokens (VideoSearch-R1 uses 8).
        proj_dim: Inner width D (default W).

    Raises:
        InvalidArgumentError: If a size is below 1.
    """

    def __init__(
        self, hidden_size: int, text_width: int, num_tokens: int = 8, proj_dim: Optional[int] = None
    ):
        super().__init__()
        if min(hidden_size, text_width, num_tokens) < 1:
            raise InvalidArgumentError("hidden_size, text_width and num_tokens must be >= 1")
        d = int(proj_dim or text_width)
        self.hidden_size, self.text_width, self.num_tokens, self.proj_dim = (
            hidden_size,
            text_width,
            num_tokens,
            d,
        )
        self.net = nn.Sequential(
            nn.Linear(hidden_size, d), nn.LayerNorm(d), nn.GELU(), nn.Linear(d, num_tokens * text_width)
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() == 1:
            hidden = hidden.unsqueeze(0)
        return self.net(hidden.float()).view(hidden.shape[0], self.num_tokens, self.text_width)

    def config(self) -> dict[str, int]:
        """Constructor arguments (saved next to the weights)."""
        return {
            "hidden_size": self.hidden_size,
            "text_width": self.text_width,
            "num_tokens": self.num_tokens,
            "proj_dim": self.proj_dim,
        }


def refined_query(encoder: Any, texts: Sequence[str], soft_tokens: torch.Tensor) -> torch.Tensor:
    """``normalize(q + e(q, soft) - e(q, 0))`` for each text, shape ``(B, dim)``.

    Inserting K tokens moves the pooled embedding even when they are zero (positions,
    attention), so ``e(q, 0)`` is subtracted: a zero projector gives exactly the plain query.

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


def refine_hidden_state(
    policy: Any, messages: Sequence[dict], frames: Any = None, *, refine_id: Optional[int] = None
) -> torch.Tensor:
    """Last-layer hidden state of the policy at a ``<REFINE>`` token placed after ``messages``.

    The sequence is the policy's own model input for ``messages`` (generation prompt
    included, :meth:`TransformersPolicy.build_inputs`) plus the ``<REFINE>`` token.

    Args:
        policy: A :class:`~agent_tools.policies.TransformersPolicy`.
        messages: The verification conversation (frames as references).
        frames: Resolver for the frame references.
        refine_id: The token id (default: looked up).

    Returns:
        ``(H,)`` float tensor (carrying gradient when the model is trainable).
    """
    rid = refine_id if refine_id is not None else refine_token_id(policy)
    from agent_tools.policies.transformers_policy import append_token_ids

    inputs = append_token_ids(policy.build_inputs(policy.prepare(messages, frames)), [rid])
    out = policy.model(**inputs, output_hidden_states=True)
    return out.hidden_states[-1][0, -1].float()


_QUERY_LINE = re.compile(r"Query: (.*)")


class SoftRefiner:
    """``refine_query_vector(messages, frames=...)`` for the corpus graph.

    Args:
        policy: The policy whose hidden state is read.
        projector: The trained :class:`SoftQueryProjector`.
        encoder: The retriever encoder, or its registry name (loaded on first use). It must be
            the encoder the corpus index was built with.
    """

    def __init__(self, policy: Any, projector: SoftQueryProjector, encoder: Any):
        self.policy = policy
        self.projector = projector.eval()
        self._encoder = encoder

    @property
    def encoder(self) -> Any:
        if isinstance(self._encoder, str):
            from agent_tools.encoders import load_encoder

            self._encoder = load_encoder(self._encoder, device=str(self.policy.model.device))
        return self._encoder

    def __call__(self, messages: Sequence[dict], frames: Any = None) -> Any:
        """The refined query vector (numpy ``(dim,)``, unit norm) after a verification turn.

        Raises:
            InvalidArgumentError: If the conversation has no ``Query:`` line.
        """
        text = ""
        for m in messages:
            c = m.get("content")
            text += (
                c
                if isinstance(c, str)
                else "".join(b.get("text", "") for b in c or [] if b.get("type") == "text")
            )
        found = _QUERY_LINE.search(text)
        if found is None:
            raise InvalidArgumentError(
                "soft refinement needs the corpus verification conversation (its 'Query: ...' line)"
            )
        with torch.no_grad():
            h = refine_hidden_state(self.policy, messages, frames)
            soft = self.projector(h.to(next(self.projector.parameters()).device))
            return refined_query(self.encoder, [found.group(1).strip()], soft)[0].numpy()


def load_projector(directory: str | Path) -> tuple[SoftQueryProjector, dict[str, Any]]:
    """Read ``sqr_projector.safetensors`` + ``sqr_config.json`` (as ``training.sqr`` saves them).

    Returns:
        ``(projector in eval mode, the config dict)``.

    Raises:
        PolicyLoadError: If a file is missing or the config is not valid.
    """
    from safetensors.torch import load_file

    from agent_tools.policies.manifest import PolicyLoadError

    d = Path(directory)
    missing = [n for n in (SQR_WEIGHTS_NAME, SQR_CONFIG_NAME) if not (d / n).is_file()]
    if missing:
        raise PolicyLoadError(
            f"{d} lacks {', '.join(missing)}, which a soft_refinement: true checkpoint needs; save the "
            "projector with training.sqr, or set soft_refinement to false in videoseek_policy.json"
        )
    try:
        meta = json.loads((d / SQR_CONFIG_NAME).read_text())
        proj = SoftQueryProjector(
            meta["hidden_size"], meta["text_width"], meta["num_tokens"], meta.get("proj_dim")
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise PolicyLoadError(
            f"{d / SQR_CONFIG_NAME}: not a valid projector config ({exc!r}); it needs hidden_size, "
            "text_width and num_tokens"
        ) from None
    proj.load_state_dict(load_file(str(d / SQR_WEIGHTS_NAME)))
    return proj.eval(), meta


def attach_soft_refiner(policy: Any, directory: str | Path, encoder: Any = None) -> SoftRefiner:
    """Load ``sqr_projector.safetensors`` from ``directory`` and set ``policy.refine_query_vector``.

    Args:
        policy: The loaded policy.
        directory: The checkpoint directory.
        encoder: The retriever or its name (default: ``sqr_config.json``'s ``encoder``).

    Returns:
        The refiner (also set as ``policy.refine_query_vector``).

    Raises:
        PolicyLoadError: The checkpoint claims soft refinement but lacks the projector files
            or the retriever encoder's name.
    """
    from agent_tools.policies.manifest import PolicyLoadError

    d = Path(directory)
    proj, meta = load_projector(d)
    proj.to(policy.model.device)
    enc = (
        encoder if encoder is not None else (meta.get("encoder") or getattr(policy.manifest, "encoder", None))
    )
    if enc is None:
        raise PolicyLoadError(
            f"{d}: soft refinement needs the retriever encoder's name ('encoder' in {SQR_CONFIG_NAME} "
            "or in videoseek_policy.json)"
        )
    refiner = SoftRefiner(policy, proj, enc)
    policy.refine_query_vector = refiner
    return refiner
