"""`specsift info`, `convert` and `demo` through specsift.cli.main, and once as a process."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np

from specsift.cli import main
from specsift.io import SpectralStore


def test_info_sdss_file(shared_data, capsys):
    rc = main(["info", str(shared_data / "sdss" / "spec-0266-51602-0013.fits")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "spectra: 1" in out and "CLASS GALAXY 1" in out and "z 0.1213" in out
    # 16.24 = SDSS's own SN_MEDIAN_ALL (16.25) for this spectrum: only bad and_mask bits masked
    assert "3803.6–9202.4 Å" in out and "median S/N: 16.2" in out


def test_info_every_shared_file(shared_data, capsys):
    rc = main(["info", str(shared_data / "sdss"), str(shared_data / "lamost"),
               str(shared_data / "desi")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    n_files = sum(1 for d in ("sdss", "lamost", "desi")
                  for p in (shared_data / d).rglob("*.fits"))
    lines = out.splitlines()                  # one table: header, rule, a row per file,
    assert len(lines) == n_files + 4          # rule, TOTAL
    assert lines[0].startswith("FILE") and lines[-1].startswith(f"TOTAL: {n_files} file(s)")
    row = {ln.split()[0]: ln for ln in lines[2:-2]}
    assert "STAR 20, QSO 16, GALAXY 14" in row["sdss/sdss-labelled-50.fits"]
    assert " 50 " in row["sdss/sdss-labelled-50.fits"]
    assert "ESTIMATED_IVAR 1" in row["lamost/oe270005.fits"]   # Ondřejov spectrum
    assert "GALAXY 1; z 0.3687" in row["desi/fastspecfit/redrock-4-80613-thru20210324.fits"]
    spectra = sum(int(ln.split()[2]) for ln in lines[2:-2] if ln.split()[2].isdigit())
    assert f" {spectra} " in lines[-1] and "STAR 58" in lines[-1]
    rc = main(["info", "--long", str(shared_data / "lamost")])   # the per-file blocks
    out = capsys.readouterr().out
    assert rc == 0 and "CLASS STAR 1; SUBCLASS K5 1" in out


def test_info_h5_and_errors(tmp_path, capsys):
    f = tmp_path / "arr.h5"
    with h5py.File(f, "w") as h5:
        h5["flux"] = np.ones((4, 300))
        h5["ivar"] = np.full((4, 300), 4.0)
        h5["loglam"] = 3.6 + 1e-4 * np.arange(300)
    assert main(["info", str(f)]) == 0
    out = capsys.readouterr().out
    assert "spectra: 4" in out and "median S/N: 2.00" in out and "[hdf5]" in out
    rc = main(["info", str(tmp_path / "missing.fits")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "missing.fits: no such file" in err


def test_convert_and_resume(shared_data, tmp_path, capsys):
    out = tmp_path / "sdss.h5"
    inputs = [str(shared_data / "sdss" / "spec-0266-51602-0013.fits"),
              str(shared_data / "sdss" / "sdss-qso-10.fits")]
    assert main(["convert", *inputs, "-o", str(out), "--batch-size", "4"]) == 0
    with SpectralStore(out) as st:
        assert len(st) == 11 and st.loglam.size == 4076
        assert st.read_meta(["CLASS"])["CLASS"][0] == "GALAXY"
    # refuses to overwrite; --resume on a finished store is a no-op
    assert main(["convert", *inputs, "-o", str(out)]) == 2
    assert main(["convert", *inputs, "-o", str(out), "--resume"]) == 0
    # an interrupted run (store with only 4 rows, not done) is completed by --resume
    with SpectralStore(out, "a") as st:
        first = st.read(slice(0, 4))
        key = st.attrs["convert_inputs"]
    partial = tmp_path / "partial.h5"
    with SpectralStore(partial, "w") as st:
        st.append(first)
        st.attrs["convert_inputs"] = key
        st.attrs["convert_done"] = False
    assert main(["convert", *inputs, "-o", str(partial), "--resume"]) == 0
    with SpectralStore(partial) as a, SpectralStore(out) as b:
        assert len(a) == 11
        np.testing.assert_array_equal(a.read(slice(None)).flux, b.read(slice(None)).flux)
    assert main(["convert", *inputs, "-o", str(tmp_path / "g.h5"), "--grid", "3.6:3.9:2e-4"]) == 0
    with SpectralStore(tmp_path / "g.h5") as st:
        assert st.loglam.size == 1501
    assert main(["convert", *inputs, "-o", str(tmp_path / "x.h5"), "--grid", "bad"]) == 2
    capsys.readouterr()


def test_demo_predicts_the_bundled_spectra(tmp_path, capsys):
    """The main job: predict with the default bundled model, table next to SDSS, report."""
    from specsift.io import read_catalog
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    cat = read_catalog(tmp_path / "catalog.fits")
    assert len(cat) == 58 and np.unique(cat["TARGETID"]).size == 58
    assert {"Z", "ZERR", "ZWARN", "CLASS_LABEL", "SPECTYPE", "MODEL"} <= set(cat.colnames)
    assert "spec-0266-51602-0013.fits" in out and "three-class accuracy" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_matched"] == 58 and 0.0 <= metrics["three_class_accuracy"] <= 1.0
    png = tmp_path / "demo_spectra.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "demo_spectra.png" in (tmp_path / "index.html").read_text()


def test_info_as_a_process(shared_data):
    r = subprocess.run([sys.executable, "-m", "specsift.cli", "info",
                        str(shared_data / "lamost" / "oe270005.fits"), "/nonexistent/x.fits"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "[wcs1d]" in r.stdout and "ESTIMATED_IVAR" in r.stdout
    assert r.stderr.strip().splitlines() == ["specsift info: error: /nonexistent/x.fits: no such file"]
    assert "Traceback" not in r.stderr
