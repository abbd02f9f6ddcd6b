"""Crash-safe file writes for the corpus index (internal).

- :func:`atomic_write` - write through a temporary file in the same folder, ``fsync`` it,
  ``os.replace`` it over the target and ``fsync`` the folder, so a reader (or a process that
  restarts after a crash) sees either the old file or the new one, never a torn one.
- :func:`fsync_dir` - flush a folder's entries (renames) to disk.
- :func:`clean_tmp` - remove temporary files a killed writer left behind.

Usage::

    atomic_write(path, lambda tmp: np.save(tmp, arr))     # writer gets the temporary path
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "fsync_dir", "clean_tmp", "TMP_SUFFIX"]

TMP_SUFFIX = ".tmp-write"


def fsync_dir(folder: Path) -> None:
    """Flush the folder entry table (best effort where the OS has no folder fsync)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Write ``path`` atomically.

    Args:
        path: The final file.
        writer: Called with a temporary path in the same folder; must create that file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def clean_tmp(folder: Path) -> int:
    """Delete temporary files left by killed writers in ``folder``; returns how many."""
    n = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.endswith(TMP_SUFFIX):
                try:
                    p.unlink()
                    n += 1
                except OSError:
                    pass
    return n
