"""The quick path for one-spectrum SDSS files (io/rawfits.py, sdss.quick, io/assemble.py):
it gives what the astropy path gives, byte for byte, declines what it does not fully
understand (then astropy's path reads or flags the file as before), and many files
assembled into one batch equal the same files read one by one."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from specsift.flags import InputFlag
from specsift.io import iter_read, read_guarded
from specsift.io.rawfits import RawFits, RawFitsError, parse_value
from specsift.io.sdss import quick
from specsift.spectra import DEFAULT_GRID, LogGrid, SpectraBatch, grid_offset

# readers warn on every repaired spectrum; these tests assert on the repairs themselves
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _spec_files(shared_data):
    return sorted((shared_data / "sdss").glob("spec-*.fits"))


def _astropy_path(path, grid=DEFAULT_GRID) -> SpectraBatch:
    """The file through open_fits → sniff → read (read_guarded never takes the quick path)."""
    return list(read_guarded(path, grid, 1024))[0]


def _assert_same(a: SpectraBatch, b: SpectraBatch, skip=()) -> None:
    assert np.array_equal(a.loglam, b.loglam)
    assert np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar)
    assert np.array_equal(a.mask, b.mask)
    assert a.meta.colnames == b.meta.colnames
    for c in (c for c in a.meta.colnames if c not in skip):
        assert a.meta[c].dtype == b.meta[c].dtype, c
        assert [str(v) for v in a.meta[c]] == [str(v) for v in b.meta[c]], c


def test_quick_path_equals_astropy_path_on_every_real_spec_file(shared_data):
    files = _spec_files(shared_data)
    assert len(files) >= 8                           # SDSS, per-exposure HDUs, BOSS SPALL
    for f in files:
        assert quick(f) is not None, f
        _assert_same(next(iter_read([f])), _astropy_path(f))
    boss = next(iter_read([shared_data / "sdss" / "spec-6717-56397-0534.fits"]))
    assert boss.meta["SURVEY"][0] == "BOSS" and boss.meta["CLASS"][0] == "QSO"


def test_many_files_in_one_batch_equal_the_files_one_by_one(shared_data, tmp_path):
    files = _spec_files(shared_data)
    lamost = shared_data / "lamost" / "spec-55916-B5591606_sp01-001.fits"
    broken = tmp_path / "spec-broken.fits"
    broken.write_bytes(files[0].read_bytes()[:5000])            # truncated: flagged
    order = [*files[:3], lamost, broken, *files[3:], *files[:2]]
    got = list(iter_read(order, batch_size=7))
    assert [len(b) for b in got] == [7, 5]
    cat = SpectraBatch.concatenate(got)
    assert list(cat.meta["SOURCE"]) == [str(p) for p in order]
    assert (cat.meta["INPUT_FLAGS"][4] & InputFlag.READ_ERROR) and str(broken) in cat.meta["ERROR"][4]
    one = SpectraBatch.concatenate([next(iter_read([p])) for p in order])
    assert np.array_equal(cat.flux, one.flux) and np.array_equal(cat.mask, one.mask)
    for c in ("TARGETID", "CLASS", "Z", "SURVEY", "INPUT_FLAGS", "ROW"):
        assert [str(v) for v in cat.meta[c]] == [str(v) for v in one.meta[c]], c


def test_shift_onto_the_grid_equals_flux_conserving_rebinning(shared_data):
    f = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    native = _astropy_path(f, grid=None)
    k = grid_offset(native.loglam, DEFAULT_GRID)
    assert k is not None and grid_offset(native.loglam + 3e-5, DEFAULT_GRID) is None
    rebinned = native.resample(DEFAULT_GRID)                     # the sparse-matrix way
    shifted = next(iter_read([f]))
    assert np.array_equal(rebinned.mask, shifted.mask)
    np.testing.assert_allclose(shifted.flux, rebinned.flux, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(shifted.ivar, rebinned.ivar, rtol=1e-6, atol=1e-30)
    other = LogGrid(3.58, 1.5e-4, 2500)                          # not a shift: rebinned
    _assert_same(next(iter_read([f], grid=other)), _astropy_path(f, grid=other))


def _rewrite(src, dst, edit):
    with fits.open(src) as hdul:
        edit(hdul)
        hdul.writeto(dst)
    return dst


def test_declined_files_read_through_astropy_as_before(shared_data, tmp_path):
    f = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    gz = tmp_path / "spec.fits.gz"
    gz.write_bytes(gzip.compress(f.read_bytes()))

    def scale(hdul):
        hdul["COADD"].header["TSCAL1"] = 2.0                     # flux scaled by astropy

    scaled = _rewrite(f, tmp_path / "scaled.fits", scale)
    for path in (gz, scaled):
        assert quick(path) is None, path
    _assert_same(next(iter_read([gz])), next(iter_read([f])), skip=("SOURCE",))
    assert np.allclose(next(iter_read([scaled])).flux[0], 2 * next(iter_read([f])).flux[0])
    raw = bytearray(f.read_bytes())
    with RawFits(f) as walk:
        spzline = walk.find("SPZLINE")._span[0]
    at = raw.index(b"TFORM3  = ", spzline)
    raw[at + 10:at + 80] = b"'E' junk".ljust(70)                 # a table nobody reads
    junk = tmp_path / "junk-spzline.fits"
    junk.write_bytes(bytes(raw))
    assert quick(junk) is None                                   # astropy's path refuses it
    b = next(iter_read([junk]))
    assert b.meta["INPUT_FLAGS"][0] & InputFlag.READ_ERROR and str(junk) in b.meta["ERROR"][0]


def test_raw_walk_refuses_what_it_does_not_fully_understand(shared_data, tmp_path):
    f = shared_data / "sdss" / "spec-6717-56397-0534.fits"
    with RawFits(f) as raw:
        assert [h.name for h in raw.hdus[:3]] == ["PRIMARY", "COADD", "SPALL"]
        assert len(raw.hdus) == 20 and raw.hdus[-1].data_offset < raw.size
    data = f.read_bytes()
    cases = {"truncated": data[:-2880], "trailing": data + b"\0" * 2880,
             "not-simple": b"SIMPLE  =                    F" + data[30:]}
    at = data.index(b"BITPIX  =", 2880)
    cases["bitpix-comment"] = data[:at + 31] + b"X" + data[at + 32:]
    for name, content in cases.items():
        p = tmp_path / f"{name}.fits"
        p.write_bytes(content)
        with pytest.raises(RawFitsError):
            RawFits(p)
        assert quick(p) is None


def test_card_values_parse_as_astropy_gives_them():
    assert parse_value(b"'COADD   '           / extension name") == "COADD"
    assert parse_value(b"'it''s'") == "it's"
    assert parse_value(b"                 3838 / length") == 3838
    assert parse_value(b"              -1.5D-3") == -1.5e-3
    assert parse_value(b"                    T") is True
    for bad in (b"'1E' junk", b"'open", b"   1_000", b"  nan", b"   12 34"):
        with pytest.raises(RawFitsError):
            parse_value(bad)


def test_a_quick_file_that_cannot_be_assembled_costs_only_itself(shared_data, tmp_path):
    """A loglam column that decreases somewhere reads quickly but cannot be put on a grid:
    that file alone goes the ordinary way (flagged, named); its batch mates are unchanged."""
    files = _spec_files(shared_data)[:3]
    raw = bytearray(files[0].read_bytes())
    with RawFits(files[0]) as walk:
        coadd = walk.find("COADD")
    at = coadd.data_offset + 32 * 100 + 4                 # row 100, column 2 (loglam)
    raw[at:at + 4] = np.array([3.0], ">f4").tobytes()
    bad = tmp_path / "spec-bad-loglam.fits"
    bad.write_bytes(bytes(raw))
    assert quick(bad) is not None
    got = SpectraBatch.concatenate(list(iter_read([files[1], bad, files[2]], batch_size=8)))
    assert list(got.meta["SOURCE"]) == [str(files[1]), str(bad), str(files[2])]
    assert got.meta["INPUT_FLAGS"][1] & InputFlag.READ_ERROR
    assert str(bad) in got.meta["ERROR"][1] and "increasing" in got.meta["ERROR"][1]
    for k, f in ((0, files[1]), (2, files[2])):
        assert np.array_equal(got.flux[k], next(iter_read([f])).flux[0])



def test_expanded_file_list_reads_as_the_expanding_path(shared_data, tmp_path):
    """``iter_read(files=True)`` (a predict unit's already expanded paths, no glob or
    directory test each) gives the batches of the ordinary call, a missing file included."""
    files = _spec_files(shared_data)
    order = [str(p) for p in (*files[:3], tmp_path / "gone.fits", *files[3:])]
    want = SpectraBatch.concatenate(list(iter_read(order, batch_size=4)))
    got = SpectraBatch.concatenate(list(iter_read(order, batch_size=4, files=True)))
    _assert_same(got, want, skip=("ERROR",))
    assert (got.meta["INPUT_FLAGS"][3] & InputFlag.READ_ERROR)
    one = SpectraBatch.concatenate(list(iter_read(order[0], files=True)))   # a bare path
    assert len(one) == 1 and np.array_equal(one.flux[0], got.flux[0])


def test_snapped_grid_is_the_exact_one_and_shared():
    """snap_loglam's grid is k·step + step·arange(n) exactly (as when it was built per file),
    read-only and the same array for files of the same first pixel and length."""
    from specsift.io.sdss import snap_loglam
    step = 1e-4
    ll = (3.5800 + step * np.arange(3838)).astype(np.float32)
    got = snap_loglam(ll)
    want = round(float(ll[0]) / step) * step + step * np.arange(ll.size)
    assert np.array_equal(got, want) and not got.flags.writeable
    assert snap_loglam(ll.copy()) is got
    odd = ll.astype(np.float64) * 1.001                  # not the 1e-4 grid: kept as given
    assert np.array_equal(snap_loglam(odd), odd)
