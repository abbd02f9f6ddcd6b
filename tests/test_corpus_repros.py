"""Repros of issue 13 on the corpus index and its CLI (items 1, 2, 5, 7, 8, 9), one test each.

- 1: a file name that is not UTF-8 beside a valid video: both indexed, reruns fine, ids work.
- 2: a folder ``x[`` with ``bold].mp4``: index, ``--status`` and ``search`` print it literally.
- 5: a bit-flipped ``main.faiss``: searches stay right (rebuilt from shards), ``index`` rewrites it.
- 7: a damaged catalog page is one clear error; a lost ``catalog.sqlite`` is rebuilt in place.
- 8: ``--status --index <typo>`` creates nothing; ``index <missing path>`` exits 1.
- 9: ``search --image /dev/zero`` / a folder is "not a regular file", not "does not exist".
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agent_tools.corpus import CorpusIndex, MomentSearcher
from agent_tools.corpus.cli import register
from agent_tools.errors import IndexCorruptError, InvalidArgumentError
from agent_tools.store import FrameEmbeddingStore
from agent_tools.synthetic import write_indexed_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("repro") / "clip.mp4"
    write_indexed_video(path, duration=4.0, fps=10, size=(64, 48), seed=7)
    return path.read_bytes()


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    return app


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOSEEK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VIDEOSEEK_DEVICE", "cpu")
    return tmp_path


def _open(index_dir: Path, encoder, cache: Path, **kw) -> CorpusIndex:
    return CorpusIndex.open(index_dir, encoder, store=FrameEmbeddingStore(cache, encoder), **kw)


def _q(encoder) -> np.ndarray:
    q = np.random.default_rng(1).standard_normal(encoder.dim).astype(np.float32)
    return q / np.linalg.norm(q)


def test_item1_non_utf8_name_beside_a_valid_video(tmp_path, clip, tiny_encoder):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "ok.mp4").write_bytes(clip)
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/\xffodd.mp4")
    Path(odd).write_bytes(clip)
    for _ in range(2):  # the rerun used to crash at the same place
        with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
            report = idx.update([folder])
            assert not report.failed
            rows = {r["path"]: r for r in idx.catalog.rows()}
            assert set(rows) == {str(folder / "ok.mp4"), odd} and all(r["status"] == "indexed" for r in rows.values())
            shown = {r.path for r in idx.list_videos()}
            assert str(folder) + "/\\xffodd.mp4" in shown  # printable, JSON-safe form
            assert idx.video_path(rows[odd]["video_id"]) == odd  # the path that opens
            assert idx.get_video(odd).video_id == rows[odd]["video_id"]
            json.dumps([r.model_dump() for r in idx.list_videos()])
    assert report.unchanged == 2


def test_item1_an_odd_file_is_recorded_failed_not_fatal(tmp_path, clip, tiny_encoder, monkeypatch):
    """Whatever goes wrong with one file (here: fingerprinting raises) is that file's failure."""
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip)
    (folder / "b.mp4").write_bytes(clip[:-10] + b"0123456789")
    import agent_tools.store as store_mod

    real = store_mod.fingerprint_file

    def flaky(path):
        if Path(path).name == "a.mp4":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")
        return real(path)

    monkeypatch.setattr(store_mod, "fingerprint_file", flaky)
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        report = idx.update([folder])
    assert list(report.failed) == [str(folder / "a.mp4")] and "UnicodeEncodeError" in report.failed[str(folder / "a.mp4")]
    assert report.added == [str(folder / "b.mp4")]


