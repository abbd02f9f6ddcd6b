"""Build a synthetic world on disk: videos, a manifest and annotation files in public formats.

:func:`make_world` plans (deterministically from ``seed``) a *train* and a *test* split of
videos with scheduled events (see :mod:`agent_tools.world.scene`), renders them with PyAV and
writes, per split, the questions in the formats the evaluation readers read
(:mod:`agent_tools.evaluation.readers`)::

    <out>/world.json                        manifest: config, vocabulary, videos, events, captions
    <out>/videos/<video_id>.mp4             H.264, ``fps`` frames per second, ``size`` x ``size``
    <out>/<split>/longvideobench.json       multiple choice (LongVideoBench fields)
    <out>/<split>/lv_haystack.json          multiple choice + keyframes (LV-Haystack / T* fields)
    <out>/<split>/open_qa.json              open-ended, exact answers (ActivityNet-QA fields)
    <out>/<split>/tvr.jsonl                 grounding / corpus moments (TVR fields)
    <out>/<split>/video2dur_idx.json        TVR's video -> [duration, index] map

Question kinds: *multiple choice* "What colour is the square that moves from left to right?"
over four full captions; *open-ended* "What number is shown in yellow?" (answer ``"7"``; the
item carries its answer space and a hypothesis template for zero-shot answerers); *grounding*
(each event's caption with its window); *needle in a haystack*: in each needle video one
2-second event in a long video (a haystack item whose keyframes are the needle's frames).
Captions are unique inside a split (so corpus retrieval has one right video) and a
(shape, action) pair or a number colour occurs once per video (so every question has one answer).

- :class:`WorldConfig` - sizes, durations, counts.
- :func:`make_world` - plan, render and write; returns the manifest dict.
- :func:`plan_world` - the plan only (no files): ``{split: [video dicts]}``.
- :func:`load_manifest` - read ``world.json`` back (events as :class:`Event`).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import BaseModel, Field, model_validator

from ..errors import InvalidArgumentError
from .scene import ACTIONS, COLOURS, DIGITS, SHAPES, Background, Event, empty_caption, render_frame

__all__ = ["WorldConfig", "make_world", "plan_world", "load_manifest", "write_video", "SPLITS"]

SPLITS = ("train", "test")
_MAX_EVENTS_PER_VIDEO = 16  # 18 distinct (shape, action) / number-colour slots exist; longer videos get longer gaps
_LETTERS = "ABCDE"


class WorldConfig(BaseModel):
    """How big the world is. Defaults: minutes-long videos, one hour-long needle video per split."""

    seed: int = 0
    n_train: int = Field(8, ge=0, description="Ordinary videos in the train split.")
    n_test: int = Field(4, ge=1, description="Ordinary videos in the test split.")
    min_duration: float = Field(120.0, gt=10, description="Shortest ordinary video, seconds.")
    max_duration: float = Field(600.0, gt=10, description="Longest ordinary video, seconds.")
    needle_videos: int = Field(1, ge=0, description="Needle-in-a-haystack videos per split.")
    needle_duration: float = Field(3600.0, gt=10, description="Length of a needle video, seconds.")
    needle_seconds: float = Field(2.0, gt=0, description="How long the needle is on screen.")
    events_per_minute: float = Field(1.0, gt=0)
    min_event_s: float = Field(6.0, gt=0)
    max_event_s: float = Field(16.0, gt=0)
    fps: float = Field(2.0, gt=0, description="Video frame rate (2 = the store's default sampling rate).")
    size: int = Field(128, ge=32, description="Square frame side in pixels (even).")

    @model_validator(mode="after")
    def _check(self):
        if self.min_duration > self.max_duration:
            raise ValueError(f"min_duration {self.min_duration} > max_duration {self.max_duration}")
        if self.min_event_s > self.max_event_s:
            raise ValueError(f"min_event_s {self.min_event_s} > max_event_s {self.max_event_s}")
        if self.size % 2:
            raise ValueError(f"size must be even (yuv420p), got {self.size}")
        return self


def _caption_pool() -> list[dict]:
    pool = [dict(kind="shape", shape=s, colour=c, action=a) for s in SHAPES for c in COLOURS for a in ACTIONS]
    pool += [dict(kind="number", digit=d, colour=c) for d in DIGITS for c in COLOURS]
    return pool


def _slot_key(d: dict) -> tuple:
    return ("shape", d["shape"], d["action"]) if d["kind"] == "shape" else ("number", d["colour"])


class _Pool:
    """Captions drawn without replacement inside a split (refilled only if exhausted)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.items: list[dict] = []

    def draw(self, used_slots: set, kind: Optional[str] = None, action: Optional[str] = None) -> dict:
        for _ in range(2):
            order = self.rng.permutation(len(self.items))
            for i in order:
                d = self.items[int(i)]
                if (
                    _slot_key(d) not in used_slots
                    and (kind is None or d["kind"] == kind)
                    and (action is None or d.get("action") == action)
                ):
                    return self.items.pop(int(i))
            self.items = _caption_pool()  # exhausted: a new round (captions may then repeat)
        raise InvalidArgumentError("cannot place another distinct event in this video; lower events_per_minute")


