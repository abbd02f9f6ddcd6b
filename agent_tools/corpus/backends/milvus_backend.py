"""Milvus as the corpus's vector backend (``videoseek index --backend milvus``).

:class:`MilvusVectorIndex` keeps segment vectors in one Milvus collection, through
``pymilvus``'s ``MilvusClient``:

- **Milvus Lite** - a URI that is a local file ending in ``.db`` (default
  ``<index>/vectors/milvus.db``): an embedded Milvus started by the client, for tests and one
  machine (``pip install pymilvus milvus-lite``).
- **Milvus cluster** - ``http(s)://host:19530`` (token from ``VIDEOSEEK_MILVUS_TOKEN``): the
  same code, for corpora past one machine. The collection is named after the index folder, so
  many indexes can share one cluster.

Each row is ``id`` (INT64 primary key = the catalog's vector id), ``vector`` (FLOAT_VECTOR,
inner product), and the segment's ``video_id`` / ``start`` / ``end`` (copied from the catalog
when the vector is added), so filters by video and time range run *in the database* as Milvus
boolean expressions (:func:`filter_expr`, :meth:`MilvusVectorIndex.search` ``filter=``).

The FAISS vocabulary maps onto Milvus: ``delta`` = rows added since the last ``save``
(``flush``), ``main`` = flushed rows, ``merge`` = flush plus, when the kind changes (``auto``:
FLAT up to ``flat_max`` vectors, IVF_FLAT above; or an explicit ``flat`` / ``ivf`` / ``hnsw``), a
re-index. Removals are Milvus deletes (no tombstones here). Rows are written with ``upsert``, so
re-adding an id after a crash never duplicates it. Consistency level ``Strong``: a search sees
every write acknowledged before it.

Crash safety comes from the caller: the SQLite catalog is the truth and
:meth:`~agent_tools.corpus.builder.CorpusIndex._reconcile` deletes ids that are not indexed and
re-adds indexed ones that are missing, whatever Milvus kept of an interrupted run.

Usage::

    vi = MilvusVectorIndex(512, uri="/data/index/vectors/milvus.db", segment_info=catalog.lookup_segments)
    vi.add(ids, vecs); vi.save(None)
    scores, ids = vi.search(q, 10, filter=filter_expr(video_ids=["ab12cd34ef56"], time_range=(30, 90)))
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from agent_tools.corpus.vector_index import DELTA_MAX, FLAT_MAX, KINDS, ivf_nlist
from agent_tools.errors import InvalidArgumentError, VideoseekError

__all__ = ["DEFAULT_DB", "MilvusVectorIndex", "collection_name", "default_uri", "filter_expr"]

log = logging.getLogger(__name__)

DEFAULT_DB = "milvus.db"
"""File name of the Milvus Lite database inside ``<index>/vectors``."""
_BATCH = 5000
"""Rows per upsert / delete / query request (bounded request size)."""
_MAX_LIMIT = 16384
"""Milvus's largest ``limit`` per search."""
_INDEX_TYPES = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW"}
_KIND_OF = {v: k for k, v in _INDEX_TYPES.items()}


class _Part:
    """A count standing in for a FAISS index in ``main`` / ``delta`` (``ntotal`` only)."""

    def __init__(self, n: int):
        self.ntotal = int(n)


def default_uri(index_dir: Path) -> str:
    """The Milvus Lite file of an index folder."""
    return str(Path(index_dir) / "vectors" / DEFAULT_DB)


def collection_name(index_dir: Path) -> str:
    """Collection name for an index folder: ``videoseek_`` + 12 hex digits of its resolved path."""
    key = str(Path(index_dir).expanduser().resolve()).encode("utf-8", "surrogateescape")
    return "videoseek_" + hashlib.blake2b(key, digest_size=6).hexdigest()


