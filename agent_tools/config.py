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
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

__all__ = ["Settings", "get_settings", "default_cache_dir", "default_index_dir"]


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
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders the MCP server may read videos from (os.pathsep-separated in the env).",
    )
    allow_urls: bool = Field(False, description="Let the MCP server open http(s) URLs.")

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


def get_settings(**overrides) -> Settings:
    """Read settings from the environment, with explicit keyword overrides on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
