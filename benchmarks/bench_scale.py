"""Scale benchmark: indexing on Ray vs one process; FAISS-IVF vs Milvus Lite; per-frame costs.

Three parts (``--parts``):

- ``ray``    - the same folder of synthetic videos (``--videos`` x ``--seconds``, 320x240 25 fps
  H.264) indexed twice from a cold frame store: ``CorpusIndex.update`` in this process, then
  ``--engine ray`` with ``--workers`` encoder actors on a local Ray (``num_cpus=workers``).
  Prints both wall times, Ray's start-up, and the ratio (single / Ray; > 1 means Ray is faster).
- ``vectors`` - ``--n`` clustered 512-d segment vectors (``bench_corpus.make_vectors``) in a
  FAISS IVF index (nlist 4 sqrt(N), nprobe tuned to recall 0.97) and in a Milvus Lite
  collection (IVF_FLAT, same nlist, nprobe = nlist / 4): insert / build time, single-query
  latency p50 / p95, recall@10 against exact search.
- ``frame``  - per-frame costs on this machine: decode at 2 fps (``ffmpeg``-backed reader) and
  the encoder per frame (the ``tiny-untrained`` model here; no real weights on this machine).

``--json-out F`` writes every figure. The projection in ``benchmarks/README.md`` ("Scale")
combines the ``frame`` figures with published GPU throughput.

Usage::

    python benchmarks/bench_scale.py                          # all parts, N = 1,000,000
    python benchmarks/bench_scale.py --parts vectors --n 200000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["bench_frame", "bench_ray", "bench_vectors", "main"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _videos(n: int, seconds: float) -> list[Path]:
    from _common import synthetic_video

    return [synthetic_video(f"scale_{i}_{seconds:g}s.mp4", seconds, fps=25, size=(320, 240)) for i in range(n)]


def bench_ray(n_videos: int, seconds: float, workers: int) -> dict:
    """Single-process vs Ray indexing of the same folder from a cold store."""
    import ray

    from agent_tools.corpus import CorpusIndex
    from agent_tools.corpus.ray_engine import ray_update
    from agent_tools.encoders import load_encoder
    from agent_tools.store import FrameEmbeddingStore

    vids = _videos(n_videos, seconds)
    folder = Path(tempfile.mkdtemp(prefix="vs-scale-"))
    for i, v in enumerate(vids):  # distinct content per copy: the store keys by content
        dst = folder / f"v{i}.mp4"
        shutil.copy(v, dst)
        with open(dst, "ab") as fh:
            fh.write(b"\0" * (i + 1))  # trailing bytes change the fingerprint, not the decoded frames
    enc = load_encoder("tiny-untrained", device="cpu")
    res: dict = {"videos": n_videos, "seconds_each": seconds, "workers": workers}
    try:
        idx = CorpusIndex.open(folder / "idx1", enc, store=FrameEmbeddingStore(folder / "c1", enc, sample_fps=2.0))
        t = time.perf_counter()
        rep = idx.update([folder])
        res["single_s"] = time.perf_counter() - t
        frames = sum(r.num_frames for r in idx.list_videos("indexed"))
        idx.close()
        assert len(rep.added) == n_videos, rep
        res["frames"] = frames
        t = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        res["ray_start_s"] = time.perf_counter() - t
        idx = CorpusIndex.open(folder / "idx2", enc, store=FrameEmbeddingStore(folder / "c2", enc, sample_fps=2.0))
        t = time.perf_counter()
        rep = ray_update(idx, [folder], "tiny-untrained", folder / "c2", workers=workers, device="cpu")
        res["ray_s"] = time.perf_counter() - t
        idx.close()
        assert len(rep.added) == n_videos, rep
        ray.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    res["ratio_single_over_ray"] = res["single_s"] / res["ray_s"]
    res["ratio_incl_start"] = res["single_s"] / (res["ray_s"] + res["ray_start_s"])
    _say(
        f"[ray] {n_videos} videos x {seconds:g}s ({frames} frames at 2 fps): single process {res['single_s']:.1f}s, "
        f"Ray {workers} workers {res['ray_s']:.1f}s (+{res['ray_start_s']:.1f}s Ray start); "
        f"ratio single/Ray = {res['ratio_single_over_ray']:.2f}x ({res['ratio_incl_start']:.2f}x with start-up)"
    )
    return res


def _latency(fn, qs) -> list[float]:
    out = []
    for q in qs:
        t = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t)
    return out


def bench_vectors(n: int, dim: int = 512, nq: int = 200) -> dict:
    """FAISS IVF vs Milvus Lite IVF_FLAT over the same ``n`` vectors."""
    import faiss
    from bench_corpus import _queries, make_vectors

    from agent_tools.corpus.backends.milvus_backend import MilvusVectorIndex
    from agent_tools.corpus.vector_index import VectorIndex

    t = time.perf_counter()
    x, video_c, rng = make_vectors(n, dim, per_video=2000, topics=max(10, n // 20000))
    ids = np.arange(n, dtype=np.int64)
    q = _queries(video_c, nq, rng, dim)
    _, gt = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    res: dict = {"n": n, "dim": dim, "queries": nq, "data_s": time.perf_counter() - t}

    def recall(got: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), gt.tolist())]))

    vi = VectorIndex(dim, kind="ivf", use_gpu=False)
    t = time.perf_counter()
    info = vi.build(ids, x)
    res["faiss_build_s"] = time.perf_counter() - t
    lat = _latency(lambda v: vi.search(v[None, :], 10), q)
    got = np.concatenate([vi.search(v[None, :], 10)[1] for v in q])
    res["faiss"] = {
        "nlist": info["nlist"], "nprobe": info["param"], "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p95_ms": 1000 * float(np.percentile(lat, 95)), "recall@10": recall(got),
    }
    vi = None  # free the FAISS index before Milvus starts
    _say(
        f"[vectors] FAISS IVF{info['nlist']} nprobe {info['param']}: build {res['faiss_build_s']:.1f}s, "
        f"p50 {res['faiss']['p50_ms']:.2f} ms, p95 {res['faiss']['p95_ms']:.2f} ms, recall@10 {res['faiss']['recall@10']:.3f}"
    )
    folder = Path(tempfile.mkdtemp(prefix="vs-milvus-"))
    try:
        mv = MilvusVectorIndex(dim, uri=str(folder / "m.db"), kind="ivf", flat_max=0)
        t = time.perf_counter()
        for lo in range(0, n, 50_000):
            mv.add(ids[lo : lo + 50_000], x[lo : lo + 50_000], merge=False)
        res["milvus_insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        mv.merge(force_rebuild=True)
        res["milvus_index_s"] = time.perf_counter() - t
        mv.search(q[:1], 10)
        lat = _latency(lambda v: mv.search(v[None, :], 10), q)
        got = np.concatenate([mv.search(v[None, :], 10)[1] for v in q])
        res["milvus"] = {
            "index": mv.main_kind, "nprobe": mv.search_param, "p50_ms": 1000 * float(np.percentile(lat, 50)),
            "p95_ms": 1000 * float(np.percentile(lat, 95)), "recall@10": recall(got),
            "disk_mb": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20,
        }
        mv.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    res["latency_ratio_milvus_over_faiss"] = res["milvus"]["p50_ms"] / res["faiss"]["p50_ms"]
    _say(
        f"[vectors] Milvus Lite {res['milvus']['index']} nprobe {res['milvus']['nprobe']}: insert "
        f"{res['milvus_insert_s']:.1f}s + index {res['milvus_index_s']:.1f}s, p50 {res['milvus']['p50_ms']:.2f} ms, "
        f"p95 {res['milvus']['p95_ms']:.2f} ms, recall@10 {res['milvus']['recall@10']:.3f}; "
        f"p50 ratio Milvus/FAISS = {res['latency_ratio_milvus_over_faiss']:.1f}x"
    )
    return res


def bench_frame(seconds: float = 120.0) -> dict:
    """Decode-at-2-fps and encode costs per sampled frame on this machine (320x240 source)."""
    from agent_tools.encoders import load_encoder
    from agent_tools.video import open_video

    (path,) = _videos(1, seconds)
    enc = load_encoder("tiny-untrained", device="cpu")
    t = time.perf_counter()
    imgs = []
    with open_video(path, access="sequential") as r:
        for _, rgb in r.iter_sampled(2.0, size=(enc.image_size, enc.image_size)):
            imgs.append(rgb)
    dec = (time.perf_counter() - t) / len(imgs)
    batch = np.stack(imgs)
    enc.encode_images(batch[:64])
    t = time.perf_counter()
    enc.encode_images(batch, batch_size=64)
    encode = (time.perf_counter() - t) / len(imgs)
    res = {"frames": len(imgs), "decode_ms_per_frame": 1000 * dec, "encode_ms_per_frame_tiny": 1000 * encode}
    _say(
        f"[frame] {len(imgs)} frames at 2 fps from 320x240 H.264: decode {res['decode_ms_per_frame']:.2f} ms/frame, "
        f"tiny encoder {res['encode_ms_per_frame_tiny']:.2f} ms/frame (CPU, this machine)"
    )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="frame,ray,vectors")
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors for the FAISS / Milvus part")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)
    out: dict = {}
    parts = args.parts.split(",")
    if "frame" in parts:
        out["frame"] = bench_frame()
    if "ray" in parts:
        out["ray"] = bench_ray(args.videos, args.seconds, args.workers)
    if "vectors" in parts:
        out["vectors"] = bench_vectors(args.n)
    if args.json_out:
        args.json_out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
