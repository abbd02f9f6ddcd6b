"""SQLite catalog of a corpus index: one row per video, one row per segment vector.

The catalog is the index's source of truth. A video is ``indexed`` only once its shard file
(segment vectors + frame embeddings) exists and the single transaction that inserts its
segment rows has committed; the FAISS files are reconciled against it on load.

Tables (WAL journal, so readers never block the writer and a killed writer leaves the last
committed state):

- ``videos(video_id PK, path UNIQUE, fingerprint, size_bytes, mtime_ns, duration, fps, status,
  error, num_frames, num_segments, id_base, shard, updated_at)`` - ``status`` is ``pending``,
  ``indexed`` or ``failed`` (with ``error``). The vector ids of an indexed video are
  ``id_base .. id_base + num_segments - 1``.
- ``segments(vector_id PK, video_id, start, end)`` - maps each int64 FAISS id to its span.
- ``meta(key PK, value)`` - encoder, dim, sample_fps, window, kind, next vector id, roots.

Usage::

    cat = Catalog(index_dir / "catalog.sqlite")
    base = cat.allocate_ids(n)
    cat.commit_indexed(row, starts, ends)     # one transaction
    cat.lookup_segments([17, 42])             # {17: ("a1b2c3d4e5f6", 3.0, 7.0), ...}
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from agent_tools.errors import IndexCorruptError, InvalidArgumentError
from agent_tools.types import VideoRecord

__all__ = ["Catalog", "SCHEMA_VERSION", "VIDEO_COLUMNS"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    fingerprint TEXT,
    size_bytes INTEGER,
    mtime_ns INTEGER,
    duration REAL,
    fps REAL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
    error TEXT,
    num_frames INTEGER NOT NULL DEFAULT 0,
    num_segments INTEGER NOT NULL DEFAULT 0,
    id_base INTEGER,
    shard TEXT,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS videos_status ON videos(status);
CREATE TABLE IF NOT EXISTS segments (
    vector_id INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_video ON segments(video_id);
"""

VIDEO_COLUMNS = (
    "video_id",
    "path",
    "fingerprint",
    "size_bytes",
    "mtime_ns",
    "duration",
    "fps",
    "status",
    "error",
    "num_frames",
    "num_segments",
    "id_base",
    "shard",
    "updated_at",
)
_COLS = ", ".join(f'"{c}"' for c in VIDEO_COLUMNS)  # the column list of every SELECT / INSERT


