"""The active loop killed after every database write: the state stays consistent and a
resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from _spectra import emission_pool

from specsift.active.db import LabelDB
from specsift.active.loop import ActiveLoop, LoopConfig
from specsift.active.oracle import TruthOracle
from specsift.active.pool import open_pool

#: LabelDB methods that write; a kill can fall after any of them
WRITES = ("set_meta", "set_iteration", "set_queue", "add_labels", "add_label")
TARGET = 2                     # run until iteration 2 is queued (two trainings)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the loop handles it."""


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory):
    return emission_pool(tmp_path_factory.mktemp("kp") / "pool.h5", 200, 0.2, seed=5)


def _cfg():
    return LoopConfig(strategy="margin", batch=15, initial=15, width=0.125, train_steps=8,
                      max_epochs=3, seed=2)


def _until_target(loop: ActiveLoop) -> None:
    while True:
        last = loop.db.last_iteration()
        if last and last["iteration"] == TARGET and last["state"] == "labelling":
            return
        loop.step()


def assert_consistent(db: LabelDB) -> None:
    """What any committed state of the loop looks like."""
    its = db.iterations()
    if not its:
        return
    nums = [r["iteration"] for r in its]
    assert nums == list(range(len(its))), nums
    *before, last = its
    assert all(r["state"] == "done" for r in before), [r["state"] for r in its]
    assert last["state"] in ("labelling", "training", "trained")
    queued = {r[0] for r in db.query("SELECT DISTINCT iteration FROM queue")}
    assert queued == set(nums), (queued, nums)                  # every iteration has its queue
    if last["state"] == "trained":
        assert last["checkpoint"] and os.path.exists(last["checkpoint"])
    if last["state"] == "labelling":                            # no labels given in advance
        oracle_now = db.query("SELECT COUNT(*) FROM events WHERE iteration = ?",
                              (last["iteration"],))[0][0]
        assert oracle_now == 0


def _writes(monkeypatch, on_call):
    for name in WRITES:
        real = getattr(LabelDB, name)

        def wrapped(self, *a, _real=real, **k):
            out = _real(self, *a, **k)
            on_call()
            return out
        monkeypatch.setattr(LabelDB, name, wrapped)


def test_kill_after_every_write_then_resume(pool_path, tmp_path, monkeypatch):
    pool = open_pool(pool_path)
    calls = {"n": 0}
    with monkeypatch.context() as m:
        _writes(m, lambda: calls.__setitem__("n", calls["n"] + 1))
        ref = ActiveLoop(tmp_path / "ref.sqlite", pool, _cfg(), oracle=TruthOracle(pool),
                         log=None)
        _until_target(ref)
    n_writes = calls["n"]
    print(f"kill points: {n_writes}")
    assert n_writes >= 10, n_writes
    want_queue = [q["item"] for q in ref.db.queue()]
    want_labels = ref.db.current_labels()

    for k in range(1, n_writes + 1):
        db_path = tmp_path / f"kill{k:02d}.sqlite"
        seen = {"n": 0}

        def maybe_kill():
            seen["n"] += 1
            if seen["n"] == k:
                raise Killed(k)
        with monkeypatch.context() as m:
            _writes(m, maybe_kill)
            with pytest.raises(Killed):
                loop = ActiveLoop(db_path, pool, _cfg(), oracle=TruthOracle(pool), log=None)
                _until_target(loop)
        fresh = LabelDB(db_path)                                 # as a new process sees it
        assert_consistent(fresh)
        again = ActiveLoop(db_path, pool, _cfg(), oracle=TruthOracle(pool), log=None)
        _until_target(again)
        assert_consistent(again.db)
        assert [q["item"] for q in again.db.queue()] == want_queue, f"kill after write {k}"
        assert again.db.current_labels() == want_labels, f"kill after write {k}"


def test_sigkill_between_new_iteration_and_its_queue(pool_path, tmp_path):
    """A real SIGKILL right after the first iteration row is written (inside the transition)."""
    db_path = tmp_path / "l.sqlite"
    script = textwrap.dedent(f"""
        import os, signal
        from specsift.active.db import LabelDB
        from specsift.active.loop import ActiveLoop, LoopConfig
        real = LabelDB.set_iteration
        def set_iteration(self, *a, **k):
            real(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        LabelDB.set_iteration = set_iteration
        cfg = LoopConfig(batch=15, initial=15, width=0.125, seed=2)
        ActiveLoop({str(db_path)!r}, {str(pool_path)!r}, cfg, log=None).step()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, proc.stderr
    db = LabelDB(db_path)
    assert_consistent(db)
    assert db.iterations() == [] and db.queue() == []
    loop = ActiveLoop(db_path, pool_path, None, log=None)
    assert loop.step() == "labelling" and len(loop.db.queue(0)) == 15


def test_checkpoint_paths_are_relative_to_the_database(pool_path, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    pool = open_pool(pool_path)
    loop = ActiveLoop("l.sqlite", pool, _cfg(), oracle=TruthOracle(pool), log=None)
    while loop.step() != "trained":
        pass
    stored = loop.db.query("SELECT checkpoint FROM iterations WHERE iteration = 0")[0][0]
    assert stored == "l.models/iter0000.pt"
    moved = tmp_path / "moved"
    run.rename(moved)
    monkeypatch.chdir(tmp_path)                       # another cwd, and the folder moved
    again = ActiveLoop(moved / "l.sqlite", pool, None, oracle=TruthOracle(pool), log=None)
    assert os.path.exists(again.db.latest_checkpoint())
    assert again.step() == "labelling"                # scored from the stored checkpoint
    assert again.db.iterations()[0]["state"] == "done"
