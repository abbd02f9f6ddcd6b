"""The vector-backend interface the corpus builder and moment searcher talk to.

A corpus index keeps its segment vectors (int64 id -> L2-normalised vector) in a *vector
backend*; the SQLite catalog stays the source of truth (which ids belong to which indexed
video, and where). Two backends exist:

- ``faiss`` (default, :class:`~agent_tools.corpus.vector_index.VectorIndex`): FAISS files
  under ``<index>/vectors``; one machine.
- ``milvus`` (:class:`~agent_tools.corpus.backends.milvus_backend.MilvusVectorIndex`): a
  Milvus collection, either Milvus Lite (an embedded, file-backed Milvus:
  ``<index>/vectors/milvus.db``) or a Milvus cluster (``http://host:19530``).

The surface, as a :class:`typing.Protocol` (:class:`VectorBackend`): a main part and a small
delta part (``main`` / ``delta`` with an ``ntotal``), ``add`` / ``remove`` / ``search`` /
``ids``, ``merge`` (delta into main), ``compact``, ``save`` (make durable) and facts for
``status``. Whatever a backend holds after a crash, :meth:`CorpusIndex._reconcile
<agent_tools.corpus.builder.CorpusIndex._reconcile>` makes it equal to the catalog's indexed
ids on open (stale ids deleted, missing ones re-added from their shards).

Which backend an index uses is recorded in the catalog meta (:data:`META_KEY`), so every
later open (``search``, the MCP server) uses the same one; :func:`resolve_backend` decides it.

Usage::

    name = resolve_backend(catalog, requested=None, read_only=False)   # "faiss" | "milvus"
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agent_tools.errors import InvalidArgumentError

__all__ = ["BACKENDS", "META_KEY", "URI_META_KEY", "VectorBackend", "resolve_backend"]

BACKENDS = ("faiss", "milvus")
"""Vector backends a corpus index can use."""
META_KEY = "vector_backend"
"""Catalog meta key holding the backend name of an index."""
URI_META_KEY = "milvus_uri"
"""Catalog meta key holding the Milvus URI of an index using the ``milvus`` backend."""


@runtime_checkable
class VectorBackend(Protocol):
    """What the corpus builder and moment searcher need from a vector store."""

    dim: int
    kind: str
    delta_max: int
    tombstones: set
    rebuilds: int

    @property
    def main(self) -> Any:
        """The main part (an object with ``ntotal``), or ``None`` while nothing was merged."""

    @property
    def delta(self) -> Any:
        """The delta part (an object with ``ntotal``)."""

    @property
    def ntotal(self) -> int:
        """Live vectors."""

    @property
    def main_kind(self) -> str | None:
        """``flat`` / ``ivf`` / ``hnsw`` of the main part (``None`` while empty)."""

    @property
    def search_param(self) -> int | None:
        """``nprobe`` (IVF) or ``ef`` (HNSW); ``None`` for exact search."""

    def ids(self) -> np.ndarray:
        """All live ids (unique)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray, merge: bool = True) -> None:
        """Add vectors under ids."""

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids; returns how many were present."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` inner products: ``(scores, ids)``, ``(nq, k)``, padded with ``-inf`` / ``-1``."""

    def merge(self, force_rebuild: bool = False) -> None:
        """Move the delta into the main part (rebuild the main part when forced / kind changes)."""

    def compact(self) -> bool:
        """Drop removed vectors physically; True if something changed."""

    def save(self, folder: Any) -> None:
        """Make everything added / removed so far durable."""


def resolve_backend(catalog: Any, requested: str | None = None, read_only: bool = False) -> str:
    """The backend of the index whose catalog is ``catalog``; records it for a new index.

    An index keeps the backend it was created with. A new index (no backend recorded and no
    vectors yet) takes ``requested``, else the ``VIDEOSEEK_VECTOR_BACKEND`` setting, else
    ``faiss``. An index from before backends were recorded is a FAISS index.

    Args:
        catalog: The index's :class:`~agent_tools.corpus.catalog.Catalog`.
        requested: ``faiss`` / ``milvus`` asked for (``--backend``), or ``None``.
        read_only: Do not write the choice to the catalog.

    Returns:
        The backend name.

    Raises:
        InvalidArgumentError: An unknown backend, or one different from the index's.
    """
    from agent_tools.config import get_settings

    if requested is not None and requested not in BACKENDS:
        raise InvalidArgumentError(f"vector backend must be one of {', '.join(BACKENDS)}; got {requested!r}")
    stored = catalog.get_meta(META_KEY)
    if stored is None and catalog.get_meta("encoder_key") is not None and catalog.counts()["indexed"]:
        stored = "faiss"  # built before the backend was recorded
    if stored is not None:
        if requested is not None and requested != stored:
            raise InvalidArgumentError(
                f"this index keeps its vectors in {stored!r}; it cannot switch to {requested!r}. "
                f"Pass --backend {stored} (or nothing), or use another --index directory for {requested!r}"
            )
        return stored
    name = requested or getattr(get_settings(), "vector_backend", None) or "faiss"
    if name not in BACKENDS:
        raise InvalidArgumentError(
            f"VIDEOSEEK_VECTOR_BACKEND must be one of {', '.join(BACKENDS)}; got {name!r}"
        )
    if not read_only:
        catalog.set_meta(META_KEY, name)
    return name
