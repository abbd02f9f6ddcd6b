"""Errors that say what was wrong and what is valid.

Every error videoseek raises on bad input derives from :class:`VideoseekError`
(a ``ValueError``), so MCP turns it into an ``isError`` result, LangChain into a
``ToolMessage(status="error")`` and the CLI into a one-line message; the model
reading it can fix its call.

- :class:`VideoReadError` - a missing, unreadable, corrupt or non-video file (names the file).
- :class:`InvalidWindowError` - a time window that is reversed, negative or outside the video
  (states the valid range).
- :class:`InvalidArgumentError` - any other argument outside its valid set.
- :class:`EncoderUnavailableError` - an encoder whose weights are not on this machine (says how
  to get them).
- :class:`UnknownVideoError` - a video id or path the index / media roots do not know.
- :class:`IndexCorruptError` - an index directory that cannot be loaded.
"""

from __future__ import annotations

__all__ = [
    "VideoseekError",
    "VideoReadError",
    "InvalidWindowError",
    "InvalidArgumentError",
    "EncoderUnavailableError",
    "UnknownVideoError",
    "IndexCorruptError",
]


class VideoseekError(ValueError):
    """Base class: an input the caller can correct."""


class VideoReadError(VideoseekError):
    """A video file that is missing, unreadable, corrupt, truncated or not a video."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path!r}: {reason}")


class InvalidWindowError(VideoseekError):
    """A time window outside ``[0, duration]`` or with ``start_time >= end_time``."""


class InvalidArgumentError(VideoseekError):
    """An argument outside its valid set."""


class EncoderUnavailableError(VideoseekError):
    """An encoder that cannot be loaded here (unknown name or weights not available)."""


class UnknownVideoError(VideoseekError):
    """A video reference that resolves to nothing the caller may read."""


class IndexCorruptError(VideoseekError):
    """An index directory that exists but cannot be loaded."""
