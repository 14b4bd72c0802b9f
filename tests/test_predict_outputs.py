"""`specsift predict` refuses bad outputs before any work, keeps other runs' catalogs, and
leaves no worker processes behind after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _pipeline_data import (
    GRID,
    HALPHA_STORE_GRID,
    assert_same_catalog,
    make_fits_table,
    make_model,
    make_store,
    spectra,
)

from specsift.io import read_catalog
from specsift.pipeline import predict
from specsift.pipeline.preflight import OutputError, OutputLock


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "m.pt", window=True)


def _main(capsys, *args) -> tuple[int, str, str]:
    from specsift.cli import main
    rc = main(["predict", *map(str, args), "--no-progress", "--threads", "1"])
    out, err = capsys.readouterr()
    return rc, out, err


def _fits(path: Path, n: int, first_id: int, seed: int = 0) -> Path:
    flux, ivar = spectra(n, seed)
    return make_fits_table(path, flux, ivar, GRID.loglam, first_id)


def _no_work(monkeypatch):
    """Loading the model is the first piece of work: the checks must come before it."""
    import specsift.pipeline.run as run

    def fail(*a, **k):
        raise AssertionError("work started before the output was checked")
    monkeypatch.setattr(run, "_model_ref", fail)


def _parts(root: Path) -> list[Path]:
    return list(root.rglob("*.parts"))


@pytest.mark.parametrize("name", ["c.txt", "c", "adir", "c.xlsx"])   # .fits.gz/.ecsv: written
def test_bad_output_names_fail_before_work_and_leave_nothing(tmp_path, capsys, monkeypatch,
                                                            model, name):
    store = make_store(tmp_path / "s.h5", 20, grid=HALPHA_STORE_GRID)
    (tmp_path / "adir").mkdir()
    with monkeypatch.context() as m:
        _no_work(m)
        rc, _, err = _main(capsys, store, "-o", tmp_path / name, "--model", model)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert name in err and ("extension" in err or "directory" in err or ".fits" in err)
    assert not _parts(tmp_path) and not list(tmp_path.glob(".*.lock"))
    rc, out, err = _main(capsys, store, "-o", tmp_path / "c.fits", "--model", model)
    assert rc == 0 and "20 rows" in out, err                # the corrected rerun just works


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_fails_before_work(tmp_path, capsys, monkeypatch, model):
    store = make_store(tmp_path / "s.h5", 20, grid=HALPHA_STORE_GRID)
    _no_work(monkeypatch)
    rc, _, err = _main(capsys, store, "-o", tmp_path / "c.fits", "--model", model,
                       "--device", "cuda")
    assert rc == 2 and "CUDA" in err and not _parts(tmp_path)


def test_output_equal_to_an_input_is_refused(tmp_path, capsys, monkeypatch, model):
    spec = _fits(tmp_path / "x.fits", 5, 100)
    before = spec.read_bytes()
    _no_work(monkeypatch)
    rc, _, err = _main(capsys, spec, "-o", spec, "--model", model)
    assert rc == 2 and "is also an input" in err
    assert spec.read_bytes() == before and not _parts(tmp_path)


def test_catalog_inside_an_input_folder_is_not_read_back(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    _fits(d / "a.fits", 6, 100)
    model = make_model(tmp_path / "full.pt")           # full grid: the FITS spectra cover it
    for _ in range(2):                                 # the second run finds d/cat.fits
        rc, out, err = _main(capsys, d, "-o", d / "cat.fits", "--model", model)
        assert rc == 0 and "6 rows" in out and "unreadable" not in out, (out, err)
    cat = read_catalog(d / "cat.fits")
    assert sorted(np.asarray(cat["TARGETID"]).tolist()) == list(range(100, 106))


def test_finished_catalog_of_other_inputs_is_kept(tmp_path, capsys, model):
    a = make_store(tmp_path / "a.h5", 12, seed=1, first_id=1, grid=HALPHA_STORE_GRID)
    b = make_store(tmp_path / "b.h5", 7, seed=2, first_id=500, grid=HALPHA_STORE_GRID)
    for ext in (".fits", ".parquet"):
        out = tmp_path / f"cat{ext}"
        assert _main(capsys, a, "-o", out, "--model", model)[0] == 0
        before = out.read_bytes()
        rc, _, err = _main(capsys, b, "-o", out, "--model", model)
        assert rc == 2 and "other inputs" in err and "--overwrite" in err
        rc, _, err = _main(capsys, b, "-o", out, "--model", model, "--resume")
        assert rc == 2 and "other inputs" in err                   # not "already complete"
        assert out.read_bytes() == before and not _parts(tmp_path)
        rc, _, err = _main(capsys, a, "-o", out, "--model", model, "--resume")
        assert rc == 0 and "already complete" in err               # its own inputs: done
        assert _main(capsys, a, "-o", out, "--model", model)[0] == 0   # same inputs: remade
        rc, out_, err = _main(capsys, b, "-o", out, "--model", model, "--overwrite")
        assert rc == 0 and "7 rows" in out_
        assert np.asarray(read_catalog(out)["TARGETID"]).min() == 500


def test_every_input_unreadable_exits_2(tmp_path, capsys, model):
    for k in range(2):
        (tmp_path / f"bad{k}.fits").write_bytes(b"SIMPLE  =  T" + b"\x00junk" * 40)
    rc, out, err = _main(capsys, tmp_path / "bad0.fits", tmp_path / "bad1.fits",
                         "-o", tmp_path / "c.parquet", "--model", model)
    assert rc == 2 and "no input could be read" in err
    good = make_store(tmp_path / "s.h5", 5, grid=HALPHA_STORE_GRID)
    rc, out, err = _main(capsys, tmp_path / "bad0.fits", good, "-o", tmp_path / "d.parquet",
                         "--model", model)
    assert rc == 0 and "1 file(s) unreadable" in out


def test_a_second_run_on_a_locked_catalog_stops_and_deletes_nothing(tmp_path, model,
                                                                    monkeypatch):
    """While one run holds the catalog (here: the lock and its merge file), a --resume of
    the same catalog refuses at once instead of sharing and deleting its files."""
    store = make_store(tmp_path / "s.h5", 30, grid=HALPHA_STORE_GRID)
    out = tmp_path / "cat.parquet"
    merge_tmp = tmp_path / f".cat.parquet.{os.getpid() + 1}.tmp"
    with OutputLock(out):
        merge_tmp.write_bytes(b"rows being merged")
        with pytest.raises(OutputError, match=rf"another specsift predict \(pid {os.getpid()}\)"):
            predict([store], out, model=model, batch_size=10, resume=True, progress=False)
        assert merge_tmp.exists() and not out.exists()
    merge_tmp.unlink()
    predict([store], out, model=model, batch_size=10, progress=False)  # lock released
    assert len(read_catalog(out)) == 30 and not list(tmp_path.glob(".*.lock"))


# ------------------------------------------------------------------- processes
def _children(pid: int) -> set[int]:
    """Descendants of ``pid`` (Linux /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_workers_2_leaves_no_orphans_and_resume_completes(tmp_path, capsys):
    store = make_store(tmp_path / "big.h5", 400, seed=7, grid=HALPHA_STORE_GRID)
    model = make_model(tmp_path / "m.pt", window=True)
    out, parts = tmp_path / "cat.parquet", tmp_path / "cat.parquet.parts"
    args = [store, "-o", out, "--model", model, "--batch-size", "10", "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "specsift.cli", "predict", *map(str, args),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers: set[int] = set()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        workers |= _children(proc.pid)
        if parts.is_dir() and len(list(parts.glob("u*.done"))) >= 1:
            break
        time.sleep(0.05)
    workers |= _children(proc.pid)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "worker processes outlived the killed run"
    assert not out.exists()

    rc, stdout, err = _main(capsys, *args, "--resume")
    assert rc == 0 and "resuming" in err and "400 rows" in stdout, err
    ref = tmp_path / "ref.parquet"
    predict([store], ref, model=model, batch_size=10, progress=False, threads=1)
    assert_same_catalog(read_catalog(out), read_catalog(ref), rtol=0)


# ------------------------------------------------------------------- other commands
def test_convert_never_overwrites_an_input_nor_reads_its_store_back(tmp_path, capsys):
    from specsift.cli import main
    from specsift.io import SpectralStore
    (tmp_path / "d").mkdir()
    spec = _fits(tmp_path / "d" / "x.fits", 4, 100)
    before = spec.read_bytes()
    rc = main(["convert", str(spec), "-o", str(spec), "--overwrite"])
    assert rc == 2 and "is also an input" in capsys.readouterr().err
    assert spec.read_bytes() == before
    for flag in ([], ["--overwrite"]):             # the second run finds d/s.h5 in d/
        assert main(["convert", str(tmp_path / "d"), "-o", str(tmp_path / "d" / "s.h5"),
                     *flag]) == 0
    with SpectralStore(tmp_path / "d" / "s.h5", "r") as st:
        assert len(st) == 4


@pytest.mark.parametrize("name", ["adir", "m.txt"])
def test_train_checks_its_output_before_training(tmp_path, capsys, name):
    from specsift.cli import main
    (tmp_path / "adir").mkdir()
    store = make_store(tmp_path / "s.h5", 8, grid=HALPHA_STORE_GRID)
    rc = main(["train", "--model", "vgg1d", "--data", str(store), "-o", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert rc == 2 and name in err and ("directory" in err or ".pt" in err)
    assert not list(tmp_path.glob("*.ckpt"))
