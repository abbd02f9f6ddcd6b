"""The refiner: a trained SQR projector bound to a policy and a retriever, and its checkpoint files.

Split from :mod:`agent_tools.policies.soft_refine` (the model side: projector, latent rollout,
refined query), which re-exports every name here.

- :func:`encoder_fingerprint`, :func:`check_refiner_encoder`, :class:`RefinerEncoderMismatchError`
  (defined in ``soft_refine``) - a refiner only runs with the retriever it was trained for
  (name, cache key, text-tower hash, widths).
- :class:`SoftRefiner` - ``refine_query_vector(messages, frames=..., completion_ids=...)``: the
  policy's ``<REFINE>`` state after its reply -> latent rollout -> soft tokens -> refined query.
- :func:`save_projector`, :func:`load_projector` - ``sqr_projector.safetensors`` + ``sqr_config.json``.
- :func:`attach_soft_refiner` - load a checkpoint's projector and set ``policy.refine_query_vector``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agent_tools.errors import InvalidArgumentError
from agent_tools.policies.soft_refine import (
    REFINE_TOKEN,
    SQR_CONFIG_NAME,
    SQR_FORMAT,
    SQR_WEIGHTS_NAME,
    RefinerEncoderMismatchError,
    SoftQueryProjector,
    refine_inputs,
    refined_query,
    rollout_latents,
)

__all__ = [
    "SoftRefiner",
    "attach_soft_refiner",
    "check_refiner_encoder",
    "encoder_fingerprint",
    "load_projector",
    "save_projector",
]


# --------------------------------------------------------------------------- encoder identity


def encoder_fingerprint(encoder: Any) -> dict[str, Any]:
    """What identifies the retriever a refiner was trained for.

    Returns:
        ``{"name", "cache_key", "text_fingerprint", "text_width", "dim"}`` (``text_fingerprint``:
        a hash of the text tower's weights when the encoder exposes it).
    """
    fp = getattr(encoder, "text_fingerprint", None)
    return {
        "name": getattr(encoder, "name", None),
        "cache_key": getattr(encoder, "cache_key", None),
        "text_fingerprint": fp() if callable(fp) else fp,
        "text_width": getattr(encoder, "text_width", None),
        "dim": getattr(encoder, "dim", None),
    }


def check_refiner_encoder(meta: dict[str, Any], encoder: Any, where: str = "the refiner") -> None:
    """Refuse a refiner whose recorded retriever differs from ``encoder``.

    Args:
        meta: The refiner's ``sqr_config.json`` (its ``encoder`` fingerprint).
        encoder: The encoder it is about to run with (the corpus index's).
        where: Name of the refiner in the message.

    Raises:
        RefinerEncoderMismatchError: On a different name, cache key, text-tower hash or width.
    """
    want = meta.get("encoder") or {}
    if isinstance(want, str):
        want = {"name": want}
    have = encoder_fingerprint(encoder)
    for key in ("name", "cache_key", "text_fingerprint", "text_width", "dim"):
        a, b = want.get(key), have.get(key)
        if a is not None and b is not None and a != b:
            raise RefinerEncoderMismatchError(
                f"{where} was trained for the retriever encoder {want.get('name')!r} ({key} {a!r}), but this "
                f"index uses {have.get('name')!r} ({key} {b!r}); soft tokens only mean something in the text "
                "tower they were trained for - use a refiner trained with this index's encoder, or search "
                "without --refiner"
            )


# --------------------------------------------------------------------------- inference

_QUERY_LINE = re.compile(r"Query: (.*)")


def _query_of(messages: Sequence[dict]) -> str:
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
    return found.group(1).strip()


class SoftRefiner:
    """``refine_query_vector(messages, frames=..., completion_ids=...)`` for the corpus graph.

    Args:
        policy: The policy whose hidden states are read.
        projector: The trained :class:`SoftQueryProjector`.
        encoder: The retriever encoder, or its registry name (loaded on first use).
        meta: The refiner's ``sqr_config.json`` (encoder fingerprint), checked on first use.
    """

    def __init__(self, policy: Any, projector: SoftQueryProjector, encoder: Any, meta: dict | None = None):
        self.policy = policy
        self.projector = projector.eval()
        self.meta = dict(meta or {})
        self._encoder = encoder
        self._checked = False

    @property
    def encoder(self) -> Any:
        if isinstance(self._encoder, str):
            from agent_tools.encoders import load_encoder

            self._encoder = load_encoder(self._encoder, device=str(self.policy.model.device))
        if not self._checked:
            check_refiner_encoder(self.meta, self._encoder)
            self._checked = True
        return self._encoder

    def use_encoder(self, encoder: Any) -> None:
        """Run with ``encoder`` (the index's) after checking it is the one trained for.

        Raises:
            RefinerEncoderMismatchError: If it is another encoder.
        """
        check_refiner_encoder(self.meta, encoder)
        self._encoder, self._checked = encoder, True

    def __call__(
        self,
        messages: Sequence[dict],
        frames: Any = None,
        *,
        reply: str | None = None,
        completion_ids: Sequence[int] | None = None,
    ) -> Any:
        """The refined query vector (numpy ``(dim,)``, unit norm) after a verification turn.

        Args:
            messages: The verification conversation (``Query: ...`` line inside).
            frames: Frame resolver.
            reply: The policy's reply text (when its token ids are not at hand).
            completion_ids: The policy's generated tokens (preferred: exact).

        Raises:
            InvalidArgumentError: If the conversation has no ``Query:`` line.
        """
        query = _query_of(messages)
        encoder = self.encoder
        with torch.no_grad():
            inputs, _ = refine_inputs(
                self.policy, messages, frames, reply=reply, completion_ids=completion_ids
            )
            latents, _ = rollout_latents(self.policy.model, self.projector, dict(inputs))
            soft = self.projector.soft_tokens(latents)
            return refined_query(encoder, [query], soft)[0].numpy()


def save_projector(
    projector: SoftQueryProjector,
    directory: str | Path,
    *,
    encoder: Any = None,
    tau: float = 0.1,
    **extra: Any,
) -> Path:
    """Write ``sqr_projector.safetensors`` and ``sqr_config.json`` into ``directory``.

    Args:
        projector: The trained maps.
        directory: Target folder (created).
        encoder: The retriever it was trained with (its :func:`encoder_fingerprint` is recorded).
        tau: InfoNCE temperature used.
        **extra: More fields for the config.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().float().contiguous().cpu() for k, v in projector.state_dict().items()},
        str(d / SQR_WEIGHTS_NAME),
    )
    fp = (
        encoder_fingerprint(encoder)
        if encoder is not None and not isinstance(encoder, str)
        else {"name": encoder}
    )
    meta = dict(
        projector.config(), encoder=fp, tau=tau, refine_token=REFINE_TOKEN, format=SQR_FORMAT, **extra
    )
    (d / SQR_CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return d


def load_projector(directory: str | Path) -> tuple[SoftQueryProjector, dict[str, Any]]:
    """Read ``sqr_projector.safetensors`` + ``sqr_config.json`` (as :func:`save_projector` writes them).

    Returns:
        ``(projector in eval mode, the config dict)``.

    Raises:
        PolicyLoadError: If a file is missing, or the config is not a valid (current-format) one.
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
        if meta.get("format") != SQR_FORMAT:
            raise ValueError(
                f"format {meta.get('format')!r} is not {SQR_FORMAT!r} (retrain with training.sqr)"
            )
        proj = SoftQueryProjector(
            meta["hidden_size"],
            meta["latent_dim"],
            meta["text_width"],
            meta["num_tokens"],
            meta.get("use_gate", False),
            meta.get("center_momentum", 0.0),
        )
        weights = load_file(str(d / SQR_WEIGHTS_NAME))
        for key, value in proj.state_dict().items():  # files written before centring existed
            if key.startswith("center"):
                weights.setdefault(key, torch.zeros_like(value))
        proj.load_state_dict(weights)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise PolicyLoadError(
            f"{d / SQR_CONFIG_NAME}: not a valid projector ({exc}); it needs hidden_size, latent_dim, "
            "text_width and num_tokens matching the weights"
        ) from None
    return proj.eval(), meta


def attach_soft_refiner(policy: Any, directory: str | Path, encoder: Any = None) -> SoftRefiner:
    """Load the projector from ``directory`` and set ``policy.refine_query_vector``.

    Args:
        policy: The loaded policy.
        directory: The checkpoint directory.
        encoder: The retriever or its name (default: the one recorded in ``sqr_config.json``).

    Returns:
        The refiner (also set as ``policy.refine_query_vector``).

    Raises:
        PolicyLoadError: The checkpoint claims soft refinement but lacks the projector files
            or the retriever encoder's name.
        RefinerEncoderMismatchError: ``encoder`` is not the one the refiner was trained for.
    """
    from agent_tools.policies.manifest import PolicyLoadError
    from agent_tools.policies.vision_tokens import suppress_vision_placeholders

    d = Path(directory)
    proj, meta = load_projector(d)
    proj.to(policy.model.device)
    recorded = (
        (meta.get("encoder") or {}).get("name")
        if isinstance(meta.get("encoder"), dict)
        else meta.get("encoder")
    )
    enc = encoder if encoder is not None else (recorded or getattr(policy.manifest, "encoder", None))
    if enc is None:
        raise PolicyLoadError(
            f"{d}: soft refinement needs the retriever encoder's name ('encoder' in {SQR_CONFIG_NAME} "
            "or in videoseek_policy.json)"
        )
    refiner = SoftRefiner(policy, proj, enc, meta)
    suppress_vision_placeholders(policy)  # its replies are re-fed by id with the prompt's frames
    if not isinstance(enc, str):
        refiner.use_encoder(enc)
    policy.refine_query_vector = refiner
    return refiner
