"""Corpus search: which video, and which moment of it, matches a query (VCMR).

Map of the package:

- :mod:`.catalog` - :class:`Catalog`, the SQLite catalog (one row per video: path, fingerprint,
  duration, fps, status, error; a ``segments`` table mapping int64 vector ids to
  ``(video_id, start, end)``). The source of truth.
- :mod:`.vector_index` - :class:`VectorIndex`, FAISS main index (exact / IVF / HNSW, chosen
  automatically or by flag) plus a small exact delta index, so adding a video never rebuilds.
- :mod:`.faiss_util` - its stateless helpers: :func:`index_ids`, :func:`ivf_nlist`, the
  ``checksums.json`` digests of the FAISS files.
- :mod:`.builder` - :class:`CorpusIndex`: ``open`` (``read_only=True`` memory-maps a large
  index for search-only use), reconcile with the catalog, ``list_videos``, ``get_video``,
  ``status``, cached shard reads.
- :mod:`.updating` - its write path (:class:`IndexWriter`, a mixin of :class:`CorpusIndex`):
  incremental/resumable/crash-safe ``update``, ``remove``, ``ingest`` (precomputed embeddings),
  ``rebuild_vectors``, :class:`BuildProgress` events.
- :mod:`.shards` - :class:`Shard` (one video's stored frames and segment vectors),
  :func:`segment_windows`, :func:`pool_segments`.
- :mod:`.moments` - :class:`MomentSearcher`: video retrieval over segment vectors, then
  variable-length moment localisation from frame-level similarity.
- :mod:`.cli` - ``register(app)`` adds ``videoseek index`` and ``videoseek search`` to a Typer app.

Usage::

    from agent_tools.corpus import CorpusIndex, MomentSearcher
    from agent_tools.encoders import load_encoder
    enc = load_encoder("siglip-b16")
    index = CorpusIndex.open(None, enc)                 # per-user default directory
    index.update(["~/videos"])                          # BuildReport
    MomentSearcher(index, enc).search("a red car turns left", top_k=5).moments
"""

from agent_tools.corpus.builder import BuildProgress, CorpusIndex, Shard, segment_windows
from agent_tools.corpus.catalog import Catalog
from agent_tools.corpus.moments import MomentSearcher, encode_query, localize
from agent_tools.corpus.vector_index import VectorIndex

__all__ = [
    "CorpusIndex",
    "MomentSearcher",
    "BuildProgress",
    "Catalog",
    "VectorIndex",
    "Shard",
    "segment_windows",
    "localize",
    "encode_query",
]
