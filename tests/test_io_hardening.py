"""Issue 20 items 1–4, one test (or a few) each, on real files from ../shared/data edited
at test time: a bad card costs only its file, `info` never tracebacks, declared sizes are
checked before allocating, and corrupt ids become errors, not wrong numbers."""

from __future__ import annotations

import shutil
import time
import warnings

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from fuzz_corpus import _edit_card

from specsift.cli import main
from specsift.flags import InputFlag
from specsift.io import iter_read, read
from specsift.io.store import SpectralStore
from specsift.pipeline.units import iter_unit, plan_units
from specsift.spectra import DEFAULT_GRID, LogGrid, SpectraBatch


def _read(paths, batch_size=256):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(iter_read(paths, batch_size=batch_size))
    return batches[0] if len(batches) == 1 else SpectraBatch.concatenate(batches)


def _flagged(batch) -> np.ndarray:
    return (np.asarray(batch.meta["INPUT_FLAGS"]) & InputFlag.READ_ERROR) != 0


def _junk_card(src, dst, key, extname):
    """``dst``: ``src`` with junk after the value of ``key`` in HDU ``extname``, which
    astropy reports as a VerifyError only when that HDU's columns are used."""
    raw = src.read_bytes()
    start = raw.index(f"EXTNAME = '{extname}".encode())
    start -= start % 2880
    off = raw.index(key.encode().ljust(8) + b"= ", start)
    card = raw[off:off + 80].decode()
    value = card[10:].split("/")[0].rstrip()
    dst.write_bytes(raw[:off] + f"{key:<8}= {value} junk".ljust(80).encode() + raw[off + 80:])
    return dst


# ------------------------------------------------------------------ item 1: one bad card
def test_bad_card_costs_only_its_file_and_keeps_its_row_count(tmp_path, shared_data):
    good = sorted((shared_data / "sdss").glob("spec-0*.fits"))
    bad_sdss = _junk_card(good[0], tmp_path / "bad-sdss.fits", "TFORM2", "SPECOBJ")
    desi = shared_data / "desi" / "coadd-5-169-thru20210419.fits"
    bad_desi = _junk_card(desi, tmp_path / "coadd-bad.fits", "TFORM2", "FIBERMAP")
    clean = _read(good)
    mixed = _read([good[0], bad_sdss, *good[1:3], bad_desi, *good[3:]], batch_size=4)
    src = np.asarray(mixed.meta["SOURCE"], str)
    for g in good:                                   # every good spectrum, unchanged
        a, b = clean[np.asarray(clean.meta["SOURCE"], str) == str(g)], mixed[src == str(g)]
        assert len(b) == 1 and not _flagged(b).any()
        assert np.array_equal(a.flux, b.flux) and a.meta["Z"][0] == b.meta["Z"][0]
    assert (src == str(bad_sdss)).sum() == 1 and _flagged(mixed[src == str(bad_sdss)]).all()
    assert (src == str(bad_desi)).sum() == 5           # a 5-spectrum coadd keeps 5 rows
    assert all(str(bad_desi) in e for e in mixed.meta["ERROR"][src == str(bad_desi)])


