"""Where the MCP server may read videos from: media roots, path checks and URLs.

A tool argument that names a file comes from a model, so it is untrusted. Every path
goes through :class:`MediaResolver`, which

- rejects empty strings, NUL bytes and any ``..`` component outright;
- turns a relative path into ``ROOT/path`` for each configured media root in turn;
- resolves the result with the OS (``Path.resolve``: symlinks followed, ``~`` expanded) and
  accepts it only when the *resolved* path lies under a *resolved* media root, so a
  symlink inside a root that points outside it is refused like ``../../etc/passwd``;
- accepts ``http(s)://`` URLs only when ``allow_urls`` is set, and no other scheme ever.

The resolved path (symlinks already followed) is what the engines open, so a link swapped
after the check cannot redirect the read to a different file than the one checked, short
of a directory higher up being replaced in between (the usual check-then-open window).

Usage::

    resolver = MediaResolver(settings.media_roots, allow_urls=settings.allow_urls)
    path = resolver.resolve("clips/cat.mp4")      # Path under a root, or raises
    resolver.describe()                           # one line for error messages
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence
from urllib.parse import urlparse

from agent_tools.errors import InvalidArgumentError, UnknownVideoError

__all__ = ["MediaResolver", "PathNotAllowedError", "looks_like_url", "has_parent_reference"]

logger = logging.getLogger(__name__)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_URL_SCHEMES = ("http", "https")


class PathNotAllowedError(UnknownVideoError):
    """A path that resolves outside every media root (or a URL while URLs are disabled)."""


def looks_like_url(value: str) -> bool:
    """Whether ``value`` starts with a URL scheme such as ``https://`` or ``file://``."""
    return bool(_SCHEME.match(value.strip()))


def has_parent_reference(value: str) -> bool:
    """Whether any component of ``value`` (``/`` or ``\\`` separated) is ``..``."""
    parts = set(PurePosixPath(value.replace("\\", "/")).parts) | set(PureWindowsPath(value).parts)
    return ".." in parts


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


class MediaResolver:
    """Resolve untrusted video references against an allow-list of media roots.

    Args:
        roots: Folders videos may be read from. Each is resolved once, at construction;
            roots that do not exist are kept (they may be mounted later) but logged.
        allow_urls: Accept ``http://`` and ``https://`` URLs (returned unchanged).
    """

    def __init__(self, roots: Sequence[str | os.PathLike[str]], allow_urls: bool = False):
        self.allow_urls = bool(allow_urls)
        resolved: list[Path] = []
        for root in roots:
            r = Path(root).expanduser().resolve()
            if not r.is_dir():
                logger.warning("media root %s does not exist or is not a folder", r)
            if r not in resolved:
                resolved.append(r)
        self.roots: tuple[Path, ...] = tuple(resolved)

    # ------------------------------------------------------------------ messages
    def describe(self) -> str:
        """One sentence naming what is valid, for error messages."""
        if self.roots:
            roots = ", ".join(str(r) for r in self.roots)
            where = f"a file path under a media root ({roots}); relative paths are taken from those roots"
        else:
            where = "no file paths: no media roots are configured (set VIDEOSEEK_MEDIA_ROOTS)"
        urls = "http(s) URLs are accepted" if self.allow_urls else "URLs are disabled (VIDEOSEEK_ALLOW_URLS)"
        return f"{where}; {urls}"

    # ------------------------------------------------------------------ checks
    def is_allowed(self, path: str | os.PathLike[str]) -> bool:
        """Whether an existing local path resolves under a media root (no exception)."""
        try:
            resolved = Path(path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            return False
        return any(_is_under(resolved, root) for root in self.roots)

    def resolve(self, ref: str) -> Path | str:
        """Resolve a model-supplied video reference to a readable file (or an allowed URL).

        Args:
            ref: A file path (absolute, ``~``-relative, or relative to a media root) or a URL.

        Returns:
            The resolved :class:`~pathlib.Path` of an existing file under a media root, or
            the URL string unchanged when URLs are enabled.

        Raises:
            InvalidArgumentError: Empty reference, NUL byte, or a ``..`` component.
            PathNotAllowedError: URL while URLs are disabled, a non-http(s) scheme, or a
                path that resolves (after following symlinks) outside every media root.
            UnknownVideoError: An allowed path that does not exist or is not a file.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidArgumentError(f"video must be a non-empty string: {self.describe()}")
        ref = ref.strip()
        if "\x00" in ref:
            raise InvalidArgumentError("video must not contain NUL characters")
        if looks_like_url(ref):
            return self._resolve_url(ref)
        if has_parent_reference(ref):
            raise PathNotAllowedError(
                f"video path {ref!r} contains '..'; parent references are not allowed. "
                f"Valid: {self.describe()}"
            )
        if not self.roots:
            raise PathNotAllowedError(
                f"video {ref!r} is not an indexed video id, and the server reads {self.describe()}"
            )
        raw = Path(ref).expanduser()
        candidates = [raw] if raw.is_absolute() else [root / raw for root in self.roots]
        outside: Path | None = None
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError) as exc:  # symlink loops, permission errors
                logger.info("cannot resolve %r: %s", str(candidate), exc)
                continue
            if not any(_is_under(resolved, root) for root in self.roots):
                outside = resolved
                continue
            if resolved.is_file():
                return resolved
            if resolved.is_dir():
                raise UnknownVideoError(
                    f"video {ref!r} is a folder, not a video file. Valid: {self.describe()}"
                )
            if resolved.exists():
                raise UnknownVideoError(
                    f"video {ref!r} is not a regular file (a device, FIFO or socket), so it cannot be "
                    f"a video. Valid: {self.describe()}"
                )
        if outside is not None:
            logger.warning("refused video path %r: resolves outside the media roots", ref)
            raise PathNotAllowedError(
                f"video {ref!r} resolves outside the allowed media roots (symlinks are followed). "
                f"Valid: {self.describe()}"
            )
        raise UnknownVideoError(f"no video file {ref!r} under the media roots. Valid: {self.describe()}")

    def _resolve_url(self, ref: str) -> str:
        scheme = urlparse(ref).scheme.lower()
        if scheme not in _URL_SCHEMES:
            raise PathNotAllowedError(
                f"URL scheme {scheme!r} is not supported; only http(s) URLs, and only when enabled. "
                f"Valid: {self.describe()}"
            )
        if not self.allow_urls:
            raise PathNotAllowedError(f"video URLs are disabled on this server. Valid: {self.describe()}")
        return ref
