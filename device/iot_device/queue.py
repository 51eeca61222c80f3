"""The on-disk queue: every reading is committed here before anything tries to send it.

SQLite in WAL mode with synchronous=FULL: a commit is on the storage when it returns, so a power cut or
SIGKILL after `enqueue` loses nothing, and one in the middle of a transaction rolls it back whole.
Rows leave `queue` only when the api answered 201 for them (`ack`), or into the `rejected` dead-letter
table with the server's message when the api refused them for good (`settle`), both in one transaction.

When the queue holds `max_rows`, the OLDEST readings are dropped to make room: after a long outage the
recent temperature is what matters, and the disk stays bounded. Every drop is counted and logged.

One connection shared by the sampler and sender threads, serialised by a lock: each method is one short
transaction, and no lock is held while the network is used.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, order = age
    ts        TEXT NOT NULL,
    type      TEXT NOT NULL,
    value     REAL NOT NULL,
    sensor_id TEXT NOT NULL,
    queued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id          INTEGER PRIMARY KEY,              -- the id it had in `queue`
    ts          TEXT NOT NULL,
    type        TEXT NOT NULL,
    value       REAL NOT NULL,
    sensor_id   TEXT NOT NULL,
    queued_at   TEXT NOT NULL,
    status      INTEGER,                          -- HTTP status of the refusal (NULL: refused locally)
    message     TEXT NOT NULL,
    rejected_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
);
"""
COUNTERS = ("enqueued_total", "sent_total", "rejected_total", "dropped_total")


class QueueError(Exception):
    """The queue file cannot be opened or used; the message names the file."""


class QueueClosed(QueueError):
    pass


class Row(NamedTuple):
    id: int
    ts: str
    type: str
    value: float
    sensor_id: str

    def reading(self) -> dict:
        return {"ts": self.ts, "type": self.type, "value": self.value, "sensor_id": self.sensor_id}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Queue:
    def __init__(self, path: str, max_rows: int = 1_000_000, readonly: bool = False):
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._closed = False
        try:
            if readonly:
                # status/rejected must never create a file or change the agent's database.
                if not os.path.exists(path):
                    raise QueueError(f"no queue at {path} (has the agent run? is DEVICE_QUEUE_PATH right?)")
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                           isolation_level=None, check_same_thread=False)
                self._db.execute("SELECT count(*) FROM queue").fetchone()
                return
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, mode=0o700, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
            # what a method says. check_same_thread=False: the lock below does the serialising.
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise QueueError(f"queue {path}: SQLite cannot use WAL mode there (got {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise QueueError(f"queue {path}: {exc}") from None
        except OSError as exc:
            raise QueueError(f"queue {path}: cannot create its directory ({exc.strerror})") from None

    # -- plumbing ------------------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self)

    def _check_open(self):
        if self._closed:
            raise QueueClosed(f"queue {self.path} is closed")

    def close(self) -> None:
        """Waits for the transaction in progress (the lock), then closes; later calls raise QueueClosed."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _bump(self, key: str, n: int) -> None:
        if n:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value", (key, n))

    # -- the agent's operations ----------------------------------------------------------------
    def enqueue(self, reading: dict) -> int:
        """Commit one reading; returns how many of the oldest were dropped to stay within max_rows."""
        with self._tx() as db:
            db.execute("INSERT INTO queue (ts, type, value, sensor_id, queued_at) VALUES (?, ?, ?, ?, ?)",
                       (reading["ts"], reading["type"], float(reading["value"]), str(reading["sensor_id"]),
                        _now()))
            self._bump("enqueued_total", 1)
            excess = db.execute("SELECT count(*) FROM queue").fetchone()[0] - self.max_rows
            if excess > 0:
                db.execute("DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT ?)", (excess,))
                self._bump("dropped_total", excess)
            return max(excess, 0)

    def peek(self, limit: int) -> list[Row]:
        """The oldest `limit` readings, left in the queue."""
        with self._lock:
            self._check_open()
            cur = self._db.execute("SELECT id, ts, type, value, sensor_id FROM queue ORDER BY id LIMIT ?",
                                   (limit,))
            return [Row(*r) for r in cur.fetchall()]

    def ack(self, ids: Sequence[int]) -> None:
        """The api stored these (201): they leave the queue."""
        self.settle(ids, ())

    def settle(self, stored: Sequence[int], rejected: Iterable[tuple[int, int | None, str]]) -> None:
        """In one transaction: delete the `stored` ids, and move each (id, status, message) of
        `rejected` to the dead-letter table. Ids no longer queued (dropped meanwhile) are skipped."""
        rejected = list(rejected)
        with self._tx() as db:
            moved = 0
            for rid, status, message in rejected:
                cur = db.execute(
                    "INSERT OR REPLACE INTO rejected "
                    "(id, ts, type, value, sensor_id, queued_at, status, message, rejected_at) "
                    "SELECT id, ts, type, value, sensor_id, queued_at, ?, ?, ? FROM queue WHERE id = ?",
                    (status, message, _now(), rid))
                moved += cur.rowcount
                db.execute("DELETE FROM queue WHERE id = ?", (rid,))
            # executemany sums rowcount over the statements: ids dropped meanwhile do not count
            deleted = db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in stored]).rowcount
            self._bump("sent_total", deleted)
            self._bump("rejected_total", moved)
            if deleted:  # in the same transaction: no extra disk sync per batch
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_sent_at', ?)", (_now(),))

    def set_state(self, **values) -> None:
        """Remember facts for `status` (last error, last success…); None deletes a key."""
        with self._tx() as db:
            for key, value in values.items():
                if value is None:
                    db.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- for operators and tests ---------------------------------------------------------------
    def count(self) -> int:
        with self._lock:
            self._check_open()
            return self._db.execute("SELECT count(*) FROM queue").fetchone()[0]

    def stats(self) -> dict[str, object]:
        with self._lock:
            self._check_open()
            db = self._db
            queued, oldest, newest = db.execute("SELECT count(*), min(ts), max(ts) FROM queue").fetchone()
            rejected = db.execute("SELECT count(*) FROM rejected").fetchone()[0]
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        out: dict[str, object] = {"queue_path": self.path, "queued": queued, "oldest_queued_ts": oldest,
                                  "newest_queued_ts": newest, "rejected": rejected}
        for key in COUNTERS:
            out[key] = meta.pop(key, 0)
        out.update(sorted(meta.items()))
        return out

    def rejected_rows(self, limit: int = 100) -> list[dict]:
        with self._lock:
            self._check_open()
            cur = self._db.execute("SELECT id, ts, type, value, sensor_id, queued_at, status, message, "
                                   "rejected_at FROM rejected ORDER BY id DESC LIMIT ?", (limit,))
            names = [d[0] for d in cur.description]
            return [{name: row[i] for i, name in enumerate(names)} for row in cur.fetchall()]


class _Transaction:
    """`with queue._tx() as db:` holds the lock and runs BEGIN IMMEDIATE … COMMIT (ROLLBACK on error)."""

    def __init__(self, queue: Queue):
        self.q = queue

    def __enter__(self):
        self.q._lock.acquire()
        try:
            self.q._check_open()
            self.q._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.q._lock.release()
            raise
        return self.q._db

    def __exit__(self, exc_type, exc, tb):
        db = self.q._db
        try:
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                except BaseException:
                    # e.g. disk full: leave no half-open transaction behind for the next caller
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            elif db.in_transaction:
                db.execute("ROLLBACK")
        finally:
            self.q._lock.release()
        return False