class Catalog:
    """The SQLite catalog (see the module docstring).

    Args:
        path: The database file (created with its folder if missing).

    Raises:
        IndexCorruptError: If the file exists but is not a readable catalog.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a killed process never loses a committed transaction
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
            elif int(version) != SCHEMA_VERSION:
                raise IndexCorruptError(
                    f"{self.path} has catalog schema {version}; this videoseek reads schema {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"cannot open catalog {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.conn.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key`` (``default`` if absent)."""
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        with self._lock:
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def allocate_ids(self, n: int) -> int:
        """Reserve ``n`` consecutive vector ids; returns the first. Ids are never reused."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = self.conn.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
                base = json.loads(row[0]) if row else 0
                self.conn.execute(
                    "INSERT INTO meta(key, value) VALUES('next_id', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (json.dumps(base + int(n)),),
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return int(base)

    # ------------------------------------------------------------------ videos
    @staticmethod
    def _record(d: dict) -> VideoRecord:
        return VideoRecord(
            video_id=d["video_id"],
            path=d["path"],
            fingerprint=d["fingerprint"],
            size_bytes=d["size_bytes"],
            duration=d["duration"],
            fps=d["fps"],
            status=d["status"],
            error=d["error"],
            num_frames=d["num_frames"] or 0,
            num_segments=d["num_segments"] or 0,
            updated_at=d["updated_at"],
        )

    def row(self, *, video_id: Optional[str] = None, path: Optional[str] = None) -> Optional[dict]:
        """The raw row of a video by id or path, or ``None``."""
        with self._lock:
            if video_id is not None:
                r = self.conn.execute(
                    f"SELECT {_COLS} FROM videos WHERE video_id = ?", (video_id,)
                ).fetchone()
            elif path is not None:
                r = self.conn.execute(f"SELECT {_COLS} FROM videos WHERE path = ?", (path,)).fetchone()
            else:
                raise InvalidArgumentError("pass video_id or path")
        return dict(zip(VIDEO_COLUMNS, r)) if r else None

    def rows(self, status: Optional[str] = None) -> list[dict]:
        """Raw rows, optionally of one status, ordered by path."""
        with self._lock:
            if status is None:
                rs = self.conn.execute(f"SELECT {_COLS} FROM videos ORDER BY path").fetchall()
            else:
                rs = self.conn.execute(
                    f"SELECT {_COLS} FROM videos WHERE status = ? ORDER BY path", (status,)
                ).fetchall()
        return [dict(zip(VIDEO_COLUMNS, r)) for r in rs]

    def records(self, status: Optional[str] = None) -> list[VideoRecord]:
        """Catalog rows as :class:`VideoRecord`, optionally filtered by status."""
        return [self._record(r) for r in self.rows(status)]

    def record(self, **kw) -> Optional[VideoRecord]:
        """One row as :class:`VideoRecord` (by ``video_id=`` or ``path=``), or ``None``."""
        r = self.row(**kw)
        return self._record(r) if r else None

    def counts(self) -> dict[str, int]:
        """Videos per status, plus ``vectors`` (segments of indexed videos) and ``duration``."""
        with self._lock:
            out = {"pending": 0, "indexed": 0, "failed": 0}
            for status, n in self.conn.execute("SELECT status, COUNT(*) FROM videos GROUP BY status"):
                out[status] = n
            vec, dur = self.conn.execute(
                "SELECT COALESCE(SUM(num_segments), 0), COALESCE(SUM(duration), 0) FROM videos "
                "WHERE status = 'indexed'"
            ).fetchone()
        out["vectors"] = int(vec)
        out["duration"] = float(dur)
        return out

    def count_indexed(self) -> int:
        """Number of indexed videos."""
        with self._lock:
            return int(
                self.conn.execute("SELECT COUNT(*) FROM videos WHERE status = 'indexed'").fetchone()[0]
            )

    def free_video_id(self, preferred: str, path: str, fallback: str) -> str:
        """``preferred`` unless another path holds it, then ``fallback``."""
        r = self.row(video_id=preferred)
        return preferred if r is None or r["path"] == path else fallback

    def commit_indexed(self, row: dict, starts: Sequence[float], ends: Sequence[float]) -> Optional[dict]:
        """Record an indexed video and its segments in one transaction.

        Any previous row for the same path (an older version of the file) is replaced, with its
        segments.

        Args:
            row: Column values (``VIDEO_COLUMNS``); ``status`` is set to ``indexed``.
            starts: Segment start times; segment ``i`` gets vector id ``id_base + i``.
            ends: Segment end times.

        Returns:
            The replaced row, if any (its vector ids and shard are now stale).
        """
        row = dict(row, status="indexed", error=None, updated_at=time.time(), num_segments=len(starts))
        base = int(row["id_base"])
        seg = [(base + i, row["video_id"], float(s), float(e)) for i, (s, e) in enumerate(zip(starts, ends))]
        return self._replace(row, seg)

    def _replace(self, row: dict, segments: Sequence[tuple]) -> Optional[dict]:
        """In one transaction: drop any row for the same path or id, insert ``row`` and its segments."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                old = self._delete_locked(path=row["path"], video_id=row["video_id"])
                marks = ", ".join("?" for _ in VIDEO_COLUMNS)
                self.conn.execute(
                    f"INSERT INTO videos({_COLS}) VALUES({marks})", tuple(row.get(c) for c in VIDEO_COLUMNS)
                )
                if segments:
                    self.conn.executemany(
                        'INSERT INTO segments(vector_id, video_id, start, "end") VALUES(?,?,?,?)', segments
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return old

    def mark(self, row: dict) -> Optional[dict]:
        """Record a ``pending`` or ``failed`` video (no segments); replaces a row with the same path.

        Returns:
            The replaced row, if any.
        """
        row = dict(
            row,
            updated_at=time.time(),
            num_segments=0,
            num_frames=row.get("num_frames") or 0,
            id_base=None,
            shard=None,
        )
        return self._replace(row, ())

    def touch(self, video_id: str, size_bytes: int, mtime_ns: int) -> None:
        """Update the stat facts of an unchanged video (same fingerprint, new mtime)."""
        with self._lock:
            self.conn.execute(
                "UPDATE videos SET size_bytes = ?, mtime_ns = ? WHERE video_id = ?",
                (size_bytes, mtime_ns, video_id),
            )

    def delete(self, video_ids: Iterable[str]) -> list[dict]:
        """Delete videos and their segments in one transaction; returns the deleted rows."""
        out = []
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for vid in video_ids:
                    old = self._delete_locked(video_id=vid)
                    if old:
                        out.append(old)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return out

    def _delete_locked(self, path: Optional[str] = None, video_id: Optional[str] = None) -> Optional[dict]:
        old = None
        for key, value in (("path", path), ("video_id", video_id)):
            if value is None:
                continue
            r = self.row(**{key: value})
            if r is not None:
                self.conn.execute("DELETE FROM segments WHERE video_id = ?", (r["video_id"],))
                self.conn.execute("DELETE FROM videos WHERE video_id = ?", (r["video_id"],))
                old = old or r
        return old

    # ------------------------------------------------------------------ segments
    def indexed_ids(self) -> np.ndarray:
        """Vector ids of every indexed video (from ``id_base`` and ``num_segments``)."""
        with self._lock:
            rs = self.conn.execute(
                "SELECT id_base, num_segments FROM videos WHERE status = 'indexed' AND num_segments > 0"
            ).fetchall()
        if not rs:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(b, b + n, dtype=np.int64) for b, n in rs])

    def lookup_segments(self, ids: Iterable[int]) -> dict[int, tuple[str, float, float]]:
        """Map vector ids to ``(video_id, start, end)``; unknown (stale) ids are left out."""
        ids = [int(i) for i in ids if int(i) >= 0]
        out: dict[int, tuple[str, float, float]] = {}
        with self._lock:
            for chunk in range(0, len(ids), 900):
                part = ids[chunk : chunk + 900]
                marks = ",".join("?" for _ in part)
                for vid_, video, s, e in self.conn.execute(
                    f'SELECT vector_id, video_id, start, "end" FROM segments WHERE vector_id IN ({marks})',
                    part,
                ):
                    out[int(vid_)] = (video, float(s), float(e))
        return out

    def count_segments(self, video_id: str) -> int:
        """Segment rows of one video."""
        with self._lock:
            return int(
                self.conn.execute("SELECT COUNT(*) FROM segments WHERE video_id = ?", (video_id,)).fetchone()[
                    0
                ]
            )
