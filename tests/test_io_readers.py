"""Every reader on the real files in ../shared/data, plus built fixtures for layouts
with no real file here (LAMOST DR8+ binary table, synthetic DESI arms, HDF5/NPZ)."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from specsift.flags import InputFlag
from specsift.io import (
    SpectralStore,
    detect_format,
    expand_paths,
    iter_read,
    read,
    read_catalog,
    write_catalog,
)
from specsift.io._common import air_to_vacuum, estimate_ivar, first_row, open_fits
from specsift.io.sdss import BAD_AND_MASK
from specsift.spectra import DEFAULT_GRID, LogGrid, SpectraBatch

# readers warn on every repaired spectrum; these tests assert on the repairs themselves
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# -- SDSS --------------------------------------------------------------------------------
def h_ivar(path):
    with fits.open(path) as h:
        return np.asarray(h["COADD"].data["ivar"])


def test_sdss_spec_file_labels(shared_data, monkeypatch):
    f = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    assert detect_format(f) == "sdss"
    b = read(f)
    assert len(b) == 1 and b.npix == DEFAULT_GRID.size
    m = b.meta
    assert m["CLASS"][0] == "GALAXY" and m["Z"][0] == pytest.approx(0.1213, abs=1e-4)
    assert (m["PLATE"][0], m["MJD"][0], m["FIBERID"][0]) == (266, 51602, 13)
    assert m["TARGETID"][0] == 266 * 10**10 + 51602 * 10**4 + 13
    assert m["SOURCE"][0] == str(f) and m["ZERR"][0] > 0
    # coverage starts at 3803 Å: the default-grid pixels blueward are masked
    assert b.mask[0, :100].all() and not (m["INPUT_FLAGS"][0] & InputFlag.LITTLE_COVERAGE)
    with fits.open(f) as h:
        am = h["COADD"].data["and_mask"]
    native = read(f, grid=None)
    assert native.npix == am.size
    bad = (am.astype(np.int64) & BAD_AND_MASK) != 0
    np.testing.assert_array_equal(native.mask[0] & bad, bad)         # bad bits → masked
    info_only = (am != 0) & ~bad & (h_ivar(f) > 0)
    assert info_only.sum() > 1000 and not native.mask[0][info_only].any()  # MANYBADCOLUMNS kept
    monkeypatch.setenv("SDSS_AND_MASK", "all")
    strict = read(f, grid=None)
    np.testing.assert_array_equal(strict.mask[0] & (am != 0), am != 0)  # and_mask ≠ 0 → masked
    assert LogGrid.from_loglam(native.loglam).step == pytest.approx(1e-4)


def test_sdss_all_spec_files(shared_data):
    files = sorted((shared_data / "sdss").glob("spec-*.fits"))
    b = read(files)
    assert len(b) == 8
    z = dict(zip([s.split("/")[-1] for s in b.meta["SOURCE"]], b.meta["Z"]))
    assert z["spec-0266-51602-0107.fits"] == pytest.approx(0.1231, abs=1e-4)
    assert z["spec-6717-56397-0534.fits"] == pytest.approx(0.456, abs=1e-3)   # BOSS, SPALL
    assert Counter(b.meta["CLASS"]) == {"GALAXY": 3, "QSO": 5}
    assert list(b.meta["SURVEY"]).count("BOSS") == 2


def test_sdss_label_row_from_a_wide_specobj(tmp_path):
    """Labels come from a few of SPECOBJ's many columns, with their types; an empty SPECOBJ
    gives a spectrum without labels, not an error."""
    loglam = 3.58 + 1e-4 * np.arange(3000)
    coadd = fits.BinTableHDU(Table({"loglam": loglam, "flux": np.ones(3000),
                                    "ivar": np.ones(3000)}), name="COADD")
    cols = {f"EXTRA{k}": np.arange(1, dtype=np.float32) for k in range(150)}
    cols.update({"CLASS": ["QSO   "], "SUBCLASS": [""], "Z": [np.float32(2.5)],
                 "ZWARNING": np.array([4], np.int32), "PLATE": [1234], "MJD": [56000],
                 "FIBERID": [7]})
    fits.HDUList([fits.PrimaryHDU(), coadd,
                  fits.BinTableHDU(Table(cols), name="SPECOBJ")]).writeto(tmp_path / "spec-wide.fits")
    m = read(tmp_path / "spec-wide.fits").meta
    assert (m["CLASS"][0], m["SUBCLASS"][0]) == ("QSO", "")
    assert m["Z"][0] == pytest.approx(2.5) and m["SDSS_ZWARNING"].dtype == np.int32
    assert m["TARGETID"][0] == 1234 * 10**10 + 56000 * 10**4 + 7
    assert not any(c.startswith("EXTRA") for c in m.colnames)
    empty = Table(cols)[:0]
    fits.HDUList([fits.PrimaryHDU(), coadd,
                  fits.BinTableHDU(empty, name="SPECOBJ")]).writeto(tmp_path / "spec-empty.fits")
    b = read(tmp_path / "spec-empty.fits")
    assert len(b) == 1 and "CLASS" not in b.meta.colnames


def _mixed_table(path):
    cols = [fits.Column("U16", "I", bzero=32768, array=np.array([65535, 1], np.uint16)),
            fits.Column("U32", "J", bzero=2**31, array=np.array([4000000000, 2], np.uint32)),
            fits.Column("U64", "K", bzero=2**63, array=np.array([2**64 - 5, 3], np.uint64)),
            fits.Column("SCALED", "I", array=np.array([7, 2], np.int16)),
            fits.Column("FLAG", "L", array=np.array([True, False])),
            fits.Column("BITS", "12X", array=np.zeros((2, 12), bool)),
            fits.Column("NAME", "8A", array=np.array(["QSO  ", "STAR"])),
            fits.Column("IMG", "6E", dim="(3,2)", array=np.arange(12, dtype=np.float32).reshape(2, 2, 3)),
            fits.Column("VLA", "PJ()", array=np.array([np.arange(3), np.arange(5)], dtype=object)),
            fits.Column("Z", "D", array=np.array([2.5, 0.1])),
            fits.Column("B", "B", array=np.array([7, 8], np.uint8))]
    table = fits.BinTableHDU.from_columns(cols, name="T")
    table.header["TSCAL4"], table.header["TZERO4"] = 0.5, 10.0     # stored 7 → 13.5
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)


@pytest.mark.parametrize("gz", [False, True])
def test_first_row_matches_astropy(tmp_path, gz):
    """SDSS label rows are decoded from the file's bytes, not by astropy: check every
    binary-table type a label can have against astropy's row, plain and gzipped."""
    f = tmp_path / "mixed.fits"
    _mixed_table(f)
    if gz:
        with open(f, "rb") as src, gzip.open(tmp_path / "mixed.fits.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        f = tmp_path / "mixed.fits.gz"
    want = ["U16", "U32", "U64", "SCALED", "FLAG", "NAME", "IMG", "Z", "B"]
    with open_fits(f) as h:
        mine = first_row(h["T"], want)
        ref = h["T"].data[0]
        for c in want:
            if c == "NAME":
                assert mine[c] == ref[c].rstrip() == "QSO"
            else:
                np.testing.assert_array_equal(mine[c], ref[c])
                assert np.asarray(mine[c]).dtype.kind == np.asarray(ref[c]).dtype.kind
        assert mine["U64"] == 2**64 - 5 and mine["SCALED"] == 13.5 and mine["IMG"].shape == (2, 3)
        with pytest.raises(ValueError, match="VLA: type P"):
            first_row(h["T"], ["VLA"])


def test_fits_row_table(shared_data):
    f = shared_data / "sdss" / "sdss-labelled-50.fits"
    assert detect_format(f) == "fits-table"
    b = read(f)
    assert len(b) == 50 and DEFAULT_GRID.matches(b.loglam)
    assert Counter(b.meta["CLASS"]) == {"STAR": 20, "QSO": 16, "GALAXY": 14}
    assert "ZERR" in b.meta.colnames and "SN_MEDIAN_ALL" in b.meta.colnames
    native = read(f, grid=None)
    with fits.open(f) as h:
        np.testing.assert_array_equal(native.flux[7], h[1].data["flux"][7].astype(np.float32))
        np.testing.assert_allclose(native.loglam, h[2].data["input_grid"][0])
    # the GaSNet grid (3600–9200 Å in 4076 px) is within 0.12 px of the default grid, so
    # rebinning onto it keeps every pixel and the integrated flux
    assert abs(int((~b.mask).sum()) - int((~native.mask).sum())) <= 2 * len(b)
    assert (b.flux * ~b.mask).sum() == pytest.approx((native.flux * ~native.mask).sum(), rel=1e-4)
    q = read(shared_data / "sdss" / "sdss-qso-10.fits")
    assert len(q) == 10 and set(q.meta["CLASS"]) == {"QSO"}
    assert 0.76 < np.min(q.meta["Z"]) and np.max(q.meta["Z"]) < 2.67


# -- DESI --------------------------------------------------------------------------------
def test_desi_coadd_with_redrock(shared_data):
    f = shared_data / "desi" / "fastspecfit" / "coadd-4-80613-thru20210324.fits"
    b = read(f)
    assert len(b) == 1 and b.meta["TARGETID"][0] == 39633345008634465
    assert b.meta["CLASS"][0] == "GALAXY" and b.meta["Z"][0] == pytest.approx(0.3687, abs=1e-4)
    assert "RR_ZWARN" in b.meta.colnames and b.meta["SURVEY"][0] == "DESI"
    b2 = read(shared_data / "desi" / "fastspecfit" / "coadd-special-dark-27247.fits")
    assert b2.meta["Z"][0] == pytest.approx(0.0073, abs=1e-4)
    native = read(f, grid=None)
    assert native.npix == 7781 and native.wave[0] == pytest.approx(3600.0)
    assert native.wave[-1] == pytest.approx(9824.0, abs=0.01)


def test_desi_spectra_and_test_coadds(shared_data):
    b = read(shared_data / "desi" / "spectra-5-169-thru20210419.fits")
    assert len(b) == 5 and "EXPID" in b.meta.colnames
    assert b.meta["TARGETID"][1] == 39633297352951412
    q = read(shared_data / "desi" / "quasarnp" / "test_coadd.fits")   # no FIBERMAP
    assert len(q) == 25 and len(set(q.meta["TARGETID"])) == 25
    assert (~q.mask).any(axis=1).sum() >= 24


def _desi_fixture(path, flux_b, flux_r, ivar_b, ivar_r):
    wb = np.arange(5000.0, 6000.0, 0.8)
    wr = np.arange(5800.0, 7000.0, 0.8)
    h = [fits.PrimaryHDU(),
         fits.BinTableHDU(Table({"TARGETID": np.array([11, 12], np.int64)}), name="FIBERMAP"),
         fits.ImageHDU(wb, name="B_WAVELENGTH"),
         fits.ImageHDU(np.full((2, wb.size), flux_b, np.float32), name="B_FLUX"),
         fits.ImageHDU(np.full((2, wb.size), ivar_b, np.float32), name="B_IVAR"),
         fits.ImageHDU(wr, name="R_WAVELENGTH"),
         fits.ImageHDU(np.full((2, wr.size), flux_r, np.float32), name="R_FLUX"),
         fits.ImageHDU(np.full((2, wr.size), ivar_r, np.float32), name="R_IVAR")]
    fits.HDUList(h).writeto(path)
    return path


def test_desi_arms_ivar_weighted_in_overlap(tmp_path):
    f = _desi_fixture(tmp_path / "coadd-x.fits", 1.0, 3.0, 1.0, 3.0)
    b = read(f, grid=None)
    assert list(b.meta["TARGETID"]) == [11, 12]
    w = b.wave
    overlap = (w > 5810) & (w < 5990)
    np.testing.assert_allclose(b.flux[0][overlap], 2.5, rtol=1e-5)   # (1·1 + 3·3)/(1+3)
    np.testing.assert_allclose(b.ivar[0][overlap], 4.0, rtol=1e-5)
    np.testing.assert_allclose(b.flux[0][w < 5790], 1.0, rtol=1e-5)
    np.testing.assert_allclose(b.flux[0][w > 6010], 3.0, rtol=1e-5)
    d = read(f)   # default grid: 5000–7000 Å is < 50% of 3600–9200 Å
    assert np.all(d.meta["INPUT_FLAGS"] & InputFlag.LITTLE_COVERAGE)


# -- LAMOST and 1-D images ----------------------------------------------------------------
def test_lamost_dr2_files(shared_data):
    files = sorted((shared_data / "lamost").glob("spec-*.fits"))
    assert len(files) == 16
    b = read(files)
    assert len(b) == 16
    assert Counter(b.meta["CLASS"]) == {"STAR": 15, "Unknown": 1}
    assert np.isnan(b.meta["Z"][list(b.meta["CLASS"]).index("Unknown")])   # Z = -9999
    one = read(shared_data / "lamost" / "spec-55916-B5591606_sp01-001.fits", grid=None)
    assert one.meta["SUBCLASS"][0] == "K5" and one.wave[0] == pytest.approx(3699.985, abs=1e-3)
    assert one.meta["SURVEY"][0] == "LAMOST"


def test_lamost_v26_layout_uses_header_grid(shared_data):
    """Pipeline v2.6 files hold a 'Subcontinuum' row instead of wavelengths."""
    f = shared_data / "lamost" / "spec-55939-B5593905_sp01-018.fits"
    b = read(f, grid=None)
    assert b.loglam[0] == pytest.approx(3.5682) and np.diff(b.loglam)[0] == pytest.approx(1e-4)
    pairs = sorted((shared_data / "lamost" / "ondrejov-pairs" / "cross-matched" / "lamost").glob("*.fits"))
    assert len(read(pairs)) == len(pairs) == 22


def test_lamost_dr8_table_fixture(tmp_path):
    """No real DR8+ file is available: this fixture follows the documented DR8 low-resolution
    layout (primary header with CLASS/SUBCLASS/Z/OBSID, HDU 'COADD' with one row of array
    columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK)."""
    wave = 10 ** (3.5682 + 1e-4 * np.arange(3900))
    flux = np.linspace(10, 20, 3900).astype(np.float32)
    andmask = np.zeros(3900, np.int32)
    andmask[100:110] = 4
    cols = [fits.Column(name=n, format=f"3900{fmt}", array=a[None])
            for n, fmt, a in (("FLUX", "E", flux), ("IVAR", "E", np.full(3900, 2.0, np.float32)),
                              ("WAVELENGTH", "D", wave), ("ANDMASK", "J", andmask),
                              ("ORMASK", "J", andmask))]
    hdr = fits.Header({"TELESCOP": "LAMOST", "OBSID": 123456789, "CLASS": "GALAXY",
                       "SUBCLASS": "Non", "Z": 0.25, "Z_ERR": 1e-4, "VACUUM": True})
    fits.HDUList([fits.PrimaryHDU(header=hdr),
                  fits.BinTableHDU.from_columns(cols, name="COADD")]).writeto(tmp_path / "dr8.fits")
    assert detect_format(tmp_path / "dr8.fits") == "lamost-dr8"
    b = read(tmp_path / "dr8.fits", grid=None)
    assert b.meta["TARGETID"][0] == 123456789 and b.meta["CLASS"][0] == "GALAXY"
    assert b.meta["Z"][0] == pytest.approx(0.25) and b.mask[0, 100:110].all()
    np.testing.assert_allclose(b.flux[0][:5], flux[:5])


def test_wcs1d_ondrejov_air_to_vacuum_and_estimated_ivar(shared_data):
    f = shared_data / "lamost" / "oe270005.fits"
    assert detect_format(f) == "wcs1d"
    b = read(f, grid=None)
    assert b.meta["INPUT_FLAGS"][0] & InputFlag.ESTIMATED_IVAR
    hdr = fits.getheader(f)
    assert b.wave[0] == pytest.approx(air_to_vacuum(hdr["CRVAL1"]), rel=1e-9)
    assert b.wave[0] - hdr["CRVAL1"] == pytest.approx(1.73, abs=0.05)   # air→vacuum at 6265 Å
    assert np.all(b.ivar[0] > 0)
    d = read(f)
    assert d.meta["INPUT_FLAGS"][0] & InputFlag.LITTLE_COVERAGE   # 6265–6778 Å only


def test_ondrejov_vo_tables(shared_data):
    files = sorted((shared_data / "lamost" / "ondrejov-pairs" / "cross-matched" / "ondrejov").glob("*.fits"))
    b = read(files)
    assert len(b) == len(files) == 22
    with pytest.raises(ValueError, match="native wavelength grid differs"):
        read(files[:2], grid=None)
    assert np.all(b.meta["INPUT_FLAGS"] & InputFlag.ESTIMATED_IVAR)
    assert b.meta["OBJECT"][0] != ""


def test_air_to_vacuum_and_ivar_estimate():
    assert air_to_vacuum(6562.80) == pytest.approx(6564.61, abs=0.02)   # Hα
    assert air_to_vacuum(1500.0) == 1500.0
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 4000)
    flux = 100 + 50 * x + rng.normal(0, 2.0, x.size)
    iv = estimate_ivar(flux)
    assert np.median(iv) == pytest.approx(1 / 4.0, rel=0.1)


