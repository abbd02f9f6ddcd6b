"""Unit tests of the MCP server's media-root checks and JPEG budget (no models, no MCP session).

- :class:`mcp_server.security.MediaResolver`: relative and absolute paths, ``..``, symlink
  escapes, prefix look-alike folders, URLs, empty and NUL input, no roots configured.
- :func:`mcp_server.media.encode_frames`: small frames pass unchanged, large ones are reduced
  until the base64 total fits the budget, nothing is upscaled.
"""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from agent_tools.errors import InvalidArgumentError, UnknownVideoError
from mcp_server.media import DEFAULT_BUDGET, base64_len, encode_frames
from mcp_server.security import MediaResolver, PathNotAllowedError, has_parent_reference, looks_like_url


@pytest.fixture
def tree(tmp_path):
    """media/ (a root) with clips, an outside/ folder with a secret, and look-alike media2/."""
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    (media / "a.mp4").write_bytes(b"x")
    (media / "sub" / "b.mp4").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    (tmp_path / "media2").mkdir()
    (tmp_path / "media2" / "c.mp4").write_bytes(b"x")
    return tmp_path


def test_relative_and_absolute_paths_under_root(tree):
    r = MediaResolver([tree / "media"])
    assert r.resolve("a.mp4") == (tree / "media" / "a.mp4").resolve()
    assert r.resolve("sub/b.mp4") == (tree / "media" / "sub" / "b.mp4").resolve()
    assert r.resolve(str(tree / "media" / "a.mp4")) == (tree / "media" / "a.mp4").resolve()
    assert r.resolve("  a.mp4  ") == (tree / "media" / "a.mp4").resolve()
    assert r.is_allowed(tree / "media" / "a.mp4")
    assert not r.is_allowed(tree / "outside" / "secret.mp4")


def test_second_root_is_searched(tree):
    r = MediaResolver([tree / "media", tree / "outside"])
    assert r.resolve("secret.mp4") == (tree / "outside" / "secret.mp4").resolve()


@pytest.mark.parametrize(
    "ref",
    ["../outside/secret.mp4", "sub/../../outside/secret.mp4", "sub/../a.mp4", "..", "sub\\..\\..\\x.mp4"],
)
def test_parent_references_rejected(tree, ref):
    r = MediaResolver([tree / "media"])
    with pytest.raises(PathNotAllowedError, match=r"'\.\.'"):
        r.resolve(ref)


def test_absolute_path_outside_roots_rejected(tree):
    r = MediaResolver([tree / "media"])
    for ref in [str(tree / "outside" / "secret.mp4"), "/etc/passwd", str(tree / "media2" / "c.mp4")]:
        with pytest.raises(PathNotAllowedError) as err:
            r.resolve(ref)
        assert str((tree / "media").resolve()) in str(err.value)  # the message names what is valid


def test_symlink_escape_rejected_and_internal_symlink_allowed(tree):
    media = tree / "media"
    os.symlink(tree / "outside" / "secret.mp4", media / "escape.mp4")
    os.symlink(tree / "outside", media / "escape_dir")
    os.symlink(media / "sub" / "b.mp4", media / "alias.mp4")
    r = MediaResolver([media])
    with pytest.raises(PathNotAllowedError, match="outside"):
        r.resolve("escape.mp4")
    with pytest.raises(PathNotAllowedError):
        r.resolve("escape_dir/secret.mp4")
    assert r.resolve("alias.mp4") == (media / "sub" / "b.mp4").resolve()


def test_root_given_through_a_symlink(tree):
    os.symlink(tree / "media", tree / "media_link")
    r = MediaResolver([tree / "media_link"])
    assert r.resolve("a.mp4") == (tree / "media" / "a.mp4").resolve()
    assert r.resolve(str(tree / "media_link" / "a.mp4")) == (tree / "media" / "a.mp4").resolve()


def test_missing_file_and_folder(tree):
    r = MediaResolver([tree / "media"])
    with pytest.raises(UnknownVideoError, match="no video file"):
        r.resolve("nope.mp4")
    with pytest.raises(UnknownVideoError, match="folder"):
        r.resolve("sub")


@pytest.mark.parametrize("ref", ["", "   ", "a\x00.mp4"])
def test_empty_and_nul(tree, ref):
    with pytest.raises(InvalidArgumentError):
        MediaResolver([tree / "media"]).resolve(ref)


def test_urls(tree):
    off = MediaResolver([tree / "media"])
    with pytest.raises(PathNotAllowedError, match="disabled"):
        off.resolve("https://example.com/v.mp4")
    on = MediaResolver([tree / "media"], allow_urls=True)
    assert on.resolve("https://example.com/v.mp4") == "https://example.com/v.mp4"
    for bad in ["file:///etc/passwd", "ftp://host/v.mp4"]:
        with pytest.raises(PathNotAllowedError, match="scheme"):
            on.resolve(bad)
    assert looks_like_url("HTTP://x") and not looks_like_url("C:\\videos\\a.mp4")


def test_no_roots_configured(tree):
    r = MediaResolver([])
    with pytest.raises(PathNotAllowedError, match="VIDEOSEEK_MEDIA_ROOTS"):
        r.resolve(str(tree / "media" / "a.mp4"))


def test_has_parent_reference():
    assert has_parent_reference("a/../b") and has_parent_reference("..\\x")
    assert not has_parent_reference("a..b/c...mp4")


# --------------------------------------------------------------------------- media


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_small_frames_are_sent_as_is():
    frames = [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(4)]
    batch = encode_frames(frames)
    assert not batch.downscaled and batch.quality == 80
    assert [(f.width, f.height) for f in batch.frames] == [(160, 120)] * 4
    assert _decode(batch.frames[0].data).format == "JPEG"
    assert batch.total_base64 == sum(len(f.b64) for f in batch.frames)


def test_large_noisy_frames_fit_the_budget():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(8)]
    batch = encode_frames(frames, max_side=1920)
    assert batch.downscaled
    assert batch.total_base64 <= DEFAULT_BUDGET
    assert sum(base64_len(len(f.data)) for f in batch.frames) == batch.total_base64
    assert all(max(f.width, f.height) <= batch.max_side for f in batch.frames)
    img = _decode(batch.frames[0].data)
    assert img.size == (batch.frames[0].width, batch.frames[0].height)
    assert abs(img.size[0] / img.size[1] - 16 / 9) < 0.02  # aspect ratio kept


def test_never_upscales_and_respects_max_side():
    img = Image.new("RGB", (100, 50), (10, 20, 30))
    assert encode_frames([img], max_side=768).frames[0].width == 100
    assert encode_frames([np.zeros((400, 800, 3), np.uint8)], max_side=200).frames[0].width == 200
    assert base64.b64decode(encode_frames([img]).frames[0].b64)[:2] == b"\xff\xd8"


def test_media_roots_from_the_environment(tree, monkeypatch):
    from agent_tools.config import get_settings

    roots = os.pathsep.join([str(tree / "media"), str(tree / "outside")])
    monkeypatch.setenv("VIDEOSEEK_MEDIA_ROOTS", roots)
    monkeypatch.setenv("VIDEOSEEK_ALLOW_URLS", "true")
    settings = get_settings()
    r = MediaResolver(settings.media_roots, allow_urls=settings.allow_urls)
    assert r.roots == ((tree / "media").resolve(), (tree / "outside").resolve())
    assert r.resolve("secret.mp4") == (tree / "outside" / "secret.mp4").resolve()
    assert r.resolve("http://host/v.mp4") == "http://host/v.mp4"
