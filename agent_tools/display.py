"""Printing user-controlled text safely: file names that are not UTF-8, and rich markup.

A file name with a byte that is not UTF-8 (``0xFF``) reaches Python as a ``str`` with a
*surrogate escape* (``'\\udcff'``); it opens fine but cannot be written to a UTF-8 stream or
serialised as JSON. A name like ``x[/bold].mp4`` is rich markup. Everything the CLI prints
that a user (or a file system) controls goes through these helpers.

- :func:`display_path` - the text with undecodable bytes shown as ``\\xNN`` (unchanged otherwise).
- :func:`shown` - :func:`display_path` plus ``rich.markup.escape``: safe inside a rich string.
- :func:`json_safe` - a JSON-ready structure with every string passed through :func:`display_path`.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["display_path", "shown", "json_safe"]


def display_path(text: str) -> str:
    """``text`` with surrogate-escaped bytes written as ``\\xNN`` (any other text is returned as is)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def shown(text: Any) -> str:
    """``str(text)`` made printable (:func:`display_path`) and markup-free (``rich.markup.escape``)."""
    from rich.markup import escape

    return escape(display_path(str(text)))


def json_safe(value: Any) -> Any:
    """``value`` (dicts, lists, scalars) with every string, keys included, through :func:`display_path`."""
    if isinstance(value, str):
        return display_path(value)
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
