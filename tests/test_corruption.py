"""Flipped bits in every kind of file the cache and the index write (issue 13, items 5 and 7).

The cache writes ``<key>@2fps.npy`` (embeddings), ``.ts.npy`` (timestamps) and ``.json``
(sidecar); the index writes ``catalog.sqlite``, ``shards/*.npz``, ``vectors/main.faiss``,
``vectors/delta.faiss`` and ``vectors/checksums.json``. For each, one bit at a time is flipped
at many offsets (seeded), in a fresh copy of a pristine cache + index, and the answer is
checked against the pristine one:

- a temporal search (``TemporalSearcher.seek``) must equal the pristine answer exactly (a damaged
  cache entry is recomputed, with a warning) or raise a ``VideoseekError``;
- a corpus search (``MomentSearcher.search``, read-only open as the CLI and the MCP server do)
  must equal the pristine answer or raise a ``VideoseekError`` - except that a damaged shard makes
  the search skip that one video *with a warning naming the shard* (the documented behaviour);
- then ``update`` repairs: ``main.faiss`` rewritten whole, a damaged shard's video re-indexed, and
  the next read-only search is pristine again with no warning.

Anything else - another exception type, or a different answer without an error - fails.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent_tools.corpus import CorpusIndex, MomentSearcher
from agent_tools.errors import VideoseekError
from agent_tools.store import FrameEmbeddingStore
from agent_tools.synthetic import write_indexed_video
from agent_tools.temporal import TemporalSearcher

pytestmark = pytest.mark.slow

FLIPS_PER_FILE = 10


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_encoder):
    """videos/{a,b,c}.mp4; a cache; an index whose main holds a, b and whose delta holds c."""
    base = tmp_path_factory.mktemp("corrupt")
    vids = base / "videos"
    vids.mkdir()
    for i, name in enumerate("abc"):
        write_indexed_video(vids / f"{name}.mp4", duration=8.0, fps=10, size=(96, 64), seed=40 + i)
    store = FrameEmbeddingStore(base / "cache", tiny_encoder)
    with CorpusIndex.open(base / "index", tiny_encoder, store=store) as idx:
        idx.update([vids / "a.mp4", vids / "b.mp4"])
    with CorpusIndex.open(base / "index", tiny_encoder, store=store) as idx:
        idx.update([vids / "c.mp4"])
        assert idx.vectors.main.ntotal and idx.vectors.delta.ntotal  # both files exist
    return base


def _query(encoder) -> np.ndarray:
    q = np.random.default_rng(0).standard_normal(encoder.dim).astype(np.float32)
    return q / np.linalg.norm(q)


def temporal_answer(root: Path, encoder) -> tuple:
    store = FrameEmbeddingStore(root / "cache", encoder)  # a fresh process: nothing in memory
    searcher = TemporalSearcher(encoder, store)
    sel = searcher.seek(root / "videos" / "a.mp4", _query(encoder), num_frames=4)
    return (round(sel.duration, 6), tuple(sel.timestamps), tuple(round(h.score, 5) for h in sel.frames))


def corpus_answer(root: Path, encoder) -> list[tuple]:
    with CorpusIndex.open(root / "index", encoder, read_only=True) as idx:
        result = MomentSearcher(idx, encoder).search(_query(encoder), top_k=6)
    return [(m.video_id, m.path, round(m.start, 4), round(m.end, 4), round(m.score, 4)) for m in result.moments]


def _flip(path: Path, offset: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _offsets(path: Path, n: int, seed: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    rng = random.Random(seed)
    fixed = [0, 8, 16, size // 2, size - 1]  # headers, the middle, the tail
    return [(min(o, size - 1), rng.randrange(8)) for o in fixed] + [
        (rng.randrange(size), rng.randrange(8)) for _ in range(n)
    ]


def _copy(pristine: Path, work: Path) -> Path:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work, symlinks=True)
    return work


def _a_entry(root: Path, encoder) -> dict[str, Path]:
    store = FrameEmbeddingStore(root / "cache", encoder)
    stem = store.path_for(root / "videos" / "a.mp4").with_suffix("")
    return {
        ".npy": stem.with_suffix(".npy"),
        ".ts.npy": stem.with_name(stem.name + ".ts.npy"),
        ".json": stem.with_suffix(".json"),
    }


@pytest.mark.parametrize("kind", [".npy", ".ts.npy", ".json"])
def test_flipped_cache_entry_is_recomputed_never_served(pristine, tiny_encoder, tmp_path, kind, caplog):
    reference = temporal_answer(pristine, tiny_encoder)
    target = _a_entry(pristine, tiny_encoder)[kind]
    outcomes = {"right": 0, "error": 0}
    for offset, bit in _offsets(target, FLIPS_PER_FILE, seed=len(kind)):
        work = _copy(pristine, tmp_path / "w")
        _flip(_a_entry(work, tiny_encoder)[kind], offset, bit)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agent_tools.store"):
            try:
                got = temporal_answer(work, tiny_encoder)
            except VideoseekError:
                outcomes["error"] += 1
                continue
        assert got == reference, f"flip at byte {offset} bit {bit} of {kind} answered differently"
        outcomes["right"] += 1
        warned = [r for r in caplog.records if "damaged cache entry" in r.getMessage()]
        assert len(warned) == 1  # every flip is caught (checksums), with exactly one warning
        if warned:  # recomputed and stored again: the next open reads it without a warning
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="agent_tools.store"):
                assert temporal_answer(work, tiny_encoder) == reference
            assert not [r for r in caplog.records if "damaged cache entry" in r.getMessage()]
    assert outcomes["right"] + outcomes["error"] == FLIPS_PER_FILE + 5


def _index_targets(root: Path) -> dict[str, Path]:
    index = root / "index"
    return {
        "catalog.sqlite": index / "catalog.sqlite",
        "shard": sorted((index / "shards").glob("*.npz"))[0],
        "main.faiss": index / "vectors" / "main.faiss",
        "delta.faiss": index / "vectors" / "delta.faiss",
        "checksums.json": index / "vectors" / "checksums.json",
    }


@pytest.mark.parametrize("kind", ["catalog.sqlite", "shard", "main.faiss", "delta.faiss", "checksums.json"])
def test_flipped_index_file_answers_right_or_errors_and_update_repairs(
    pristine, tiny_encoder, tmp_path, kind, caplog
):
    reference = corpus_answer(pristine, tiny_encoder)
    assert len({m[0] for m in reference}) == 3  # every video takes part in the answer
    target = _index_targets(pristine)[kind]
    flips = _offsets(target, 3 * FLIPS_PER_FILE if kind == "catalog.sqlite" else FLIPS_PER_FILE, seed=7)
    if kind == "catalog.sqlite":  # bits inside the rows themselves, not only free space
        data = target.read_bytes()
        for needle in (b"a.mp4", b"indexed", b"tiny-untrained", reference[0][0].encode()):
            at = data.find(needle)
            while at != -1:
                flips.append((at + 1, 0))
                at = data.find(needle, at + 1)
    seen = {"right": 0, "error": 0, "skipped": 0}
    store_dir = tmp_path / "w"
    for offset, bit in flips:
        work = _copy(pristine, store_dir)
        path = _index_targets(work)[kind]
        _flip(path, offset, bit)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            try:
                got = corpus_answer(work, tiny_encoder)
            except VideoseekError as exc:
                assert "damaged" in str(exc) or "cannot" in str(exc) or "checksum" in str(exc), str(exc)
                seen["error"] += 1
                continue
        if got == reference:
            seen["right"] += 1
            if kind.endswith(".faiss"):  # caught by its checksum, rebuilt from the shards
                assert any("checksum" in r.getMessage() for r in caplog.records)
        else:
            # only a damaged shard may change the answer: its video is left out, with a warning
            assert kind == "shard", f"flip at byte {offset} bit {bit} of {kind} answered differently: {got}"
            warned = " ".join(r.getMessage() for r in caplog.records)
            assert path.name in warned and "damaged" in warned
            skipped = {m[0] for m in reference} - {m[0] for m in got}
            assert len(skipped) == 1 and got == [m for m in reference if m[0] not in skipped][: len(got)]
            seen["skipped"] += 1
        if kind == "main.faiss" or got != reference:
            # `videoseek index` repairs: the damaged FAISS file or shard is rewritten whole
            store = FrameEmbeddingStore(work / "cache", tiny_encoder)
            with CorpusIndex.open(work / "index", tiny_encoder, store=store) as idx:
                report = idx.update([pristine / "videos"])  # the catalog holds these paths
            assert not report.failed
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                assert corpus_answer(work, tiny_encoder) == reference
            assert not [r for r in caplog.records if "damaged" in r.getMessage() or "checksum" in r.getMessage()]
    assert sum(seen.values()) == len(flips)
    if kind in ("catalog.sqlite", "shard"):  # the flips inside rows and arrays were caught
        assert seen["error"] + seen["skipped"] > 0, seen
