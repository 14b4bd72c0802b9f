"""The label database: one SQLite file (WAL mode) holding everything an active-learning run
needs to stop and resume — configuration, every label event with who/when, the batches the
strategy asked about, per-iteration state, metrics and model checkpoint paths, and the
progress of background jobs started from the web page.

Labels are an append-only event log: labelling, skipping and undoing never overwrite a row,
so two people labelling at once lose nothing and the history of every decision is kept.
The *current* label of a spectrum is its latest event that is a label (not a skip) and not
undone.  Every connection uses WAL with a busy timeout and writes in ``BEGIN IMMEDIATE``
transactions (:mod:`.sqlite`), so concurrent writers from threads or processes serialise
instead of failing.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .sqlite import SQLiteFile

__all__ = ["LabelDB", "now_iso"]

_SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL,          -- row of the pool
    ident TEXT NOT NULL DEFAULT '', -- human identifier (file, TARGETID) for exports
    label TEXT,                     -- class name; NULL = skipped
    who TEXT NOT NULL,
    at TEXT NOT NULL,               -- ISO-8601 UTC
    source TEXT NOT NULL DEFAULT 'web',
    iteration INTEGER,
    undone_at TEXT
);
CREATE INDEX IF NOT EXISTS events_item ON events(item);
CREATE INDEX IF NOT EXISTS events_who ON events(who);
CREATE TABLE IF NOT EXISTS queue (
    iteration INTEGER NOT NULL, rank INTEGER NOT NULL, item INTEGER NOT NULL,
    score REAL, probs TEXT, PRIMARY KEY (iteration, item));
CREATE TABLE IF NOT EXISTS iterations (
    iteration INTEGER PRIMARY KEY, state TEXT NOT NULL, n_labelled INTEGER,
    checkpoint TEXT,                -- relative to the database's folder (or absolute)
    metrics TEXT, started_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS claims (item INTEGER PRIMARY KEY, who TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
    started_at TEXT, finished_at TEXT);
CREATE TABLE IF NOT EXISTS label_data (  -- what a label set records beyond the class name
    event INTEGER PRIMARY KEY,      -- events.id
    targetid TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}' -- JSON: e.g. VI redshift, z quality, comment
);
"""

_PER_LABELLER = """
SELECT e.id, e.item, e.ident, e.label, e.who, e.at, e.source, e.iteration,
       COALESCE(d.targetid, '') AS targetid, COALESCE(d.data, '{}') AS data FROM events e
JOIN (SELECT item, who, MAX(id) AS id FROM events
      WHERE label IS NOT NULL AND undone_at IS NULL GROUP BY item, who) last ON last.id = e.id
LEFT JOIN label_data d ON d.event = e.id
ORDER BY e.item, e.who
"""

