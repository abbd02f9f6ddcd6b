"""A synthetic world where every search and answer has a known right result.

Long videos (minutes to an hour) with scheduled events - coloured shapes appearing or moving,
seven-segment digits - each with a caption; questions with known answers (multiple choice,
open-ended, grounding, needle in a haystack) written in the public annotation formats the
evaluation readers read; train / test splits; deterministic by seed.

- :mod:`agent_tools.world.scene` - vocabulary, :class:`Event`, :class:`Background`, :func:`render_frame`.
- :mod:`agent_tools.world.generate` - :class:`WorldConfig`, :func:`make_world`, :func:`plan_world`,
  :func:`load_manifest`.
- :mod:`agent_tools.world.pairs` - frame/caption pairs for training an image-text encoder, and
  :func:`~agent_tools.world.pairs.world_captions` (every caption, the tag vocabulary).
- :mod:`agent_tools.world.tags` - tag accuracy of zero-shot frame tags on a split's events
  (exact caption and shape/digit + colour, top-1 / top-k, against chance).

Usage::

    from agent_tools.world import WorldConfig, make_world
    make_world("world/", WorldConfig(seed=0, n_train=8, n_test=4))
    # world/test/lv_haystack.json, world/test/tvr.jsonl, ... + world/videos/*.mp4
"""

from __future__ import annotations

from .generate import SPLITS, WorldConfig, load_manifest, make_world, plan_world, write_video
from .pairs import caption_pairs
from .scene import ACTIONS, COLOURS, DIGITS, SHAPES, Background, Event, empty_caption, render_frame

__all__ = [
    "SPLITS",
    "WorldConfig",
    "make_world",
    "plan_world",
    "load_manifest",
    "write_video",
    "caption_pairs",
    "ACTIONS",
    "COLOURS",
    "DIGITS",
    "SHAPES",
    "Background",
    "Event",
    "empty_caption",
    "render_frame",
]
