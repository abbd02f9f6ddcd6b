"""Text observations: tool results as text, for text-only policies (SmolLM2, text-only hosted models).

The graphs put frames in the conversation as *references* (``{"type": "frame", "video", "timestamp"}``,
each after its timestamp text). A text-only policy cannot see them, so here each reference
becomes one line of text: its timestamp, the search's relevance score when the tool gave one,
and the encoder's zero-shot tags - the vocabulary entries whose text embeddings are nearest the
frame's stored image embedding::

    12.5s (score 0.31): a red circle appears 0.42 | nothing happens 0.20

- :class:`FrameTagger` - the protocol: ``tagger(video, timestamps) -> [[(tag, similarity), ...], ...]``.
- :class:`EncoderTagger` - zero-shot tags from a ``TemporalSearcher``'s stored frame embeddings
  and its encoder's text embeddings of a vocabulary (no frame is decoded again).
- :class:`StaticTagger` - tags from a fixed ``{(video, timestamp): tags}`` table (tests, replays).
- :func:`world_vocabulary` - the synthetic world's captions (:mod:`agent_tools.world`) as a tag vocabulary.
- :func:`frame_line` - the text of one frame.
- :func:`text_blocks` - content blocks with every frame reference rendered as text.
- :func:`to_text_messages` - a whole conversation as text-only chat messages (string contents),
  what :class:`~agent_tools.policies.base.Policy` sends when ``text_only`` is set.

Usage::

    tagger = EncoderTagger(searcher, world_vocabulary(), top_k=2)
    graph = build_temporal_graph(policy, searcher, observation="text", tagger=tagger)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from agent_tools import protocol
from agent_tools.errors import InvalidArgumentError

__all__ = [
    "EncoderTagger",
    "FrameTagger",
    "StaticTagger",
    "Tag",
    "frame_line",
    "text_blocks",
    "to_text_messages",
    "world_vocabulary",
]

Tag = tuple[str, float]


class FrameTagger(Protocol):
    """Zero-shot tags of frames: one list of ``(tag, similarity)``, best first, per timestamp."""

    def __call__(self, video: str, timestamps: Sequence[float]) -> list[list[Tag]]: ...


def world_vocabulary() -> list[str]:
    """Every caption the synthetic world can show, plus its empty-frame caption (133 tags)."""
    from agent_tools.world.scene import ACTIONS, COLOURS, DIGITS, SHAPES, Event, empty_caption

    tags = [Event(kind="shape", colour=c, start=0, end=1, shape=s, action=a).caption for s in SHAPES for c in COLOURS for a in ACTIONS]
    tags += [Event(kind="number", colour=c, start=0, end=1, digit=d).caption for d in DIGITS for c in COLOURS]
    return tags + [empty_caption()]


class EncoderTagger:
    """Tags from a searcher's stored frame embeddings and its encoder's vocabulary embeddings.

    A timestamp takes the stored frame nearest to it (the graphs only show stored frames).

    Args:
        searcher: A ``TemporalSearcher`` (``embeddings(video)`` and ``encoder.encode_text``).
        vocabulary: The tags (non-empty, distinct).
        top_k: Tags per frame.

    Raises:
        InvalidArgumentError: On an empty or repeated vocabulary, or ``top_k < 1``.
    """

    def __init__(self, searcher: Any, vocabulary: Sequence[str], top_k: int = 2):
        vocab = [str(v) for v in vocabulary]
        if not vocab:
            raise InvalidArgumentError("the tag vocabulary is empty; give at least one tag")
        if len(set(vocab)) != len(vocab):
            raise InvalidArgumentError("the tag vocabulary repeats entries; give distinct tags")
        if top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1, got {top_k}")
        self.searcher = searcher
        self.vocabulary = vocab
        self.top_k = int(top_k)
        text = np.asarray(searcher.encoder.encode_text(vocab), dtype=np.float32)
        self._text = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)

    def __call__(self, video: str, timestamps: Sequence[float]) -> list[list[Tag]]:
        emb = self.searcher.embeddings(video)
        ts = np.asarray(emb.timestamps, dtype=np.float64)
        out: list[list[Tag]] = []
        for t in timestamps:
            i = int(np.argmin(np.abs(ts - float(t))))
            sims = self._text @ emb.embeddings_f32[i]
            top = np.argsort(-sims, kind="stable")[: self.top_k]
            out.append([(self.vocabulary[j], float(sims[j])) for j in top])
        return out


class StaticTagger:
    """Tags looked up in a table keyed by ``(video, timestamp rounded to 0.1 s)``.

    Args:
        table: ``{(video, timestamp): [(tag, similarity), ...]}``.
        default: Tags of frames not in the table (default: none).
    """

    def __init__(self, table: dict[tuple[str, float], Sequence[Tag]], default: Sequence[Tag] = ()):
        self.table = {(str(v), round(float(t), 1)): list(tags) for (v, t), tags in table.items()}
        self.default = list(default)

    def __call__(self, video: str, timestamps: Sequence[float]) -> list[list[Tag]]:
        return [list(self.table.get((str(video), round(float(t), 1)), self.default)) for t in timestamps]


def frame_line(timestamp: float, tags: Sequence[Tag] = (), score: float | None = None) -> str:
    """One frame as text: ``"12.5s (score 0.31): a red circle appears 0.42 | nothing happens 0.20"``."""
    head = protocol.format_timestamp(timestamp)
    if score is not None:
        head += f" (score {float(score):.2f})"
    if not tags:
        return head
    return head + ": " + " | ".join(f"{tag} {float(sim):.2f}" for tag, sim in tags)


def text_blocks(blocks: Sequence[dict[str, Any]], tagger: FrameTagger | None = None) -> list[dict[str, Any]]:
    """Content blocks with each frame reference replaced by its :func:`frame_line`.

    A timestamp text block right before a frame reference (how the graphs label frames) merges
    into the frame's line. Other blocks pass through; ``image`` blocks are dropped.

    Args:
        blocks: Content blocks (text, frame references, images).
        tagger: Tags for the frames (None: timestamp and score only).

    Returns:
        Text blocks only.
    """
    blocks = list(blocks)
    refs = [b for b in blocks if isinstance(b, dict) and b.get("type") == "frame"]
    tags: dict[tuple[str, float], list[Tag]] = {}
    if tagger is not None and refs:
        by_video: dict[str, list[float]] = {}
        for r in refs:
            by_video.setdefault(str(r["video"]), []).append(float(r["timestamp"]))
        for video, ts in by_video.items():
            uniq = sorted(set(ts))
            tags.update({(video, t): list(g) for t, g in zip(uniq, tagger(video, uniq))})
    out: list[dict[str, Any]] = []
    for b in blocks:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "frame":
            t = float(b["timestamp"])
            if out and out[-1].get("text") == protocol.format_timestamp(t):
                out.pop()
            out.append({"type": "text", "text": frame_line(t, tags.get((str(b["video"]), t), ()), b.get("score"))})
        elif kind == "text":
            out.append({"type": "text", "text": str(b.get("text", ""))})
        elif kind == "image":
            continue
        elif isinstance(b, str):
            out.append({"type": "text", "text": b})
    return out


def to_text_messages(messages: Sequence[dict[str, Any]], tagger: FrameTagger | None = None) -> list[dict[str, Any]]:
    """Chat messages with string contents only: frames rendered by :func:`text_blocks`, lines joined by newlines.

    Args:
        messages: Chat dicts (content a string or a list of blocks).
        tagger: Tags for the frames.

    Returns:
        New chat dicts; the input is not modified.
    """
    out = []
    for m in messages:
        m2 = dict(m)
        content = m.get("content")
        if isinstance(content, list):
            m2["content"] = "\n".join(b["text"] for b in text_blocks(content, tagger))
        elif content is None:
            m2["content"] = ""
        out.append(m2)
    return out
