"""Light stand-ins for the corpus crash tests, and the script those tests kill mid-build.

- :class:`HashEncoder` / :class:`HashStore` - no torch: the store probes the real file (so a
  corrupt file still fails) and derives per-frame vectors from its content fingerprint.
- ``python tests/corpus_fakes.py MODE INDEX_DIR FILE...`` builds an index and kills itself
  with ``os._exit`` at the point MODE names (see :data:`MODES`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["HashEncoder", "HashStore", "MODES", "CRASH_CODE"]

CRASH_CODE = 17
MODES = (
    "after_two_videos",
    "mid_frames",
    "during_shard_write",
    "before_commit",
    "during_vector_save",
    "none",
)


class HashEncoder:
    name = "hash-test"
    cache_key = "hash-test-16"
    dim = 16
    trained = False


class HashStore:
    """``get(path, progress)`` → FrameEmbeddings at 2 fps, vectors seeded by the fingerprint."""

    sample_fps = 2.0

    def get(self, path, progress=None):
        from agent_tools.store import FrameEmbeddings, fingerprint_file
        from agent_tools.video import probe

        info = probe(path)
        fp = fingerprint_file(path)
        n = max(1, int(np.ceil(info.duration * self.sample_fps - 1e-6)))
        ts = np.arange(n) / self.sample_fps
        rng = np.random.default_rng(int(fp[:8], 16))
        emb = rng.standard_normal((n, HashEncoder.dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        for i in range(n):
            if progress:
                progress(i + 1, n)
        return FrameEmbeddings(ts, emb.astype(np.float16), fp, info, HashEncoder.cache_key, self.sample_fps)


def _run(mode: str, index_dir: str, files: list[str]) -> None:
    import faiss

    from agent_tools.corpus import CorpusIndex
    from agent_tools.corpus import catalog as catalog_mod

    def crash():
        os._exit(CRASH_CODE)

    def progress(ev):
        if mode == "after_two_videos" and ev.stage == "start" and ev.position == 2:
            crash()
        if mode == "mid_frames" and ev.stage == "frames" and ev.position == 1 and ev.done_frames == 5:
            crash()

    if mode == "before_commit":
        real = catalog_mod.Catalog.commit_indexed
        calls = {"n": 0}

        def commit(self, *a, **kw):
            calls["n"] += 1
            if calls["n"] == 2:  # the second video's shard is on disk, its rows are not
                crash()
            return real(self, *a, **kw)

        catalog_mod.Catalog.commit_indexed = commit
    if mode == "during_shard_write":
        from agent_tools.corpus import updating as updating_mod
        from agent_tools.corpus._io import TMP_SUFFIX

        real_write = updating_mod.atomic_write
        shard_calls = {"n": 0}

        def torn_shard(path, writer):
            shard_calls["n"] += 1
            if shard_calls["n"] == 2:  # the second video's shard: half written, never renamed
                tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}{TMP_SUFFIX}")
                tmp.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
                crash()
            return real_write(path, writer)

        updating_mod.atomic_write = torn_shard
    if mode == "during_vector_save":

        def torn_write(index, path):
            Path(path).write_bytes(b"\x00" * 100)  # half a file, then the power goes
            crash()

        faiss.write_index = torn_write
    index = CorpusIndex.open(index_dir, HashEncoder(), store=HashStore())
    index.update(files, progress=progress)
    index.close()


if __name__ == "__main__":
    _run(sys.argv[1], sys.argv[2], sys.argv[3:])