def _quote(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expr(
    video_ids: Sequence[str] | None = None, time_range: tuple[float, float] | None = None
) -> str | None:
    """A Milvus boolean expression selecting segments of some videos and/or overlapping a time range.

    Args:
        video_ids: Keep only these videos' segments.
        time_range: ``(start, end)`` seconds; keep segments overlapping it.

    Returns:
        The expression, or ``None`` when nothing is filtered.

    Raises:
        InvalidArgumentError: An empty video list or a reversed / non-finite range.
    """
    parts = []
    if video_ids is not None:
        ids = list(video_ids)
        if not ids:
            raise InvalidArgumentError("video_ids is empty; pass at least one video id, or None for all")
        parts.append(f"video_id in [{', '.join(_quote(v) for v in ids)}]")
    if time_range is not None:
        lo, hi = (float(t) for t in time_range)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            raise InvalidArgumentError(f"time_range must be (start, end) with start <= end; got {time_range!r}")
        parts.append(f"end > {lo!r} and start < {hi!r}")
    return " and ".join(parts) if parts else None


_LITE_USERS: dict[str, int] = {}
"""Open :class:`MilvusVectorIndex` objects per Milvus Lite file in this process (its server
thread is stopped, and the file released for other processes, when the last one closes)."""
_LITE_LOCK = threading.Lock()


def _release_lite(uri: str) -> None:
    with _LITE_LOCK:
        _LITE_USERS[uri] = _LITE_USERS.get(uri, 1) - 1
        if _LITE_USERS[uri] > 0:
            return
        _LITE_USERS.pop(uri, None)
    try:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)
    except Exception as exc:  # noqa: BLE001 - older milvus-lite: released at process exit
        log.debug("could not release Milvus Lite server for %s: %s", uri, exc)


def _client(uri: str, token: str | None):
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:  # pragma: no cover - exercised where the extra is missing
        raise VideoseekError(
            "the milvus vector backend needs pymilvus (and milvus-lite for a local .db file): "
            "pip install 'videoseek[scale]'  (or: pip install pymilvus milvus-lite)"
        ) from exc
    kwargs = {"uri": uri}
    if token:
        kwargs["token"] = token
    lite = uri.endswith(".db")
    deadline = time.monotonic() + (15.0 if lite else 0.0)
    while True:
        try:
            client = MilvusClient(**kwargs)
            if lite:
                with _LITE_LOCK:
                    _LITE_USERS[uri] = _LITE_USERS.get(uri, 0) + 1
            return client
        except Exception as exc:
            if time.monotonic() < deadline:  # another process may be releasing the file right now
                time.sleep(0.5)
                continue
            hint = (
                "is milvus-lite installed (pip install milvus-lite), and is no other process holding this "
                "file? (a Milvus Lite file serves one process; use a Milvus server URI for several)"
                if lite
                else "is the Milvus server reachable at that URI, and the token right?"
            )
            raise VideoseekError(f"cannot open Milvus at {uri!r}: {exc}; {hint}") from exc


