"""Label database: WAL mode, who/when, undo, concurrent writers lose nothing."""

import multiprocessing as mp
import threading

import pytest

from specsift.active.db import LabelDB


def test_wal_labels_undo_and_current(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    assert db.journal_mode == "wal"
    db.set_queue(0, [5, 6, 7], [0.9, 0.8, 0.7], [[0.3, 0.3, 0.4]] * 3)
    db.add_label(5, "EMISSION", "ann", ident="a.fits")
    db.add_label(6, None, "ann")                       # skip
    db.add_label(5, "DOUBLE_PEAK", "bob")              # a second opinion wins (latest)
    assert db.current_labels() == {5: "DOUBLE_PEAK"}
    ev = db.undo("bob")
    assert ev["item"] == 5 and ev["label"] == "DOUBLE_PEAK"
    assert db.current_labels() == {5: "EMISSION"}
    assert db.undo("ann")["item"] == 6                 # ann's skip is undone first
    assert db.handled_by("ann") == {5}
    rows = db.labeller_rows()                          # what exports keep
    assert [(r["item"], r["who"], r["label"]) for r in rows] == [(5, "ann", "EMISSION")]
    assert rows[0]["at"].endswith("+00:00") and rows[0]["ident"] == "a.fits"
    assert [q["item"] for q in db.pending()] == [6, 7]
    assert db.undo("nobody") is None


def test_next_for_claims_so_two_people_get_different_spectra(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    db.set_queue(0, [1, 2, 3], [3, 2, 1], [[1, 0, 0]] * 3)
    a = db.next_for("ann")[0]["item"]
    b = db.next_for("bob")[0]["item"]
    assert a == 1 and b == 2
    assert db.next_for("ann")[0]["item"] == 1          # ann keeps her claimed spectrum


def test_bulk_labels_release_claims_like_single_labels(tmp_path):
    db = LabelDB(tmp_path / "l.sqlite")
    db.set_queue(0, [1, 2, 3], [3, 2, 1], [[1, 0, 0]] * 3)
    assert [r["item"] for r in db.next_for("ann", n=2)] == [1, 2]
    db.add_labels([(1, "EMISSION")], who="oracle")
    assert sorted(int(r[0]) for r in db.query("SELECT item FROM claims")) == [2]
    db.undo("oracle")                                  # item 1 is open again, unclaimed
    assert db.next_for("bob")[0]["item"] == 1


def _writer(path, who, n, barrier=None):
    if barrier is not None:
        barrier.wait()
    db = LabelDB(path)
    for i in range(n):
        db.add_label(i, "EMISSION" if i % 2 else "ABSORPTION", who)
        if i % 10 == 0:
            db.next_for(who)
    db.close()


def test_concurrent_writers_threads_and_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    db = LabelDB(path)
    db.set_queue(0, list(range(200)), [0.0] * 200, [[1, 0, 0]] * 200)
    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=_writer, args=(path, f"t{k}", 150, barrier)) for k in range(4)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, f"p{k}", 150)) for k in range(2)]
    for x in threads + procs:
        x.start()
    for x in threads + procs:
        x.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    events = db.events()
    assert len(events) == 6 * 150                      # nothing lost
    for who in ("t0", "t1", "t2", "t3", "p0", "p1"):
        assert sorted(e["item"] for e in events if e["who"] == who) == list(range(150))
    assert len({e["id"] for e in events}) == len(events)


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ValueError, match="x.sqlite"):
        LabelDB(bad)
