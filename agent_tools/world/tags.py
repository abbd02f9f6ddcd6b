"""Tag accuracy on the synthetic world: do zero-shot frame tags name the event on screen?

A frame of an event is tagged with vocabulary entries (:func:`agent_tools.observations.world_vocabulary`,
the same list as :func:`agent_tools.world.pairs.world_captions`), best first. A tag matches the
event

- *exactly* when it is the event's caption;
- *by attributes* when it names what one frame can show: the same shape and colour (shape
  events), the same digit and colour (numbers), or "nothing happens". The action of a shape
  (appears / moves from left to right / moves from right to left) is not visible in a single
  frame - the same picture belongs to any of the three - so exact top-1 is capped near 1/3 on
  shape events whatever the encoder; the attribute match is the figure a policy can rely on
  (the world's multiple-choice options differ only in colour).

Both are reported at top-1 and top-k, next to what a uniformly random ranking scores (chance).

- :func:`attributes` - the attribute key of a caption.
- :func:`score_tags` - the figures for ranked tags of frames with known captions.
- :func:`tag_accuracy` - any :class:`~agent_tools.observations.FrameTagger` on a world folder's
  videos (the real path: decoded frames, the store's embeddings, nearest stored frame).
- :func:`rendered_tag_accuracy` - an encoder on frames rendered from a world plan's split (no
  video files; what ``python -m training.world_encoder`` prints after training).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .scene import Background, Event, empty_caption, render_frame

__all__ = ["EVENT_POINTS", "attributes", "rendered_tag_accuracy", "score_tags", "tag_accuracy"]

EVENT_POINTS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Where in an event (as a fraction of its duration) its frames are taken."""


def attributes(caption: str) -> tuple[str, ...]:
    """What one frame shows of a caption: ``("shape", shape, colour)``, ``("number", digit, colour)`` or ``("empty",)``.

    Raises:
        InvalidArgumentError: Not a caption of the world.
    """
    words = caption.split()
    if caption == empty_caption():
        return ("empty",)
    if caption.startswith("the number ") and len(words) == 7:  # the number 7 is shown in yellow
        return ("number", words[2], words[6])
    if caption.startswith("a ") and len(words) >= 4:  # a red circle appears / moves from ...
        return ("shape", words[2], words[1])
    raise InvalidArgumentError(f"{caption!r} is not a caption of the synthetic world (see agent_tools.world.pairs.world_captions)")


def _chance_hit(v: int, m: int, k: int) -> float:
    """Probability that ``k`` tags drawn at random from ``v`` include one of ``m`` right ones."""
    k = min(k, v)
    return 1.0 - comb(v - m, k) / comb(v, k)


def score_tags(ranked: Sequence[Sequence[str]], captions: Sequence[str], vocabulary: Sequence[str], top_k: int = 3) -> dict[str, Any]:
    """Tag-accuracy figures for frames with known captions.

    Args:
        ranked: Per frame, its tags best first (at least ``top_k`` of them).
        captions: Per frame, the caption of the event on screen.
        vocabulary: The tag vocabulary the ranking came from (for the chance figures).
        top_k: The k of the top-k figures.

    Returns:
        ``{"frames", "top_k", "top1_exact", "top1_attributes", "topk_exact", "topk_attributes",
        "top1_colour", "chance_top1_exact", "chance_top1_attributes", "chance_topk_exact",
        "chance_topk_attributes"}`` (shares in ``[0, 1]``; colour: shape and number frames only).

    Raises:
        InvalidArgumentError: No frames, mismatched lengths, or ``top_k < 1``.
    """
    if len(ranked) != len(captions) or not captions:
        raise InvalidArgumentError(f"need one ranking per caption and at least one frame, got {len(ranked)} rankings for {len(captions)} captions")
    if top_k < 1:
        raise InvalidArgumentError(f"top_k must be >= 1, got {top_k}")
    vocab_attr = [attributes(v) for v in vocabulary]
    v = len(vocabulary)
    sums = dict.fromkeys(("top1_exact", "top1_attributes", "topk_exact", "topk_attributes", "chance_top1_exact",
                          "chance_top1_attributes", "chance_topk_exact", "chance_topk_attributes"), 0.0)
    colour_ok = colour_n = 0
    for tags, cap in zip(ranked, captions):
        want = attributes(cap)
        got = [attributes(t) for t in tags[:top_k]]
        sums["top1_exact"] += bool(tags) and tags[0] == cap
        sums["top1_attributes"] += bool(got) and got[0] == want
        sums["topk_exact"] += cap in list(tags[:top_k])
        sums["topk_attributes"] += want in got
        m_exact, m_attr = int(cap in vocabulary), sum(a == want for a in vocab_attr)
        sums["chance_top1_exact"] += m_exact / v
        sums["chance_top1_attributes"] += m_attr / v
        sums["chance_topk_exact"] += _chance_hit(v, m_exact, top_k)
        sums["chance_topk_attributes"] += _chance_hit(v, m_attr, top_k)
        if want[0] != "empty":
            colour_n += 1
            colour_ok += bool(got) and len(got[0]) == 3 and got[0][2] == want[2]
    n = len(captions)
    out: dict[str, Any] = {"frames": n, "top_k": int(top_k)}
    out.update({key: val / n for key, val in sums.items()})
    out["top1_colour"] = colour_ok / colour_n if colour_n else 0.0
    return out


