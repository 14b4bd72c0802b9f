"""SpectraBatch, LogGrid and flux-conserving resampling against analytic cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from specsift.flags import InputFlag
from specsift.spectra import DEFAULT_GRID, LogGrid, SpectraBatch, pixel_edges


def _cumulative(loglam, flux):
    """Exact ∫f dλ of a piecewise-constant spectrum, as a function of λ (for np.interp)."""
    edges = 10.0 ** pixel_edges(loglam)
    return edges, np.concatenate([[0.0], np.cumsum(flux * np.diff(edges))])


def test_default_grid():
    assert DEFAULT_GRID.size == 4076
    assert DEFAULT_GRID.loglam[0] == pytest.approx(3.5563)
    assert DEFAULT_GRID.loglam[-1] == pytest.approx(3.9638)
    assert DEFAULT_GRID.matches(DEFAULT_GRID.loglam)
    assert not DEFAULT_GRID.matches(DEFAULT_GRID.loglam + 0.5e-4)
    with pytest.raises(ValueError, match="regular"):
        LogGrid.from_loglam(np.array([3.6, 3.6001, 3.6005]))


def test_flux_conserved_aligned_rebin_by_two():
    rng = np.random.default_rng(1)
    fine = LogGrid(3.6, 1e-4, 2000)
    flux = 5.0 + rng.normal(0, 1, fine.size)
    coarse = LogGrid(3.6 + 0.5e-4, 2e-4, 1000)      # edges coincide with the fine edges
    out = SpectraBatch(fine.loglam, flux, np.full(fine.size, 4.0)).resample(coarse)
    e_in, c_in = _cumulative(fine.loglam, flux)
    e_out = 10.0 ** pixel_edges(coarse.loglam)
    ok = ~out.mask[0]
    got = np.sum(out.flux[0][ok].astype(np.float64) * np.diff(e_out)[ok])
    lo, hi = e_out[:-1][ok][0], e_out[1:][ok][-1]
    want = np.interp(hi, e_in, c_in) - np.interp(lo, e_in, c_in)
    assert abs(got / want - 1) < 1e-6
    # constant-noise spectrum rebinned by 2: ivar doubles
    np.testing.assert_allclose(out.ivar[0][ok], 8.0, rtol=1e-5)


def test_flux_conserved_unaligned_grid_and_gaussian_line():
    fine = LogGrid(3.60, 1e-4, 3000)
    w = fine.wave
    flux = 2.0 + 30.0 * np.exp(-0.5 * ((w - 5000.0) / 3.0) ** 2)
    target = LogGrid(3.6123, 1.7e-4, 1500)           # offset, non-integer ratio, overhangs
    out = SpectraBatch(fine.loglam, flux).resample(target)
    e_in, c_in = _cumulative(fine.loglam, flux)
    e_out = 10.0 ** pixel_edges(target.loglam)
    full = (e_out[:-1] >= e_in[0]) & (e_out[1:] <= e_in[-1])
    got = np.sum(out.flux[0][full].astype(np.float64) * np.diff(e_out)[full])
    want = (np.interp(e_out[1:][full][-1], e_in, c_in)
            - np.interp(e_out[:-1][full][0], e_in, c_in))
    assert abs(got / want - 1) < 1e-6
    # the line keeps its integrated flux (30·3·√(2π)) to the same precision
    region = full & (np.abs(target.wave - 5000) < 40)
    line = np.sum((out.flux[0][region] - 2.0) * np.diff(e_out)[region])
    assert line == pytest.approx(30 * 3 * np.sqrt(2 * np.pi), rel=1e-4)


def test_out_of_coverage_pixels_masked():
    src = LogGrid(3.70, 1e-4, 500)                   # 5012–5623 Å, inside the default grid
    out = SpectraBatch(src.loglam, np.ones(src.size), np.ones(src.size)).resample(DEFAULT_GRID)
    inside = (DEFAULT_GRID.loglam > 3.7 + 1e-4) & (DEFAULT_GRID.loglam < src.loglam[-1] - 1e-4)
    outside = (DEFAULT_GRID.loglam < 3.7 - 1e-4) | (DEFAULT_GRID.loglam > src.loglam[-1] + 1e-4)
    assert np.all(out.mask[0][outside]) and np.all(out.ivar[0][outside] == 0)
    assert not out.mask[0][inside].any()
    np.testing.assert_allclose(out.flux[0][inside], 1.0, rtol=1e-6)


def test_masked_input_pixels_do_not_leak():
    g = LogGrid(3.6, 1e-4, 100)
    flux = np.ones(100)
    flux[50] = 1e6
    mask = np.zeros(100, bool)
    mask[50] = True
    out = SpectraBatch(g.loglam, flux, np.ones(100), mask).resample(LogGrid(3.6 + 0.5e-4, 2e-4, 50))
    assert np.all(out.flux[~out.mask] < 2)


def test_sanitise_flags_each_spectrum_and_keeps_the_rest():
    g = LogGrid(3.6, 1e-4, 50)
    flux = np.ones((4, 50))
    ivar = np.ones((4, 50))
    flux[0, 3] = np.nan
    flux[0, 4] = np.inf
    ivar[1, 7] = -2.0
    ivar[2] = 0.0
    with pytest.warns(UserWarning, match="masked and flagged"):
        b = SpectraBatch(g.loglam, flux, ivar, source="test.fits")
    f = np.asarray(b.meta["INPUT_FLAGS"])
    assert f[0] & InputFlag.NONFINITE_FLUX and b.mask[0, 3] and b.mask[0, 4]
    assert np.all(np.isfinite(b.flux)) and b.ivar[0, 3] == 0
    assert f[1] & InputFlag.BAD_IVAR and b.mask[1, 7] and b.ivar[1, 7] == 0
    assert f[2] & InputFlag.NO_GOOD_PIXELS and b.mask[2].all()
    assert f[3] == 0 and not b.mask[3].any()


def test_callers_arrays_not_modified():
    g = LogGrid(3.6, 1e-4, 10)
    ivar = np.ones((1, 10), np.float32)
    mask = np.zeros((1, 10), bool)
    mask[0, 2] = True
    b = SpectraBatch(g.loglam, np.ones((1, 10), np.float32), ivar, mask)
    assert b.ivar[0, 2] == 0 and ivar[0, 2] == 1.0


def test_shape_and_grid_errors():
    g = LogGrid(3.6, 1e-4, 10)
    with pytest.raises(ValueError, match="ivar shape"):
        SpectraBatch(g.loglam, np.ones((2, 10)), np.ones((2, 9)), source="x.h5")
    with pytest.raises(ValueError, match="not strictly increasing"):
        SpectraBatch(g.loglam[::-1], np.ones((1, 10)))
    with pytest.raises(ValueError, match="pixels"):
        SpectraBatch(g.loglam[:5], np.ones((1, 10)))


def test_slice_select_concatenate():
    g = LogGrid(3.6, 1e-4, 20)
    from astropy.table import Table
    a = SpectraBatch(g.loglam, np.arange(60.).reshape(3, 20), np.ones((3, 20)),
                     meta=Table({"TARGETID": [1, 2, 3], "CLASS": ["STAR", "QSO", "GALAXY"]}))
    b = SpectraBatch(g.loglam, np.zeros((2, 20)), np.ones((2, 20)),
                     meta=Table({"TARGETID": [4, 5], "Z": [0.1, 0.2]}))
    c = SpectraBatch.concatenate([a, b])
    assert len(c) == 5 and c.flux.shape == (5, 20)
    assert list(c.meta["TARGETID"]) == [1, 2, 3, 4, 5]
    assert list(c.meta["CLASS"]) == ["STAR", "QSO", "GALAXY", "", ""]
    assert np.isnan(c.meta["Z"][0]) and c.meta["Z"][4] == pytest.approx(0.2)
    assert not hasattr(c.meta["CLASS"], "mask") or not np.any(c.meta["CLASS"].mask)
    assert len(c[1]) == 1 and c[1].meta["TARGETID"][0] == 2
    sel = c.select([4, 0])
    assert list(sel.meta["TARGETID"]) == [5, 1] and sel.flux[1, 1] == 1.0
    assert len(c[c.meta["TARGETID"] > 2]) == 3
    with pytest.raises(ValueError, match="different wavelength grids"):
        SpectraBatch.concatenate([a, SpectraBatch(g.loglam + 1e-3, np.ones((1, 20)))])


def test_median_snr_and_good_fraction():
    g = LogGrid(3.6, 1e-4, 10)
    flux = np.full((2, 10), 3.0)
    ivar = np.full((2, 10), 4.0)
    ivar[1] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = SpectraBatch(g.loglam, flux, ivar)
    np.testing.assert_allclose(b.median_snr(), [6.0, 0.0])
    np.testing.assert_allclose(b.good_fraction(), [1.0, 0.0])
