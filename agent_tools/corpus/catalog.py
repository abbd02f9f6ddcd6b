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

Every row also holds ``chk``, a BLAKE2b checksum of its other values, verified whenever the row
is read: SQLite keeps no checksums of its own, so a flipped bit inside a path, an id, a status or
a time would otherwise be answered silently. A mismatch raises
:class:`~agent_tools.errors.IndexCorruptError`. Queries filter in Python over verified rows
rather than through SQLite's secondary indexes (whose copies of the values are not covered).

Paths are stored as text when they are valid UTF-8 and as the raw file-name bytes (a BLOB,
``os.fsencode``) when they are not (a name with byte 0xFF reads back from ``os.walk`` as a
string with surrogate escapes, which SQLite cannot store as text); rows read back give the same
``str`` the file system gave. :class:`~agent_tools.types.VideoRecord` rows show such a path
with ``\\xNN`` escapes (:func:`display_path`). Every SQLite error of a damaged file (a bad
page, "database disk image is malformed") is raised as
:class:`~agent_tools.errors.IndexCorruptError` naming the file and the fix; :meth:`Catalog.check`
runs SQLite's ``quick_check``.

Usage::

    cat = Catalog(index_dir / "catalog.sqlite")
    base = cat.allocate_ids(n)
    cat.commit_indexed(row, starts, ends)     # one transaction
    cat.lookup_segments([17, 42])             # {17: ("a1b2c3d4e5f6", 3.0, 7.0), ...}
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from agent_tools.display import display_path
from agent_tools.errors import IndexCorruptError, InvalidArgumentError
from agent_tools.types import VideoRecord

__all__ = ["Catalog", "SCHEMA_VERSION", "VIDEO_COLUMNS", "db_path", "from_db_path"]

SCHEMA_VERSION = 2
"""Version 2 adds the ``chk`` column (a checksum of the row) to every table; version 1 is migrated."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, chk TEXT);
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
    updated_at REAL,
    chk TEXT
);
CREATE INDEX IF NOT EXISTS videos_status ON videos(status);
CREATE TABLE IF NOT EXISTS segments (
    vector_id INTEGER PRIMARY KEY,
    video_id TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    chk TEXT
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
_ID = re.compile(r"[0-9a-f]{12}")
_INT = {"size_bytes", "mtime_ns", "num_frames", "num_segments", "id_base"}
_REAL = {"duration", "fps", "updated_at"}


def _norm(col: str, v: Any) -> Any:
    """A value as SQLite gives it back (column affinity), so write- and read-side checksums agree."""
    if v is None:
        return None
    if col in _INT:
        return int(v)
    if col in _REAL:
        return float(v)
    return v


def _chk(values: Iterable[Any]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)):
            h.update(b"b" + bytes(v))
        elif isinstance(v, str):
            h.update(b"s" + v.encode("utf-8", "surrogatepass"))
        else:
            h.update(repr(v).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _video_chk(values: Sequence[Any]) -> str:
    return _chk(_norm(c, v) for c, v in zip(VIDEO_COLUMNS, values))


def _seg_chk(vector_id: Any, video_id: Any, start: Any, end: Any) -> str:
    return _chk((int(vector_id), video_id, float(start), float(end)))


def db_path(path: str) -> "str | bytes":
    """The value a path is stored as: itself if it is valid UTF-8, else its raw bytes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def from_db_path(value: "str | bytes") -> str:
    """Inverse of :func:`db_path`: the path as the file system's ``str`` (surrogate escapes kept)."""
    return os.fsdecode(value) if isinstance(value, (bytes, bytearray, memoryview)) else value


class _Damaged(sqlite3.DatabaseError):
    """A row whose checksum does not match its values (raised as IndexCorruptError by ``_guard``)."""


def _row_dict(r: tuple) -> dict:
    """A ``videos`` row (columns + ``chk``) as a dict, after checking its checksum."""
    values, chk = r[:-1], r[-1]
    if chk != _video_chk(values):
        raise _Damaged(f"the row of video {values[0]!r} does not match its checksum")
    d = dict(zip(VIDEO_COLUMNS, values))
    d["path"] = from_db_path(d["path"])
    return d


