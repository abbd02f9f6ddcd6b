"""Frame/caption pairs from the world's renderer, for training a small image-text encoder.

Each pair is one rendered frame and one text about it. Frames show one event of the
vocabulary (any shape x colour x action, or a digit in a colour) at a random moment of its
motion, on a random muted background - never a frame of a test-split video - or an empty
background ("nothing happens"). Texts mix the full caption with the partial descriptions and
question phrasings a search query uses (``"a square moves from left to right"``,
``"what colour is the square that moves from left to right?"``, ``"what number is shown in
yellow?"``), so that a question finds the frames of its event.

- :func:`caption_pairs` - ``(images, texts, captions)``: ``N x S x S x 3`` uint8, the text per
  image, and the full caption per image (identical captions mark identical content).
"""

from __future__ import annotations

import numpy as np

from .scene import ACTIONS, COLOURS, DIGITS, SHAPES, Background, Event, empty_caption, render_frame

__all__ = ["caption_pairs", "texts_for", "world_captions"]


def world_captions() -> list[str]:
    """Every caption the world can show (shape x colour x action, digit x colour), then the empty caption (133)."""
    tags = [Event(kind="shape", colour=c, start=0, end=1, shape=s, action=a).caption for s in SHAPES for c in COLOURS for a in ACTIONS]
    tags += [Event(kind="number", colour=c, start=0, end=1, digit=d).caption for d in DIGITS for c in COLOURS]
    return tags + [empty_caption()]


def texts_for(ev: Event | None) -> list[str]:
    """Every text the trainer may pair with a frame of ``ev`` (``None``: an empty frame)."""
    if ev is None:
        return [empty_caption()]
    if ev.kind == "number":
        return [ev.caption, f"what number is shown in {ev.colour}?", f"the number {ev.digit}", f"a {ev.colour} number"]
    return [
        ev.caption,
        ev.caption,
        f"a {ev.shape} {ev.action}",
        f"what colour is the {ev.shape} that {ev.action}?",
        f"a {ev.colour} {ev.shape}",
    ]


def caption_pairs(n: int, seed: int = 0, size: int = 128, empty_share: float = 0.1):
    """Render ``n`` frame/text pairs.

    Args:
        n: Number of pairs.
        seed: Random seed (the pairs are a pure function of it).
        size: Frame side in pixels (the world's video size).
        empty_share: Share of empty-background frames.

    Returns:
        ``(images, texts, captions)``: uint8 ``(n, size, size, 3)``, list of ``n`` texts, list of
        ``n`` full captions.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    texts, captions = [], []
    for i in range(n):
        bg = Background.random(rng).render(size, size)
        if rng.uniform() < empty_share:
            images[i] = bg
            texts.append(empty_caption())
            captions.append(empty_caption())
            continue
        colour = str(rng.choice(list(COLOURS)))
        if rng.uniform() < 0.35:
            ev = Event(kind="number", colour=colour, start=0.0, end=10.0, digit=str(rng.choice(DIGITS)), size=0.45)
        else:
            ev = Event(kind="shape", colour=colour, start=0.0, end=10.0, shape=str(rng.choice(SHAPES)),
                       action=str(rng.choice(ACTIONS)), size=float(rng.uniform(0.28, 0.4)))
        ev.x, ev.y = float(rng.uniform()), float(rng.uniform(0.1, 0.9))
        t = float(rng.uniform(0.0, 9.99))
        images[i] = render_frame(bg, [ev], t)
        options = texts_for(ev)
        texts.append(options[int(rng.integers(len(options)))])
        captions.append(ev.caption)
    return images, texts, captions