class MilvusVectorIndex:
    """Segment vectors in a Milvus collection (see the module docstring).

    Args:
        dim: Vector width.
        uri: Milvus Lite file (``*.db``) or server URI.
        collection: Collection name.
        kind: ``auto``, ``flat``, ``ivf`` or ``hnsw``.
        segment_info: Maps ids to ``(video_id, start, end)`` (the catalog's ``lookup_segments``);
            ids it does not know are stored with an empty video id.
        delta_max: Unflushed rows that trigger a merge (flush) on ``add``.
        flat_max: ``auto`` uses FLAT up to this many vectors, IVF_FLAT above.
        token: Milvus token (``user:password`` or an API key) for a cluster.
        read_only: Never write (a search-only open, e.g. one of several server replicas):
            ``add`` / ``remove`` / ``merge`` do nothing, so a reader's reconcile cannot race the
            one writer; stale hits are dropped by the catalog lookup, as with FAISS.

    Raises:
        InvalidArgumentError: Bad ``kind``.
        VideoseekError: pymilvus / milvus-lite missing, or Milvus unreachable.
    """

    def __init__(
        self,
        dim: int,
        uri: str,
        collection: str = "videoseek_segments",
        kind: str = "auto",
        segment_info: Callable[[list[int]], dict] | None = None,
        delta_max: int = DELTA_MAX,
        flat_max: int = FLAT_MAX,
        token: str | None = None,
        read_only: bool = False,
    ):
        if kind not in KINDS:
            raise InvalidArgumentError(f"index kind must be one of {', '.join(KINDS)}; got {kind!r}")
        self.dim = int(dim)
        self.uri = str(uri)
        self.collection = collection
        self.kind = kind
        self.segment_info = segment_info
        self.delta_max = int(delta_max)
        self.flat_max = int(flat_max)
        self.tombstones: set = set()  # Milvus deletes directly; kept for the shared surface
        self.rebuilds = 0
        self.main_read_only = self.read_only = bool(read_only)
        self.last_build: dict | None = None
        self._pending = 0
        self._index_kind: str | None = None
        self._param: int | None = None
        self._nlist: int | None = None
        if self.uri.endswith(".db"):
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = _client(self.uri, token)
        self._ensure_collection()
        self._count = self._count_rows()

    # ------------------------------------------------------------------ setup
    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        c = self.client
        if not c.has_collection(self.collection):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
            schema.add_field("video_id", DataType.VARCHAR, max_length=64)
            schema.add_field("start", DataType.DOUBLE)
            schema.add_field("end", DataType.DOUBLE)
            c.create_collection(self.collection, schema=schema, consistency_level="Strong")
            log.info("created Milvus collection %s at %s", self.collection, self.uri)
        else:
            desc = c.describe_collection(self.collection)
            for f in desc.get("fields", []):
                if f.get("name") == "vector":
                    got = int(f.get("params", {}).get("dim", self.dim))
                    if got != self.dim:
                        raise InvalidArgumentError(
                            f"Milvus collection {self.collection} at {self.uri} holds {got}-d vectors, "
                            f"this index {self.dim}-d; use another --milvus-uri or --index"
                        )
        indexes = c.list_indexes(self.collection)
        if indexes:
            info = c.describe_index(self.collection, indexes[0])
            self._index_kind = _KIND_OF.get(str(info.get("index_type", "FLAT")).upper(), "flat")
            self._param = self._default_param(self._index_kind, int(info.get("total_rows", 0) or 0), info)
        else:
            self._create_index(self.target_kind(0))
        c.load_collection(self.collection)

    def _default_param(self, kind: str, n: int, info: dict | None = None) -> int | None:
        if kind == "ivf":
            nlist = int((info or {}).get("nlist", 0) or ivf_nlist(max(n, 1)))
            self._nlist = nlist
            # a sixteenth of the lists (at least 16): FAISS's tuning lands at 16-32 on clustered 512-d
            # data with nlist ~1,800 (benchmarks/bench_scale.py); Milvus Lite searches exhaustively anyway
            return int(min(nlist, max(16, nlist // 16)))
        if kind == "hnsw":
            return 128
        return None

    def _create_index(self, kind: str, n: int = 0) -> None:
        params: dict = {}
        if kind == "ivf":
            params = {"nlist": ivf_nlist(max(n, 1))}
        elif kind == "hnsw":
            params = {"M": 32, "efConstruction": 80}
        ip = self.client.prepare_index_params()
        ip.add_index(field_name="vector", index_type=_INDEX_TYPES[kind], metric_type="IP", params=params)
        self.client.create_index(self.collection, ip)
        self._index_kind = kind
        self._param = self._default_param(kind, n, params)

    def _count_rows(self) -> int:
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    # ------------------------------------------------------------------ facts
    @property
    def main(self) -> _Part | None:
        """Flushed rows (``None`` while there are none)."""
        n = self._count - self._pending
        return _Part(n) if n > 0 else None

    @property
    def delta(self) -> _Part:
        """Rows added since the last flush."""
        return _Part(self._pending)

    @property
    def ntotal(self) -> int:
        """Live vectors."""
        return self._count

    @property
    def main_kind(self) -> str | None:
        """The Milvus index type as ``flat`` / ``ivf`` / ``hnsw`` (``None`` while empty)."""
        return self._index_kind if self.main is not None else None

    @property
    def search_param(self) -> int | None:
        """``nprobe`` (IVF_FLAT) or ``ef`` (HNSW); ``None`` for FLAT."""
        return self._param if self.main is not None else None

    def target_kind(self, n: int) -> str:
        """Kind the collection's index should have for ``n`` vectors."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= self.flat_max else "ivf"

    def ids(self) -> np.ndarray:
        """All ids in the collection (one pass of a query iterator)."""
        it = self.client.query_iterator(self.collection, filter="", output_fields=["id"], batch_size=16384)
        parts = []
        try:
            while True:
                rows = it.next()
                if not rows:
                    break
                parts.append(np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows)))
        finally:
            it.close()
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ edits
    def add(self, ids: np.ndarray, vectors: np.ndarray, merge: bool = True) -> None:
        """Upsert vectors with their segment's video id and span (from ``segment_info``).

        Args:
            ids: int64 ids.
            vectors: ``(n, dim)`` L2-normalised vectors.
            merge: Allow a flush when more than ``delta_max`` rows are unflushed.
        """
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidArgumentError(f"vectors must have shape (n, {self.dim}); got {x.shape}")
        if len(ids) != len(x):
            raise InvalidArgumentError(f"got {len(ids)} ids for {len(x)} vectors; pass one id per vector")
        if not len(ids):
            return
        if self.read_only:
            log.info("read-only Milvus open: not adding %d vectors (a writable open repairs them)", len(ids))
            return
        info = self.segment_info(ids.tolist()) if self.segment_info is not None else {}
        for lo in range(0, len(ids), _BATCH):
            rows = []
            for i in range(lo, min(lo + _BATCH, len(ids))):
                vid, s, e = info.get(int(ids[i]), ("", 0.0, 0.0))
                rows.append({"id": int(ids[i]), "vector": x[i], "video_id": vid, "start": s, "end": e})
            self.client.upsert(self.collection, rows)
        self._count = self._count_rows()  # upsert of an id already there does not add a row
        self._pending = min(self._pending + len(ids), self._count)
        if merge and self._pending > self.delta_max:
            self.merge()

    def remove(self, ids: Iterable[int]) -> int:
        """Delete ids; returns how many were present."""
        arr = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
        if self.read_only:
            log.info("read-only Milvus open: not deleting %d vectors (a writable open repairs them)", len(arr))
            return 0
        present = 0
        for lo in range(0, len(arr), _BATCH):
            part = arr[lo : lo + _BATCH].tolist()
            expr = f"id in [{', '.join(map(str, part))}]"
            present += len(self.client.query(self.collection, filter=expr, output_fields=["id"]))
            self.client.delete(self.collection, filter=expr)
        if present:
            self._count = self._count_rows()
            self._pending = min(self._pending, self._count)
        return present

    def merge(self, force_rebuild: bool = False) -> None:
        """Flush; re-index when forced or when the kind for the new size differs (counted in ``rebuilds``)."""
        if self.read_only:
            return
        want = self.target_kind(self._count)
        if force_rebuild or want != self._index_kind:
            self._reindex(want)
        self._flush()

    def _reindex(self, kind: str) -> None:
        c = self.client
        had = self._count - self._pending > 0
        c.release_collection(self.collection)
        for name in c.list_indexes(self.collection):
            c.drop_index(self.collection, name)
        self._create_index(kind, self._count)
        c.load_collection(self.collection)
        if had:
            self.rebuilds += 1
        self.last_build = {"kind": kind, "param": self._param}
        log.info("Milvus collection %s re-indexed as %s", self.collection, _INDEX_TYPES[kind])

    def compact(self) -> bool:
        """Ask Milvus to compact deleted rows away (asynchronous on a cluster); nothing to save after."""
        try:
            self.client.compact(self.collection)
        except Exception as exc:  # noqa: BLE001 - compaction is an optimisation
            log.info("Milvus compaction not run: %s", exc)
        return False

    def _flush(self) -> None:
        try:
            self.client.flush(self.collection)
        except Exception as exc:  # noqa: BLE001 - Milvus Lite persists without an explicit flush
            log.debug("flush: %s", exc)
        self._pending = 0

    def save(self, folder=None) -> None:
        """Make every acknowledged write durable (a Milvus flush). ``folder`` is ignored."""
        if not self.read_only:
            self._flush()

    def close(self) -> None:
        """Close the client; the last one on a Milvus Lite file releases the file for other processes."""
        if self.client is None:
            return
        try:
            self.client.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            log.debug("closing the Milvus client: %s", exc)
        self.client = None
        if self.uri.endswith(".db"):
            _release_lite(self.uri)

    # ------------------------------------------------------------------ search
    def search(
        self, queries: np.ndarray, k: int, filter: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner-product search, optionally restricted by a boolean ``filter`` expression.

        Args:
            queries: ``(nq, dim)`` or ``(dim,)`` unit vectors.
            k: Results per query (at most 16384, Milvus's limit).
            filter: A Milvus expression over ``video_id`` / ``start`` / ``end`` (see :func:`filter_expr`).

        Returns:
            ``(scores, ids)``, each ``(nq, k)``; missing results have id ``-1`` and score ``-inf``.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InvalidArgumentError(f"vectors must have shape (n, {self.dim}); got {q.shape}")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgumentError(f"k must be an integer >= 1; got {k!r}")
        nq = len(q)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        out = np.full((nq, k), -1, dtype=np.int64)
        if self._count == 0:
            return scores, out
        limit = int(min(k, _MAX_LIMIT, self._count))
        res = self.client.search(
            self.collection, data=list(q), limit=limit, filter=filter or "",
            search_params=self._search_params(limit, filtered=bool(filter)),
        )
        for row, hits in enumerate(res):
            for j, h in enumerate(hits[:k]):
                out[row, j] = int(h["id"])
                scores[row, j] = float(h["distance"])
        return scores, out

    def _search_params(self, limit: int, filtered: bool) -> dict:
        """Search parameters: IVF probes every list under a filter (the filter keeps few rows, and probing
        only some lists returns fewer than ``k`` of them); HNSW's ``ef`` is at least ``limit``."""
        params: dict = {"metric_type": "IP", "params": {}}
        if self._index_kind == "ivf" and self._param:
            nprobe = self._nlist if filtered else None
            params["params"] = {"nprobe": int(min(nprobe or self._param, 65536))}
        elif self._index_kind == "hnsw" and self._param:
            params["params"] = {"ef": int(max(self._param, limit))}
        return params

    def search_segments(
        self,
        query: np.ndarray,
        k: int,
        video_ids: Sequence[str] | None = None,
        time_range: tuple[float, float] | None = None,
    ) -> list[tuple[int, str, float, float, float]]:
        """Filtered search returning ``(id, video_id, start, end, score)``, best first (filter in Milvus)."""
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if q.shape[1] != self.dim:
            raise InvalidArgumentError(f"query must have width {self.dim}; got {q.shape[1]}")
        if self._count == 0:
            return []
        limit = int(min(k, _MAX_LIMIT, self._count))
        expr = filter_expr(video_ids, time_range) or ""
        params = self._search_params(limit, filtered=bool(expr))
        res = self.client.search(
            self.collection,
            data=list(q),
            limit=limit,
            filter=expr,
            output_fields=["video_id", "start", "end"],
            search_params=params,
        )
        return [
            (int(h["id"]), h["entity"]["video_id"], float(h["entity"]["start"]), float(h["entity"]["end"]),
             float(h["distance"]))
            for h in res[0]
        ]


def token_from_env() -> str | None:
    """The Milvus token from ``VIDEOSEEK_MILVUS_TOKEN`` (never stored in the index)."""
    return os.environ.get("VIDEOSEEK_MILVUS_TOKEN") or None
