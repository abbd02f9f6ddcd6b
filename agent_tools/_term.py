"""Terminal helpers for the CLI: consoles that print plainly when piped, and warnings shown once.

- :func:`make_console` - a rich ``Console`` on stdout or stderr. On a terminal it is the usual
  one; when the stream is not a TTY (piped, redirected, captured) and ``COLUMNS`` is unset it is
  very wide with soft wrapping, so tables and long paths are never cut at 80 columns.
- :func:`warn_once` / :func:`reset_warnings` - print a warning the first time its key is seen
  (per command: the CLI resets at the start of each).
- :func:`quiet_native_logs` / :func:`silence_native_stderr` - keep libav (PyAV) and decord from
  printing their own lines, so a bad file is reported
  by our one error line, not by decoder noise.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["make_console", "warn_once", "reset_warnings", "quiet_native_logs", "silence_native_stderr", "PIPE_WIDTH"]

PIPE_WIDTH = 4096
"""Console width when the stream is not a terminal (no truncation of long cells)."""

_WARNED: set[str] = set()


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that does not truncate when the stream is not a TTY."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty or os.environ.get("COLUMNS"):
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True)


def reset_warnings() -> None:
    """Forget the warnings shown (the CLI calls this at the start of each command)."""
    _WARNED.clear()


def warn_once(console: Console, key: str, message: str) -> None:
    """Print ``message`` (rich markup) on ``console`` unless ``key`` was warned about already."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    console.print(message, highlight=False)


def quiet_native_logs() -> None:
    """Keep libav (FFmpeg inside PyAV) from printing its own lines to stderr."""
    try:
        import av.logging

        av.logging.set_level(None)  # PyAV >= 13: None turns libav logging off
    except Exception:  # PyAV 12 wants a level number
        try:
            import av.logging

            av.logging.set_level(av.logging.PANIC)
        except Exception:
            pass


def silence_native_stderr() -> None:
    """Send what native code writes to file descriptor 2 (decord, libav) to /dev/null, for good.

    Python's ``sys.stderr`` moves to a duplicate of the original descriptor, so our own messages,
    progress bars and tracebacks still show. Meant for the console-script entry point only.
    """
    try:
        fd = sys.stderr.fileno()
        keep = os.dup(fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real descriptor (captured, embedded)
        return
    sys.stderr = os.fdopen(keep, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
