"""One SQLite file shared by threads and processes: a connection per thread in WAL mode
with a busy timeout, and write transactions that take the lock up front.

Apart from :mod:`.db` because it is the storage engine, not the label schema: how to open
the file safely from the web server's threads, the loop's process and a second labeller at
once, and how nested writes join one transaction, is the same whatever tables the file
holds; :class:`~specsift.active.db.LabelDB` adds its schema and queries on top.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SQLiteFile"]


class SQLiteFile:
    """Thread-safe handle on one SQLite file (one connection per thread); subclasses set
    :attr:`schema` and :attr:`kind`."""

    #: what the file is, in error messages ("<path>: no such <kind>")
    kind = "database"
    #: SQL script run on every open (``CREATE … IF NOT EXISTS``)
    schema = ""

    def __init__(self, path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such {self.kind}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        try:
            conn.executescript(self.schema)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not a {self.kind} ({exc})") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise ValueError(f"{self.path}: cannot open {self.kind} ({exc})") from None
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def write(self):
        """A write transaction that takes the lock up front (no deadlock on upgrade).

        Nested calls on one thread join the outer transaction, so several writes (a state
        transition of the active loop: new iteration, its queue, the old one done) commit
        together or not at all, whatever kills the process in between."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:       # busy beyond the timeout: retry
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:                 # also when COMMIT itself failed
                conn.execute("ROLLBACK")
            raise

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @property
    def journal_mode(self) -> str:
        return self.query("PRAGMA journal_mode")[0][0]
