"""Distributed embedding for the corpus index on Ray Data (``videoseek index --engine ray``).

The expensive part of indexing is decoding and encoding frames; the catalog and vector writes
are cheap and must stay single-writer to keep their crash-safety promises. So the Ray engine
splits the work that way:

0. The driver scans the paths and keeps the files ``update`` would read (new, or size / mtime
   changed); with none, Ray is not started at all.
1. **Read stage** (Ray tasks, ``map``): per video file, fingerprint it and check the shared
   frame-embedding store (:mod:`agent_tools.store`); videos whose entry is already there
   are passed over (``cached``).
2. **Encode stage** (``map_batches`` with an actor class, ``concurrency`` actors, one CPU each,
   or ``num_gpus=1`` each when CUDA is visible): each actor loads the encoder from the registry
   once and, per video, decodes the sampled frames (the store's threaded decoder) and encodes
   them in batches of ``batch_size`` frames.
3. **Writer**: the store itself - atomic, checksummed, locked per entry - writes the
   embeddings into the shared cache folder (a local disk here, a shared file system on a
   cluster). Many actors write concurrently; the store's per-entry file lock makes each video
   computed once.

The driver then runs the ordinary :meth:`CorpusIndex.update
<agent_tools.corpus.builder.CorpusIndex.update>`, which finds every video's embeddings in the
store and only pools segments and writes shards, catalog rows and vectors. The resulting index
is the one the single-process build makes (same store entries, same code from there on).

Failures: a task whose worker dies (``os._exit``, OOM kill, a lost node) is retried by Ray
(``max_restarts`` / ``max_task_retries`` / ``max_errored_blocks``); only that task's video is
redone, finished videos are already in the store. If a video is still missing after the Ray
pass, the engine runs another pass over just the missing ones (``passes``). A file that cannot
be decoded is reported by the actor and left to ``update``, which records it as failed with the
reason, exactly as the single-process build does.

Progress: :class:`RayProgress` events with videos done, videos/s and ETA.

Usage::

    from agent_tools.corpus.ray_engine import ray_update
    report = ray_update(index, ["~/videos"], encoder_name="siglip-b16", cache_dir=settings.cache_dir,
                        address=None, workers=2)          # BuildReport, like index.update()
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_tools.errors import VideoseekError

__all__ = ["EmbedActor", "RayProgress", "init_ray", "ray_embed", "ray_update"]

log = logging.getLogger(__name__)


@dataclass
class RayProgress:
    """One progress event of the Ray pass: ``done`` of ``total`` videos, rate and ETA."""

    done: int
    total: int
    videos_per_s: float
    eta_s: float | None
    path: str = ""
    status: str = ""  # "embedded", "cached", "failed"


def _require_ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise VideoseekError(
            "--engine ray needs Ray Data: pip install 'videoseek[scale]'  (or: pip install 'ray[data]')"
        ) from exc
    return ray


def init_ray(address: str | None = None, workers: int | None = None) -> bool:
    """Connect to Ray: a cluster at ``address`` (``auto`` or ``ray://host:10001``), else a local instance.

    Returns:
        True if this call started Ray (the caller shuts it down).
    """
    ray = _require_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or max(1, (os.cpu_count() or 2)), include_dashboard=False, log_to_driver=False)
    return True


class EmbedActor:
    """Ray Data actor: one encoder + one store per actor; embeds each video into the shared store.

    Args:
        encoder_name: Registry name of the encoder.
        device: ``cpu`` / ``cuda`` / ``auto``.
        cache_dir: The shared store's root.
        sample_fps: Frames per second.
        batch_size: Frames per encoder call.
    """

    def __init__(self, encoder_name: str, device: str, cache_dir: str, sample_fps: float, batch_size: int):
        from agent_tools.encoders import load_encoder
        from agent_tools.store import FrameEmbeddingStore

        self.encoder = load_encoder(encoder_name, device=device)
        self.store = FrameEmbeddingStore(cache_dir, self.encoder, sample_fps=sample_fps, batch_size=batch_size)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        _fault_hook()
        status, frames, seconds = [], [], []
        for path, warm in zip(batch["path"], batch["warm"]):
            t = time.perf_counter()
            if warm:
                status.append("cached")
                frames.append(0)
                seconds.append(0.0)
                continue
            try:
                fe = self.store.get(path)
                status.append("embedded")
                frames.append(len(fe.timestamps))
            except Exception as exc:  # noqa: BLE001 - reported per video; update() records the reason
                status.append(f"failed: {type(exc).__name__}: {exc}")
                frames.append(0)
            seconds.append(time.perf_counter() - t)
        return {
            "path": np.asarray(batch["path"], dtype=object),
            "status": np.asarray(status, dtype=object),
            "frames": np.asarray(frames, dtype=np.int64),
            "seconds": np.asarray(seconds, dtype=np.float64),
        }


def _fault_hook() -> None:
    """Test hook: ``VIDEOSEEK_RAY_CRASH_ONCE=<file>`` - the first actor call to claim the file dies."""
    marker = os.environ.get("VIDEOSEEK_RAY_CRASH_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(3)


def _read_stage(cache_dir: str, encoder_key: str, sample_fps: float) -> Callable[[dict], dict]:
    def check(row: dict) -> dict:
        from agent_tools.store import STORE_VERSION, fingerprint_file

        try:
            fp = fingerprint_file(row["path"])
        except Exception:  # noqa: BLE001 - unreadable: let the encode stage report why
            return {"path": row["path"], "warm": False}
        side = Path(cache_dir).expanduser() / "frames" / fp[:2] / fp / f"{encoder_key}@{sample_fps:g}fps.json"
        warm = False
        if side.exists():
            try:
                import json

                warm = json.loads(side.read_text()).get("version") == STORE_VERSION
            except Exception:  # noqa: BLE001 - damaged sidecar: recompute
                warm = False
        return {"path": row["path"], "warm": warm}

    return check


def ray_embed(
    files: list[str],
    encoder_name: str,
    encoder_key: str,
    cache_dir: str | os.PathLike,
    sample_fps: float,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    progress: Callable[[RayProgress], None] | None = None,
) -> dict[str, str]:
    """Embed ``files`` into the shared frame store on the connected Ray cluster.

    Args:
        files: Video paths (absolute; visible to every worker).
        encoder_name: Registry name of the encoder.
        encoder_key: Its ``cache_key`` (store entries are keyed by it).
        cache_dir: The store root (shared by all workers).
        sample_fps: Frames per second.
        batch_size: Frames per encoder call.
        workers: Encoder actors (``concurrency``).
        device: Encoder device in the actors; with CUDA visible to Ray each actor takes one GPU.
        progress: Called once per finished video.

    Returns:
        ``{path: status}`` for the videos processed (``embedded``, ``cached`` or ``failed: ...``).
    """
    ray = _require_ray()  # imports ray.data too
    if not files:
        return {}
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0 and (device == "auto" or device.startswith("cuda"))
    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = 0  # a failing block is retried by Ray, never silently dropped
    # one block per video up to 2,000 blocks: a retried task redoes few videos (and finished ones
    # come back from the store in milliseconds)
    ds = ray.data.from_items([{"path": str(f)} for f in files], override_num_blocks=min(len(files), 2000))
    # the read stage is I/O (16 small reads per file): no CPU reserved, so it never waits on the actors
    ds = ds.map(_read_stage(str(cache_dir), encoder_key, sample_fps), num_cpus=0)
    ds = ds.map_batches(
        EmbedActor,
        fn_constructor_args=(encoder_name, "cuda" if use_gpu else "cpu", str(cache_dir), sample_fps, batch_size),
        batch_size=1,  # one video per call: a dead worker costs one video
        compute=ray.data.ActorPoolStrategy(size=max(1, int(workers))),
        num_gpus=1 if use_gpu else 0,
        num_cpus=0 if use_gpu else 1,
        max_restarts=-1,
        max_task_retries=-1,
        zero_copy_batch=True,
    )
    out: dict[str, str] = {}
    t0 = time.perf_counter()
    for row in ds.iter_rows():
        out[row["path"]] = row["status"]
        done = len(out)
        rate = done / max(time.perf_counter() - t0, 1e-9)
        if progress:
            eta = (len(files) - done) / rate if rate > 0 else None
            progress(RayProgress(done, len(files), rate, eta, path=row["path"], status=row["status"]))
    return out


def _changed(index: Any, f: Path) -> bool:
    """Whether ``update`` would read ``f`` (the same size / mtime / shard test it makes first)."""
    row = index.catalog.row(path=str(f))
    if row is None or row["status"] != "indexed":
        return True
    try:
        st = f.stat()
    except OSError:
        return True
    return not (
        row["size_bytes"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns and index._shard_ok(row["shard"])
    )


def _warm(index: Any, path: str) -> bool:
    try:
        return bool(index._store.has(path))
    except Exception:  # noqa: BLE001 - unreadable now: update() records why
        return True


def ray_update(
    index: Any,
    paths: Iterable[str | os.PathLike],
    encoder_name: str,
    cache_dir: str | os.PathLike,
    address: str | None = None,
    workers: int = 2,
    batch_size: int = 64,
    device: str = "auto",
    passes: int = 2,
    progress: Callable[[RayProgress], None] | None = None,
    build_progress: Any = None,
) -> Any:
    """Embed on Ray, then update ``index`` from the warm store (same result as ``index.update``).

    Args:
        index: An open, writable :class:`~agent_tools.corpus.builder.CorpusIndex` whose store
            uses ``cache_dir``.
        paths: Files and folders, as for ``update``.
        encoder_name: Registry name of the index's encoder (actors load it by name).
        cache_dir: The frame store root (must be visible to every Ray worker).
        address: Ray cluster address; ``None`` starts a local instance with ``workers`` CPUs.
        workers: Encoder actors.
        batch_size: Frames per encoder call.
        device: Encoder device in the actors.
        passes: Ray passes at most (a later pass redoes only videos still missing).
        progress: Ray pass progress (:class:`RayProgress`).
        build_progress: Passed to ``index.update`` as its ``progress``.

    Returns:
        The :class:`~agent_tools.types.BuildReport` of the final ``update``.

    Raises:
        VideoseekError: Ray is not installed, or the index has no encoder.
        InvalidArgumentError: The index is read-only or being updated elsewhere.
    """
    index._require_encoder()
    files, _, _, _ = index._scan(paths)
    todo = [str(f) for f in files if _changed(index, f)]
    if not todo:  # nothing new or changed: no Ray at all
        return index.update(paths, progress=build_progress)
    started = init_ray(address, workers)
    try:
        key, fps = index.encoder.cache_key, float(index.meta["sample_fps"])
        for attempt in range(max(1, passes)):
            if not todo:
                break
            t = time.perf_counter()
            status = ray_embed(
                todo, encoder_name, key, cache_dir, fps, batch_size=batch_size, workers=workers,
                device=device, progress=progress,
            )
            log.info("ray pass %d: %d videos in %.1fs", attempt + 1, len(status), time.perf_counter() - t)
            todo = [p for p in todo if not status.get(p, "").startswith("failed") and not _warm(index, p)]
    finally:
        if started:
            import ray

            ray.shutdown()
    return index.update(paths, progress=build_progress)
