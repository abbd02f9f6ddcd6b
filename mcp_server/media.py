"""JPEG encoding of frames under a total payload budget (hosts reject results above ~1 MB).

Claude Desktop refuses a tool result larger than 1,048,576 characters, and images travel
base64-encoded (4 characters per 3 bytes). :func:`encode_frames` therefore encodes all the
frames of one answer together and steps down until their *base64* size fits the budget:

1. at the requested longest side (never upscaled), JPEG quality 80, then 65, 50, 40
   (skipping the lower qualities when the total is more than twice the budget);
2. then a smaller longest side (estimated from the overshoot, 0.5 to 0.9 times the last),
   again through the qualities, down to ``min_side``.

Every frame of one answer gets the same size and quality, so the model sees them alike.

Usage::

    batch = encode_frames(pil_images, max_side=768, budget=900_000)
    batch.frames[0].data      # JPEG bytes
    batch.total_base64        # <= budget unless even min_side did not fit
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image as PILImage

__all__ = [
    "EncodedFrame",
    "EncodedBatch",
    "encode_frames",
    "to_pil",
    "base64_len",
    "DEFAULT_BUDGET",
    "QUALITY_STEPS",
]

DEFAULT_BUDGET = 900_000
"""Base64 characters allowed for all images of one result (leaves room for text and JSON)."""

QUALITY_STEPS = (80, 65, 50, 40)


@dataclass
class EncodedFrame:
    """One JPEG-encoded frame."""

    data: bytes
    width: int
    height: int

    @property
    def b64(self) -> str:
        """The JPEG as base64 text, as it travels in an MCP ``ImageContent``."""
        return base64.b64encode(self.data).decode("ascii")


@dataclass
class EncodedBatch:
    """The frames of one answer, encoded with one common size and quality."""

    frames: list[EncodedFrame] = field(default_factory=list)
    quality: int = 0
    max_side: int = 0
    total_base64: int = 0
    downscaled: bool = False

    @property
    def total_bytes(self) -> int:
        """Raw JPEG bytes, summed over the frames."""
        return sum(len(f.data) for f in self.frames)


def base64_len(n_bytes: int) -> int:
    """Length of the base64 text for ``n_bytes`` bytes."""
    return 4 * ((n_bytes + 2) // 3)


def to_pil(image: Any) -> PILImage.Image:
    """Accept a PIL image or an ``HxWx3`` uint8 array; return an RGB PIL image."""
    if isinstance(image, PILImage.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return PILImage.fromarray(arr[..., :3], mode="RGB")


def _resize(img: PILImage.Image, max_side: int) -> PILImage.Image:
    w, h = img.size
    longest = max(w, h)
    if longest <= max_side:
        return img
    scale = max_side / longest
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), PILImage.Resampling.BILINEAR)


def _encode(img: PILImage.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def encode_frames(
    images: Sequence[Any],
    *,
    max_side: int = 768,
    budget: int = DEFAULT_BUDGET,
    min_side: int = 96,
    qualities: Sequence[int] = QUALITY_STEPS,
) -> EncodedBatch:
    """Encode frames as JPEG so that their base64 total stays within ``budget``.

    Args:
        images: PIL images or ``HxWx3`` uint8 arrays.
        max_side: Longest side at the first attempt (frames are never upscaled).
        budget: Base64 characters allowed for all frames together.
        min_side: Smallest longest side tried; at that size the lowest quality is returned
            even if it is still over budget (the caller may then drop frames).
        qualities: JPEG qualities tried at each size, best first.

    Returns:
        The encoded batch, with the size and quality that fitted.

    Raises:
        ValueError: ``max_side`` or ``budget`` is not positive.
    """
    if max_side < 1 or budget < 1:
        raise ValueError("max_side and budget must be positive")
    pils = [to_pil(im) for im in images]
    if not pils:
        return EncodedBatch(quality=qualities[0], max_side=max_side)
    native = max(max(im.size) for im in pils)
    side = min(max_side, native)
    first_side = side
    while True:
        sized = [_resize(im, side) for im in pils]
        total = 0
        for q in qualities:
            datas = [_encode(im, q) for im in sized]
            total = sum(base64_len(len(d)) for d in datas)
            last_try = side <= min_side and q == qualities[-1]
            if total <= budget or last_try:
                frames = [EncodedFrame(d, im.size[0], im.size[1]) for d, im in zip(datas, sized, strict=True)]
                return EncodedBatch(
                    frames=frames,
                    quality=q,
                    max_side=side,
                    total_base64=total,
                    downscaled=side < first_side or q != qualities[0],
                )
            if total > 2 * budget and side > min_side:
                break  # lower quality alone will not get there: shrink first
        # JPEG size grows roughly with the pixel count: aim just under the budget.
        factor = min(0.9, max(0.5, 0.95 * (budget / total) ** 0.5))
        side = max(min_side, int(side * factor))
