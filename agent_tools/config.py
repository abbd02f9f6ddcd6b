"""Settings shared by the CLI, the MCP server, the agent graphs and the tests.

Every field can be set from an environment variable prefixed ``VIDEOSEEK_``
(``VIDEOSEEK_ENCODER=tiny-untrained``, ``VIDEOSEEK_CACHE_DIR=/data/cache``,
``VIDEOSEEK_MEDIA_ROOTS=/videos:/mnt/clips``) or from a ``.env`` file.

Usage::

    from agent_tools.config import get_settings
    settings = get_settings()          # read once from the environment
    settings.cache_dir                 # Path, created on first use by the store
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from .errors import InvalidArgumentError

__all__ = ["Settings", "SettingsError", "get_settings", "default_cache_dir", "default_index_dir"]


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return Path(base) if base else Path.home() / fallback


def default_cache_dir() -> Path:
    """Per-user cache directory (``$XDG_CACHE_HOME/videoseek``), never beside the videos."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "videoseek"


def default_index_dir() -> Path:
    """Per-user corpus index directory (``$XDG_DATA_HOME/videoseek/index``)."""
    return _xdg("XDG_DATA_HOME", ".local/share") / "videoseek" / "index"


class Settings(BaseSettings):
    """videoseek configuration (environment prefix ``VIDEOSEEK_``)."""

    model_config = SettingsConfigDict(env_prefix="VIDEOSEEK_", env_file=".env", extra="ignore")

    encoder: str = Field(
        "siglip-b16",
        description="Registry name of the image-text encoder (see `videoseek encoders`).",
    )
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Frame-embedding cache.")
    index_dir: Path = Field(default_factory=default_index_dir, description="Corpus index directory.")
    device: str = Field("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    sample_fps: float = Field(2.0, gt=0, le=30, description="Frames per second embedded per video.")
    max_frames: int = Field(8, ge=1, le=64, description="Cap on frames one temporal search returns.")
    video_backend: Literal["auto", "pyav", "decord"] = Field(
        "auto", description="Video decoder; 'auto' picks the fastest per access pattern."
    )
    batch_size: int = Field(64, ge=1, description="Frames per encoder batch.")
    vector_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="Vector backend of a new corpus index (an index keeps its own; see docs 'Scale')."
    )
    milvus_uri: Optional[str] = Field(
        None, description="Milvus of a new 'milvus' index: a Milvus Lite *.db file or http://host:19530."
    )
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders the MCP server may read videos from (os.pathsep-separated in the env).",
    )
    allow_urls: bool = Field(False, description="Let the MCP server open http(s) URLs.")
    speech: bool = Field(
        True, description="Index and search what is said (when faster-whisper and the ASR model are installed)."
    )
    asr_model: str = Field(
        "whisper-tiny.en", description="ASR model: speech registry name, faster-whisper model name or folder."
    )
    text_encoder: str = Field(
        "minilm-l6", description="Sentence-embedding model for transcript search (speech registry name or folder)."
    )
    max_query_chars: int = Field(1000, ge=1, description="Longest text query accepted (characters).")
    max_video_duration_s: float = Field(
        4 * 3600.0, gt=0, description="MCP: longest video the server embeds for a first search (seconds)."
    )
    max_video_pixels: int = Field(
        4096 * 2304, ge=1, description="MCP: largest frame (width x height) the server embeds or previews."
    )
    max_embed_queue: int = Field(
        4, ge=1, description="MCP: first-time embedding passes queued or running at once (FIFO, one runs)."
    )
    mcp_token: Optional[SecretStr] = Field(
        None, description="MCP over HTTP: bearer token every request must carry (required off loopback)."
    )

    @field_validator("media_roots", mode="before")
    @classmethod
    def _split_roots(cls, value):
        if isinstance(value, str):
            return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
        return value

    @field_validator("cache_dir", "index_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class SettingsError(InvalidArgumentError):
    """A setting (``VIDEOSEEK_*`` variable, ``.env`` line or override) with an invalid value."""


def _valid_values(name: str) -> str:
    """What a field accepts, in words (from its type and constraints)."""
    import typing

    field = Settings.model_fields.get(name)
    if field is None:
        return "see the README's settings table"
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(ann))
    base = args[0] if typing.get_origin(ann) is typing.Union and len(args) == 1 else ann
    kind = {int: "an integer", float: "a number", bool: "true or false", Path: "a path"}.get(base, "text")
    bounds = []
    for meta in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
    return kind + (" " + " and ".join(bounds) if bounds else "")


def get_settings(**overrides) -> Settings:
    """Read settings from the environment, with explicit keyword overrides on top.

    Raises:
        SettingsError: a value is invalid; the one-line message names the ``VIDEOSEEK_*``
            variable (or the override) and what it accepts.
    """
    from pydantic import ValidationError
    from pydantic_settings import SettingsError as _ParseError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err.get("loc") else "?"
            if name in given:
                where = f"{name}={given[name]!r}"
            else:
                var = f"VIDEOSEEK_{name.upper()}"
                where = f"{var}={os.environ.get(var, err.get('input'))!r}"
            problems.append(f"{where} is invalid ({err['msg']}); valid: {_valid_values(name)}")
        raise SettingsError("; ".join(problems)) from None
    except _ParseError as exc:  # a value pydantic-settings could not even parse
        raise SettingsError(f"{exc} (see the README's settings table)") from None