def test_a_unit_with_a_bad_file_keeps_the_other_files(tmp_path, shared_data):
    good = sorted((shared_data / "sdss").glob("spec-0*.fits"))
    bad = _junk_card(good[0], tmp_path / "bad.fits", "TFORM2", "SPECOBJ")
    units = plan_units([*good[:2], bad, *good[2:]], batch_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [b for u in units for _, b in iter_unit(u, 2, DEFAULT_GRID)]
    cat = SpectraBatch.concatenate(rows)
    assert len(cat) == len(good) + 1
    assert _flagged(cat).sum() == 1


# --------------------------------------------------------------- item 2: no tracebacks
def test_info_goes_on_past_bad_files_and_names_each(tmp_path, shared_data, capsys):
    good = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    raw = good.read_bytes()
    odd_hdu = tmp_path / "odd-xtension.fits"          # astropy gives a bare _ValidHDU
    odd_hdu.write_bytes(_edit_card(raw, "XTENSION", "'FOOBAR'"))
    bad_naxis = tmp_path / "bad-naxis.fits"
    bad_naxis.write_bytes(_edit_card(raw, "NAXIS", "3"))
    bad_card = _junk_card(good, tmp_path / "junk.fits", "TFORM2", "SPECOBJ")
    flux_group = tmp_path / "group.h5"
    with h5py.File(flux_group, "w") as f:
        f.create_group("flux")
    paths = [odd_hdu, bad_naxis, flux_group, bad_card, good, tmp_path / "none*.fits"]
    rc = main(["info", "--long", *map(str, paths)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert f"{good}  [sdss]" in out                   # the good file after the bad ones
    lines = [x for x in err.splitlines() if x.startswith("specsift info: error")]
    assert "Traceback" not in err
    for p in paths:
        if p != good and p != bad_card:
            assert sum(str(p) in x for x in lines) == 1, (p, err)


def test_hdf5_whose_flux_is_a_group_is_one_flagged_row(tmp_path, shared_data):
    h5 = tmp_path / "group.h5"
    with h5py.File(h5, "w") as f:
        f.create_group("flux")
        f.create_group("meta")
        f.create_dataset("mask", data=np.zeros((2, 3)))
    good = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    units = plan_units([h5, good], batch_size=8)      # the planner must not crash on it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = SpectraBatch.concatenate([b for u in units for _, b in iter_unit(u, 8,
                                                                              DEFAULT_GRID)])
    assert len(b) == 2 and _flagged(b).tolist() == [True, False]
    assert "group" in b.meta["ERROR"][0].lower() and str(h5) in b.meta["ERROR"][0]


@pytest.mark.parametrize("option,value", [("--threads", "-2"), ("--workers", "0"),
                                          ("--batch-size", "x")])
