"""Fuzz over file names through ``videoseek index``, ``index --status``, ``info`` and ``search`` (issue 13, items 1-2).

A folder holds one valid video copied under many hostile names - random bytes (not UTF-8),
rich markup (``x[`` / ``bold].mp4``, ``[link=...]``), ANSI escapes, very long names, unicode
(CJK, emoji, right-to-left override, combining marks, zero-width) - plus a broken file under a
markup name. Every command must finish (exit 0), index every valid copy (whatever its name),
record the broken one as failed, and print every name literally: markup is shown, not
interpreted, and undecodable bytes appear as ``\\xNN``.
"""

from __future__ import annotations

import json
import os
import random

import pytest
from typer.testing import CliRunner

from agent_tools.cli import app
from agent_tools.display import display_path
from agent_tools.synthetic import write_indexed_video

pytestmark = pytest.mark.slow

MARKUP = ["x[", "bold]", "[bold]b", "[link=https:evil]l", "[red", "a]b[c", "\\[esc]", "[on red]x", ":smile:"]
"""Names without ``/``; inside the folder ``x[`` the name ``bold].mp4`` makes the path ``x[/bold].mp4``."""
UNICODE = ["日本語の動画", "🎬 clip", "\u202egnp.evil", "e\u0301te\u0301", "zero\u200bwidth", "Ω≈ç√", "tab\there"]


def hostile_names(seed: int = 0) -> list[bytes]:
    """File names as bytes (each ends in ``.mp4``); no ``/``, no NUL, no leading dot."""
    rng = random.Random(seed)
    names: list[bytes] = [b"\xff.mp4", b"caf\xe9 latin1.mp4", b"\xc3(invalid.mp4"]
    for _ in range(8):  # random bytes
        body = bytes(rng.choice([b for b in range(1, 256) if b not in (0x2F, 0x2E)]) for _ in range(rng.randint(1, 24)))
        names.append(body + b".mp4")
    names += [f"{m}.mp4".encode() for m in MARKUP]
    names += [f"{u}.mp4".encode() for u in UNICODE]
    names += [b"\x1b[31mred\x1b[0m.mp4", b"line\nbreak.mp4", b"%s%d{0}.mp4", b"$(echo hi).mp4"]
    names.append(b"L" * 251 + b".mp4")  # 255 bytes, the usual NAME_MAX
    names.append(("長" * 80 + ".mp4").encode())  # 244 bytes of 3-byte characters
    seen, out = set(), []
    for n in names:
        if n not in seen and not n.startswith(b"."):
            seen.add(n)
            out.append(n)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    src = base / "src.mp4"
    write_indexed_video(src, duration=3.0, fps=10, size=(64, 48), seed=5)
    data = src.read_bytes()
    folder = base / "videos"
    folder.mkdir()
    nested = folder / "x["  # a markup folder too
    nested.mkdir()
    made: list[str] = []
    for i, name in enumerate(hostile_names()):
        parent = nested if i % 5 == 0 or name == b"bold].mp4" else folder
        path = os.fsencode(str(parent)) + b"/" + name
        try:
            with open(path, "wb") as fh:
                fh.write(data)
        except OSError:  # a file system that refuses the name: not what is under test
            continue
        made.append(os.fsdecode(path))
    broken = folder / "[red]broken.mp4"
    broken.write_bytes(b"not a video" * 50)
    return base, folder, made, str(broken)


@pytest.fixture
def env(corpus, monkeypatch):
    base, *_ = corpus
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    monkeypatch.setenv("VIDEOSEEK_ENCODER", "tiny-untrained")
    return corpus


def test_index_status_info_search_over_hostile_names(env):
    base, folder, made, broken = env
    assert len(made) >= 30 and any(p.endswith("x[/bold].mp4") for p in made)
    runner = CliRunner()
    idx = str(base / "index")

    # index, with progress (the bar shows each name) and then as JSON on a second index
    r = runner.invoke(app, ["index", str(folder), "--index", idx, "--no-speech"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "[red]broken.mp4" in r.output  # printed literally, not as red text
    r = runner.invoke(app, ["index", str(folder), "--index", str(base / "index2"), "--json", "--no-speech"])
    assert r.exit_code == 0, (r.output, r.exception)
    report = json.loads(r.stdout)
    assert sorted(report["added"]) == sorted(display_path(p) for p in made)  # every copy, whatever its name
    assert list(report["failed"]) == [broken]

    # a rerun: nothing changes, nothing crashes (the catalog finds every name again)
    r = runner.invoke(app, ["index", str(folder), "--index", idx, "--json", "--no-speech"])
    assert r.exit_code == 0, (r.output, r.exception)
    again = json.loads(r.stdout)
    assert again["unchanged"] == len(made) and not again["added"] and not again["changed"]

    # status, table and JSON
    r = runner.invoke(app, ["index", "--status", "--index", idx])
    assert r.exit_code == 0, (r.output, r.exception)
    assert f"{len(made)} indexed, 1 failed, 0 pending" in r.output and "[red]broken.mp4" in r.output
    r = runner.invoke(app, ["index", "--status", "--index", idx, "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    st = json.loads(r.stdout)
    assert st["num_indexed"] == len(made) and st["failed"][0]["path"] == broken

    # info on each name (table and JSON): right facts, the name shown literally
    for path in made[:: max(1, len(made) // 12)] + [p for p in made if "\udcff" in p]:
        r = runner.invoke(app, ["info", path, "--json"])
        assert r.exit_code == 0, (path, r.output, r.exception)
        info = json.loads(r.stdout)
        assert info["path"] == display_path(path) and info["frame_count"] == 30 and info["width"] == 64
        r = runner.invoke(app, ["info", path])
        assert r.exit_code == 0, (path, r.output, r.exception)
        assert "30" in r.output
    r = runner.invoke(app, ["info", broken])
    assert r.exit_code == 2 and "cannot read video" in r.output and "[red]broken.mp4" in r.output

    # search lists them (table and JSON): every hit is one of the copies
    r = runner.invoke(app, ["search", "anything", "--index", idx, "--top", "50", "--json", "--source", "visual"])
    assert r.exit_code == 0, (r.output, r.exception)
    hits = json.loads(r.stdout)["moments"]
    assert {m["path"] for m in hits} <= {display_path(p) for p in made} and len(hits) >= 10
    r = runner.invoke(app, ["search", "anything", "--index", idx, "--top", "50", "--source", "visual"])
    assert r.exit_code == 0, (r.output, r.exception)


def test_seek_error_with_markup_path_is_one_literal_line(env):
    _, folder, _, broken = env
    r = CliRunner().invoke(app, ["seek", broken, "-q", "x"])
    assert r.exit_code == 2 and r.exception is not None and isinstance(r.exception, SystemExit)
    assert "cannot read video" in r.output and "[red]broken.mp4" in r.output