_CURRENT = """
SELECT e.item, e.ident, e.label, e.who, e.at, e.source, e.iteration FROM events e
JOIN (SELECT item, MAX(id) AS id FROM events
      WHERE label IS NOT NULL AND undone_at IS NULL GROUP BY item) last ON last.id = e.id
"""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _label_event(c, item: int, label: str | None, who: str, ident: str, source: str,
                 iteration: int | None) -> int:
    """Insert one label event in the open transaction ``c`` and release the item's claim
    (it is answered); returns the event id."""
    cur = c.execute("INSERT INTO events(item, ident, label, who, at, source, iteration) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (int(item), ident, label, who, now_iso(), source, iteration))
    c.execute("DELETE FROM claims WHERE item = ?", (int(item),))
    return int(cur.lastrowid)


class LabelDB(SQLiteFile):
    """Thread-safe handle on a label database (one SQLite connection per thread,
    :class:`.sqlite.SQLiteFile`)."""

    kind = "label database"
    schema = _SCHEMA

    def __init__(self, path, create: bool = True):
        super().__init__(path, create)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", _SCHEMA_VERSION)

    # -- configuration --------------------------------------------------------
    def get_meta(self, key: str, default=None):
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value) -> None:
        with self.write() as c:
            c.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE "
                      "SET value = excluded.value", (key, json.dumps(value)))

    def config(self) -> dict:
        return {r["key"]: json.loads(r["value"]) for r in self.query("SELECT key, value FROM meta")}

    # -- labels ---------------------------------------------------------------
    def add_label(self, item: int, label: str | None, who: str, ident: str = "",
                  source: str = "web", iteration: int | None = None) -> int:
        """Append one label (``None`` = skip) event; returns its event id."""
        with self.write() as c:
            return _label_event(c, item, label, who, ident, source, iteration)

    def add_labels(self, rows, who: str, source: str = "oracle", iteration: int | None = None) -> int:
        """Many (item, label[, ident]) at once in one transaction (the simulated oracle);
        answered items lose their claims, as one label at a time does (:func:`_label_event`),
        so a person labelling beside the oracle is not kept off them until the claim expires."""
        at = now_iso()
        data = [(int(r[0]), r[2] if len(r) > 2 else "", r[1], who, at, source, iteration)
                for r in rows]
        with self.write() as c:
            c.executemany("INSERT INTO events(item, ident, label, who, at, source, iteration) "
                          "VALUES(?,?,?,?,?,?,?)", data)
            c.executemany("DELETE FROM claims WHERE item = ?", [(d[0],) for d in data])
        return len(data)

    def add_label_record(self, item: int, label: str | None, who: str, *, ident: str = "",
                         targetid: str = "", data: dict | None = None, source: str = "web",
                         iteration: int | None = None) -> int:
        """One label event plus what its label set records beyond the class (the TARGETID
        for exports, a VI redshift, quality flag, comment), in one transaction."""
        with self.write() as c:
            event = _label_event(c, item, label, who, ident, source, iteration)
            c.execute("INSERT INTO label_data(event, targetid, data) VALUES(?,?,?)",
                      (event, str(targetid), json.dumps(data or {})))
            return event

    def labeller_rows(self) -> list[dict]:
        """Every labeller's current label of every item (their latest non-undone label
        event), with TARGETID and the label set's extra fields: what exports keep, so two
        people's disagreement is not flattened to the latest one."""
        return [dict(r, data=json.loads(r["data"])) for r in self.query(_PER_LABELLER)]

    def label_data(self, event: int) -> dict:
        """The extra fields stored with one label event ({} when none)."""
        r = self.query("SELECT data FROM label_data WHERE event = ?", (int(event),))
        return json.loads(r[0][0]) if r else {}

    def undo(self, who: str) -> dict | None:
        """Undo ``who``'s latest not-yet-undone event (label or skip); returns it or None."""
        with self.write() as c:
            row = c.execute("SELECT id, item, ident, label FROM events WHERE who = ? AND "
                            "undone_at IS NULL ORDER BY id DESC LIMIT 1", (who,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE events SET undone_at = ? WHERE id = ?", (now_iso(), row["id"]))
            return dict(row)

    def current_labels(self) -> dict[int, str]:
        """item → current label (latest non-undone, non-skip event)."""
        return {int(r["item"]): r["label"] for r in self.query(_CURRENT)}

    def events(self, who: str | None = None) -> list[dict]:
        sql = "SELECT * FROM events" + (" WHERE who = ?" if who else "") + " ORDER BY id"
        return [dict(r) for r in self.query(sql, (who,) if who else ())]

    def handled_by(self, who: str) -> set[int]:
        """Items ``who`` has labelled or skipped (not undone): not shown to them again."""
        return {int(r[0]) for r in self.query(
            "SELECT DISTINCT item FROM events WHERE who = ? AND undone_at IS NULL", (who,))}

    def resolved_items(self) -> set[int]:
        """Items anyone has labelled or skipped (not undone): the loop asks about them no more."""
        return {int(r[0]) for r in self.query(
            "SELECT DISTINCT item FROM events WHERE undone_at IS NULL")}

    def counts(self) -> dict[str, int]:
        rows = self.query("SELECT label, COUNT(*) FROM (" + _CURRENT + ") GROUP BY label")
        return {r[0]: int(r[1]) for r in rows}

    # -- the strategy's batches ----------------------------------------------
    def set_queue(self, iteration: int, items, scores, probs) -> None:
        with self.write() as c:
            c.execute("DELETE FROM queue WHERE iteration = ?", (iteration,))
            c.executemany("INSERT INTO queue(iteration, rank, item, score, probs) VALUES(?,?,?,?,?)",
                          [(iteration, r, int(i), float(s), json.dumps([round(float(x), 5) for x in p]))
                           for r, (i, s, p) in enumerate(zip(items, scores, probs))])

    def queue(self, iteration: int | None = None) -> list[dict]:
        if iteration is None:
            iteration = self.latest_queue_iteration()
            if iteration is None:
                return []
        return [dict(r, probs=json.loads(r["probs"]) if r["probs"] else None) for r in self.query(
            "SELECT * FROM queue WHERE iteration = ? ORDER BY rank", (iteration,))]

    def queued(self, item: int, iteration: int | None = None) -> dict | None:
        """The queue row of ``item`` in ``iteration`` (default latest), or None."""
        it = self.latest_queue_iteration() if iteration is None else iteration
        if it is None:
            return None
        r = self.query("SELECT * FROM queue WHERE iteration = ? AND item = ?", (it, int(item)))
        return dict(r[0], probs=json.loads(r[0]["probs"]) if r[0]["probs"] else None) if r else None

    def latest_queue_iteration(self) -> int | None:
        r = self.query("SELECT MAX(iteration) FROM queue")[0][0]
        return None if r is None else int(r)

    def pending(self, iteration: int | None = None) -> list[dict]:
        """Queued rows of ``iteration`` (default latest) that have no current label yet."""
        done = self.current_labels()
        return [q for q in self.queue(iteration) if q["item"] not in done]

    def next_for(self, who: str, n: int = 1, claim_seconds: float = 120.0) -> list[dict]:
        """The next ``n`` queued spectra for ``who``: not labelled, not handled by them, not
        claimed by somebody else in the last ``claim_seconds`` (so two people labelling at
        once see different spectra); the rows returned are claimed for ``who``."""
        handled = self.handled_by(who)
        now = time.time()
        with self.write() as c:
            claimed = {int(r[0]) for r in c.execute(
                "SELECT item FROM claims WHERE who != ? AND until > ?", (who, now))}
            done = {int(r[0]) for r in c.execute(
                "SELECT item FROM (" + _CURRENT + ")")}
            it = c.execute("SELECT MAX(iteration) FROM queue").fetchone()[0]
            rows = [] if it is None else c.execute(
                "SELECT * FROM queue WHERE iteration = ? ORDER BY rank", (it,)).fetchall()
            out = []
            for r in rows:
                item = int(r["item"])
                if item in done or item in handled or item in claimed:
                    continue
                out.append(dict(r, probs=json.loads(r["probs"]) if r["probs"] else None))
                c.execute("INSERT INTO claims(item, who, until) VALUES(?,?,?) ON CONFLICT(item) "
                          "DO UPDATE SET who = excluded.who, until = excluded.until",
                          (item, who, now + claim_seconds))
                if len(out) >= n:
                    break
            return out

    # -- iterations -----------------------------------------------------------
    def set_iteration(self, iteration: int, state: str, **fields) -> None:
        cols = {"state": state, "updated_at": now_iso()}
        if "n_labelled" in fields:
            cols["n_labelled"] = fields["n_labelled"]
        if "checkpoint" in fields:
            cols["checkpoint"] = self._stored_path(fields["checkpoint"])
        if "metrics" in fields:
            cols["metrics"] = json.dumps(fields["metrics"])
        with self.write() as c:
            c.execute("INSERT INTO iterations(iteration, state, started_at, updated_at) "
                      "VALUES(?,?,?,?) ON CONFLICT(iteration) DO NOTHING",
                      (iteration, state, cols["updated_at"], cols["updated_at"]))
            sets = ", ".join(f"{k} = ?" for k in cols)
            c.execute(f"UPDATE iterations SET {sets} WHERE iteration = ?",
                      (*cols.values(), iteration))

    def iterations(self) -> list[dict]:
        return [dict(r, metrics=json.loads(r["metrics"]) if r["metrics"] else {},
                     checkpoint=self.resolve_path(r["checkpoint"]))
                for r in self.query("SELECT * FROM iterations ORDER BY iteration")]

    def last_iteration(self) -> dict | None:
        its = self.iterations()
        return its[-1] if its else None

    def latest_checkpoint(self) -> str | None:
        r = self.query("SELECT checkpoint FROM iterations WHERE checkpoint IS NOT NULL "
                       "ORDER BY iteration DESC LIMIT 1")
        return self.resolve_path(r[0][0]) if r else None

    # Checkpoint paths are stored relative to the database's folder, so a run directory can
    # be moved, or the loop resumed from another working directory, and still find them.
    def _stored_path(self, path) -> str | None:
        if path is None:
            return None
        p, base = Path(path).resolve(), self.path.resolve().parent
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            return str(p)

    def resolve_path(self, stored: str | None) -> str | None:
        """A stored checkpoint path as a usable one (relative: to the database's folder;
        a database written before paths were stored so keeps cwd-relative ones working)."""
        if not stored:
            return stored
        p = Path(stored)
        if p.is_absolute():
            return str(p)
        here = self.path.parent / p
        return str(here) if here.exists() or not p.exists() else str(p.resolve())

    # -- background jobs ------------------------------------------------------
    def start_job(self, kind: str) -> int | None:
        """Register a job unless one of this kind is already running (returns None then)."""
        with self.write() as c:
            if c.execute("SELECT 1 FROM jobs WHERE kind = ? AND state = 'running'",
                         (kind,)).fetchone():
                return None
            cur = c.execute("INSERT INTO jobs(kind, state, started_at) VALUES(?, 'running', ?)",
                            (kind, now_iso()))
            return int(cur.lastrowid)

    def update_job(self, job: int, progress: float | None = None, message: str | None = None,
                   state: str | None = None) -> None:
        sets, vals = [], []
        if progress is not None:
            sets.append("progress = ?"); vals.append(float(progress))
        if message is not None:
            sets.append("message = ?"); vals.append(message)
        if state is not None:
            sets.append("state = ?"); vals.append(state)
            if state != "running":
                sets.append("finished_at = ?"); vals.append(now_iso())
        if sets:
            with self.write() as c:
                c.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*vals, job))

    def fail_running_jobs(self, message: str) -> int:
        """Mark jobs still 'running' as failed (their process is gone); returns how many."""
        with self.write() as c:
            return c.execute("UPDATE jobs SET state = 'failed', message = ?, finished_at = ? "
                             "WHERE state = 'running'", (message, now_iso())).rowcount

    def job(self, job: int | None = None) -> dict | None:
        sql = "SELECT * FROM jobs " + ("WHERE id = ?" if job is not None else "") + \
              " ORDER BY id DESC LIMIT 1"
        r = self.query(sql, (job,) if job is not None else ())
        return dict(r[0]) if r else None
