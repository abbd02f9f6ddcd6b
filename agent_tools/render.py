"""Pictures of search results: a contact sheet of frames labelled with their timestamps.

- :func:`contact_sheet` - images in a grid, each captioned ``12.5s`` (or ``mm:ss.s``).
- :func:`format_timestamp` - seconds → ``"83.5s (1:23.5)"``-style labels.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["contact_sheet", "format_timestamp"]


def format_timestamp(t: float) -> str:
    """``83.5`` → ``"83.5s (1:23.5)"``; below a minute just ``"12.5s"``."""
    if t < 60:
        return f"{t:.1f}s"
    m, s = divmod(t, 60)
    h, m = divmod(int(m), 60)
    clock = f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"
    return f"{t:.1f}s ({clock})"


def _font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - very old Pillow
        return ImageFont.load_default()


def contact_sheet(
    images: Sequence[Image.Image],
    timestamps: Sequence[float],
    columns: Optional[int] = None,
    tile_width: int = 320,
    title: Optional[str] = None,
    captions: Optional[Sequence[str]] = None,
) -> Image.Image:
    """Lay frames out in a grid, each labelled with its timestamp.

    Args:
        images: The frames.
        timestamps: One per frame, in seconds.
        columns: Grid width (default: up to 4).
        tile_width: Width of each tile in pixels (height keeps the aspect ratio).
        title: Optional line above the grid (e.g. the query).
        captions: Optional extra text per frame (e.g. the score).

    Returns:
        The sheet as an RGB image.
    """
    if len(images) != len(timestamps):
        raise ValueError(f"got {len(images)} images but {len(timestamps)} timestamps")
    if not images:
        raise ValueError("no frames to draw")
    cols = columns or min(4, len(images))
    rows = math.ceil(len(images) / cols)
    w0, h0 = images[0].size
    tile_h = max(1, round(tile_width * h0 / w0))
    pad, label_h = 6, max(18, tile_width // 12)
    title_h = label_h + pad if title else 0
    sheet = Image.new("RGB", (cols * (tile_width + pad) + pad, title_h + rows * (tile_h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(int(label_h * 0.75))
    if title:
        draw.text((pad, pad // 2), title, fill="black", font=font)
    for i, (img, t) in enumerate(zip(images, timestamps)):
        r, c = divmod(i, cols)
        x = pad + c * (tile_width + pad)
        y = title_h + pad + r * (tile_h + label_h + pad)
        # downscale first, then convert: a huge frame is never copied at full size
        sheet.paste(img.resize((tile_width, tile_h), reducing_gap=2.0).convert("RGB"), (x, y))
        label = format_timestamp(float(t))
        if captions:
            label += f"  {captions[i]}"
        draw.rectangle([x, y + tile_h, x + tile_width, y + tile_h + label_h], fill="black")
        draw.text((x + 4, y + tile_h + 1), label, fill="white", font=font)
    return sheet
