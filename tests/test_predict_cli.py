"""`specsift predict` as a user runs it: SIGKILL mid-run then --resume, exit codes, default model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from _pipeline_data import HALPHA_STORE_GRID, assert_same_catalog, make_model, make_store

from specsift.io import read_catalog
from specsift.pipeline import default_model_name, predict


def _main(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (saves a Python + torch start-up per call)."""
    from specsift.cli import main
    rc = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "specsift.cli", "predict", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, capsys):
    store = make_store(tmp_path / "big.h5", 1000, seed=7, grid=HALPHA_STORE_GRID)
    model = make_model(tmp_path / "m.pt", window=True)
    out = tmp_path / "cat.parquet"
    parts = tmp_path / "cat.parquet.parts"
    args = (store, "-o", out, "--model", model, "--batch-size", "10", "--no-progress",
            "--threads", "1")
    proc = _cli(*args)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("u*-b*.arrow"))) >= 6:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    n_parts = len(list(parts.glob("u*-b*.arrow")))
    assert 6 <= n_parts < 1000 // 10                        # killed mid-run

    rc, _, err = _main(capsys, *args)               # without --resume the run is protected
    assert rc == 2 and "--resume" in err
    rc, stdout, err = _main(capsys, *args, "--resume")
    assert rc == 0, err
    assert "resuming" in err and "1000 rows" in stdout
    cat = read_catalog(out)
    assert len(cat) == 1000
    ids = np.asarray(cat["TARGETID"])
    assert len(np.unique(ids)) == 1000 and (np.diff(ids) == 1).all()
    ref = tmp_path / "ref.parquet"
    predict([store], ref, model=model, batch_size=10, progress=False, threads=1)
    assert_same_catalog(cat, read_catalog(ref), rtol=0)

    rc, _, err = _main(capsys, *args, "--resume")           # finished: nothing to do
    assert rc == 0 and "already complete" in err


def test_bad_arguments_give_one_line_errors(tmp_path, capsys):
    model = make_model(tmp_path / "m.pt")
    rc, _, err = _main(capsys, tmp_path / "missing_dir_*.fits", "-o", tmp_path / "c.fits",
                       "--model", model)
    assert rc == 2 and "no files match" in err
    store = make_store(tmp_path / "s.h5", 10)
    rc, _, err = _main(capsys, store, "-o", tmp_path / "c.txt", "--model", model, "--no-progress")
    assert rc == 2 and "extension" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _main(capsys, store, "-o", tmp_path / "c.fits", "--model", tmp_path / "nope.pt")
    assert rc == 2 and "nope.pt" in err


def test_default_model_prefers_gasnet(monkeypatch, tmp_path):
    import specsift.models.base as base
    bundled = {"speccznet": tmp_path / "speccznet.pt", "eigen": tmp_path / "eigen.pt"}
    monkeypatch.setattr(base, "bundled_path", lambda name: bundled.get(name))
    assert default_model_name() == "speccznet"
    bundled["gasnet"] = tmp_path / "gasnet.pt"
    assert default_model_name() == "gasnet"
    bundled.clear()
    with pytest.raises(FileNotFoundError, match="--model"):
        default_model_name()
