"""Temporal search: right frames at the right timestamps, windows, queries, and bad input."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from agent_tools.errors import InvalidArgumentError, InvalidWindowError, VideoReadError
from agent_tools.synthetic import read_frame_index

from .conftest import CLIP_FPS


def _indices(sel):
    return [read_frame_index(np.asarray(h.image)) for h in sel.frames]


def test_image_query_finds_that_frame_and_images_match_timestamps(searcher, clip20):
    probe = searcher.frames(clip20, [13.0])[0]
    sel = searcher.seek(clip20, probe, num_frames=4, with_images=True)
    assert sel.query_kind == "image" and sel.method == "dpp" and sel.num_candidates == 40
    assert 13.0 in sel.timestamps
    best = max(sel.frames, key=lambda h: h.score)
    assert best.timestamp == 13.0 and best.score == pytest.approx(1.0, abs=2e-3) and best.relevance == 1.0
    assert sel.timestamps == sorted(sel.timestamps) and len(sel.frames) == 4
    assert _indices(sel) == [round(t * CLIP_FPS) for t in sel.timestamps]


def test_defaults_whole_video_and_eight_frames(searcher, clip20):
    sel = searcher.seek(clip20, "a red square")
    assert (sel.start_time, sel.end_time, sel.duration) == (0.0, 20.0, 20.0)
    assert len(sel.frames) == 8 and len(set(sel.timestamps)) == 8
    assert sel.encoder == "tiny-untrained" and sel.encoder_trained is False
    assert all(0 <= h.relevance <= 1 and h.score is not None for h in sel.frames)


def test_window_is_respected(searcher, clip20):
    sel = searcher.seek(clip20, "anything", start_time=4.0, end_time=9.0, num_frames=5, with_images=True)
    assert sel.num_candidates == 11  # 4.0, 4.5, ..., 9.0
    assert all(4.0 <= t <= 9.0 for t in sel.timestamps)
    assert _indices(sel) == [round(t * CLIP_FPS) for t in sel.timestamps]


def test_image_query_inside_a_window_excluding_it_picks_nearest_scene(searcher, clip20):
    probe = searcher.frames(clip20, [13.0])[0]
    sel = searcher.seek(clip20, probe, start_time=0, end_time=10, num_frames=1)
    assert sel.timestamps[0] <= 10 and sel.frames[0].score < 0.999


def test_empty_query_is_uniform(searcher, clip20):
    for q in (None, "", "   "):
        sel = searcher.seek(clip20, q, start_time=0, end_time=10, num_frames=5)
        assert sel.method == "uniform" and sel.query_kind == "none"
        assert sel.timestamps == [0.0, 2.5, 5.0, 7.5, 10.0]
        assert all(h.score is None for h in sel.frames)


def test_vector_query(searcher, clip20, tiny_encoder):
    entry = searcher.embeddings(clip20)
    sel = searcher.seek(clip20, entry.embeddings_f32[30], num_frames=1)
    assert sel.query_kind == "vector" and sel.timestamps == [15.0]
    with pytest.raises(InvalidArgumentError, match="needs 64"):
        searcher.seek(clip20, np.ones(10))


def test_image_file_query(searcher, clip20, tmp_path):
    p = tmp_path / "probe.png"
    searcher.frames(clip20, [6.0])[0].save(p)
    sel = searcher.seek(clip20, p, num_frames=2)
    assert 6.0 in sel.timestamps and sel.query == "image:probe.png"
    with pytest.raises(InvalidArgumentError, match="not an image file"):
        searcher.seek(clip20, tmp_path / "nope.png")


def test_end_past_the_video_is_clamped(searcher, clip20):
    sel = searcher.seek(clip20, "x", start_time=15, end_time=65535, num_frames=3)
    assert sel.end_time == 20.0 and all(t >= 15 for t in sel.timestamps)


def test_window_narrower_than_the_sampling_step(searcher, clip20):
    sel = searcher.seek(clip20, "x", start_time=3.1, end_time=3.2)
    assert sel.timestamps == [3.0] and sel.num_candidates == 1


@pytest.mark.parametrize(
    "start,end,match",
    [
        (-1, 5, "negative"),
        (5, 5, "not before"),
        (8, 3, "not before"),
        (20, 30, "at or after the end"),
        (25, None, "at or after the end"),
        (math.nan, 5, "finite"),
        ("a", 5, "finite"),
    ],
)
def test_bad_windows_state_the_valid_range(searcher, clip20, start, end, match):
    with pytest.raises(InvalidWindowError, match=match) as err:
        searcher.seek(clip20, "x", start_time=start, end_time=end)
    assert "valid range" in str(err.value) and "20.000" in str(err.value)


@pytest.mark.parametrize("k", [0, -1, 9, 10_000, 2.5, True])
def test_num_frames_bounds(searcher, clip20, k):
    with pytest.raises(InvalidArgumentError, match="from 1 to 8"):
        searcher.seek(clip20, "x", num_frames=k)


def test_unsupported_query_type(searcher, clip20):
    with pytest.raises(InvalidArgumentError, match="unsupported query type"):
        searcher.seek(clip20, 42)


def test_bad_video(searcher, tmp_path):
    with pytest.raises(VideoReadError, match="does not exist"):
        searcher.seek(tmp_path / "missing.mp4", "x")


def test_preview(searcher, clip20):
    sel = searcher.preview(clip20, num_frames=4, with_images=True, max_side=80)
    assert sel.timestamps == [2.5, 7.5, 12.5, 17.5]
    assert sel.frames[0].image.size == (80, 60)
    assert _indices(sel) == [25, 75, 125, 175]


def test_result_json_has_no_pixels(searcher, clip20):
    sel = searcher.seek(clip20, "x", num_frames=2, with_images=True)
    data = sel.model_dump_json()
    assert "image" not in data and len(data) < 2000
    assert [f["timestamp"] for f in sel.model_dump()["frames"]] == sel.timestamps


def test_warm_search_does_no_video_work(searcher, clip20, monkeypatch):
    searcher.seek(clip20, "warm up")
    from agent_tools import store as S

    monkeypatch.setattr(S, "open_video", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    t0 = time.perf_counter()
    sel = searcher.seek(clip20, "warm up", num_frames=8)
    assert len(sel.frames) == 8
    assert time.perf_counter() - t0 < 1.0  # generous: the figure itself lives in benchmarks/
