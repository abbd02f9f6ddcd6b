"""The synthetic world's vocabulary, events and renderer (pure numpy, deterministic).

A world video is a static background (a muted two-colour gradient with a few faint panels,
one per video) on which scheduled *events* happen one at a time:

- ``appears``: a coloured shape sits at a fixed spot for the event's duration;
- ``moves from left to right`` / ``moves from right to left``: a coloured shape crosses the frame;
- ``number``: a single digit drawn as a seven-segment numeral in a colour.

Every event has a caption built from the vocabulary (``"a red circle moves from left to right"``,
``"the number 7 is shown in yellow"``). Frame ``i`` of a video shows the state at ``t = i / fps``;
an event is on screen for ``start <= t < end``.

- :data:`SHAPES`, :data:`COLOURS`, :data:`ACTIONS`, :data:`DIGITS` - the vocabulary.
- :class:`Event` - one scheduled event (kind, shape, colour, digit, times, placement) and its caption.
- :class:`Background` - one video's static background.
- :func:`render_frame` - the ``H x W x 3`` uint8 frame at time ``t``.
- :func:`empty_caption` - the caption of a frame in which nothing happens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "SHAPES",
    "COLOURS",
    "ACTIONS",
    "DIGITS",
    "Event",
    "Background",
    "render_frame",
    "draw_event",
    "empty_caption",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (30, 185, 60),
    "blue": (45, 75, 235),
    "yellow": (245, 220, 30),
    "magenta": (225, 50, 225),
    "cyan": (40, 225, 235),
}
ACTIONS: tuple[str, ...] = ("appears", "moves from left to right", "moves from right to left")
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))

# seven-segment layout: segments a..g lit per digit
_SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}


def empty_caption() -> str:
    """Caption of a frame in which no event is on screen."""
    return "nothing happens"


@dataclass
class Event:
    """One scheduled event.

    Attributes:
        kind: ``"shape"`` or ``"number"``.
        colour: A key of :data:`COLOURS`.
        start: First second on screen.
        end: First second off screen (``end > start``).
        shape: For shape events, one of :data:`SHAPES`.
        action: For shape events, one of :data:`ACTIONS`.
        digit: For number events, one of :data:`DIGITS`.
        x: Horizontal placement in ``[0, 1]`` (``appears`` and numbers).
        y: Vertical placement in ``[0, 1]``.
        size: Object size as a fraction of the frame's shorter side.
        needle: Whether this is the needle of a needle-in-a-haystack video.
    """

    kind: str
    colour: str
    start: float
    end: float
    shape: Optional[str] = None
    action: Optional[str] = None
    digit: Optional[str] = None
    x: float = 0.5
    y: float = 0.5
    size: float = 0.3
    needle: bool = False
    event_id: str = ""

    @property
    def caption(self) -> str:
        """The event's caption."""
        if self.kind == "number":
            return f"the number {self.digit} is shown in {self.colour}"
        return f"a {self.colour} {self.shape} {self.action}"

    @property
    def window(self) -> tuple[float, float]:
        """``(start, end)`` in seconds."""
        return (self.start, self.end)

    def active(self, t: float) -> bool:
        """Whether the event is on screen at ``t``."""
        return self.start <= t < self.end

    def to_dict(self) -> dict:
        """JSON-ready dict, caption included."""
        d = asdict(self)
        d["caption"] = self.caption
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Event:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: v for k, v in d.items() if k != "caption"})


@dataclass
class Background:
    """A video's static background: a vertical gradient between two muted colours plus panels."""

    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    panels: list[tuple[float, float, float, float, int]] = field(default_factory=list)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Background:
        """A muted (low-saturation) random background, so event colours stand out."""
        def muted() -> tuple[int, int, int]:
            g = int(rng.integers(60, 170))
            return tuple(int(np.clip(g + rng.integers(-18, 19), 0, 255)) for _ in range(3))

        panels = []
        for _ in range(int(rng.integers(2, 5))):
            x0, y0 = float(rng.uniform(0, 0.8)), float(rng.uniform(0, 0.8))
            panels.append((x0, y0, x0 + float(rng.uniform(0.1, 0.3)), y0 + float(rng.uniform(0.1, 0.3)), int(rng.integers(-25, 26))))
        return cls(muted(), muted(), panels)

    def render(self, width: int, height: int) -> np.ndarray:
        """The background as an ``H x W x 3`` uint8 array."""
        a = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        img = (1 - a) * np.asarray(self.top, np.float32) + a * np.asarray(self.bottom, np.float32)
        img = np.broadcast_to(img, (height, width, 3)).copy()
        for x0, y0, x1, y1, delta in self.panels:
            img[int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] += delta
        return np.clip(img, 0, 255).astype(np.uint8)


def _shape_mask(shape: str, cx: float, cy: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":  # apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        arm = r * 0.32
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def _digit_mask(digit: str, cx: float, cy: float, h: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    w, t = h * 0.55, max(2.0, h * 0.14)
    x0, x1, y0, ym, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy, cy + h / 2
    segs = {
        "a": (x0, y0, x1, y0 + t), "d": (x0, y1 - t, x1, y1), "g": (x0, ym - t / 2, x1, ym + t / 2),
        "f": (x0, y0, x0 + t, ym), "b": (x1 - t, y0, x1, ym), "e": (x0, ym, x0 + t, y1), "c": (x1 - t, ym, x1, y1),
    }
    mask = np.zeros(yy.shape, dtype=bool)
    for s in _SEGMENTS[digit]:
        a0, b0, a1, b1 = segs[s]
        mask |= (xx >= a0) & (xx <= a1) & (yy >= b0) & (yy <= b1)
    return mask


def draw_event(img: np.ndarray, ev: Event, t: float) -> None:
    """Draw ``ev`` as it looks at time ``t`` onto ``img`` (in place)."""
    h, w = img.shape[:2]
    side = min(h, w)
    r = ev.size * side / 2
    span = max(ev.end - ev.start, 1e-6)
    frac = float(np.clip((t - ev.start) / span, 0.0, 1.0))
    if ev.kind == "shape" and ev.action != "appears":
        lo, hi = r + 1, w - r - 1
        cx = lo + (hi - lo) * (frac if ev.action == "moves from left to right" else 1 - frac)
    else:
        cx = r + 1 + ev.x * (w - 2 * r - 2)
    cy = r + 1 + ev.y * (h - 2 * r - 2)
    y0, y1 = max(0, int(cy - r - 2)), min(h, int(cy + r + 3))
    x0, x1 = max(0, int(cx - r - 2)), min(w, int(cx + r + 3))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    if ev.kind == "number":
        mask = _digit_mask(ev.digit, cx, cy, 2 * r, yy, xx)
    else:
        mask = _shape_mask(ev.shape, cx, cy, r, yy, xx)
    img[y0:y1, x0:x1][mask] = COLOURS[ev.colour]


def render_frame(background: np.ndarray, events: Sequence[Event], t: float) -> np.ndarray:
    """The frame at time ``t``: the background with every event active at ``t`` drawn on it."""
    img = background.copy()
    for ev in events:
        if ev.active(t):
            draw_event(img, ev, t)
    return img
