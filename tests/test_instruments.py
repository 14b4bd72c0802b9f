"""Instrument models of the simulator: a simulated LAMOST and DESI spectrum has the
instrument's coverage, resolution and arm join (issue 18, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from specsift.simulate import simulate_batch
from specsift.simulate.instruments import get, lamost
from specsift.simulate.instruments._measured import lsf_piecewise, measured
from specsift.simulate.lines import C_KMS
from specsift.spectra import DEFAULT_GRID, LogGrid

WIDE = LogGrid.from_range(3.5563, 3.9925, 1e-4)          # 3600–9829 Å: DESI's Z arm end


def _edges(batch):
    good = ~batch.mask
    w = batch.wave
    return w[good.argmax(1)], w[good.shape[1] - 1 - good[:, ::-1].argmax(1)]


def test_lamost_coverage_and_label_column():
    b = simulate_batch(n=64, class_set="thirteen", seed=4, instrument="lamost")
    lo, hi = _edges(b)
    # LRS covers ≈ 3700–9100 Å (some blue ends masked, as in the real files)
    assert np.all(lo >= 3690) and np.median(lo) < 3710
    assert np.all(hi <= 9110) and np.median(hi) > 9080
    assert set(b.meta["INSTRUMENT"]) == {"lamost"}
    sdss = simulate_batch(n=64, class_set="thirteen", seed=4)
    assert set(sdss.meta["INSTRUMENT"]) == {"sdss"}
    assert _edges(sdss)[0].min() < 3650                      # BOSS blue end kept for SDSS


def test_desi_coverage_reaches_the_z_arm_end_on_a_wide_grid():
    b = simulate_batch(n=32, class_set="thirteen", seed=5, instrument="desi", grid=WIDE)
    lo, hi = _edges(b)
    assert np.median(lo) < 3610
    # stars' templates stop at 9550 Å; galaxies and quasars reach the Z arm's red end
    gal = np.asarray(b.meta["SPECTYPE"]) != "STAR"
    assert np.median(hi[gal]) > 9780 and hi.max() <= 9830


def _measured_sigma_kms(grid, res, wave0):
    """σ (km/s) of the instrument's LSF at wave0, measured on a narrow line."""
    f = np.zeros((1, grid.size), np.float32)
    k = int(np.argmin(np.abs(grid.wave - wave0)))
    f[0, k] = 1.0
    y = lsf_piecewise(f, grid, res)[0]
    x = (np.arange(grid.size) - k) * grid.step * np.log(10) * C_KMS
    sl = slice(k - 40, k + 41)
    return float(np.sqrt((y[sl] * x[sl] ** 2).sum() / y[sl].sum()))


def test_lamost_resolution_is_r1800_with_a_jump_at_the_arm_join():
    fine = LogGrid.from_range(3.5563, 3.9638, 1e-5)
    res = lamost.resolution()
    R = lambda w: C_KMS / (2.3548 * _measured_sigma_kms(fine, res, w))  # noqa: E731
    assert 1400 < R(4800) < 2000 and 1300 < R(6500) < 1900
    # two arms: the red arm's LSF is broader in Å, so R drops across the join
    assert R(5650) > 1.3 * R(5950)


def test_desi_resolution_comes_from_the_resolution_matrices():
    res = get("desi").resolution()
    R = C_KMS / (2.3548 * res.sigma_kms(np.log10([4000.0, 6500.0, 9000.0])))
    assert 1800 < R[0] < 3500 and 3000 < R[1] < 5500 and 3500 < R[2] < 6000
    assert R[0] < R[1] < R[2] * 1.1                           # resolution rises to the red


def test_lamost_arm_join_is_noisier_and_tellurics_absorb():
    b = simulate_batch(n=256, class_set="thirteen", seed=6, instrument="lamost", snr=20.0)
    w = b.wave
    with np.errstate(divide="ignore"):
        rel = np.where(b.ivar > 0, 1 / np.sqrt(np.where(b.ivar > 0, b.ivar, 1)), np.nan)
    rel = rel / np.nanmedian(rel, axis=1)[:, None]
    near = (w > 5200) & (w < 6400)
    prof, wn = np.nanmedian(rel[:, near], axis=0), w[near]
    join = (wn > 5750) & (wn < 5850)
    sides = ((wn > 5300) & (wn < 5500)) | ((wn > 6100) & (wn < 6300))
    assert np.nanmedian(prof[join]) > 1.1 * np.nanmedian(prof[sides])
    T = lamost.telluric_transmission(DEFAULT_GRID, np.random.default_rng(0), 50)
    ew = ((1 - T) * np.gradient(w)[None]).sum(1)
    m = measured("lamost")
    # median airmass 1.3 and median water column 1: the measured residual EWs, summed
    assert np.median(ew) == pytest.approx(m["telluric_ew"].sum(), rel=0.5)
    assert T.min() < 1 and T.max() == 1.0


def test_measured_snr_and_mix():
    b = simulate_batch(n=256, class_set="thirteen", seed=7, instrument="mix", snr=10.0)
    assert set(b.meta["INSTRUMENT"]) == {"sdss", "lamost", "desi"}
    r = np.asarray(b.meta["SNR_MEASURED"]) / 10.0
    assert np.median(r) == pytest.approx(1.0, abs=0.05)
    assert np.isfinite(b.flux).all() and (b.ivar >= 0).all()


def test_unknown_instrument_is_refused():
    with pytest.raises(ValueError, match="unknown instrument"):
        simulate_batch(n=4, instrument="hst")


def test_simulate_like_keeps_label_z_snr_and_instrument_per_row():
    from specsift.simulate import simulate_like
    labels = ["GALAXY", "STAR_K3", "QSO_BROADLINE", "STAR_A0"]
    b = simulate_like(labels, z=[0.1, 0.0, 1.5, 0.0], snr=[5.0, 30.0, 8.0, 15.0],
                      instrument=["sdss", "lamost", "desi", "lamost"], seed=2)
    assert list(b.meta["CLASS_LABEL"]) == labels
    assert list(b.meta["INSTRUMENT"]) == ["sdss", "lamost", "desi", "lamost"]
    assert np.allclose(np.asarray(b.meta["Z"])[[0, 2]], [0.1, 1.5])
    assert np.allclose(np.asarray(b.meta["SNR_MEASURED"]), [5, 30, 8, 15], rtol=0.1)
    with pytest.raises(ValueError, match="unknown labels"):
        simulate_like(["NOT_A_LABEL"], 0.1, 5.0)
