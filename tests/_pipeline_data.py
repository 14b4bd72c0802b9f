"""Small on-disk inputs for the predict pipeline tests: a store, FITS tables (one with NaN
flux, one with zero ivar, one covering little of the grid), an unreadable file, and a
tiny real registered model.

Why synthetic spectra and an untrained `vgg1d`: these tests check the pipeline's
mechanics (order, resume, flags, equality across engines), which do not depend on what
the network learned; they must run in seconds.  Accuracy is measured in benchmarks/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from specsift.io.store import SpectralStore
from specsift.spectra import DEFAULT_GRID, LogGrid, SpectraBatch

GRID = DEFAULT_GRID


def spectra(n: int, seed: int, npix: int = GRID.size) -> tuple[np.ndarray, np.ndarray]:
    """Continuum + one emission line at a random place + noise (flux, ivar)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, npix)
    flux = 1 + 0.5 * x[None, :] * rng.uniform(-1, 1, (n, 1))
    centre = rng.uniform(0.05, 0.95, (n, 1))
    flux = flux + rng.uniform(0.5, 3, (n, 1)) * np.exp(-0.5 * ((x - centre) / 0.002) ** 2)
    flux = flux + rng.normal(0, 0.1, (n, npix))
    return flux.astype("f4"), np.full((n, npix), 100.0, "f4")


def make_store(path: Path, n: int, seed: int = 0, first_id: int = 1, grid=GRID) -> Path:
    flux, ivar = spectra(n, seed, grid.size)
    with SpectralStore(path, "w") as st:
        for lo in range(0, n, 500):
            hi = min(lo + 500, n)
            meta = Table({"TARGETID": np.arange(first_id + lo, first_id + hi, dtype=np.int64)})
            st.append(SpectraBatch(grid.loglam, flux[lo:hi], ivar[lo:hi], None, meta))
    return path


def make_fits_table(path: Path, flux, ivar, loglam, first_id: int) -> Path:
    n = len(flux)
    t = Table({"TARGETID": np.arange(first_id, first_id + n, dtype=np.int64),
               "flux": flux, "ivar": ivar})
    grid = Table({"loglam": np.asarray(loglam, np.float64)[None, :]})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t), fits.table_to_hdu(grid)]).writeto(path)
    return path


def make_inputs(root: Path) -> dict:
    """A directory ``files/`` whose sorted order puts the unreadable file in the middle."""
    root.mkdir(parents=True, exist_ok=True)
    files = root / "files"
    files.mkdir()
    flux, ivar = spectra(30, seed=1)
    make_fits_table(files / "a_good.fits", flux, ivar, GRID.loglam, 1000)
    (files / "b_broken.fits").write_bytes(b"SIMPLE  =                    T" + b"\x00garbage" * 50)
    f, i = spectra(4, seed=2)
    f[0, 100:200] = np.nan                                   # NaN flux → BAD_INPUT
    i[1, :] = 0.0                                            # zero ivar → NODATA
    make_fits_table(files / "c_bad_pixels.fits", f, i, GRID.loglam, 2000)
    short = GRID.loglam[:800]                                # < 50 % of the grid
    f, i = spectra(3, seed=3, npix=short.size)
    make_fits_table(files / "d_short.fits", f, i, short, 3000)
    flux, ivar = spectra(25, seed=4)
    make_fits_table(files / "e_good.fits", flux, ivar, GRID.loglam, 4000)
    store = make_store(root / "store.h5", 600, seed=5, first_id=10_000)
    return {"files": files, "store": store, "n_files_rows": 30 + 1 + 4 + 3 + 25,
            "n_store": 600}


#: 6400–6850 Å: holds vgg1d's Hα window with room to spare (small, fast stores)
HALPHA_STORE_GRID = LogGrid(3.806, 1e-4, 300)


def make_model(path: Path, window: bool = False) -> Path:
    """A real registered model, fast and deterministic: `vgg1d` (untrained, narrow) on the
    full grid, or with ``window`` on its 140-pixel Hα window (≈30× faster)."""
    from specsift.models.vgg1d import HALPHA_WINDOW, VGG1D
    VGG1D(class_set="three", window=HALPHA_WINDOW if window else None, width=0.05,
          seed=0).save(path)
    return path


def as_plain(t: Table) -> dict:
    """Columns as plain arrays (strings decoded, masked floats → NaN) for comparisons."""
    out = {}
    for name in t.colnames:
        col = t[name]
        a = np.ma.getdata(col) if not hasattr(col, "filled") else (
            col.filled(np.nan) if col.dtype.kind == "f" else col.filled())
        a = np.asarray(a)
        if a.dtype.kind == "S":
            a = np.char.decode(a, "utf-8")
        out[name] = a
    return out


def assert_same_catalog(a: Table, b: Table, rtol: float = 1e-5) -> None:
    """Same columns and rows; exact for ints/strings, close for floats (thread counts
    may change float summation order)."""
    assert a.colnames == b.colnames
    assert len(a) == len(b)
    pa_, pb = as_plain(a), as_plain(b)
    for name in a.colnames:
        x, y = pa_[name], pb[name]
        if x.dtype.kind == "f" or y.dtype.kind == "f":      # CSV may read 0.0 back as int
            np.testing.assert_allclose(x.astype(float), y.astype(float), rtol=rtol, atol=1e-6,
                                       equal_nan=True, err_msg=name)
        else:
            assert (np.char.rstrip(x.astype(str)) == np.char.rstrip(y.astype(str))).all(), name