def _guard(method):
    """Turn SQLite errors of a damaged file into :class:`IndexCorruptError` (one clear sentence)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise self._corrupt(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc

    return wrapper


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
            version = self._raw_schema_version()
            if version is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
            elif int(version) == 1:
                self._migrate_v1()
            elif int(version) != SCHEMA_VERSION:
                raise IndexCorruptError(
                    f"{self.path} has catalog schema {version}; this videoseek reads schema {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc

    def _raw_schema_version(self) -> Optional[int]:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(json.loads(row[0])) if row else None

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2: add the ``chk`` columns and fill them (one transaction)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("meta", "videos", "segments"):
                cols = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
                if "chk" not in cols:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN chk TEXT")
            for key, value in self.conn.execute("SELECT key, value FROM meta").fetchall():
                self.conn.execute("UPDATE meta SET chk = ? WHERE key = ?", (_chk((key, value)), key))
            for r in self.conn.execute(f"SELECT {_COLS} FROM videos").fetchall():
                self.conn.execute("UPDATE videos SET chk = ? WHERE video_id = ?", (_video_chk(r), r[0]))
            for r in self.conn.execute('SELECT vector_id, video_id, start, "end" FROM segments').fetchall():
                self.conn.execute("UPDATE segments SET chk = ? WHERE vector_id = ?", (_seg_chk(*r), r[0]))
            value = json.dumps(SCHEMA_VERSION)
            self.conn.execute(
                "UPDATE meta SET value = ?, chk = ? WHERE key = 'schema_version'",
                (value, _chk(("schema_version", value))),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _corrupt(self, exc: BaseException) -> IndexCorruptError:
        return IndexCorruptError(
            f"the catalog {self.path} is damaged ({exc}); move the index folder aside and run "
            "`videoseek index PATH...` to rebuild it (the frame-embedding cache makes that fast)"
        )

    @_guard
    def check(self) -> None:
        """Run SQLite's ``quick_check`` (reads every page once).

        Raises:
            IndexCorruptError: The file has damaged pages.
        """
        with self._lock:
            rows = self.conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in rows] != ["ok"]:
            raise self._corrupt(sqlite3.DatabaseError("; ".join(str(r[0]) for r in rows[:3])))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.conn.close()

    # ------------------------------------------------------------------ meta
    @_guard
    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key`` (``default`` if absent)."""
        with self._lock:
            row = self.conn.execute("SELECT key, value, chk FROM meta WHERE key = ?", (key,)).fetchone()
        if not row:
            return default
        if row[2] != _chk(row[:2]) or row[0] != key:
            raise _Damaged(f"the catalog setting {key!r} does not match its checksum")
        try:
            return json.loads(row[1])
        except ValueError as exc:
            raise _Damaged(f"the catalog setting {key!r} is not valid JSON") from exc

    @_guard
    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key``."""
        with self._lock:
            text = json.dumps(value)
            self.conn.execute(
                "INSERT INTO meta(key, value, chk) VALUES(?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, chk = excluded.chk",
                (key, text, _chk((key, text))),
            )

    @_guard
    def allocate_ids(self, n: int) -> int:
        """Reserve ``n`` consecutive vector ids; returns the first. Ids are never reused."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                base = self.get_meta("next_id", 0)
                self.set_meta("next_id", int(base) + int(n))
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
            path=display_path(d["path"]),
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

    @_guard
    def row(self, *, video_id: Optional[str] = None, path: Optional[str] = None) -> Optional[dict]:
        """The raw row of a video by id or path, or ``None``."""
        if video_id is not None and isinstance(db_path(video_id), bytes):
            return None  # ids are hex text: one that is not even UTF-8 names nothing
        with self._lock:
            if video_id is not None:
                r = self.conn.execute(
                    f"SELECT {_COLS}, chk FROM videos WHERE video_id = ?", (video_id,)
                ).fetchone()
            elif path is not None:
                r = self.conn.execute(
                    f"SELECT {_COLS}, chk FROM videos WHERE path = ?", (db_path(path),)
                ).fetchone()
            else:
                raise InvalidArgumentError("pass video_id or path")
            if r is None and (video_id is None or _ID.fullmatch(video_id)):
                # Not found through SQLite's index: make sure by scanning the table itself (a
                # damaged index entry must not hide a video). Misses are rare on hot paths; a
                # video_id that is not 12 hex digits (a path tried as an id) is simply not one.
                col, key = ("video_id", video_id) if video_id is not None else ("path", db_path(path))
                r = self.conn.execute(
                    f'SELECT {_COLS}, chk FROM videos NOT INDEXED WHERE "{col}" = ?', (key,)
                ).fetchone()
                if r is not None:
                    raise _Damaged(f"the catalog's index does not find the row of {key!r}")
        d = _row_dict(r) if r else None
        if d is not None and (video_id is not None and d["video_id"] != video_id):
            raise _Damaged(f"the catalog's lookup of video {video_id!r} found another row")
        if d is not None and video_id is None and d["path"] != path:
            raise _Damaged(f"the catalog's lookup of {display_path(path)!r} found another row")
        return d

    @_guard
    def rows(self, status: Optional[str] = None) -> list[dict]:
        """Raw rows, optionally of one status, ordered by path."""
        with self._lock:
            # a full scan, filtered here: the status index's copy of the values is not checksummed
            rs = self.conn.execute(f"SELECT {_COLS}, chk FROM videos ORDER BY path").fetchall()
        rows = [_row_dict(r) for r in rs]
        return rows if status is None else [r for r in rows if r["status"] == status]

    def records(self, status: Optional[str] = None) -> list[VideoRecord]:
        """Catalog rows as :class:`VideoRecord`, optionally filtered by status."""
        return [self._record(r) for r in self.rows(status)]

    def record(self, **kw) -> Optional[VideoRecord]:
        """One row as :class:`VideoRecord` (by ``video_id=`` or ``path=``), or ``None``."""
        r = self.row(**kw)
        return self._record(r) if r else None

    @_guard
    def counts(self) -> dict[str, int]:
        """Videos per status, plus ``vectors`` (segments of indexed videos) and ``duration``."""
        out: dict[str, Any] = {"pending": 0, "indexed": 0, "failed": 0}
        vec, dur = 0, 0.0
        for r in self.rows():  # verified rows
            out[r["status"]] = out.get(r["status"], 0) + 1
            if r["status"] == "indexed":
                vec += r["num_segments"] or 0
                dur += r["duration"] or 0.0
        out["vectors"] = int(vec)
        out["duration"] = float(dur)
        return out

    @_guard
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

    @_guard
    def _replace(self, row: dict, segments: Sequence[tuple]) -> Optional[dict]:
        """In one transaction: drop any row for the same path or id, insert ``row`` and its segments."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                old = self._delete_locked(path=row["path"], video_id=row["video_id"])
                marks = ", ".join("?" for _ in VIDEO_COLUMNS)
                values = tuple(db_path(row[c]) if c == "path" else row.get(c) for c in VIDEO_COLUMNS)
                self.conn.execute(
                    f"INSERT INTO videos({_COLS}, chk) VALUES({marks}, ?)", (*values, _video_chk(values))
                )
                if segments:
                    self.conn.executemany(
                        'INSERT INTO segments(vector_id, video_id, start, "end", chk) VALUES(?,?,?,?,?)',
                        [(*seg, _seg_chk(*seg)) for seg in segments],
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

    @_guard
    def touch(self, video_id: str, size_bytes: int, mtime_ns: int) -> None:
        """Update the stat facts of an unchanged video (same fingerprint, new mtime)."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = self.row(video_id=video_id)
                if row is not None:
                    row.update(size_bytes=size_bytes, mtime_ns=mtime_ns)
                    values = tuple(db_path(row[c]) if c == "path" else row[c] for c in VIDEO_COLUMNS)
                    self.conn.execute(
                        "UPDATE videos SET size_bytes = ?, mtime_ns = ?, chk = ? WHERE video_id = ?",
                        (size_bytes, mtime_ns, _video_chk(values), video_id),
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    @_guard
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
    @_guard
    def indexed_ids(self) -> np.ndarray:
        """Vector ids of every indexed video (from ``id_base`` and ``num_segments``)."""
        rs = [(r["id_base"], r["num_segments"]) for r in self.rows("indexed") if r["num_segments"]]
        if not rs:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(b, b + n, dtype=np.int64) for b, n in rs])

    @_guard
    def lookup_segments(self, ids: Iterable[int]) -> dict[int, tuple[str, float, float]]:
        """Map vector ids to ``(video_id, start, end)``; unknown (stale) ids are left out."""
        ids = [int(i) for i in ids if int(i) >= 0]
        out: dict[int, tuple[str, float, float]] = {}
        with self._lock:
            for chunk in range(0, len(ids), 900):
                part = ids[chunk : chunk + 900]
                marks = ",".join("?" for _ in part)
                for vid_, video, s, e, chk in self.conn.execute(
                    f'SELECT vector_id, video_id, start, "end", chk FROM segments WHERE vector_id IN ({marks})',
                    part,
                ):
                    if chk != _seg_chk(vid_, video, s, e):
                        raise _Damaged(f"segment row {vid_} does not match its checksum")
                    out[int(vid_)] = (video, float(s), float(e))
        lost = [i for i in ids if i not in out]
        if lost:  # stale ids are normal; an id an indexed video owns must be there
            ranges = [(r["id_base"], r["num_segments"]) for r in self.rows("indexed") if r["num_segments"]]
            for i in lost:
                if any(b <= i < b + n for b, n in ranges):
                    raise _Damaged(f"the segment row of vector {i} is missing")
        return out

    @_guard
    def count_segments(self, video_id: str) -> int:
        """Segment rows of one video."""
        with self._lock:
            return int(
                self.conn.execute("SELECT COUNT(*) FROM segments WHERE video_id = ?", (video_id,)).fetchone()[
                    0
                ]
            )
