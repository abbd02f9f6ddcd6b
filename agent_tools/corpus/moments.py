"""Moment search over a corpus index (Video Corpus Moment Retrieval).

Two steps, as in VCMR systems that split VR and moment localisation:

1. **Video retrieval** - the query vector searches the FAISS index of segment vectors
   (mean-pooled frame embeddings over sliding windows); hits are grouped per video and a
   video scores the best of its segments. The best ``max(top_k, rerank_videos)`` videos go on.
2. **Localisation** - inside each top video, the query is scored against *every* sampled
   frame; the similarity curve is smoothed (``smooth_s``), and around each peak the moment
   grows while the smoothed similarity stays above half-way between the peak and the
   video's median similarity (``rel_threshold``). Moments therefore have whatever length
   the content has, not a fixed clip length. Up to ``per_video`` non-overlapping moments are
   taken per video (later peaks must rise at least half as far above the median as the first).

A moment's score is its best frame similarity (the peak); moments from all top videos are
ranked by it.

Queries: text (``str``), an image (PIL image, ``pathlib.Path`` of an image file, or an
``H x W x 3`` uint8 array) or a query embedding (1-D float array / list of floats of the
encoder's width).

Usage::

    searcher = MomentSearcher(index, encoder)
    result = searcher.search("a goal is scored", top_k=5)       # MomentSearchResult
    result.moments[0].video_id, result.moments[0].start, result.moments[0].end
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from agent_tools.corpus.builder import CorpusIndex, Shard
from agent_tools.display import display_path
from agent_tools.errors import IndexCorruptError, InvalidArgumentError, UnknownVideoError
from agent_tools.types import Moment, MomentSearchResult, QueryKind

__all__ = ["MomentSearcher", "localize", "encode_query"]

log = logging.getLogger(__name__)


def encode_query(encoder: Any, query: Any) -> tuple[np.ndarray, QueryKind, Optional[str]]:
    """Turn a query into a unit vector.

    Args:
        encoder: The index's encoder (``encode_text``, ``encode_images``, ``dim``).
        query: Text, PIL image, image ``Path``, ``HxWx3`` uint8 array, or a 1-D vector.

    Returns:
        ``(vector float32 (D,), kind, label)`` where ``label`` is the text, the image path or
        ``None``.

    Raises:
        InvalidArgumentError: Empty text, a vector of the wrong width, an unsupported type, or
            an image path that does not exist or is not an image.
    """
    dim = int(encoder.dim)
    if isinstance(query, str):
        if not query.strip():
            raise InvalidArgumentError(
                "the text query is empty; pass words describing the moment, or an image"
            )
        vec, kind, label = encoder.encode_text([query])[0], "text", query
    elif isinstance(query, Path):
        if not query.is_file():
            raise InvalidArgumentError(
                f"image file {str(query)!r} does not exist; pass an existing JPEG/PNG file"
            )
        try:
            from PIL import Image

            with Image.open(query) as im:
                img = np.array(im.convert("RGB"))
        except Exception as exc:
            raise InvalidArgumentError(
                f"{str(query)!r} is not a readable image ({exc}); pass a JPEG/PNG file"
            ) from exc
        vec, kind, label = encoder.encode_images(img[None])[0], "image", str(query)
    elif hasattr(query, "convert") and hasattr(query, "size"):  # PIL image
        vec, kind, label = encoder.encode_images([query])[0], "image", "<image>"
    else:
        arr = np.asarray(query)
        if arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
            vec, kind, label = encoder.encode_images(arr[None])[0], "image", "<image>"
        elif arr.dtype.kind in "fiu" and arr.size == dim and arr.ndim in (1, 2):
            vec, kind, label = arr.reshape(-1).astype(np.float32), "vector", None
        else:
            raise InvalidArgumentError(
                f"unsupported query of type {type(query).__name__} and shape {getattr(arr, 'shape', None)}; "
                f"pass text, a PIL image, an image Path, an HxWx3 uint8 array or a ({dim},) vector"
            )
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0:
        raise InvalidArgumentError("the query vector is zero or not finite; pass a non-zero vector")
    return vec / norm, kind, label


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(x) < 2:
        return x.copy()
    width = min(width | 1, len(x) | 1)
    pad = width // 2
    xp = np.pad(x, pad, mode="edge")
    return np.convolve(xp, np.ones(width) / width, mode="valid")[: len(x)]


def localize(
    sims: np.ndarray,
    timestamps: np.ndarray,
    duration: float,
    sample_fps: float,
    per_video: int = 3,
    smooth_s: float = 1.0,
    rel_threshold: float = 0.5,
) -> list[tuple[float, float, float, float]]:
    """Variable-length moments from a frame-similarity curve.

    Args:
        sims: Similarity of each sampled frame to the query.
        timestamps: Frame times (a frame at ``t`` is on screen over ``[t, t + 1/sample_fps)``).
        duration: Video duration (moments are clipped to it).
        sample_fps: Sampling rate of the frames.
        per_video: Most moments to return.
        smooth_s: Width of the moving average, in seconds.
        rel_threshold: A moment extends while the smoothed similarity is >= peak -
            ``rel_threshold`` × (peak - median).

    Returns:
        ``(start, end, score, peak_time)`` tuples, best first; ``score`` is the highest raw
        similarity inside the moment.
    """
    s = np.asarray(sims, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.float64)
    n = len(s)
    if n == 0:
        return []
    dt = 1.0 / sample_fps
    sm = _smooth(s, int(round(smooth_s * sample_fps)))
    base = float(np.median(sm))
    used = np.zeros(n, dtype=bool)
    out = []
    first_height = None
    for _ in range(per_video):
        cand = np.where(used, -np.inf, sm)
        p = int(np.argmax(cand))
        if not np.isfinite(cand[p]):
            break
        height = sm[p] - base
        if first_height is None:
            first_height = height
        elif height <= 0 or height < 0.5 * first_height:
            break
        thr = sm[p] - rel_threshold * height
        stop = used | (sm < thr)  # the moment is the run of non-stop frames around the peak
        before = np.flatnonzero(stop[:p])
        after = np.flatnonzero(stop[p + 1 :])
        lo = int(before[-1]) + 1 if len(before) else 0
        hi = p + int(after[0]) if len(after) else n - 1
        used[lo : hi + 1] = True
        start = float(ts[lo])
        end = float(min(duration, ts[hi] + dt)) if duration > 0 else float(ts[hi] + dt)
        seg = s[lo : hi + 1]
        peak_time = float(ts[lo + int(np.argmax(seg))])
        out.append((start, max(end, start), float(seg.max()), peak_time))
    out.sort(key=lambda m: -m[2])
    return out


class MomentSearcher:
    """Ranked moments for a query across the videos of a :class:`CorpusIndex`.

    Args:
        index: The corpus index.
        encoder: The encoder the index was built with (default: the index's own).
        per_video: Most moments taken from one video.
        candidates: Segment hits fetched from FAISS before grouping by video.
        smooth_s: Smoothing of the frame-similarity curve, in seconds.
        rel_threshold: Extent rule of a moment (see :func:`localize`).
        rerank_videos: Videos from the retrieval step that are localised and re-ranked by
            frame-level similarity (at least ``top_k``).

    Raises:
        InvalidArgumentError: No encoder, one different from the index's, or a setting out of range.
    """

    def __init__(
        self,
        index: CorpusIndex,
        encoder: Any = None,
        per_video: int = 3,
        candidates: int = 256,
        smooth_s: float = 1.0,
        rel_threshold: float = 0.5,
        rerank_videos: int = 10,
    ):
        encoder = encoder if encoder is not None else index.encoder
        if encoder is None:
            raise InvalidArgumentError("MomentSearcher needs the index's encoder; pass encoder=")
        index.check_encoder(encoder)
        if min(per_video, candidates, rerank_videos) < 1:
            raise InvalidArgumentError(
                "per_video, candidates and rerank_videos must be integers >= 1; got "
                f"{per_video!r}, {candidates!r}, {rerank_videos!r}"
            )
        if smooth_s < 0 or not 0 <= rel_threshold <= 1:
            raise InvalidArgumentError(
                "smooth_s must be >= 0 seconds and rel_threshold in [0, 1]; "
                f"got {smooth_s!r}, {rel_threshold!r}"
            )
        self.index = index
        self.encoder = encoder
        self.per_video = per_video
        self.candidates = candidates
        self.smooth_s = smooth_s
        self.rel_threshold = rel_threshold
        self.rerank_videos = rerank_videos

    def search(
        self, query: Any, top_k: int = 5, video: Optional[str | os.PathLike] = None
    ) -> MomentSearchResult:
        """Find the moments that best match ``query``.

        Args:
            query: Text, an image (PIL, ``Path``, uint8 array) or a query vector.
            top_k: Moments to return (1-100).
            video: Restrict to one indexed video (id or path): skip retrieval, localise only.

        Returns:
            A :class:`MomentSearchResult`, moments best first.

        Raises:
            InvalidArgumentError: Bad query or ``top_k``.
            UnknownVideoError: ``video`` is not indexed here.
        """
        if not isinstance(top_k, (int, np.integer)) or not 1 <= int(top_k) <= 100:
            raise InvalidArgumentError(f"top_k must be an integer from 1 to 100; got {top_k!r}")
        top_k = int(top_k)
        q, kind, label = encode_query(self.encoder, query)
        if self.index.dim and len(q) != self.index.dim:
            raise InvalidArgumentError(
                f"query vector has width {len(q)}; this index holds {self.index.dim}-d vectors"
            )
        result = MomentSearchResult(
            query=label,
            query_kind=kind,
            encoder=self.encoder.name,
            encoder_trained=bool(self.encoder.trained),
            num_videos_searched=1 if video is not None else self.index.catalog.count_indexed(),
        )
        moments: list[Moment] = []
        if video is not None:
            rec = self.index.get_video(video)
            if rec.status != "indexed":
                raise UnknownVideoError(
                    f"video {video!r} is {rec.status} in this index; only indexed videos can be searched"
                )
            shard = self.index.shard(rec.video_id)
            vscore = (
                float((shard.seg_vectors.astype(np.float32) @ q).max()) if len(shard.seg_vectors) else None
            )
            moments = self._localize(shard, q, rec.video_id, rec.path, vscore)
        else:
            for vid, vscore in self.rank_videos(q, max(top_k, self.rerank_videos)):
                row = self.index.catalog.row(video_id=vid)
                if row is None or row["status"] != "indexed":
                    continue
                try:
                    shard = self.index.shard(vid)
                except IndexCorruptError as exc:  # a damaged shard: the next `videoseek index` repairs it
                    log.warning("skipping video %s: %s", vid, exc)
                    continue
                except (OSError, ValueError) as exc:  # removed or re-indexed by another process meanwhile
                    log.info("skipping video %s: %s", vid, exc)
                    continue
                moments.extend(self._localize(shard, q, vid, display_path(row["path"]), vscore))
        moments.sort(key=lambda m: -m.score)
        result.moments = moments[:top_k]
        return result

    def rank_videos(self, q: np.ndarray, top_videos: int) -> list[tuple[str, float]]:
        """Video retrieval: ``(video_id, score)`` best first, score = best segment similarity.

        Args:
            q: Unit query vector.
            top_videos: Videos to return.
        """
        vi = self.index.vectors
        if vi.ntotal == 0:
            return []
        k = min(max(self.candidates, 20 * top_videos), vi.ntotal)
        scores, ids = vi.search(q[None, :], k)
        seg = self.index.catalog.lookup_segments(ids[0][ids[0] >= 0].tolist())
        best: dict[str, float] = {}
        for sc, i in zip(scores[0].tolist(), ids[0].tolist()):
            hit = seg.get(int(i))
            if hit is None:
                continue  # a stale id (video removed meanwhile)
            vid = hit[0]
            if vid not in best or sc > best[vid]:
                best[vid] = float(sc)
        return sorted(best.items(), key=lambda kv: -kv[1])[:top_videos]

    def _localize(
        self, shard: Shard, q: np.ndarray, vid: str, path: str, vscore: Optional[float]
    ) -> list[Moment]:
        # einsum, not BLAS: a few thousand frames take well under a millisecond on one core, while
        # BLAS threads on a busy machine can wait for milliseconds
        sims = np.einsum("ij,j->i", shard.frames, q, optimize=False)
        found = localize(
            sims,
            shard.timestamps,
            shard.duration,
            float(self.index.sample_fps or 2.0),
            per_video=self.per_video,
            smooth_s=self.smooth_s,
            rel_threshold=self.rel_threshold,
        )
        return [
            Moment(
                video_id=vid,
                path=path,
                start=round(s, 3),
                end=round(e, 3),
                score=sc,
                video_score=vscore,
                peak_time=round(pk, 3),
            )
            for s, e, sc, pk in found
        ]