# -- plain arrays and stores ---------------------------------------------------------------
def _arrays(n=6, p=300, seed=0):
    rng = np.random.default_rng(seed)
    loglam = 3.6 + 1e-4 * np.arange(p)
    return loglam, rng.normal(5, 1, (n, p)).astype(np.float32), np.full((n, p), 1.0, np.float32)


def test_hdf5_and_npz(tmp_path):
    loglam, flux, ivar = _arrays()
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5["flux"], h5["ivar"], h5["loglam"] = flux, ivar, loglam
        h5["targetid"] = np.arange(100, 106)
        h5["z"] = np.linspace(0, 1, 6)
    b = read(tmp_path / "a.h5", grid=None)
    assert list(b.meta["TARGETID"]) == list(range(100, 106))
    assert b.meta["Z"][5] == pytest.approx(1.0)
    np.testing.assert_array_equal(b.flux, flux)
    np.savez(tmp_path / "b.npz", flux=flux, ivar=ivar, wave=10 ** np.tile(loglam, (6, 1)))
    assert detect_format(tmp_path / "b.npz") == "npz"
    c = read(tmp_path / "b.npz")
    assert len(c) == 6 and DEFAULT_GRID.matches(c.loglam)
    chunks = list(iter_read(tmp_path / "a.h5", batch_size=4, grid=None))
    assert [len(x) for x in chunks] == [4, 2]


