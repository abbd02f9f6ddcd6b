"""Synthetic test videos whose frames say which frame they are.

Used by the tests, the benchmarks and ``make demo``. Each frame carries

- its frame index painted as a row of black/white blocks along the top edge
  (16 bits, robust to H.264 compression; read back with :func:`read_frame_index`), and
- a *scene*: a background colour and a pattern that change every ``scene_seconds``,
  so that any image encoder, even an untrained one, sees distinct content per scene.

Usage::

    from agent_tools.synthetic import write_indexed_video, read_frame_index
    write_indexed_video("clip.mp4", duration=20, fps=10, size=(160, 120))
    reader = open_video("clip.mp4"); t, rgb = reader.frames_at([3.0])[0]
    assert read_frame_index(rgb) == 30
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_indexed_video", "render_frame", "read_frame_index", "scene_of", "BITS"]

BITS = 16
_BAR_ROWS = 12  # height of the index bar in pixels


def scene_of(t: float, scene_seconds: float) -> int:
    """Scene number shown at time ``t``."""
    return int(t // scene_seconds)


def _scene_palette(scene: int, seed: int) -> tuple[np.ndarray, int, int]:
    rng = np.random.default_rng(seed * 100_003 + scene * 7919 + 17)
    colour = rng.integers(20, 236, size=3)
    pattern = int(rng.integers(0, 4))
    freq = int(rng.integers(2, 9))
    return colour, pattern, freq


def render_frame(index: int, t: float, width: int, height: int, scene_seconds: float, seed: int) -> np.ndarray:
    """Render one RGB frame (``height x width x 3`` uint8) for frame ``index`` at time ``t``."""
    scene = scene_of(t, scene_seconds)
    colour, pattern, freq = _scene_palette(scene, seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if pattern == 0:
        wave = np.sin(xx / width * np.pi * freq)
    elif pattern == 1:
        wave = np.sin(yy / height * np.pi * freq)
    elif pattern == 2:
        wave = np.sign(np.sin(xx / width * np.pi * freq) * np.sin(yy / height * np.pi * freq))
    else:
        r = np.hypot(xx - width / 2, yy - height / 2)
        wave = np.sin(r / max(width, height) * np.pi * freq * 2)
    img = colour[None, None, :].astype(np.float32) * (0.65 + 0.35 * wave[..., None])
    # a small square that drifts slowly inside the scene, so neighbouring frames differ a little
    local = t - scene * scene_seconds
    sx = int((local / scene_seconds) * (width - width // 5))
    img[height // 2 : height // 2 + height // 5, sx : sx + width // 5] = 255 - colour
    img = np.clip(img, 0, 255).astype(np.uint8)
    # the index bar
    bw = width // BITS
    img[:_BAR_ROWS] = 0
    for b in range(BITS):
        if (index >> b) & 1:
            img[:_BAR_ROWS, b * bw : (b + 1) * bw] = 255
    return img


def read_frame_index(rgb: np.ndarray) -> int:
    """Read back the frame index painted by :func:`render_frame` (any resize keeps it readable)."""
    h, w = rgb.shape[:2]
    bar_h = max(1, round(_BAR_ROWS * h / _bar_ref_height(h)))
    gray = rgb[: max(1, bar_h - 2)].astype(np.float32).mean(axis=(0, 2))
    bw = w / BITS
    value = 0
    for b in range(BITS):
        lo, hi = int(b * bw + bw * 0.3), int((b + 1) * bw - bw * 0.3)
        if gray[lo : max(hi, lo + 1)].mean() > 127:
            value |= 1 << b
    return value


def _bar_ref_height(h: int) -> int:
    # frames are read at their native size in tests; the bar is _BAR_ROWS pixels there
    return h


def write_indexed_video(
    path: str | Path,
    duration: float = 10.0,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    scene_seconds: float = 2.0,
    seed: int = 0,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 18,
) -> Path:
    """Write an H.264 MP4 whose frame ``i`` shows index ``i`` and the scene of time ``i / fps``.

    Args:
        path: Output file (its folder must exist).
        duration: Length in seconds.
        fps: Frame rate (integer rates keep timestamps exact).
        size: ``(width, height)``; both must be even for yuv420p.
        scene_seconds: Seconds per scene.
        seed: Changes the scene colours and patterns (use different seeds per corpus video).
        codec: PyAV encoder name.
        gop: Keyframe interval in frames (default: 2 seconds' worth).
        crf: x264 quality (lower is better).

    Returns:
        The path written.
    """
    import av
    from fractions import Fraction

    path = Path(path)
    width, height = size
    n = int(round(duration * fps))
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop or max(1, int(round(2 * fps)))
        stream.options = {"crf": str(crf), "preset": "veryfast"} if codec == "libx264" else {}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(
                render_frame(i, i / fps, width, height, scene_seconds, seed), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_indices(rgbs: Sequence[np.ndarray]) -> list[int]:
    """Convenience: :func:`read_frame_index` over several frames."""
    return [read_frame_index(f) for f in rgbs]
