"""videoseek's engines and agent adapters.

Engines (no MCP, LangChain or TRL imports):

- :mod:`agent_tools.video` - video reading (PyAV / decord) behind one interface.
- :mod:`agent_tools.encoders` - the image-text encoder registry (open_clip).
- :mod:`agent_tools.store` - per-video frame embeddings, computed once, cached on disk.
- :mod:`agent_tools.dpp` - relevance-conditioned DPP frame selection.
- :mod:`agent_tools.temporal` - :class:`TemporalSearcher`, search inside one video.
- :mod:`agent_tools.corpus` - the corpus index and :class:`MomentSearcher`.
- :mod:`agent_tools.speech` - transcripts (ASR / subtitles) and transcript search, one video or a corpus.
- :mod:`agent_tools.metrics` - retrieval / grounding / temporal-search metrics (and TVR's official rule).
- :mod:`agent_tools.evaluation` / :mod:`agent_tools.world` - ``videoseek eval`` and the synthetic world.
- :mod:`agent_tools.types` - the pydantic results every surface shares.

Adapters: :mod:`agent_tools.langchain_tools`, :mod:`agent_tools.graphs`,
:mod:`agent_tools.policies`, :mod:`agent_tools.observations`, :mod:`agent_tools.cli`.

Names below are imported lazily, so ``import agent_tools`` stays cheap.
"""

from __future__ import annotations

import importlib

from . import _tvshim  # noqa: F401  (hook: torchvision imports even where its ops cannot load; no-op otherwise)

__version__ = "0.1.0"

__all__ = [
    "Settings",
    "get_settings",
    "load_encoder",
    "list_encoders",
    "FrameEmbeddingStore",
    "TemporalSearcher",
    "CorpusIndex",
    "MomentSearcher",
    "FrameSelection",
    "FrameHit",
    "Moment",
    "MomentSearchResult",
    "VideoInfo",
    "VideoseekError",
    "open_video",
    "probe",
    "load_policy",
    "build_temporal_graph",
    "build_corpus_graph",
]

_LAZY = {
    "Settings": ".config",
    "get_settings": ".config",
    "load_encoder": ".encoders",
    "list_encoders": ".encoders",
    "FrameEmbeddingStore": ".store",
    "TemporalSearcher": ".temporal",
    "CorpusIndex": ".corpus",
    "MomentSearcher": ".corpus",
    "FrameSelection": ".types",
    "FrameHit": ".types",
    "Moment": ".types",
    "MomentSearchResult": ".types",
    "VideoInfo": ".types",
    "VideoseekError": ".errors",
    "open_video": ".video",
    "probe": ".video",
    "load_policy": ".policies",
    "build_temporal_graph": ".graphs",
    "build_corpus_graph": ".graphs",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'agent_tools' has no attribute {name!r}")
