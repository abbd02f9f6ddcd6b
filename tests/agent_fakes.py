"""Small fakes of the engines for the agent-layer tests (no video decoding, no encoder).

- :class:`FakeSearcher` - ``info``/``preview``/``seek``/``frames`` over an imaginary 60 s video
  sampled at 2 fps; ``frames`` paints each timestamp into a solid-colour PIL image and
  records every call, so tests can check when and at what size pixels were fetched.
- :class:`FakeMomentSearcher` - ``search`` over a fixed list of moments, recording queries.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from PIL import Image

from agent_tools.errors import InvalidWindowError, UnknownVideoError
from agent_tools.types import FrameHit, FrameSelection, Moment, MomentSearchResult, VideoInfo

__all__ = ["FakeSearcher", "FakeMomentSearcher", "seek_call", "answer", "tiny_policy_path", "tiny_policy"]


def seek_call(query: str, start=None, end=None, k=None, think: str = "search") -> str:
    args = {"query": query}
    if start is not None:
        args["start_time"] = start
    if end is not None:
        args["end_time"] = end
    if k is not None:
        args["num_frames"] = k
    import json

    return f"<think>{think}</think><tool_call>{json.dumps({'name': 'seek_video_frames', 'arguments': args})}</tool_call>"


def answer(text: str, think: str = "enough") -> str:
    return f"<think>{think}</think><answer>{text}</answer>"


class FakeSearcher:
    def __init__(self, duration: float = 60.0, fps: float = 2.0, videos: Optional[Sequence[str]] = None):
        self.duration = duration
        self.fps = fps
        self.videos = set(videos) if videos else None
        self.seeks: list[dict] = []
        self.frame_calls: list[dict] = []

    def _check(self, video: str) -> None:
        if self.videos is not None and video not in self.videos:
            raise UnknownVideoError(f"unknown video {video!r}; known: {sorted(self.videos)}")

    def info(self, video: str) -> VideoInfo:
        self._check(video)
        return VideoInfo(
            path=video,
            duration=self.duration,
            fps=25.0,
            frame_count=int(self.duration * 25),
            width=160,
            height=120,
        )

    def _selection(self, video, query, start, end, k, method="dpp") -> FrameSelection:
        ts = np.linspace(start, end, k + 2)[1:-1] if k else []
        ts = [round(float(t) * self.fps) / self.fps for t in ts]
        return FrameSelection(
            video=video,
            query=query,
            start_time=start,
            end_time=end,
            duration=self.duration,
            num_candidates=int((end - start) * self.fps),
            method=method,
            encoder="fake",
            encoder_trained=False,
            sample_fps=self.fps,
            frames=[
                FrameHit(timestamp=t, score=0.5, relevance=1.0, sample_index=int(t * self.fps)) for t in ts
            ],
        )

    def preview(self, video: str, num_frames: int = 8, with_images: bool = False) -> FrameSelection:
        self._check(video)
        return self._selection(video, None, 0.0, self.duration, num_frames, "uniform")

    def seek(self, video, query, start_time=None, end_time=None, num_frames=None, with_images=False):
        self._check(video)
        start = 0.0 if start_time is None else float(start_time)
        end = self.duration if end_time is None else min(float(end_time), self.duration)
        if start < 0 or start >= end:
            raise InvalidWindowError(
                f"window [{start}, {end}] is empty or reversed; valid: 0 <= start_time < end_time <= {self.duration}"
            )
        self.seeks.append(
            {"video": video, "query": query, "start_time": start, "end_time": end, "num_frames": num_frames}
        )
        return self._selection(video, query, start, end, num_frames or 8)

    def frames(self, video: str, timestamps: Sequence[float], max_side: Optional[int] = None) -> list:
        self._check(video)
        self.frame_calls.append({"video": video, "timestamps": list(timestamps), "max_side": max_side})
        side = max_side or 160
        out = []
        for t in timestamps:
            c = int(t * 4) % 256
            out.append(Image.new("RGB", (side, max(1, side * 3 // 4)), (c, 255 - c, 128)))
        return out


class FakeMomentSearcher:
    def __init__(self, moments: Sequence[Moment]):
        self.moments = list(moments)
        self.queries: list = []

    def search(self, query, top_k: int = 5, video=None) -> MomentSearchResult:
        self.queries.append(query)
        ms = [m for m in self.moments if video is None or m.video_id == video]
        text = query if isinstance(query, str) else None
        if text:
            words = set(text.lower().split())
            ms = sorted(ms, key=lambda m: -len(words & set(m.video_id.lower().split("-"))))
        return MomentSearchResult(
            query=text,
            query_kind="text" if text else "vector",
            encoder="fake",
            encoder_trained=False,
            moments=ms[:top_k],
            num_videos_searched=len({m.video_id for m in self.moments}),
        )


_TINY: dict = {}


def tiny_policy_path():
    """A tiny UNTRAINED policy checkpoint, built once per test process (about 2 s)."""
    if "path" not in _TINY:
        import atexit
        import shutil
        import tempfile

        from agent_tools.policies.tiny import build_tiny_policy_dir

        d = tempfile.mkdtemp(prefix="videoseek-tiny-policy-")
        atexit.register(shutil.rmtree, d, True)
        _TINY["path"] = build_tiny_policy_dir(d)
    return _TINY["path"]


def tiny_policy(**kwargs):
    """A loaded tiny policy (model shared across tests; cheap to wrap again)."""
    from agent_tools.policies import load_policy

    if "policy" not in _TINY:
        _TINY["policy"] = load_policy(tiny_policy_path(), device="cpu")
    base = _TINY["policy"]
    if not kwargs:
        return base
    from agent_tools.policies.transformers_policy import TransformersPolicy

    opts = dict(
        max_new_tokens=base.max_new_tokens, max_side=base.max_side, manifest=base.manifest, name=base.name
    )
    opts.update(kwargs)
    return TransformersPolicy(base.model, base.processor, **opts)
