"""Image-text encoders as data: a JSON registry plus an open_clip wrapper.

- :func:`load_encoder` - build (once per process) the encoder named in the registry.
- :func:`list_encoders` / :func:`get_spec` / :func:`register_encoder` - the registry.
- :func:`weights_status` - are an encoder's weights on this machine (no download).
- :class:`OpenClipEncoder` - ``encode_images``, ``encode_text``, ``encode_text_with_soft_tokens``.

Registered: ``siglip-so400m-384`` (TimeSearch-R's encoder), ``siglip-b16`` (the default),
``clip-b32-openai``, and ``tiny-untrained`` (random weights, for tests; never a default).

Usage::

    from agent_tools.encoders import load_encoder
    enc = load_encoder("siglip-b16")          # EncoderUnavailableError says how to get weights
    vecs = enc.encode_text(["a dog catches a frisbee"])
"""

from __future__ import annotations

import threading

from .registry import EncoderSpec, get_spec, list_encoders, register_encoder, weights_status

# The open_clip wrapper imports torch and open_clip (seconds): only on first use, so that
# `videoseek encoders` and the registry functions stay fast.
_LAZY = {"OpenClipEncoder", "Encoder", "resolve_device"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import open_clip_encoder

        return open_clip_encoder.OpenClipEncoder if name == "Encoder" else getattr(open_clip_encoder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Encoder",
    "EncoderSpec",
    "OpenClipEncoder",
    "load_encoder",
    "list_encoders",
    "get_spec",
    "register_encoder",
    "weights_status",
    "resolve_device",
]

_CACHE: dict[tuple[str, str], OpenClipEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(name: str, device: str = "auto") -> OpenClipEncoder:
    """Load a registered encoder (cached per name and device within the process).

    Args:
        name: Registry name (``videoseek encoders`` lists them).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        EncoderUnavailableError: Unknown name, or weights not available here (says how to get them).
    """
    spec = get_spec(name)
    key = (name, device)
    with _LOCK:
        if key not in _CACHE:
            from .open_clip_encoder import OpenClipEncoder

            _CACHE[key] = OpenClipEncoder(spec, device=device)
        return _CACHE[key]