def _plan_video(video_id: str, split: str, duration: float, cfg: WorldConfig, rng, pool: _Pool, needle: bool) -> dict:
    n = max(2, int(round(duration / 60.0 * cfg.events_per_minute)))
    n = min(n, int(duration // (cfg.max_event_s + 4)), _MAX_EVENTS_PER_VIDEO)
    if n < 1:
        raise InvalidArgumentError(f"video of {duration:g} s is too short for an event of {cfg.max_event_s:g} s")
    slot = duration / n
    needle_slot = int(rng.integers(0, n)) if needle else -1
    events, used = [], set()
    needle_d = pool.draw(used, kind="shape", action="appears") if needle else None  # drawn first: always fits
    if needle_d is not None:
        used.add(_slot_key(needle_d))
    for i in range(n):
        needle_here = i == needle_slot
        d = needle_d if needle_here else pool.draw(used)
        used.add(_slot_key(d))
        if needle_here:
            length = cfg.needle_seconds
        else:
            length = float(rng.uniform(cfg.min_event_s, min(cfg.max_event_s, slot - 4)))
        start = round(i * slot + 2 + float(rng.uniform(0, max(0.0, slot - 4 - length))), 1)
        ev = Event(
            start=start,
            end=round(start + length, 1),
            x=float(rng.uniform(0, 1)),
            y=float(rng.uniform(0.1, 0.9)),
            size=float(rng.uniform(0.28, 0.4)) if d["kind"] == "shape" else 0.45,
            needle=i == needle_slot,
            event_id=f"{video_id}-e{i}",
            **d,
        )
        events.append(ev)
    return {
        "video_id": video_id,
        "split": split,
        "duration": float(duration),
        "needle": needle,
        "background": Background.random(rng).__dict__,
        "events": [e.to_dict() for e in events],
    }


def plan_world(cfg: WorldConfig) -> dict[str, list[dict]]:
    """The world's plan (deterministic in ``cfg.seed``), without writing anything."""
    rng = np.random.default_rng(cfg.seed)
    plan: dict[str, list[dict]] = {}
    for split, count in (("train", cfg.n_train), ("test", cfg.n_test)):
        pool = _Pool(rng)
        pool.items = _caption_pool()
        videos = []
        for i in range(count):
            dur = round(float(rng.uniform(cfg.min_duration, cfg.max_duration)), 1)
            videos.append(_plan_video(f"{split}-{i:03d}", split, dur, cfg, rng, pool, needle=False))
        for i in range(cfg.needle_videos):
            videos.append(_plan_video(f"{split}-needle-{i:02d}", split, cfg.needle_duration, cfg, rng, pool, needle=True))
        plan[split] = videos
    return plan


def write_video(path: Path, video: dict, cfg: WorldConfig) -> Path:
    """Render one planned video to an H.264 MP4 (frame ``i`` shows time ``i / fps``)."""
    import av

    events = [Event.from_dict(e) for e in video["events"]]
    bg = Background(**{k: v for k, v in video["background"].items()}).render(cfg.size, cfg.size)
    n = int(round(video["duration"] * cfg.fps))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(cfg.fps).limit_denominator(1000))
        stream.width = stream.height = cfg.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, int(round(10 * cfg.fps)))
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(n):
            t = i / cfg.fps
            active = [e for e in events if e.active(t)]
            frame = av.VideoFrame.from_ndarray(render_frame(bg, active, t) if active else bg, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _mcq(ev: Event, rng) -> tuple[str, list[str], int]:
    others = [c for c in COLOURS if c != ev.colour]
    colours = [ev.colour] + [str(c) for c in rng.choice(others, size=3, replace=False)]
    order = rng.permutation(4)
    cands = [Event(kind="shape", colour=colours[j], start=0, end=1, shape=ev.shape, action=ev.action).caption for j in order]
    correct = int(np.flatnonzero(order == 0)[0])
    return f"What colour is the {ev.shape} that {ev.action}?", cands, correct


def _keyframes(ev: Event, fps: float) -> list[int]:
    """Frame indices (at the video's fps) one second apart inside the event, the needle's frames."""
    times = np.arange(ev.start, ev.end - 1e-6, 1.0)
    frames = {int(np.ceil(t * fps - 1e-6)) for t in times}  # the first frame shown at or after t
    return sorted(i for i in frames if i / fps < ev.end)


def _annotations(videos: list[dict], cfg: WorldConfig, rng) -> dict[str, Any]:
    lvb, hay, open_qa, tvr, v2d = [], [], [], [], {}
    desc_id = 0
    for vi, v in enumerate(videos):
        vid, dur = v["video_id"], v["duration"]
        v2d[vid] = [dur, vi]
        for ev in (Event.from_dict(e) for e in v["events"]):
            qid = ev.event_id
            if ev.kind == "shape":
                question, cands, correct = _mcq(ev, rng)
                if not ev.needle:
                    lvb.append({
                        "id": qid, "video_id": vid, "video_path": f"{vid}.mp4", "question": question,
                        "candidates": cands, "correct_choice": correct, "duration": dur,
                        "duration_group": 600 if dur <= 600 else 3600, "question_category": "world-colour",
                        "topic_category": "synthetic-world", "level": "L1-Perception",
                    })
                hay.append({
                    "video_id": vid, "video_path": f"{vid}.mp4", "question": question,
                    "options": "\n".join(f"{_LETTERS[i]}) {c}" for i, c in enumerate(cands)),
                    "answer": _LETTERS[correct], "gt_frame_index": _keyframes(ev, cfg.fps),
                    "duration_group": 3600 if ev.needle else 600, "question_id": qid, "needle": ev.needle,
                })
            else:
                open_qa.append({
                    "question_id": qid, "video_name": vid, "question": f"What number is shown in {ev.colour}?",
                    "answer": ev.digit, "type": "number",
                    "answer_space": list(DIGITS), "hypothesis_template": "the number {} is shown in " + ev.colour,
                })
            if not ev.needle:
                tvr.append({"vid_name": vid, "duration": dur, "ts": [ev.start, ev.end], "desc": ev.caption, "type": "v", "desc_id": desc_id})
                desc_id += 1
    return {"longvideobench.json": lvb, "lv_haystack.json": hay, "open_qa.json": open_qa, "tvr.jsonl": tvr, "video2dur_idx.json": {"world": v2d}}


def make_world(
    out_dir: str | Path, cfg: Optional[WorldConfig] = None, render: bool = True, progress=None, plan: Optional[dict] = None
) -> dict:
    """Plan, render and write a world.

    Args:
        out_dir: Output folder (created).
        cfg: The world's size; default :class:`WorldConfig()`.
        render: Write the videos (False: annotations and manifest only).
        progress: Optional ``progress(done_videos, total_videos)`` callback.
        plan: A hand-made plan in :func:`plan_world`'s shape (``{split: [video dicts]}``) to
            render instead of the seeded one (tests force known answers this way).

    Returns:
        The manifest (also written to ``<out_dir>/world.json``).
    """
    cfg = cfg or WorldConfig()
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    plan = plan if plan is not None else plan_world(cfg)
    plan = {split: plan.get(split, []) for split in SPLITS}
    rng = np.random.default_rng(cfg.seed + 1_000_003)
    all_videos = [v for split in SPLITS for v in plan[split]]
    for i, v in enumerate(all_videos):
        if render:
            write_video(out / "videos" / f"{v['video_id']}.mp4", v, cfg)
        if progress:
            progress(i + 1, len(all_videos))
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
        for name, data in _annotations(plan[split], cfg, rng).items():
            path = out / split / name
            if name.endswith(".jsonl"):
                path.write_text("".join(json.dumps(r) + "\n" for r in data))
            else:
                path.write_text(json.dumps(data, indent=1))
    manifest = {
        "world_version": 1,
        "config": cfg.model_dump(),
        "vocabulary": {"shapes": list(SHAPES), "colours": list(COLOURS), "actions": list(ACTIONS), "digits": list(DIGITS),
                       "empty": empty_caption()},
        "videos": all_videos,
    }
    (out / "world.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_manifest(world_dir: str | Path) -> dict:
    """Read ``world.json``; each video's ``events`` become :class:`Event` objects.

    Raises:
        InvalidArgumentError: No manifest in the folder.
    """
    path = Path(world_dir) / "world.json"
    if not path.is_file():
        raise InvalidArgumentError(f"{str(path)!r} not found; build a world first with agent_tools.world.make_world")
    manifest = json.loads(path.read_text())
    for v in manifest["videos"]:
        v["events"] = [Event.from_dict(e) for e in v["events"]]
    return manifest