def test_bad_numbers_are_usage_errors(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exc:
        main(["predict", "x.fits", "-o", str(tmp_path / "c.fits"), option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


# ------------------------------------------------------------------ item 3: bounded cost
def test_tiny_files_declaring_huge_arrays_fail_fast(tmp_path):
    huge_px = tmp_path / "huge-px.h5"
    with h5py.File(huge_px, "w") as f:
        f.create_dataset("flux", shape=(1, 2**31), dtype="f4", chunks=(1, 2**16))
        f.create_dataset("loglam", shape=(2**31,), dtype="f8", chunks=(2**16,))
    rows = tmp_path / "rows.h5"
    with h5py.File(rows, "w") as f:
        f.create_dataset("flux", shape=(20_000_000, 500), dtype="f4", chunks=(64, 500))
        f.create_dataset("loglam", data=3.6 + 1e-4 * np.arange(500))
    assert huge_px.stat().st_size < 20_000 and rows.stat().st_size < 20_000
    t0 = time.perf_counter()
    b = _read([huge_px, rows])
    assert time.perf_counter() - t0 < 10
    assert len(b) == 2 and _flagged(b).all()              # one row each, not 20 M
    assert all("MiB" in e for e in b.meta["ERROR"])


def test_npz_is_decompressed_once_not_once_per_batch(tmp_path, monkeypatch):
    p = tmp_path / "a.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(p, flux=rng.normal(1, 0.1, (40, 300)).astype("f4"),
                        ivar=np.ones((40, 300), "f4"), loglam=3.6 + 1e-4 * np.arange(300))
    loads = []
    orig = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: loads.append(key) or orig(self, key))
    batches = list(iter_read([p], batch_size=4, grid=None))
    assert sum(len(b) for b in batches) == 40 and len(batches) == 10
    assert sorted(loads) == ["flux", "ivar", "loglam"]


# ------------------------------------------------------------- item 4: no silent garbage
def test_edited_tform_of_an_id_column_is_an_error_not_wrong_labels(tmp_path, shared_data):
    src = shared_data / "desi" / "fastspecfit"
    for name in ("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"):
        shutil.copy(src / name, tmp_path / name)
    rr = tmp_path / "redrock-4-80613-thru20210324.fits"
    raw = rr.read_bytes()
    edited = raw.replace(b"TFORM8  = '6A      '", b"TFORM8  = '1J      '", 1)
    assert edited != raw
    rr.write_bytes(edited)
    b = _read([tmp_path / "coadd-4-80613-thru20210324.fits"])
    truth = fits.getdata(src / "redrock-4-80613-thru20210324.fits", "REDSHIFTS")
    flagged = _flagged(b)
    assert flagged.all() or (b.meta["Z"][0] == truth["Z"][0]
                             and b.meta["TARGETID"][0] == truth["TARGETID"][0])
    assert flagged.all() and "NAXIS1" in b.meta["ERROR"][0]


def test_fibermap_shorter_than_the_spectra_is_flagged(tmp_path, shared_data):
    desi = shared_data / "desi" / "coadd-5-169-thru20210419.fits"
    with fits.open(desi) as hdul:
        hdus = [h.copy() for h in hdul]
    k = [h.name for h in hdus].index("FIBERMAP")
    hdus[k] = fits.BinTableHDU(hdus[k].data[:3], hdus[k].header, name="FIBERMAP")
    out = tmp_path / "coadd-short.fits"
    fits.HDUList(hdus).writeto(out)
    b = _read([out])
    assert len(b) == 5 and _flagged(b).all()
    assert "FIBERMAP has 3 rows for 5 spectra" in b.meta["ERROR"][0]


def test_plate_overflowing_targetid_is_an_error(tmp_path):
    n, p = 2, 400
    t = Table({"flux": np.ones((n, p), "f4"), "ivar": np.ones((n, p), "f4"),
               "loglam": np.tile(3.6 + 1e-4 * np.arange(p), (n, 1)),
               "PLATE": np.array([2**40, 266], np.int64), "MJD": [51602, 51602],
               "FIBERID": [13, 14]})
    t.write(tmp_path / "t.fits")
    b = _read([tmp_path / "t.fits"])
    assert _flagged(b).all() and "PLATE" in b.meta["ERROR"][0]
    t["PLATE"] = [266, 266]                            # in range: the readable id
    t.write(tmp_path / "ok.fits")
    assert list(_read([tmp_path / "ok.fits"]).meta["TARGETID"]) == [2660516020013,
                                                                     2660516020014]


def test_nan_targetid_is_an_error_not_minus_two_to_the_63(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, flux=np.ones((3, 100), "f4"), loglam=3.6 + 1e-4 * np.arange(100),
             targetid=np.array([1.0, np.nan, 3.0]))
    b = _read([p])
    assert -(2**63) not in list(b.meta["TARGETID"])
    assert _flagged(b).all() and "TARGETID" in b.meta["ERROR"][0]


# ------------------------------------------------------- one store-reading path (#16.3)
def test_store_gives_the_same_flags_through_predict_units_and_read(tmp_path):
    short = LogGrid(3.70, 1e-4, 800)                  # covers < 50 % of the default grid
    rng = np.random.default_rng(1)
    store = tmp_path / "s.h5"
    with SpectralStore(store, "w") as st:
        st.append(SpectraBatch(short.loglam, rng.normal(1, 0.1, (6, short.size)),
                               np.ones((6, short.size)), None,
                               Table({"TARGETID": np.arange(6, dtype=np.int64)})))
    via_read = read(store)
    units = plan_units([store], batch_size=4)
    via_units = SpectraBatch.concatenate([b for u in units for _, b in iter_unit(u, 4,
                                                                                 DEFAULT_GRID)])
    assert (np.asarray(via_read.meta["INPUT_FLAGS"]) & InputFlag.LITTLE_COVERAGE).all()
    assert list(via_units.meta["INPUT_FLAGS"]) == list(via_read.meta["INPUT_FLAGS"])
    assert np.array_equal(via_units.flux, via_read.flux)
