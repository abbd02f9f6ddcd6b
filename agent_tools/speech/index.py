"""Hybrid transcript search: sentence embeddings plus exact-word matching (SQLite FTS5).

Paraphrases ("when were travel expenses reduced") are found by the dense score (cosine of
sentence embeddings); exact names and numbers ("Berlin", "platform 9") by FTS5: a passage that
contains every content word of the query gets :data:`LEXICAL_BONUS` added to its cosine.
Measured on 30 paraphrased queries (``benchmarks/bench_speech.py``), OR-style BM25 fusion
(reciprocal-rank or a normalised BM25 term) *lost* paraphrase hits to sentences sharing an
incidental word, while the all-words bonus never changed a paraphrase result and still puts
exact-word queries first.

One class serves one video (in memory, :func:`search_transcript`) and the whole corpus (a
``speech.sqlite`` file beside the visual index, :class:`SpeechIndex`)::

    speech.sqlite
      videos(video_id, fingerprint, path, source, model, encoder, num_passages, error)
      passages(id, video_id, start, end, text, emb)      emb = float16 bytes, unit rows
      passages_fts(text)                                 FTS5 over passages.text

A video's passages are replaced in one transaction, so a crash leaves the old rows or the
new ones. :meth:`SpeechIndex.reconcile` drops videos the catalog no longer lists.

- :class:`SpeechIndex` - ``add_video``, ``remove_videos``, ``videos``, ``search``, ``transcript_text``.
- :func:`search_transcript` - hybrid search inside one :class:`~agent_tools.types.Transcript`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import IndexCorruptError, InvalidArgumentError
from ..types import Moment, Transcript

__all__ = ["SpeechIndex", "search_transcript", "SPEECH_DB", "LEXICAL_BONUS"]

#: Added to the cosine of a passage that contains every content word of the query.
LEXICAL_BONUS = 0.2
SPEECH_DB = "speech.sqlite"
_TOKEN = re.compile(r"\w+", re.UNICODE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY, fingerprint TEXT, path TEXT, source TEXT, model TEXT,
    encoder TEXT, num_passages INTEGER DEFAULT 0, error TEXT
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY, video_id TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    text TEXT NOT NULL, emb BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_video ON passages(video_id);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(text, content='passages', content_rowid='id');
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


# Function words carry no evidence for BM25 and let short unrelated sentences outrank the match.
_STOP = frozenset(
    "a an and are as at be been but by did do does for from had has have how i in is it its of on or "
    "so than that the their them then there these they this to was we were what when where which who "
    "why will with you your".split()
)


def _fts_query(text: str) -> Optional[str]:
    """An FTS5 query matching passages that hold every content word of ``text`` (or ``None``)."""
    tokens = [t for t in _TOKEN.findall(text.lower()) if (len(t) > 1 or t.isdigit()) and t not in _STOP]
    if not tokens:
        return None
    return " AND ".join(f'"{t}"' for t in dict.fromkeys(tokens))


class SpeechIndex:
    """Transcript passages of many videos, searchable by meaning and by words.

    Args:
        path: SQLite file, or ``":memory:"``.
        encoder: A :class:`~agent_tools.speech.models.TextEncoder` (``encode(list[str])``, ``name``).
        read_only: Open the file read-only (MCP replicas sharing one index).
    """

    def __init__(self, path: str | Path, encoder, read_only: bool = False):
        self.path = str(path)
        self.encoder = encoder
        if read_only and self.path != ":memory:":
            uri = f"file:{Path(self.path).resolve()}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._matrix: Optional[tuple[int, np.ndarray, np.ndarray]] = None
        try:
            self._check_encoder()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"speech index {self.path} cannot be read ({exc}); delete it to rebuild") from exc

    def _check_encoder(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='encoder'").fetchone() if self._has_meta() else None
        if row is None:
            if not self._read_only_db():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder', ?)", (self.encoder.name,))
                self.db.commit()
        elif row[0] != self.encoder.name:
            raise InvalidArgumentError(
                f"speech index {self.path} was built with text encoder {row[0]!r}, not {self.encoder.name!r}: "
                f"set VIDEOSEEK_TEXT_ENCODER={row[0]} or delete {SPEECH_DB} to rebuild"
            )

    def _has_meta(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is not None

    def _read_only_db(self) -> bool:
        return "mode=ro" in self.path or self.db.execute("PRAGMA query_only").fetchone()[0] == 1

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # -- writing -----------------------------------------------------------------------
    def add_video(self, video_id: str, transcript: Transcript, fingerprint: Optional[str] = None) -> int:
        """Replace ``video_id``'s passages with the transcript's sentences (one transaction).

        Returns:
            Number of passages stored.
        """
        segs = [s for s in transcript.segments if s.text.strip()]
        embs = self.encoder.encode([s.text for s in segs]).astype(np.float16) if segs else []
        with self._lock, self.db:
            self._delete(video_id)
            for seg, emb in zip(segs, embs):
                cur = self.db.execute(
                    'INSERT INTO passages(video_id, start, "end", text, emb) VALUES (?,?,?,?,?)',
                    (video_id, seg.start, seg.end, seg.text, emb.tobytes()),
                )
                self.db.execute("INSERT INTO passages_fts(rowid, text) VALUES (?, ?)", (cur.lastrowid, seg.text))
            self.db.execute(
                "INSERT OR REPLACE INTO videos VALUES (?,?,?,?,?,?,?,NULL)",
                (video_id, fingerprint or transcript.fingerprint, transcript.path, transcript.source,
                 transcript.model, self.encoder.name, len(segs)),
            )
            self._matrix = None
        return len(segs)

    def mark_failed(self, video_id: str, path: str, fingerprint: Optional[str], error: str) -> None:
        """Record that ``video_id``'s audio could not be transcribed (kept until it changes)."""
        with self._lock, self.db:
            self._delete(video_id)
            self.db.execute(
                "INSERT OR REPLACE INTO videos VALUES (?,?,?,?,?,?,0,?)",
                (video_id, fingerprint, path, "failed", None, self.encoder.name, error),
            )
            self._matrix = None

    def _delete(self, video_id: str) -> None:
        rows = self.db.execute("SELECT id, text FROM passages WHERE video_id=?", (video_id,)).fetchall()
        for pid, text in rows:
            self.db.execute("INSERT INTO passages_fts(passages_fts, rowid, text) VALUES ('delete', ?, ?)", (pid, text))
        self.db.execute("DELETE FROM passages WHERE video_id=?", (video_id,))
        self.db.execute("DELETE FROM videos WHERE video_id=?", (video_id,))

    def remove_videos(self, video_ids: Iterable[str]) -> int:
        """Drop these videos' passages. Returns how many videos were present."""
        n = 0
        with self._lock, self.db:
            for vid in video_ids:
                if self.db.execute("SELECT 1 FROM videos WHERE video_id=?", (vid,)).fetchone():
                    n += 1
                self._delete(vid)
            self._matrix = None
        return n

    def reconcile(self, keep: Iterable[str]) -> int:
        """Drop every video not in ``keep`` (the catalog's indexed ids). Returns how many."""
        keep = set(keep)
        gone = [v for v in self.videos() if v not in keep]
        return self.remove_videos(gone)

    # -- reading -----------------------------------------------------------------------
    def videos(self) -> dict[str, dict]:
        """Stored videos: id -> row (fingerprint, path, source, model, num_passages, error)."""
        cols = ["video_id", "fingerprint", "path", "source", "model", "encoder", "num_passages", "error"]
        with self._lock:
            return {r[0]: dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM videos")}

    def transcript_text(self, video_id: str, start: float = 0.0, end: float = float("inf")) -> list[tuple[float, float, str]]:
        """Passages of one video overlapping ``[start, end]``, in time order."""
        with self._lock:
            return [
                (float(a), float(b), t)
                for a, b, t in self.db.execute(
                    'SELECT start, "end", text FROM passages WHERE video_id=? AND "end">=? AND start<=? ORDER BY start',
                    (video_id, start, end if end != float("inf") else 1e18),
                )
            ]

    def _dense_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            # data_version changes when another connection (an index build) commits; own writes reset _matrix
            key = self.db.execute("PRAGMA data_version").fetchone()[0]
            if self._matrix is None or self._matrix[0] != key:
                ids, embs = [], []
                for pid, blob in self.db.execute("SELECT id, emb FROM passages ORDER BY id"):
                    ids.append(pid)
                    embs.append(np.frombuffer(blob, np.float16))
                mat = np.stack(embs).astype(np.float32) if embs else np.zeros((0, 1), np.float32)
                self._matrix = (key, np.asarray(ids, np.int64), mat)
            return self._matrix[1], self._matrix[2]

    def search(
        self,
        query: str,
        top_k: int = 10,
        video_ids: Optional[Sequence[str]] = None,
        candidates: int = 100,
        lexical_bonus: float = LEXICAL_BONUS,
    ) -> list[Moment]:
        """Hybrid search over passages.

        Args:
            query: Text query.
            top_k: Passages to return.
            video_ids: Restrict to these videos.
            candidates: Dense candidates considered (plus every all-words match).
            lexical_bonus: Added to the cosine of passages holding every content word of the query.

        Returns:
            Speech moments (``source="speech"``, ``text`` = the passage), best first; ``score`` is
            the passage's cosine similarity to the query plus the lexical bonus when it applies.

        Raises:
            InvalidArgumentError: Empty query.
        """
        if not query or not query.strip():
            raise InvalidArgumentError("a transcript search needs a non-empty text query")
        ids, mat = self._dense_matrix()
        if len(ids) == 0:
            return []
        q = self.encoder.encode([query])[0]
        sims = mat @ q
        if video_ids is not None:
            with self._lock:
                allowed = [
                    r[0] for vid in video_ids for r in self.db.execute("SELECT id FROM passages WHERE video_id=?", (vid,))
                ]
            sims = np.where(np.isin(ids, np.asarray(allowed, np.int64)), sims, -np.inf)
        score = {int(ids[i]): float(sims[i]) for i in np.argsort(-sims)[:candidates] if np.isfinite(sims[i])}
        fq = _fts_query(query)
        if fq and lexical_bonus:
            with self._lock:
                matched = [r[0] for r in self.db.execute("SELECT rowid FROM passages_fts WHERE passages_fts MATCH ?", (fq,))]
            pos = {int(pid): i for i, pid in enumerate(ids)}
            for pid in matched:
                i = pos.get(pid)
                if i is not None and np.isfinite(sims[i]):
                    score[pid] = float(sims[i]) + lexical_bonus
        best = sorted(score, key=lambda pid: -score[pid])[:top_k]
        if not best:
            return []
        marks = ",".join("?" * len(best))
        with self._lock:
            rows = {
                r[0]: r
                for r in self.db.execute(
                    f'SELECT p.id, p.video_id, p.start, p."end", p.text, v.path FROM passages p '
                    f"JOIN videos v ON v.video_id = p.video_id WHERE p.id IN ({marks})",
                    best,
                )
            }
        return [
            Moment(
                video_id=rows[pid][1], path=rows[pid][5] or "", start=float(rows[pid][2]), end=float(rows[pid][3]),
                score=score[pid], peak_time=float(rows[pid][2]), source="speech", text=rows[pid][4],
            )
            for pid in best
            if pid in rows
        ]


def search_transcript(transcript: Transcript, query: str, encoder, top_k: int = 5, video_id: str = "") -> list[Moment]:
    """Hybrid search inside one transcript (an in-memory :class:`SpeechIndex`).

    Args:
        transcript: The video's transcript.
        query: Text query.
        encoder: Sentence-embedding model.
        top_k: Passages to return.
        video_id: Id to put in the moments (default: the path).

    Returns:
        Speech moments, best first.
    """
    index = SpeechIndex(":memory:", encoder)
    try:
        index.add_video(video_id or transcript.path, transcript)
        return index.search(query, top_k=top_k)
    finally:
        index.close()
