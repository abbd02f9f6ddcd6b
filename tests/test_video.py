"""Video readers: exact frames at timestamps, sampling, metadata, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest

from agent_tools.errors import InvalidArgumentError, VideoReadError
from agent_tools.synthetic import read_frame_index, write_indexed_video
from agent_tools.video import decord_available, open_video, probe

from .conftest import CLIP_FPS, CLIP_SECONDS

BACKENDS = ["pyav"] + (["decord"] if decord_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_info(clip20, backend):
    info = probe(clip20, backend=backend)
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.11)
    assert info.fps == pytest.approx(CLIP_FPS)
    assert info.frame_count == 200
    assert (info.width, info.height) == (160, 120)
    assert info.backend == backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_at_returns_the_frame_on_screen_with_its_timestamp(clip20, backend):
    asked = [7.0, 0.0, 3.33, 19.95, 0.05, 12.26, 7.0]
    with open_video(clip20, backend=backend) as reader:
        frames = reader.frames_at(asked)
    assert len(frames) == len(asked)
    for t, (exact, rgb) in zip(asked, frames):
        expected = int(np.floor(t * CLIP_FPS + 1e-6))
        assert read_frame_index(rgb) == expected, (t, exact)
        assert exact == pytest.approx(expected / CLIP_FPS, abs=1e-6)
        assert exact <= t + 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_at_scales(clip20, backend):
    with open_video(clip20, backend=backend) as reader:
        (t, rgb), = reader.frames_at([5.0], size=(80, 60))
    assert rgb.shape == (60, 80, 3)
    assert read_frame_index(rgb) == 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_iter_sampled_at_2fps(clip20, backend):
    with open_video(clip20, backend=backend, access="sequential") as reader:
        frames = list(reader.iter_sampled(2.0))
    assert len(frames) == 40
    ts = [t for t, _ in frames]
    assert ts == pytest.approx([k * 0.5 for k in range(40)])
    assert [read_frame_index(rgb) for _, rgb in frames] == [k * 5 for k in range(40)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iter_sampled_faster_than_video_yields_each_frame_once(tmp_path, backend):
    path = write_indexed_video(tmp_path / "slow.mp4", duration=2.0, fps=5, size=(64, 48))
    with open_video(path, backend=backend, access="sequential") as reader:
        idx = [read_frame_index(rgb) for _, rgb in reader.iter_sampled(20.0)]
    assert idx == list(range(10))


@pytest.mark.parametrize("backend", BACKENDS)
def test_preview_is_uniform(clip20, backend):
    with open_video(clip20, backend=backend) as reader:
        frames = reader.preview(4)
    assert [read_frame_index(rgb) for _, rgb in frames] == [25, 75, 125, 175]


def test_backends_agree_on_sparse_frames(clip20):
    if len(BACKENDS) < 2:
        pytest.skip("decord not installed")
    asked = list(np.random.default_rng(0).uniform(0, CLIP_SECONDS - 0.01, 12))
    results = []
    for backend in BACKENDS:
        with open_video(clip20, backend=backend) as reader:
            results.append([(round(t, 4), read_frame_index(rgb)) for t, rgb in reader.frames_at(asked)])
    assert results[0] == results[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_timestamp_outside_video_is_rejected(clip20, backend):
    with open_video(clip20, backend=backend) as reader:
        with pytest.raises(InvalidArgumentError, match="valid timestamps are 0 to 20"):
            reader.frames_at([25.0])
        with pytest.raises(InvalidArgumentError):
            reader.frames_at([-1.0])


def _bad_files(tmp_path, clip20):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    tiny = tmp_path / "tiny.mp4"
    tiny.write_text("hello")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    data = clip20.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    return {
        "missing": (tmp_path / "missing.mp4", "does not exist"),
        "directory": (tmp_path, "directory"),
        "empty": (empty, "empty"),
        "text": (text, "not a readable video"),
        "tiny": (tiny, "not a readable video"),
        "noise": (noise, "not a readable video"),
        "truncated": (truncated, ""),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "text", "tiny", "noise", "truncated"])
@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_bad_files_raise_clear_errors_naming_the_file(tmp_path, clip20, case, backend):
    path, reason = _bad_files(tmp_path, clip20)[case]
    with pytest.raises(VideoReadError) as err:
        with open_video(path, backend=backend) as reader:
            list(reader.iter_sampled(2.0))  # a truncated file may open: decoding must fail or stop short
            reader.frames_at([reader.info.duration * 0.9])
        if case == "truncated":
            raise VideoReadError(path, "decoded without error")  # pragma: no cover - makes the test fail
    assert str(path) in str(err.value) or path.name in str(err.value)
    assert reason in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_backend(clip20):
    with pytest.raises(InvalidArgumentError, match="valid backends"):
        open_video(clip20, backend="opencv")
