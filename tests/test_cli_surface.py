"""CLI surface: --version, progress bars counting spectra, simulate's overwrite guard and
expected size."""

from __future__ import annotations

from importlib import resources

import pytest
from _pipeline_data import make_model

from specsift import __version__
from specsift.cli import main

DEMO = resources.files("specsift") / "data" / "demo"


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"specsift {__version__} (") and "astropy" in out


def test_simulate_refuses_to_overwrite_and_says_the_size(tmp_path, capsys):
    out = tmp_path / "sim.h5"
    assert main(["simulate", "--classes", "three", "--n", "20", "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "about 660.3 kB on disk" in printed                 # 20 × 4076 px × 8.1 B
    before = out.stat().st_mtime_ns
    assert main(["simulate", "--n", "20", "-o", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == before                      # untouched
    assert main(["simulate", "--n", "20", "-o", str(out), "--quiet", "--overwrite"]) == 0


def test_100k_store_size_is_announced():
    from specsift.commands.simulate import expected_size
    assert expected_size(100_000) == "3.3 GB"


def test_predict_bar_counts_spectra(tmp_path, capsys):
    model = make_model(tmp_path / "tiny.pt", window=True)
    files = sorted(str(p) for p in DEMO.iterdir() if p.name.startswith("spec-"))
    assert main(["predict", *files, "--model", str(model), "-o", str(tmp_path / "c.fits")]) == 0
    err = capsys.readouterr().err
    assert f"{len(files)}/{len(files)}" in err and "spectra/s" in err


def test_convert_bar_grows_to_the_spectra_read(tmp_path, capsys):
    assert main(["convert", str(DEMO), "-o", str(tmp_path / "d.h5")]) == 0
    err = capsys.readouterr().err
    assert "58/58" in err and "spectra" in err                 # 9 files, 58 spectra
