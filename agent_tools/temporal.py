"""Temporal search: inside one video, find the few frames that answer a query.

This is TimeSearch-R's ``seek_video_frames`` as a library call. The window's frames come
from the frame-embedding store (embedded once per video at ``sample_fps``), are scored
against the query (cosine similarity), and up to ``num_frames`` relevant *and* diverse
frames are picked with a relevance-conditioned DPP (:mod:`agent_tools.dpp`).

- :class:`TemporalSearcher` - ``seek``, ``preview``, ``info``, ``frames``.

Usage::

    searcher = TemporalSearcher.from_settings()            # encoder + store from VIDEOSEEK_*
    sel = searcher.seek("match.mp4", "the goalkeeper dives", start_time=600, end_time=900)
    sel.timestamps                                          # [612.5, 640.0, ...]

Semantics (shared by the CLI, MCP and LangChain surfaces):

- window defaults to the whole video; ``end_time`` past the end is clamped to the duration;
  ``start_time < 0``, ``start_time >= end_time`` or a window after the end raise
  :class:`~agent_tools.errors.InvalidWindowError` stating the valid range;
- ``num_frames`` defaults to the cap (8) and must be in ``1..cap``;
- an empty query (``None`` or blank text) samples the window uniformly;
- the query may be text, an image (PIL, a ``pathlib.Path`` to an image file, an
  ``H x W x 3`` array) or an embedding vector of the encoder's width.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .config import Settings, get_settings
from .dpp import greedy_map_dpp, minmax_relevance, uniform_indices
from .errors import InvalidArgumentError, InvalidWindowError
from .store import FrameEmbeddings, FrameEmbeddingStore, ProgressFn
from .types import FrameHit, FrameSelection, QueryKind, VideoInfo
from .video import fit_size, open_video, uniform_times

__all__ = ["TemporalSearcher", "Query", "embed_query"]

log = logging.getLogger(__name__)

Query = Union[str, Path, np.ndarray, Any, None]

_EPS = 1e-6
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def embed_query(encoder, query: Query, text_cache: Optional[OrderedDict] = None, max_chars: Optional[int] = None) -> tuple[Optional[np.ndarray], QueryKind, Optional[str]]:
    """Turn a query into ``(unit vector or None, kind, label)``.

    Args:
        encoder: The encoder the video was embedded with.
        query: Text, PIL image, image path, ``H x W x 3`` array, embedding vector, or None.
        text_cache: Optional LRU of text → vector.

    Raises:
        InvalidArgumentError: An unreadable image, a vector of the wrong width, an unsupported type.
    """
    if query is None:
        return None, "none", None
    if isinstance(query, str):
        text = query.strip()
        if not text:
            return None, "none", None
        if max_chars is not None and len(text) > max_chars:
            raise InvalidArgumentError(
                f"the query is {len(text)} characters long; the limit is {max_chars} "
                f"(starts {text[:40]!r}...). Describe what to find in a sentence or two, or raise "
                "VIDEOSEEK_MAX_QUERY_CHARS"
            )
        if text_cache is not None and text in text_cache:
            text_cache.move_to_end(text)
            return text_cache[text], "text", text
        vec = encoder.encode_text([text])[0]
        if text_cache is not None:
            text_cache[text] = vec
            while len(text_cache) > 512:
                text_cache.popitem(last=False)
        return vec, "text", text
    if isinstance(query, os.PathLike):
        path = Path(query)
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
            raise InvalidArgumentError(
                f"image query {str(path)!r} is {kind}; valid: an image file ending in "
                f"{', '.join(sorted(_IMAGE_SUFFIXES))}"
            )
        if not path.is_file() or path.suffix.lower() not in _IMAGE_SUFFIXES:
            raise InvalidArgumentError(
                f"image query {str(path)!r} is not an image file; valid: an existing file ending in "
                f"{', '.join(sorted(_IMAGE_SUFFIXES))}"
            )
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidArgumentError(f"cannot read image query {str(path)!r}: {exc}") from exc
        return encoder.encode_images([img])[0], "image", f"image:{path.name}"
    if isinstance(query, np.ndarray):
        if query.ndim == 1:
            if query.shape[0] != encoder.dim:
                raise InvalidArgumentError(
                    f"query vector has {query.shape[0]} dimensions; encoder {encoder.name!r} needs {encoder.dim}"
                )
            v = query.astype(np.float32)
            norm = float(np.linalg.norm(v))
            if not math.isfinite(norm) or norm == 0:
                raise InvalidArgumentError("query vector must be finite and non-zero")
            return v / norm, "vector", "vector"
        if query.ndim == 3 and query.shape[-1] == 3:
            return encoder.encode_images(query[None].astype(np.uint8))[0], "image", "image"
        raise InvalidArgumentError(f"array query must be a 1-D vector or an H x W x 3 image, got shape {query.shape}")
    if hasattr(query, "convert") and hasattr(query, "size"):  # PIL image
        return encoder.encode_images([query])[0], "image", "image"
    raise InvalidArgumentError(
        f"unsupported query type {type(query).__name__}; valid: str (text), pathlib.Path (image file), "
        "PIL image, numpy image or embedding vector, None"
    )


class TemporalSearcher:
    """Relevance + diversity frame search inside one video.

    Args:
        encoder: The image-text encoder (see :func:`agent_tools.encoders.load_encoder`).
        store: Frame-embedding store (default: one in ``settings.cache_dir``).
        settings: Defaults for the cache dir, sample rate, frame cap and backend.
    """

    def __init__(self, encoder, store: Optional[FrameEmbeddingStore] = None, settings: Optional[Settings] = None):
        self.settings = settings or get_settings()
        self.encoder = encoder
        self.store = store or FrameEmbeddingStore(
            self.settings.cache_dir,
            encoder,
            sample_fps=self.settings.sample_fps,
            batch_size=self.settings.batch_size,
            backend=self.settings.video_backend,
        )
        self.max_frames = self.settings.max_frames
        self._text_cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Optional[Settings] = None, encoder=None) -> "TemporalSearcher":
        """Build the encoder and store named by the settings (``VIDEOSEEK_*``)."""
        from .encoders import load_encoder

        settings = settings or get_settings()
        return cls(encoder or load_encoder(settings.encoder, device=settings.device), settings=settings)

    # -- facts --------------------------------------------------------------------
    def info(self, video: Union[str, os.PathLike]) -> VideoInfo:
        """Container facts of the video (no embedding needed)."""
        with open_video(video, backend=self.settings.video_backend) as reader:
            return reader.info

    def embeddings(self, video: Union[str, os.PathLike], progress: Optional[ProgressFn] = None) -> FrameEmbeddings:
        """The video's stored frame embeddings (computed on first use)."""
        return self.store.get(video, progress=progress)

    # -- search -------------------------------------------------------------------
    def _window(self, start_time, end_time, duration: float) -> tuple[float, float]:
        valid = f"valid range: 0 <= start_time < end_time, with start_time < {duration:.3f} (the video's duration in seconds)"
        start = 0.0 if start_time is None else start_time
        end = duration if end_time is None else end_time
        for name, v in (("start_time", start), ("end_time", end)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidWindowError(f"{name} must be a finite number of seconds, got {v!r}; {valid}")
        start, end = float(start), float(end)
        if start < 0:
            raise InvalidWindowError(f"start_time {start:g} is negative; {valid}")
        if start >= duration:
            raise InvalidWindowError(f"start_time {start:g} is at or after the end of the video; {valid}")
        if start >= end:
            raise InvalidWindowError(f"start_time {start:g} is not before end_time {end:g}; {valid}")
        return start, min(end, duration)

    def _num_frames(self, num_frames) -> int:
        if num_frames is None:
            return self.max_frames
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or not 1 <= num_frames <= self.max_frames:
            raise InvalidArgumentError(f"num_frames must be an integer from 1 to {self.max_frames}, got {num_frames!r}")
        return int(num_frames)

    def seek(
        self,
        video: Union[str, os.PathLike],
        query: Query = None,
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
        num_frames: Optional[int] = None,
        with_images: bool = False,
        max_side: Optional[int] = None,
        video_id: Optional[str] = None,
        progress: Optional[ProgressFn] = None,
    ) -> FrameSelection:
        """Find up to ``num_frames`` relevant, diverse frames of ``video`` inside a window.

        Args:
            video: Path of the video file.
            query: Text, image (PIL / ``Path`` / array), embedding vector, or None/blank for uniform.
            start_time: Window start in seconds (default 0).
            end_time: Window end in seconds (default: the duration; later values are clamped).
            num_frames: Frames to return, ``1..max_frames`` (default ``max_frames``).
            with_images: Also decode the chosen frames into ``FrameHit.image`` (PIL).
            max_side: Downscale fetched images so their longest side is at most this.
            video_id: Label for the result's ``video`` field (default: the path).
            progress: ``(done, total)`` callback while a new video is embedded.

        Returns:
            The chosen frames, in time order, with exact timestamps and scores.

        Raises:
            VideoReadError: The video cannot be read.
            InvalidWindowError: The window is not inside ``[0, duration]`` or is reversed.
            InvalidArgumentError: ``num_frames`` or the query is invalid.
        """
        k = self._num_frames(num_frames)
        if not self.store.has(video):  # a bad window fails now, not after minutes of embedding
            self._window(start_time, end_time, self.info(video).duration)
        entry = self.store.get(video, progress=progress)
        duration = entry.info.duration
        start, end = self._window(start_time, end_time, duration)
        with self._lock:  # the text cache is shared by concurrent callers (MCP, graphs)
            qvec, kind, label = embed_query(self.encoder, query, self._text_cache, max_chars=getattr(self.settings, "max_query_chars", None))

        ts = entry.timestamps
        lo = int(np.searchsorted(ts, start - _EPS, side="left"))
        hi = int(np.searchsorted(ts, end + _EPS, side="right"))
        if hi <= lo:  # a window narrower than the sampling step: the nearest sampled frame
            mid = 0.5 * (start + end)
            nearest = int(np.clip(np.searchsorted(ts, mid), 0, len(ts) - 1))
            if nearest > 0 and abs(ts[nearest - 1] - mid) <= abs(ts[nearest] - mid):
                nearest -= 1
            lo, hi = nearest, nearest + 1
        n = hi - lo
        emb = entry.embeddings_f32[lo:hi]
        if qvec is None:
            picks = uniform_indices(n, k)
            scores = rel = None
            method = "uniform"
        else:
            scores = emb @ qvec.astype(np.float32)
            rel = minmax_relevance(scores)
            picks = greedy_map_dpp(emb, rel, k, times=ts[lo:hi])
            method = "dpp"
        hits = [
            FrameHit(
                timestamp=float(ts[lo + i]),
                score=None if scores is None else float(scores[i]),
                relevance=None if rel is None else float(rel[i]),
                sample_index=lo + i,
            )
            for i in picks
        ]
        selection = FrameSelection(
            video=video_id or str(Path(video)),
            query=label,
            query_kind=kind,
            start_time=start,
            end_time=end,
            duration=duration,
            num_candidates=n,
            method=method,
            encoder=self.encoder.name,
            encoder_trained=self.encoder.trained,
            sample_fps=entry.sample_fps,
            frames=hits,
        )
        if with_images:
            self.attach_images(video, selection, max_side=max_side)
        return selection

    def preview(
        self,
        video: Union[str, os.PathLike],
        num_frames: Optional[int] = None,
        with_images: bool = False,
        max_side: Optional[int] = None,
        video_id: Optional[str] = None,
    ) -> FrameSelection:
        """Uniformly spaced frames across the whole video, decoded directly (no embedding pass).

        Args:
            video: Path of the video file.
            num_frames: How many frames (``1..max_frames``; default ``max_frames``).
            with_images: Attach the frames as PIL images.
            max_side: Downscale images so their longest side is at most this.
            video_id: Label for the result's ``video`` field.
        """
        k = self._num_frames(num_frames)
        with open_video(video, backend=self.settings.video_backend) as reader:
            info = reader.info
            size = None
            if max_side:
                size = fit_size(info.width, info.height, None, max_side=max_side)
            frames = reader.frames_at(uniform_times(0.0, info.duration, k).tolist(), size=size if with_images else (16, 16))
        hits, seen = [], set()
        for t, rgb in frames:
            if t in seen:  # very short videos: two slots can land on one frame
                continue
            seen.add(t)
            hit = FrameHit(timestamp=float(t), sample_index=-1)
            if with_images:
                from PIL import Image

                hit.image = Image.fromarray(rgb)
            hits.append(hit)
        return FrameSelection(
            video=video_id or str(Path(video)),
            query=None,
            query_kind="none",
            start_time=0.0,
            end_time=info.duration,
            duration=info.duration,
            num_candidates=info.frame_count,
            method="uniform",
            encoder=self.encoder.name,
            encoder_trained=self.encoder.trained,
            sample_fps=self.settings.sample_fps,
            frames=hits,
        )

    # -- pixels -------------------------------------------------------------------
    def frames(self, video: Union[str, os.PathLike], timestamps, max_side: Optional[int] = None):
        """Decode the frames on screen at ``timestamps`` as PIL images (in the order given)."""
        from PIL import Image

        with open_video(video, backend=self.settings.video_backend) as reader:
            info = reader.info
            size = fit_size(info.width, info.height, None, max_side=max_side) if max_side else None
            return [Image.fromarray(rgb) for _, rgb in reader.frames_at(list(timestamps), size=size)]

    def attach_images(self, video, selection: FrameSelection, max_side: Optional[int] = None) -> FrameSelection:
        """Decode and attach the selection's frames (``FrameHit.image``); returns the selection."""
        images = self.frames(video, selection.timestamps, max_side=max_side)
        for hit, img in zip(selection.frames, images):
            hit.image = img
        return selection
