"""Vector backends of the corpus index: FAISS (default, one machine) or Milvus (Lite or cluster).

Map of the package:

- :mod:`.base` - :class:`VectorBackend` (the surface the builder and searcher use),
  :func:`resolve_backend` (which backend an index uses; recorded in its catalog meta).
- :mod:`.faiss_backend` - the FAISS backend (``VectorIndex``) and its filtered segment search.
- :mod:`.milvus_backend` - :class:`MilvusVectorIndex` over ``pymilvus`` (Milvus Lite file or
  cluster URI), filters as Milvus boolean expressions.

:func:`open_backend` is what :meth:`CorpusIndex.open <agent_tools.corpus.builder.CorpusIndex.open>`
calls for a non-default backend; :func:`search_segments` is the filtered search for either.

Usage::

    CorpusIndex.open(dir, enc, backend="milvus")                         # Milvus Lite in dir/vectors
    CorpusIndex.open(dir, enc, backend="milvus", milvus_uri="http://milvus:19530")
    search_segments(index, q, 10, video_ids=[...], time_range=(0, 60))   # filter in the database
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent_tools.corpus.backends.base import BACKENDS, META_KEY, URI_META_KEY, VectorBackend, resolve_backend

__all__ = [
    "BACKENDS",
    "META_KEY",
    "URI_META_KEY",
    "VectorBackend",
    "open_backend",
    "resolve_backend",
    "search_segments",
]


def open_backend(
    name: str,
    index_dir: Path,
    catalog: Any,
    dim: int,
    kind: str = "auto",
    milvus_uri: str | None = None,
    read_only: bool = False,
    **kwargs,
) -> Any:
    """Open a non-FAISS vector backend for an index (the Milvus URI is recorded in the catalog).

    Args:
        name: ``milvus``.
        index_dir: The index folder.
        catalog: Its catalog (meta, segment lookups).
        dim: Vector width.
        kind: ``auto`` / ``flat`` / ``ivf`` / ``hnsw``.
        milvus_uri: URI for a new index (default: ``VIDEOSEEK_MILVUS_URI``, else a Milvus Lite
            file in ``<index>/vectors``). An index keeps the URI it was created with.
        read_only: Do not record anything in the catalog.
        **kwargs: ``delta_max``, ``flat_max``.

    Raises:
        InvalidArgumentError: A URI other than the one the index uses.
        VideoseekError: pymilvus / milvus-lite missing, or Milvus unreachable.
    """
    from agent_tools.config import get_settings
    from agent_tools.corpus.backends.milvus_backend import (
        MilvusVectorIndex,
        collection_name,
        default_uri,
        token_from_env,
    )
    from agent_tools.errors import InvalidArgumentError

    if name != "milvus":
        raise InvalidArgumentError(f"open_backend opens the milvus backend; got {name!r}")
    stored = catalog.get_meta(URI_META_KEY)
    uri = milvus_uri or stored or getattr(get_settings(), "milvus_uri", None) or default_uri(index_dir)
    if stored is not None and milvus_uri is not None and milvus_uri != stored:
        raise InvalidArgumentError(
            f"this index keeps its vectors at Milvus {stored!r}; pass that --milvus-uri (or none)"
        )
    if stored is None and not read_only:
        catalog.set_meta(URI_META_KEY, uri)
    return MilvusVectorIndex(
        dim,
        uri=uri,
        collection=collection_name(index_dir) if not uri.endswith(".db") else "segments",
        kind=kind,
        segment_info=catalog.lookup_segments,
        token=token_from_env(),
        read_only=read_only,
        **kwargs,
    )


def search_segments(
    index: Any,
    query: np.ndarray,
    k: int = 10,
    video_ids: Sequence[str] | None = None,
    time_range: tuple[float, float] | None = None,
) -> list[tuple[int, str, float, float, float]]:
    """Segments of some videos and/or overlapping a time range that best match ``query``.

    On Milvus the filter is a boolean expression evaluated by the database; on FAISS it is
    applied to the videos' shards (exact) or to widened FAISS hits.

    Args:
        index: A :class:`~agent_tools.corpus.builder.CorpusIndex`.
        query: Unit query vector ``(dim,)``.
        k: Segments to return.
        video_ids: Only these videos.
        time_range: ``(start, end)`` seconds.

    Returns:
        ``(vector_id, video_id, start, end, score)``, best first.
    """
    from agent_tools.corpus.backends.faiss_backend import faiss_search_segments
    from agent_tools.corpus.backends.milvus_backend import filter_expr

    filter_expr(video_ids, time_range)  # validates both the same way for every backend
    if hasattr(index.vectors, "search_segments"):
        return index.vectors.search_segments(query, k, video_ids=video_ids, time_range=time_range)
    return faiss_search_segments(index, query, k, video_ids=video_ids, time_range=time_range)
