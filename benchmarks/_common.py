"""Helpers shared by the benchmark scripts: timing, synthetic inputs, pinned thread counts."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable

__all__ = ["timeit", "pct", "bench_dir", "synthetic_video", "one_core"]


def one_core() -> None:
    """Pin numpy/torch/FFmpeg math to one thread (call before heavy imports where possible)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch

    torch.set_num_threads(1)


def timeit(fn: Callable[[], object], repeat: int = 50, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def bench_dir() -> Path:
    d = Path(os.environ.get("VIDEOSEEK_BENCH_DIR", "bench_out"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def synthetic_video(name: str, seconds: float, fps: float = 25, size=(320, 240), gop_seconds: float = 10) -> Path:
    """A cached synthetic H.264 video (frame index painted in), made with ffmpeg when present."""
    import shutil
    import subprocess

    path = bench_dir() / name
    if path.exists():
        return path
    t0 = time.perf_counter()
    if shutil.which("ffmpeg"):
        w, h = size
        res = subprocess.run(
            [
                "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}:duration={seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-g", str(int(fps * gop_seconds)), "-pix_fmt", "yuv420p", str(path),
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise RuntimeError(f"ffmpeg could not make {path.name} (rc {res.returncode}): {res.stderr.strip()[-2000:]}")
    else:
        from agent_tools.synthetic import write_indexed_video

        write_indexed_video(path, duration=seconds, fps=fps, size=size, scene_seconds=30, gop=int(fps * gop_seconds))
    print(f"  (made {path.name}: {seconds:.0f}s {size[0]}x{size[1]} @ {fps:g} fps in {time.perf_counter() - t0:.1f}s)")
    return path


def summary(xs: list[float]) -> str:
    return f"p50 {pct(xs, 50) * 1e3:.2f} ms, p95 {pct(xs, 95) * 1e3:.2f} ms, mean {statistics.mean(xs) * 1e3:.2f} ms"
