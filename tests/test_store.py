"""SpectralStore: append, read back, iterate in bounded batches."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from astropy.table import Table

from specsift.io.store import SpectralStore
from specsift.spectra import LogGrid, SpectraBatch

GRID = LogGrid(3.6, 1e-4, 64)


def _batch(n, start=0, seed=0, source="a.fits"):
    rng = np.random.default_rng(seed)
    meta = Table({"TARGETID": np.arange(start, start + n, dtype=np.int64),
                  "SOURCE": [source] * n, "CLASS": ["QSO"] * n, "Z": rng.uniform(0, 3, n)})
    return SpectraBatch(GRID.loglam, rng.normal(size=(n, GRID.size)),
                        rng.uniform(1, 2, (n, GRID.size)), meta=meta)


def test_round_trip_and_iteration(tmp_path):
    path = tmp_path / "s.h5"
    a, b = _batch(300, 0, 1), _batch(250, 300, 2)
    with SpectralStore(path, "w", chunk_rows=64) as st:
        st.append(a)
        st.append(b)
        st.attrs["made_by"] = "test"
    with SpectralStore(path) as st:
        assert len(st) == 550 and GRID.matches(st.loglam) and st.attrs["made_by"] == "test"
        assert set(st.meta_columns) >= {"TARGETID", "SOURCE", "CLASS", "Z", "INPUT_FLAGS"}
        batches = list(st.iter_batches(128))
        assert [len(x) for x in batches] == [128, 128, 128, 128, 38]
        allb = SpectraBatch.concatenate(batches)
        np.testing.assert_array_equal(allb.flux, np.concatenate([a.flux, b.flux]))
        np.testing.assert_array_equal(allb.ivar[300:], b.ivar)
        assert list(allb.meta["TARGETID"]) == list(range(550))
        assert allb.meta["CLASS"][0] == "QSO"
        np.testing.assert_allclose(allb.meta["Z"][300:], b.meta["Z"])
        sub = st.read([420, 3, 3, 17])
        assert list(sub.meta["TARGETID"]) == [420, 3, 3, 17]
        np.testing.assert_array_equal(sub.flux[0], b.flux[120])
        assert len(st.read(np.array([], int))) == 0
        with pytest.raises(IndexError):
            st.read([550])
        assert len(list(st.iter_batches(100, start=500))) == 1


def test_long_strings_and_missing_columns(tmp_path):
    path = tmp_path / "s.h5"
    long_source = "/very/long/" + "x" * 300 + "/spec.fits"
    with SpectralStore(path, "w") as st:
        st.append(_batch(3, source="short.fits"))
        later = _batch(2, 3, source=long_source)
        later.meta.remove_column("CLASS")
        st.append(later)
    with SpectralStore(path) as st:
        m = st.read_meta()
        assert m["SOURCE"][4] == long_source
        assert list(m["CLASS"]) == ["QSO", "QSO", "QSO", "", ""]


def test_append_other_grid_and_bad_files(tmp_path):
    path = tmp_path / "s.h5"
    with SpectralStore(path, "w") as st:
        st.append(_batch(2))
        other = SpectraBatch(GRID.loglam + 1e-3, np.ones((1, GRID.size)))
        with pytest.raises(ValueError, match="another wavelength grid"):
            st.append(other)
    with pytest.raises(FileNotFoundError, match="no such store"):
        SpectralStore(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["x"] = [1, 2]
    with pytest.raises(ValueError, match="not a specsift store"):
        SpectralStore(tmp_path / "plain.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(OSError, match="junk.h5"):
        SpectralStore(tmp_path / "junk.h5")


def test_append_mode_resumes(tmp_path):
    path = tmp_path / "s.h5"
    with SpectralStore(path, "a") as st:
        st.append(_batch(5))
    with SpectralStore(path, "a") as st:
        st.append(_batch(5, 5))
        assert len(st) == 10
    with SpectralStore(path) as st:
        assert list(st.read_meta(["TARGETID"])["TARGETID"]) == list(range(10))


def test_reads_between_appends_see_new_rows(tmp_path):
    """The store keeps its datasets open between reads (per-batch set-up cost): rows and
    meta appended after a read, and the first batch of a new store, must still be seen."""
    path = tmp_path / "s.h5"
    a, b = _batch(40, 0, 1), _batch(30, 40, 2)
    with SpectralStore(path, "w", chunk_rows=16) as st:
        st.append(a)
        first = st.read(slice(0, 40))
        st.append(b)
        both = st.read(np.arange(70)[::-1])
    np.testing.assert_array_equal(first.flux, a.flux.astype(np.float32))
    np.testing.assert_array_equal(both.flux[:30], b.flux.astype(np.float32)[::-1])
    np.testing.assert_array_equal(both.ivar[30:], a.ivar.astype(np.float32)[::-1])
    assert list(both.meta["TARGETID"]) == list(range(69, -1, -1))
    assert both.meta.colnames == first.meta.colnames and both.loglam is not first.loglam