def _event_frames(videos: Sequence[dict], points: Sequence[float]) -> list[tuple[dict, Event, float]]:
    out = []
    for v in videos:
        for e in v["events"]:
            ev = e if isinstance(e, Event) else Event.from_dict(e)
            out.extend((v, ev, ev.start + p * (ev.end - ev.start)) for p in points)
    return out


def tag_accuracy(
    tagger: Callable[[str, Sequence[float]], list[list[tuple[str, float]]]],
    world_dir: str | Path,
    vocabulary: Sequence[str],
    split: str = "test",
    top_k: int = 3,
    points: Sequence[float] = EVENT_POINTS,
) -> dict[str, Any]:
    """Tag accuracy of ``tagger`` on a world folder's videos of one split.

    Args:
        tagger: ``tagger(video_path, timestamps) -> [[(tag, similarity), ...], ...]`` returning at
            least ``top_k`` tags per frame (e.g. ``EncoderTagger(searcher, vocabulary, top_k)``).
        world_dir: A folder written by :func:`agent_tools.world.make_world`.
        vocabulary: The tagger's vocabulary (for the chance figures).
        split: ``"train"`` or ``"test"`` (held out).
        top_k: The k of the top-k figures.
        points: Where in each event its frames are taken (fractions of its duration).

    Returns:
        :func:`score_tags`'s figures plus ``"events"`` and ``"split"``.

    Raises:
        InvalidArgumentError: No manifest, or no events in the split.
    """
    from .generate import load_manifest

    world = Path(world_dir)
    videos = [v for v in load_manifest(world)["videos"] if v["split"] == split]
    frames = _event_frames(videos, points)
    if not frames:
        raise InvalidArgumentError(f"the {split!r} split of {str(world)!r} has no events")
    ranked, captions = [], []
    for v in videos:
        mine = [(ev, t) for vv, ev, t in frames if vv is v]
        if not mine:
            continue
        tags = tagger(str(world / "videos" / f"{v['video_id']}.mp4"), [t for _, t in mine])
        ranked += [[tag for tag, _ in row] for row in tags]
        captions += [ev.caption for ev, _ in mine]
    out = score_tags(ranked, captions, vocabulary, top_k)
    out.update(events=len(frames) // max(1, len(points)), split=split)
    return out


def rendered_tag_accuracy(
    encoder: Any,
    videos: Sequence[dict],
    vocabulary: Sequence[str] | None = None,
    size: int = 128,
    top_k: int = 3,
    points: Sequence[float] = EVENT_POINTS,
) -> dict[str, Any]:
    """Tag accuracy of an encoder on frames rendered from planned videos (no video files).

    Each frame is the video's background with the event drawn as it looks at that moment (what
    the video shows, without H.264); its tags are the vocabulary entries nearest its image
    embedding, as :class:`~agent_tools.observations.EncoderTagger` ranks them.

    Args:
        encoder: ``encode_images(N x H x W x 3 uint8)`` and ``encode_text(list[str])``.
        videos: Planned videos (e.g. ``plan_world(cfg)["test"]``).
        vocabulary: Tags (default: every caption of the world).
        size: Frame side in pixels.
        top_k: The k of the top-k figures.
        points: Where in each event its frames are taken.

    Returns:
        :func:`score_tags`'s figures plus ``"events"``.
    """
    from .pairs import world_captions

    vocab = list(vocabulary) if vocabulary is not None else world_captions()
    frames = _event_frames(videos, points)
    if not frames:
        raise InvalidArgumentError("the planned videos have no events")
    backgrounds = {id(v): Background(**v["background"]).render(size, size) for v in videos}
    images = np.stack([render_frame(backgrounds[id(v)], [ev], t) for v, ev, t in frames])
    img = np.asarray(encoder.encode_images(images), dtype=np.float32)
    txt = np.asarray(encoder.encode_text(vocab), dtype=np.float32)
    txt /= np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    order = np.argsort(-(img @ txt.T), axis=1, kind="stable")[:, :top_k]
    out = score_tags([[vocab[j] for j in row] for row in order], [ev.caption for _, ev, _ in frames], vocab, top_k)
    out["events"] = len(frames) // max(1, len(points))
    return out
