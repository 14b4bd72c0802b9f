"""Bad input: each case is an error naming the file and the problem, or a per-spectrum
flag with the rest of the batch intact."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from specsift.flags import InputFlag
from specsift.io import iter_read, read

P = 200
LOGLAM = 3.6 + 1e-4 * np.arange(P)


def _row_table(path, flux, ivar, grid=LOGLAM):
    t = Table({"flux": flux.astype(np.float32), "ivar": ivar.astype(np.float32),
               "CLASS": ["STAR"] * len(flux)})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t),
                  fits.table_to_hdu(Table({"loglam": grid[None]}))]).writeto(path)
    return path


def _good_spec(tmp_path, name="good.fits"):
    return _row_table(tmp_path / name, np.ones((2, P)), np.ones((2, P)))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fits: no such file"):
        read(tmp_path / "nope.fits")


def test_non_fits_file(tmp_path):
    f = tmp_path / "notes.fits"
    f.write_text("this is not a FITS file\n" * 10)
    with pytest.raises(ValueError, match=r"notes\.fits: not a spectra file"):
        read(f)


def test_empty_file(tmp_path):
    f = tmp_path / "empty.fits"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.fits: empty file"):
        read(f)


def test_truncated_fits(tmp_path):
    whole = _good_spec(tmp_path).read_bytes()
    for cut in (4000, 2880):     # mid-block, and a whole data block (headers all intact)
        f = tmp_path / f"cut{cut}.fits"
        f.write_bytes(whole[: len(whole) - cut])
        with pytest.raises(ValueError, match=rf"cut{cut}\.fits: truncated FITS file"):
            read(f)
    g = tmp_path / "cut-header.fits"
    g.write_bytes(whole[:1000])
    with pytest.raises(ValueError, match=r"cut-header\.fits"):
        read(g)


def test_hdu_without_expected_columns(tmp_path):
    f = tmp_path / "cols.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(Table({"a": [1, 2], "b": [3, 4]}))]).writeto(f)
    with pytest.raises(ValueError, match=r"cols\.fits: FITS file has no recognised spectra HDU"):
        read(f)
    g = tmp_path / "coadd.fits"
    coadd = fits.BinTableHDU(Table({"loglam": LOGLAM, "flux": np.ones(P)}), name="COADD")
    fits.HDUList([fits.PrimaryHDU(), coadd]).writeto(g)
    with pytest.raises(ValueError, match=r"coadd\.fits: COADD HDU lacks column\(s\) ivar"):
        read(g)
    h = tmp_path / "nogrid.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(
        Table({"flux": np.ones((2, P)), "ivar": np.ones((2, P))}))]).writeto(h)
    with pytest.raises(ValueError, match=r"nogrid\.fits: table has flux but no wavelength grid"):
        read(h)


@pytest.mark.parametrize("case,flag", [("nan", InputFlag.NONFINITE_FLUX),
                                       ("inf", InputFlag.NONFINITE_FLUX),
                                       ("negative_ivar", InputFlag.BAD_IVAR),
                                       ("zero_ivar", InputFlag.NO_GOOD_PIXELS)])
def test_per_spectrum_problems_are_flagged(tmp_path, case, flag):
    flux, ivar = np.ones((3, P)), np.ones((3, P))
    if case == "nan":
        flux[1, 10:20] = np.nan
    elif case == "inf":
        flux[1, 5] = np.inf
    elif case == "negative_ivar":
        ivar[1, 30:40] = -1.0
    else:
        ivar[1] = 0.0
    f = _row_table(tmp_path / f"{case}.fits", flux, ivar)
    with pytest.warns(UserWarning, match=f"{case}.fits"):
        b = read(f, grid=None)
    flags = np.asarray(b.meta["INPUT_FLAGS"])
    assert flags[1] & flag and flags[0] == 0 and flags[2] == 0
    assert np.all(np.isfinite(b.flux)) and np.all(b.ivar >= 0)
    assert b.mask[1].any() and not b.mask[0].any() and not b.mask[2].any()
    np.testing.assert_array_equal(b.flux[[0, 2]], 1.0)
    with pytest.warns(UserWarning):
        d = read(f)                      # and the flags survive resampling
    assert d.meta["INPUT_FLAGS"][1] & flag


def test_mismatched_flux_ivar_shapes(tmp_path):
    f = tmp_path / "shapes.h5"
    with h5py.File(f, "w") as h5:
        h5["flux"], h5["ivar"], h5["loglam"] = np.ones((3, P)), np.ones((3, P - 1)), LOGLAM
    with pytest.raises(ValueError, match=r"shapes\.h5: 'ivar' shape \(3, 199\) does not match"):
        read(f)
    g = tmp_path / "shapes.fits"
    t = Table({"flux": np.ones((2, P), np.float32), "ivar": np.ones((2, P - 5), np.float32)})
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t),
                  fits.table_to_hdu(Table({"loglam": LOGLAM[None]}))]).writeto(g)
    with pytest.raises(ValueError, match=r"shapes\.fits: column ivar has shape"):
        read(g)


def test_non_increasing_grid(tmp_path):
    f = tmp_path / "down.h5"
    with h5py.File(f, "w") as h5:
        h5["flux"], h5["ivar"], h5["loglam"] = np.ones((2, P)), np.ones((2, P)), LOGLAM[::-1]
    with pytest.raises(ValueError, match=r"down\.h5: wavelength grid 'loglam' is not increasing"):
        read(f)
    g = _row_table(tmp_path / "down.fits", np.ones((1, P)), np.ones((1, P)), grid=LOGLAM[::-1])
    with pytest.raises(ValueError, match=r"down\.fits: wavelength grid is not increasing"):
        read(g)
    h = tmp_path / "wcs.fits"
    fits.PrimaryHDU(np.ones(100, np.float32),
                    header=fits.Header({"CRVAL1": 6500.0, "CDELT1": -0.25, "CRPIX1": 1})).writeto(h)
    with pytest.raises(ValueError, match=r"wcs\.fits: wavelength step .* not positive"):
        read(h)


def test_on_error_flag_gives_placeholder_rows(tmp_path):
    good = _good_spec(tmp_path)
    bad = tmp_path / "bad.fits"
    bad.write_text("garbage")
    missing = tmp_path / "missing.fits"
    with pytest.warns(UserWarning, match=r"bad\.fits: could not be read"):
        batches = list(iter_read([good, bad, missing, good], batch_size=4))
    assert [len(b) for b in batches] == [4, 2]
    b = batches[0]
    src = [s.rsplit("/", 1)[-1] for s in b.meta["SOURCE"]]
    assert src == ["good.fits", "good.fits", "bad.fits", "missing.fits"]
    flags = np.asarray(b.meta["INPUT_FLAGS"])
    assert np.all(flags[2:] & InputFlag.READ_ERROR) and not np.any(flags[:2] & InputFlag.READ_ERROR)
    assert b.mask[2:].all() and np.all(b.ivar[2:] == 0) and np.all(b.flux[2:] == 0)
    assert "not a spectra file" in b.meta["ERROR"][2] and "no such file" in b.meta["ERROR"][3]
    assert b.meta["ERROR"][0] == "" and b.meta["CLASS"][0] == "STAR"
    assert not b.mask[:2].all(axis=1).any()


def test_on_error_raise_names_the_file(tmp_path):
    good = _good_spec(tmp_path)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises((OSError, ValueError), match=r"bad\.h5"):
        read([good, bad])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = read([good, bad], on_error="flag")
    assert len(b) == 3 and b.meta["INPUT_FLAGS"][2] & InputFlag.READ_ERROR
