"""Corpus-index benchmark: build, query latency, recall@10 vs exact search, memory, adding one video.

Builds a real corpus index (SQLite catalog, per-video shards, FAISS main + delta) from N
synthetic *moment vectors*, clustered the way segment embeddings of real videos are:
``topics`` centres; each video a point near a topic; each segment a point near its video.
The vectors go through :meth:`CorpusIndex.ingest` (one video at a time, as ``update`` does
after embedding) with one segment per sampled frame, then the FAISS main index is built
(``auto`` → IVF above 50k vectors, nlist ≈ 4√N, nprobe tuned).

Figures printed (and written as JSON with ``--json-out``):

- ingest time (catalog + shards), FAISS build time (train / add / tune), nlist, nprobe;
- single-query latency p50 / p95 of the vector search (the FAISS part of a corpus query) and of
  a full ``MomentSearcher.search`` (retrieval + localisation), one query at a time;
- recall@10 of the vector search against exact ``IndexFlatIP`` over the same vectors;
- recall@10 of "far" queries (twice as far from their video) and an nprobe sweep (IVF);
- memory and open time of a fresh ``CorpusIndex.open`` (writable: read into RAM; read-only:
  memory-mapped), measured in a subprocess; size on disk;
- adding one more video (``--per-video`` vectors) to the large index: time, and proof that the
  main index was neither rebuilt nor rewritten (same file mtime, same ``rebuilds`` counter).

Usage::

    python benchmarks/bench_corpus.py                 # 1,000,000 vectors, 512-d (several minutes)
    python benchmarks/bench_corpus.py --n 100000      # scaled down
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

__all__ = ["main", "make_vectors"]

VIDEO_SIGMA = 0.7  # norm of a video's offset from its topic centre
SEGMENT_SIGMA = 0.6  # norm of a segment's offset from its video centre (queries are drawn the same way)


class _SyntheticEncoder:
    """Stands in for an encoder: the index only needs its name, key and width."""

    trained = False

    def __init__(self, dim: int):
        self.name = "bench-synthetic"
        self.cache_key = f"bench-synthetic-{dim}"
        self.dim = dim


def make_vectors(n: int, dim: int, per_video: int, topics: int, seed: int = 0):
    """Clustered unit vectors: ``(x float32 (n, dim), video_centres, rng)``."""
    rng = np.random.default_rng(seed)
    n_videos = -(-n // per_video)
    centres_t = rng.standard_normal((topics, dim), dtype=np.float32)
    centres_t /= np.linalg.norm(centres_t, axis=1, keepdims=True)
    # a video sits near its topic (cos ≈ 0.82); its segments near the video (cos ≈ 0.86)
    video_c = centres_t[rng.integers(0, topics, n_videos)] + (
        VIDEO_SIGMA / np.sqrt(dim)
    ) * rng.standard_normal((n_videos, dim), dtype=np.float32)
    video_c /= np.linalg.norm(video_c, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    for v in range(n_videos):
        lo, hi = v * per_video, min(n, (v + 1) * per_video)
        x[lo:hi] = video_c[v] + (SEGMENT_SIGMA / np.sqrt(dim)) * rng.standard_normal(
            (hi - lo, dim), dtype=np.float32
        )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float16).astype(np.float32)  # what the shards and FAISS hold
    return x, video_c, rng


def _queries(video_c: np.ndarray, nq: int, rng, dim: int, sigma: float = SEGMENT_SIGMA) -> np.ndarray:
    v = rng.integers(0, len(video_c), nq)
    q = video_c[v] + (sigma / np.sqrt(dim)) * rng.standard_normal((nq, dim), dtype=np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _open_in_subprocess(idx_dir: Path, dim: int, read_only: bool, query: np.ndarray) -> dict:
    """Open the index in a fresh interpreter and run one query: times and the RSS it adds."""
    import subprocess

    code = (
        "import json, time, psutil, sys, numpy as np; sys.path.insert(0, %r)\n"
        "from bench_corpus import _SyntheticEncoder\n"
        "from agent_tools.corpus import CorpusIndex\n"
        "p = psutil.Process(); r0 = p.memory_info().rss; t = time.perf_counter()\n"
        "idx = CorpusIndex.open(%r, _SyntheticEncoder(%d), read_only=%r)\n"
        "t1 = time.perf_counter(); idx.vectors.search(np.array(%r, dtype=np.float32), 10)\n"
        "print(json.dumps({'open_s': t1 - t, 'first_query_s': time.perf_counter() - t1,"
        " 'rss_added_bytes': p.memory_info().rss - r0, 'rss_bytes': p.memory_info().rss}))\n"
    ) % (str(Path(__file__).resolve().parent), str(idx_dir), dim, read_only, query.tolist())
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:  # the child's own error, not the (query-sized) command line
        raise RuntimeError(f"opening the index in a subprocess failed (rc {res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _pct(a, p) -> float:
    return float(np.percentile(np.asarray(a) * 1000, p))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="moment vectors in the index")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument(
        "--per-video", type=int, default=2000, help="vectors per synthetic video (≈1.1 h at 2 s stride)"
    )
    ap.add_argument("--topics", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--kind", default="auto", choices=["auto", "flat", "ivf", "hnsw"])
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where to build (default: a temp dir, deleted)"
    )
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args(argv)

    import faiss

    from agent_tools.corpus import CorpusIndex, MomentSearcher

    out: dict = {
        "n": args.n,
        "dim": args.dim,
        "per_video": args.per_video,
        "kind": args.kind,
        "faiss": faiss.__version__,
        "omp_threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
    }
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    idx_dir = work / "index"
    if idx_dir.exists():
        shutil.rmtree(idx_dir)
    enc = _SyntheticEncoder(args.dim)
    sample_fps = 2.0
    step = 1.0 / sample_fps

    def fe_for(vectors: np.ndarray, fp: str):
        ts = np.arange(len(vectors)) * step
        return SimpleNamespace(
            timestamps=ts,
            embeddings=vectors.astype(np.float16),
            fingerprint=fp,
            info=SimpleNamespace(duration=len(vectors) * step, fps=25.0),
        )

    t = time.perf_counter()
    x, video_c, rng = make_vectors(args.n, args.dim, args.per_video, args.topics)
    out["generate_s"] = time.perf_counter() - t
    print(f"generated {args.n} x {args.dim} clustered vectors in {out['generate_s']:.1f}s", file=sys.stderr)

    # ---- build: ingest every video (catalog + shard + delta), then build the main index
    idx = CorpusIndex.open(idx_dir, enc, kind=args.kind, sample_fps=sample_fps, window_s=step, stride_s=step)
    t = time.perf_counter()
    n_videos = -(-args.n // args.per_video)
    for v in range(n_videos):
        lo, hi = v * args.per_video, min(args.n, (v + 1) * args.per_video)
        idx.ingest(f"/synthetic/video{v:06d}.mp4", fe_for(x[lo:hi], f"{v:032x}"))
    out["ingest_s"] = time.perf_counter() - t
    print(f"ingested {n_videos} videos in {out['ingest_s']:.1f}s", file=sys.stderr)
    t = time.perf_counter()
    ids_all = np.arange(args.n, dtype=np.int64)
    assert np.array_equal(np.sort(idx.vectors.ids()), ids_all), "vector ids are not 0..n-1"
    before = idx.vectors.delta.ntotal
    idx._finalize()  # what update() does at the end of a run: builds the main index once, saves
    out["faiss_build_s"] = time.perf_counter() - t
    out["faiss_build_breakdown"] = idx.vectors.last_build  # train / add / tune seconds (rest: copy + save)
    out["main_kind"] = idx.vectors.main_kind
    out["search_param"] = idx.vectors.search_param
    if out["main_kind"] == "ivf":
        out["nlist"] = int(faiss.extract_index_ivf(idx.vectors.main).nlist)
    out["build_total_s"] = out["ingest_s"] + out["faiss_build_s"]
    print(
        f"built {out['main_kind']} main index over {before} vectors in {out['faiss_build_s']:.1f}s "
        f"(param {out['search_param']})",
        file=sys.stderr,
    )
    idx.close()
    del idx
    gc.collect()

    # ---- memory and load time of the built index
    disk = sum(p.stat().st_size for p in idx_dir.rglob("*") if p.is_file())
    out["disk_bytes"] = disk
    out["main_faiss_bytes"] = (idx_dir / "vectors" / "main.faiss").stat().st_size
    probe_q = _queries(video_c, 1, np.random.default_rng(99), args.dim)[0]
    out["open_writable"] = _open_in_subprocess(idx_dir, args.dim, False, probe_q)
    out["open_read_only_mmap"] = _open_in_subprocess(idx_dir, args.dim, True, probe_q)
    print(
        f"open: writable {out['open_writable']['open_s']:.2f}s "
        f"(+{out['open_writable']['rss_added_bytes'] / 2**30:.2f} GiB RSS), read-only/mmap "
        f"{out['open_read_only_mmap']['open_s']:.2f}s",
        file=sys.stderr,
    )
    idx = CorpusIndex.open(idx_dir, enc)

    # ---- queries: latency one at a time, recall@10 against exact search
    q = _queries(video_c, args.queries, rng, args.dim)
    _, gt = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact (IndexFlatIP semantics)
    vi = idx.vectors
    for i in range(min(20, len(q))):  # warm-up
        vi.search(q[i : i + 1], 10)

    def recall_and_latency(queries, truth, nq):
        """recall@10 of the first ``nq`` queries, searched one at a time, and their latencies."""
        lat_, got_ = [], []
        for i in range(nq):
            t0 = time.perf_counter()
            _, ids_ = vi.search(queries[i : i + 1], 10)
            lat_.append(time.perf_counter() - t0)
            got_.append(ids_[0])
        r = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(got_, truth[:nq])]))
        return r, lat_

    def recall_of(queries, truth, nq):
        r, lat_ = recall_and_latency(queries, truth, nq)
        return r, _pct(lat_, 50)

    recall, lat = recall_and_latency(q, gt, len(q))
    out.update(query_p50_ms=_pct(lat, 50), query_p95_ms=_pct(lat, 95), recall_at_10=recall)

    # harder queries: twice the distance from their video (cos ≈ 0.64 to its centre)
    far = _queries(video_c, min(300, args.queries), rng, args.dim, sigma=2 * SEGMENT_SIGMA)
    _, gt_far = faiss.knn(far, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    out["far_recall_at_10"], out["far_query_p50_ms"] = recall_of(far, gt_far, len(far))
    if vi.main_kind == "ivf":
        ivf = faiss.extract_index_ivf(vi.main)
        tuned = ivf.nprobe
        sweep = {}
        for p in (1, 2, 4, 8, 16, 32, 64):
            ivf.nprobe = p
            r, p50 = recall_of(q, gt, min(300, len(q)))
            rf, _ = recall_of(far, gt_far, len(far))
            sweep[p] = {"recall_at_10": r, "far_recall_at_10": rf, "p50_ms": p50}
        ivf.nprobe = tuned
        out["nprobe_sweep"] = sweep
        print(
            "nprobe sweep: "
            + ", ".join(
                f"{p}: R@10 {v['recall_at_10']:.3f}/{v['far_recall_at_10']:.3f} {v['p50_ms']:.2f} ms"
                for p, v in sweep.items()
            ),
            file=sys.stderr,
        )
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(x)
    lat_flat = []
    for i in range(min(100, len(q))):
        t = time.perf_counter()
        flat.search(q[i : i + 1], 10)
        lat_flat.append(time.perf_counter() - t)
    out["exact_flat_p50_ms"] = _pct(lat_flat, 50)
    del flat
    gc.collect()
    print(
        f"vector query p50 {out['query_p50_ms']:.2f} ms, p95 {out['query_p95_ms']:.2f} ms, "
        f"recall@10 {recall:.4f} (exact flat p50 {out['exact_flat_p50_ms']:.1f} ms)",
        file=sys.stderr,
    )

    ms = MomentSearcher(idx, enc)
    lat_m = []
    for i in range(min(200, len(q))):
        t = time.perf_counter()
        ms.search(q[i], top_k=5)
        lat_m.append(time.perf_counter() - t)
    out.update(moment_search_p50_ms=_pct(lat_m, 50), moment_search_p95_ms=_pct(lat_m, 95))
    print(
        f"full moment search p50 {out['moment_search_p50_ms']:.1f} ms, "
        f"p95 {out['moment_search_p95_ms']:.1f} ms",
        file=sys.stderr,
    )

    # ---- add one video to the large index
    main_file = idx_dir / "vectors" / "main.faiss"
    mtime = main_file.stat().st_mtime_ns
    rebuilds, main_n = vi.rebuilds, vi.main.ntotal
    newv = video_c[0] + (SEGMENT_SIGMA / np.sqrt(args.dim)) * rng.standard_normal(
        (args.per_video, args.dim), dtype=np.float32
    )
    newv = (newv / np.linalg.norm(newv, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    t = time.perf_counter()
    rec = idx.ingest("/synthetic/new_video.mp4", fe_for(newv, "f" * 32))
    rebuilt = idx._finalize()
    out["add_one_video_s"] = time.perf_counter() - t
    out["add_one_video_vectors"] = args.per_video
    out["add_rebuilt_main"] = bool(rebuilt or vi.rebuilds != rebuilds)
    out["add_rewrote_main_file"] = main_file.stat().st_mtime_ns != mtime
    out["add_main_ntotal_unchanged"] = vi.main.ntotal == main_n
    hit = ms.search(newv[7], top_k=1).moments[0]
    out["added_video_found"] = hit.video_id == rec.video_id
    t = time.perf_counter()
    idx.close()
    idx = CorpusIndex.open(idx_dir, enc)
    out["reopen_after_add_s"] = time.perf_counter() - t
    out["reopen_holds_added"] = idx.vectors.ntotal == args.n + args.per_video
    print(
        f"added one video ({args.per_video} vectors) in {out['add_one_video_s'] * 1000:.0f} ms; "
        f"rebuilt main: {out['add_rebuilt_main']}, rewrote main file: {out['add_rewrote_main_file']}",
        file=sys.stderr,
    )
    idx.close()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)

    print(json.dumps(out, indent=1))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