def test_item2_markup_paths_print_literally(app, env, clip, tiny_encoder):
    folder = env / "v" / "x["
    folder.mkdir(parents=True)
    (folder / "bold].mp4").write_bytes(clip)
    (env / "v" / "[red]z.mp4").write_bytes(b"broken" * 100)
    (env / "v" / "later.mp4").write_bytes(clip[:-4] + b"abcd")
    runner = CliRunner()
    idx = str(env / "index")
    r = runner.invoke(app, ["index", str(env / "v"), "--index", idx, "--encoder", "tiny-untrained", "--no-speech"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "[red]z.mp4" in r.output  # printed literally, not as red text (it was a MarkupError)
    r = runner.invoke(app, ["index", str(env / "v"), "--index", idx, "--json", "--no-speech", "--no-progress"])
    assert r.exit_code == 0 and json.loads(r.stdout)["unchanged"] == 2
    r = runner.invoke(app, ["index", "--status", "--index", idx])
    assert r.exit_code == 0 and "2 indexed, 1 failed, 0 pending" in r.output and "[red]z.mp4" in r.output
    r = runner.invoke(app, ["search", "x", "--index", idx, "--top", "5", "--source", "visual"])
    assert r.exit_code == 0 and "x[/bold].mp4" in r.output.replace("\n", "").replace("│", "").replace(" ", "")


def test_item5_bit_flipped_main_faiss_is_caught_and_repaired_by_index(tmp_path, clip, tiny_encoder, caplog):
    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.mp4").write_bytes(clip[:-4] + bytes([i]) * 4)
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        idx.update([folder])
        before = MomentSearcher(idx, tiny_encoder).search(_q(tiny_encoder), top_k=5).moments
    main = tmp_path / "index" / "vectors" / "main.faiss"
    data = bytearray(main.read_bytes())
    data[len(data) - 40] ^= 0x40  # inside the stored vectors: scores would change silently
    main.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        with CorpusIndex.open(tmp_path / "index", tiny_encoder, read_only=True) as idx:
            after = MomentSearcher(idx, tiny_encoder).search(_q(tiny_encoder), top_k=5).moments
    assert [m.model_dump() for m in after] == [m.model_dump() for m in before]
    assert any("main.faiss does not match its checksum" in r.getMessage() for r in caplog.records)
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        idx.update([folder])  # `videoseek index` rewrites it
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        with CorpusIndex.open(tmp_path / "index", tiny_encoder, read_only=True) as idx:
            assert idx.vectors.main is not None and idx.vectors.main.ntotal == idx.vectors.ntotal
    assert not [r for r in caplog.records if "checksum" in r.getMessage()]


def test_item7_damaged_catalog_page_is_a_clear_error(tmp_path, clip, tiny_encoder, app, env):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip)
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        idx.update([folder])
    db = tmp_path / "index" / "catalog.sqlite"
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for off in range(page, len(data), page):  # every page but the header page
        data[off : off + 8] = b"\xff" * 8
    db.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="catalog .* is damaged"):
        with CorpusIndex.open(tmp_path / "index", tiny_encoder, read_only=True, check=True) as idx:
            idx.status()
    runner = CliRunner()
    for args in (["index", "--status", "--index", str(tmp_path / "index")], ["search", "x", "--index", str(tmp_path / "index")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and "damaged" in r.output and "Traceback" not in r.output, r.output
        assert not isinstance(r.exception, sqlite3.Error)


def test_item7_lost_catalog_is_rebuilt_in_place(tmp_path, clip, tiny_encoder):
    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.mp4").write_bytes(clip[:-4] + bytes([i]) * 4)
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        idx.update([folder])
        before = MomentSearcher(idx, tiny_encoder).search(_q(tiny_encoder), top_k=4).moments
    (tmp_path / "index" / "catalog.sqlite").unlink()
    assert (tmp_path / "index" / ".write.lock").exists() or True
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        report = idx.update([folder])
        assert len(report.added) == 2 and not report.failed
        after = MomentSearcher(idx, tiny_encoder).search(_q(tiny_encoder), top_k=4).moments
        assert idx.vectors.ntotal == idx.catalog.counts()["vectors"]
    strip = lambda ms: [(m.video_id, m.start, m.end, round(m.score, 5)) for m in ms]  # noqa: E731
    assert strip(after) == strip(before)
    assert len(list((tmp_path / "index" / "shards").glob("*.npz"))) == 2  # the old shards were dropped


def test_item8_status_of_a_typo_index_creates_nothing_and_missing_path_exits_1(app, env, clip):
    runner = CliRunner()
    typo = env / "indx"
    r = runner.invoke(app, ["index", "--status", "--index", str(typo)])
    assert r.exit_code == 2 and "no corpus index" in r.output and not typo.exists()
    r = runner.invoke(app, ["index", "--status", "--index", str(typo), "--json"])
    assert r.exit_code == 2 and not typo.exists()
    with pytest.raises(InvalidArgumentError):
        CorpusIndex.open(typo, None, read_only=True)
    assert not typo.exists()
    missing = env / "no" / "such.mp4"
    r = runner.invoke(app, ["index", str(missing), "--index", str(env / "index"), "--encoder", "tiny-untrained", "--no-speech"])
    assert r.exit_code == 1 and "no such file or folder" in r.output and str(missing) in r.output


def test_item9_image_that_is_a_device_or_folder(app, env, clip, tiny_encoder):
    folder = env / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip)
    runner = CliRunner()
    idx = str(env / "index")
    r = runner.invoke(app, ["index", str(folder), "--index", idx, "--encoder", "tiny-untrained", "--no-speech"])
    assert r.exit_code == 0, r.output
    for image in ("/dev/zero", str(folder)):
        r = runner.invoke(app, ["search", "--image", image, "--index", idx])
        assert r.exit_code == 2 and "not a regular file" in r.output and "does not exist" not in r.output


def test_item9_a_fifo_in_a_scanned_folder_is_not_a_video(tmp_path, clip, tiny_encoder):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip)
    os.mkfifo(folder / "pipe.mp4")  # opening it would block the build forever
    with _open(tmp_path / "index", tiny_encoder, tmp_path / "cache") as idx:
        report = idx.update([folder])
    assert report.added == [str(folder / "a.mp4")]
    assert report.failed == {str(folder / "pipe.mp4"): "not a regular file (a FIFO, device or socket)"}


def test_item4_a_huge_query_is_refused_and_not_echoed(app, env):
    r = CliRunner().invoke(app, ["search", "q" * 1_000_000, "--index", str(env / "index")])
    assert r.exit_code == 2 and "VIDEOSEEK_MAX_QUERY_CHARS" in r.output and len(r.output) < 1000
