"""Shared fixtures: synthetic videos with painted frame indices, the untrained tiny encoder, settings.

- ``tiny_encoder`` - the explicitly untrained ``tiny-untrained`` encoder (session-wide).
- ``clip20`` - a 20 s, 10 fps, 160x120 H.264 video; frame ``i`` shows index ``i`` (session-wide).
- ``settings`` - Settings whose cache and index live in a fresh temporary folder.
- ``searcher`` - a TemporalSearcher over ``tiny_encoder`` and ``settings``.

Tests marked ``long`` (learning runs of many minutes on 2 cores, whose figures the benchmarks
report) are skipped unless ``VIDEOSEEK_LONG_TESTS=1``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ["COLUMNS"] = "200"  # rich tables in CLI output: wide enough that cells never fold in tests

import pytest

import agent_tools._tvshim  # noqa: F401
from agent_tools.config import get_settings
from agent_tools.synthetic import write_indexed_video

def pytest_collection_modifyitems(config, items):
    if os.environ.get("VIDEOSEEK_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="a learning run of many minutes on 2 cores: set VIDEOSEEK_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


CLIP_FPS = 10.0
CLIP_SECONDS = 20.0


@pytest.fixture(scope="session")
def tiny_encoder():
    from agent_tools.encoders import load_encoder

    return load_encoder("tiny-untrained", device="cpu")


@pytest.fixture(scope="session")
def clip20(tmp_path_factory):
    path = tmp_path_factory.mktemp("videos") / "clip20.mp4"
    return write_indexed_video(path, duration=CLIP_SECONDS, fps=CLIP_FPS, size=(160, 120), scene_seconds=2.0, seed=1)


@pytest.fixture
def settings(tmp_path):
    return get_settings(cache_dir=tmp_path / "cache", index_dir=tmp_path / "index", device="cpu", encoder="tiny-untrained")


@pytest.fixture
def searcher(tiny_encoder, settings):
    from agent_tools.temporal import TemporalSearcher

    return TemporalSearcher(tiny_encoder, settings=settings)
