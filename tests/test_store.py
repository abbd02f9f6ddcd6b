"""Frame-embedding store: computed once, reused across processes, atomic, keyed by content."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from agent_tools import store as store_mod
from agent_tools.errors import VideoReadError
from agent_tools.store import FrameEmbeddingStore, fingerprint_file
from agent_tools.synthetic import write_indexed_video


def test_embeds_once_and_reuses(tmp_path, clip20, tiny_encoder, monkeypatch):
    st = FrameEmbeddingStore(tmp_path / "cache", tiny_encoder)
    calls = []
    entry = st.get(clip20, progress=lambda d, t: calls.append((d, t)))
    assert len(entry) == 40 and entry.embeddings.dtype == np.float16 and entry.embeddings.shape == (40, 64)
    assert entry.timestamps.tolist() == pytest.approx([k * 0.5 for k in range(40)])
    assert calls[-1] == (40, 40)
    side = st.path_for(clip20)
    assert side.exists() and tmp_path / "cache" in side.parents and clip20.parent not in side.parents
    meta = json.loads(side.read_text())
    assert meta["count"] == 40 and meta["encoder"] == "tiny-untrained" and meta["sample_fps"] == 2.0

    # a second store (a new process's view) must not decode or encode anything
    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(store_mod, "open_video", boom)
    monkeypatch.setattr(tiny_encoder, "encode_images", boom)
    again = FrameEmbeddingStore(tmp_path / "cache", tiny_encoder).get(clip20)
    np.testing.assert_array_equal(again.embeddings, entry.embeddings)


def test_embeddings_match_direct_encoding(tmp_path, clip20, tiny_encoder):
    from agent_tools.video import fit_size, open_video

    entry = FrameEmbeddingStore(tmp_path, tiny_encoder).get(clip20)
    with open_video(clip20) as r:
        (t, rgb), = r.frames_at([6.5], size=fit_size(160, 120, tiny_encoder.image_size))
    direct = tiny_encoder.encode_images(rgb[None])[0]
    np.testing.assert_allclose(entry.embeddings_f32[13], direct, atol=2e-3)


def test_rate_and_encoder_are_part_of_the_key(tmp_path, clip20, tiny_encoder):
    a = FrameEmbeddingStore(tmp_path, tiny_encoder, sample_fps=2.0)
    b = FrameEmbeddingStore(tmp_path, tiny_encoder, sample_fps=1.0)
    assert a.path_for(clip20) != b.path_for(clip20)
    assert len(b.get(clip20)) == 20


def test_fingerprint_follows_content_not_name(tmp_path, clip20):
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes(clip20.read_bytes())
    assert fingerprint_file(copy) == fingerprint_file(clip20)
    other = write_indexed_video(tmp_path / "other.mp4", duration=20, fps=10, size=(160, 120), seed=2)
    assert fingerprint_file(other) != fingerprint_file(clip20)


def test_crash_before_sidecar_leaves_no_entry(tmp_path, clip20, tiny_encoder, monkeypatch):
    st = FrameEmbeddingStore(tmp_path, tiny_encoder)
    real = store_mod._atomic_write

    def crash_on_sidecar(path, write):
        if path.suffix == ".json":
            raise KeyboardInterrupt("simulated crash")
        real(path, write)

    monkeypatch.setattr(store_mod, "_atomic_write", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        st.get(clip20)
    monkeypatch.setattr(store_mod, "_atomic_write", real)
    fresh = FrameEmbeddingStore(tmp_path, tiny_encoder)
    assert not fresh.has(clip20)
    assert not list(fresh.path_for(clip20).parent.glob(".*.tmp"))
    assert len(fresh.get(clip20)) == 40 and fresh.has(clip20)


def test_damaged_entry_is_recomputed(tmp_path, clip20, tiny_encoder):
    st = FrameEmbeddingStore(tmp_path, tiny_encoder)
    st.get(clip20)
    npy = st.path_for(clip20).with_suffix(".npy")
    npy.write_bytes(b"garbage")
    fresh = FrameEmbeddingStore(tmp_path, tiny_encoder)
    assert len(fresh.get(clip20)) == 40


def test_corrupt_and_truncated_videos_raise(tmp_path, clip20, tiny_encoder):
    st = FrameEmbeddingStore(tmp_path / "c", tiny_encoder)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        st.get(bad)
    # a "faststart" file (index first) cut in half opens fine but stops decoding early
    import av

    fast = tmp_path / "fast.mp4"
    with av.open(str(clip20)) as src, av.open(str(fast), "w", options={"movflags": "faststart"}) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for pkt in src.demux(s_in):
            if pkt.dts is None:
                continue
            pkt.stream = s_out
            dst.mux(pkt)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="cut.mp4"):
        st.get(cut)


def test_concurrent_processes_compute_once(tmp_path, clip20):
    cache = tmp_path / "shared"
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        from agent_tools.encoders import load_encoder
        from agent_tools import store as S
        enc = load_encoder("tiny-untrained", device="cpu")
        real = enc.encode_images
        def counted(*a, **k):
            print("ENCODED", flush=True)
            return real(*a, **k)
        enc.encode_images = counted
        e = S.FrameEmbeddingStore({str(cache)!r}, enc).get({str(clip20)!r})
        np.save(sys.argv[1], e.embeddings)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"out{i}.npy")], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    encoded = [o.count("ENCODED") for o in outs]
    assert sorted(encoded)[0] == 0 and sorted(encoded)[1] >= 1  # exactly one process did the work
    np.testing.assert_array_equal(np.load(tmp_path / "out0.npy"), np.load(tmp_path / "out1.npy"))


def test_parallel_segments_equal_one_pass(tmp_path, tiny_encoder):
    from agent_tools.synthetic import read_frame_index
    from agent_tools.video import open_video

    video = write_indexed_video(tmp_path / "long.mp4", duration=75, fps=8, size=(64, 48), scene_seconds=5, gop=40)
    one = FrameEmbeddingStore(tmp_path / "a", tiny_encoder, decode_workers=1).get(video)
    two = FrameEmbeddingStore(tmp_path / "b", tiny_encoder, decode_workers=3).get(video)
    assert len(one) == 150
    np.testing.assert_array_equal(one.timestamps, two.timestamps)
    np.testing.assert_array_equal(one.embeddings, two.embeddings)
    with open_video(video) as r:
        frames = r.frames_at(two.timestamps[::10].tolist())
    assert [read_frame_index(rgb) for _, rgb in frames] == [round(t * 8) for t in two.timestamps[::10]]


def test_tmp_files_of_a_killed_writer_are_deleted_when_the_entry_is_written(tmp_path, clip20, tiny_encoder):
    """Issue 13 item 8: kill -9 mid-write leaves ``.<stem>.npy.<pid>.<tid>.tmp``; the next write removes it."""
    st = FrameEmbeddingStore(tmp_path, tiny_encoder)
    stem = st.path_for(clip20).with_suffix("")
    stem.parent.mkdir(parents=True)
    left = [stem.parent / f".{stem.name}.npy.99999.1.tmp", stem.parent / f".{stem.name}.ts.npy.99999.1.tmp"]
    other = stem.parent / ".other-encoder@2fps.npy.99999.1.tmp"  # another entry's writer: not ours to touch
    for p in [*left, other]:
        p.write_bytes(b"half")
    assert len(st.get(clip20)) == 40
    assert not any(p.exists() for p in left) and other.exists()


def test_a_failed_video_leaves_no_empty_cache_folder(tmp_path, tiny_encoder):
    """Issue 13 item 8: a video that cannot be embedded leaves nothing under the cache."""
    st = FrameEmbeddingStore(tmp_path / "cache", tiny_encoder)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(VideoReadError):
        st.get(bad)
    assert not [p for p in (tmp_path / "cache" / "frames").rglob("*")]


def test_checksums_in_the_sidecar(tmp_path, clip20, tiny_encoder):
    """Issue 13 item 5: the sidecar holds digests of both arrays and of itself; values are sane."""
    import json

    st = FrameEmbeddingStore(tmp_path, tiny_encoder)
    st.get(clip20)
    side = st.path_for(clip20)
    meta = json.loads(side.read_text())
    assert set(meta["checksums"]) == {"2fps.npy", "2fps.ts.npy"} and len(meta["sidecar_checksum"]) == 32
    meta["video"]["duration"] = 1e9  # a changed fact with a valid JSON syntax
    side.write_text(json.dumps(meta))
    fresh = FrameEmbeddingStore(tmp_path, tiny_encoder)
    assert not fresh.has(clip20)  # not trusted
    assert fresh.get(clip20).info.duration == pytest.approx(20.0)


def test_entry_lock_is_filelock(tmp_path, clip20, tiny_encoder, monkeypatch):
    """Issue 8: the per-entry lock is :mod:`filelock` (no fcntl), so macOS and Windows work."""
    import filelock

    used = []
    real = filelock.FileLock

    def spy(path, *a, **k):
        used.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(store_mod, "FileLock", spy)
    FrameEmbeddingStore(tmp_path, tiny_encoder).get(clip20)
    assert used and used[0].endswith(".lock")
    import agent_tools.corpus.builder as builder
    import agent_tools.corpus.updating as updating  # the index's write lock lives here

    assert "fcntl" not in store_mod.__dict__ and "fcntl" not in builder.__dict__
    assert "fcntl" not in updating.__dict__ and updating.FileLock is filelock.FileLock


def test_threads_reading_an_entry_parse_npy_headers_one_at_a_time(tmp_path, clip20, tiny_encoder, monkeypatch):
    # CPython 3.11's ast.literal_eval (numpy's .npy header parser) can fail spuriously when two threads
    # run it at once (python/cpython#106905); the failed read then looked like a damaged entry
    import threading
    import time as time_mod

    FrameEmbeddingStore(tmp_path, tiny_encoder).get(clip20)
    real_load, inside, most = np.load, [0], [0]
    guard = threading.Lock()

    def counting_load(*a, **k):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time_mod.sleep(0.01)
        try:
            return real_load(*a, **k)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(store_mod.np, "load", counting_load)
    monkeypatch.setattr(tiny_encoder, "encode_images", lambda *a, **k: pytest.fail("an entry was recomputed"))
    stores = [FrameEmbeddingStore(tmp_path, tiny_encoder) for _ in range(8)]  # no shared memory cache
    got, barrier = [], threading.Barrier(len(stores))

    def read(st):
        barrier.wait()
        got.append(len(st.get(clip20)))

    threads = [threading.Thread(target=read, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [40] * 8
    assert most[0] == 1