def test_store_read_through_io(tmp_path):
    loglam, flux, ivar = _arrays(n=10)
    with SpectralStore(tmp_path / "s.h5", "w") as st:
        st.append(SpectraBatch(loglam, flux, ivar))
    assert detect_format(tmp_path / "s.h5") == "store"
    b = read(tmp_path / "s.h5", grid=None)
    assert len(b) == 10 and "SOURCE" in b.meta.colnames
    r = read(tmp_path / "s.h5")
    assert r.npix == DEFAULT_GRID.size
    assert np.all(r.meta["INPUT_FLAGS"] & InputFlag.LITTLE_COVERAGE)


# -- directories, globs, batching, catalogs ----------------------------------------------
def test_iter_read_bounded_batches(shared_data):
    sizes = [len(b) for b in iter_read(shared_data / "sdss", batch_size=7)]
    assert max(sizes) <= 7 and sum(sizes) == 50 + 10 + 8
    files = expand_paths([str(shared_data / "sdss" / "spec-0*.fits")])
    assert len(files) == 5 and all(f.name.startswith("spec-0") for f in files)
    # redrock files inside a directory are skipped, not errors
    d = read(shared_data / "desi" / "fastspecfit")
    assert len(d) == 2 and not np.any(d.meta["INPUT_FLAGS"] & InputFlag.READ_ERROR)


@pytest.mark.parametrize("ext", [".fits", ".parquet", ".csv"])
def test_catalog_round_trip(tmp_path, ext):
    t = Table({"TARGETID": np.array([1, 2], np.int64), "SOURCE": ["a.fits", "b.fits"],
               "Z": [0.1, 2.5], "SPECTYPE": ["GALAXY", "QSO"]})
    path = write_catalog(t, tmp_path / f"sub/cat{ext}")
    back = read_catalog(path)
    assert list(back["TARGETID"]) == [1, 2] and list(back["SPECTYPE"]) == ["GALAXY", "QSO"]
    np.testing.assert_allclose(back["Z"], [0.1, 2.5])
    assert [p.name for p in path.parent.iterdir()] == [path.name]   # no temp file left
    with pytest.raises(ValueError, match="unknown catalog extension"):
        write_catalog(t, tmp_path / "cat.txt")
