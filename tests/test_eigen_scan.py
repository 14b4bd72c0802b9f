"""χ² scan, redshift solution, DELTACHI2/ZWARN logic on constructed bases (no training)."""

import numpy as np
import pytest
import torch

from specsift.flags import ZWARN
from specsift.models.eigen.chi2scan import Chi2Scanner, ScanBasis, shift_to_z, z_to_shift
from specsift.models.eigen.zsolve import MIN_DELTACHI2, solve_redshifts

NPIX = 600
STEP = 1e-4


def _gauss(r, centre, sigma):
    return np.exp(-0.5 * ((r - centre) / sigma) ** 2)


def _basis(jmin, jmax, seed=0):
    """3 rest vectors: a slope with absorption dips, emission lines, an oscillation."""
    rng = np.random.default_rng(seed)
    nrest = NPIX + jmax - jmin
    r = np.arange(nrest, dtype=float)
    v0 = 1.0 + 0.3 * r / nrest
    for c in rng.uniform(0, nrest, 25):
        v0 -= 0.4 * _gauss(r, c, 2.0)
    v1 = sum(_gauss(r, c, 1.5) for c in rng.uniform(0, nrest, 15))
    v2 = 0.3 * np.sin(r / 7.0) * (1.0 + r / nrest)
    return np.stack([v0, v1, v2])


def _spectrum(sc, index, shift, coeff, poly=(0.2, 0.05, -0.03)):
    x = sc.design(index, [shift]).numpy()[0]
    return np.asarray(coeff) @ x[:3] + np.asarray(poly) @ x[3:]


@pytest.fixture(scope="module")
def scanner():
    jmin, jmax = -20, 900
    return Chi2Scanner([ScanBasis("A", _basis(jmin, jmax), jmin, jmax)], NPIX, npoly=3,
                       dtype=torch.float64)


def test_noiseless_shift_recovered_within_a_pixel(scanner):
    shifts = [-12.0, 3.3, 250.6, 611.25, 880.0]
    flux = np.stack([_spectrum(scanner, 0, s, [1.0, 0.7, 0.4]) for s in shifts])
    ivar = np.full_like(flux, 100.0)
    curves = scanner.scan(flux, ivar)
    best = curves[0].argmin(axis=1) + scanner.bases[0].jmin
    assert np.all(np.abs(best - np.asarray(shifts)) <= 1.0)
    sol = solve_redshifts(scanner, curves, flux, ivar, STEP)
    assert np.all(np.abs(sol.shift - np.asarray(shifts)) < 0.5)
    np.testing.assert_allclose(sol.z, shift_to_z(sol.shift, STEP))
    # a noiseless spectrum inside the basis span fits almost perfectly at integer shifts
    assert sol.chi2[-1] < 1e-6 and sol.chi2[0] < 1e-6


def test_fft_direct_and_float32_agree_with_exact_fit(scanner):
    rng = np.random.default_rng(3)
    flux = np.stack([_spectrum(scanner, 0, s, [1.0, 0.5, 0.2]) for s in (40.0, 400.0)])
    flux += rng.normal(0, 0.05, flux.shape)
    ivar = np.full_like(flux, 400.0)
    ivar[0, 100:130] = 0.0                                   # a masked stretch
    fft = scanner.scan(flux, ivar)[0]
    direct = Chi2Scanner(scanner.bases, NPIX, 3, torch.float64, method="direct").scan(flux, ivar)[0]
    f32 = Chi2Scanner(scanner.bases, NPIX, 3, torch.float32).scan(flux, ivar)[0]
    np.testing.assert_allclose(fft, direct, rtol=1e-7)
    # float32 FFTs: errors ≪ 1 in χ² ~ 5000, same minima
    assert np.max(np.abs(f32 - fft)) < 0.5
    np.testing.assert_array_equal(f32.argmin(axis=1), fft.argmin(axis=1))
    j = np.array([0, 157, 733])
    for row in range(2):
        _, _, exact = scanner.fit_at(flux[row:row + 1].repeat(3, 0), ivar[row:row + 1].repeat(3, 0),
                                     0, scanner.bases[0].jmin + j)
        np.testing.assert_allclose(fft[row, j], exact, rtol=1e-6)


def test_zerr_shrinks_with_snr(scanner):
    rng = np.random.default_rng(7)
    clean = _spectrum(scanner, 0, 321.4, [1.0, 0.8, 0.3])
    zerr = {}
    for snr in (5.0, 50.0):
        sigma = np.abs(clean).mean() / snr
        flux = clean[None] + rng.normal(0, sigma, (8, NPIX))
        ivar = np.full_like(flux, 1 / sigma ** 2)
        sol = solve_redshifts(scanner, scanner.scan(flux, ivar), flux, ivar, STEP)
        zerr[snr] = np.median(sol.zerr)
        # the error is honest: true z within 4 ZERR for most spectra
        ztrue = shift_to_z(321.4, STEP)
        assert np.mean(np.abs(sol.z - ztrue) < 4 * sol.zerr) >= 0.75
    assert 5 < zerr[5.0] / zerr[50.0] < 20                   # ∝ 1/(S/N) → ratio ≈ 10


def _line_scanner():
    """One basis vector: a single emission line (every shift fits a line somewhere)."""
    jmin, jmax = 0, 400
    r = np.arange(NPIX + jmax - jmin, dtype=float)
    return Chi2Scanner([ScanBasis("L", _gauss(r, 650.0, 2.0)[None], jmin, jmax)], NPIX, 3,
                       dtype=torch.float64)


def test_deltachi2_and_zwarn_on_double_minimum():
    sc = _line_scanner()
    p = np.arange(NPIX, dtype=float)
    # a line at observed pixel c comes from shift j with p = 650 - (400 - j)  →  j = c - 250
    twin = _gauss(p, 300.0, 2.0) + _gauss(p, 420.0, 2.0)            # equal lines: degenerate
    strong = _gauss(p, 300.0, 2.0) + 0.3 * _gauss(p, 420.0, 2.0)    # one clearly best
    flux = np.stack([twin, strong]) * 5.0
    ivar = np.full_like(flux, 4.0)
    curves = sc.scan(flux, ivar)
    sol = solve_redshifts(sc, curves, flux, ivar, STEP)
    # DELTACHI2 is the χ² difference of the two solutions, both computed exactly
    for row in range(2):
        _, _, c = sc.fit_at(flux[row:row + 1].repeat(2, 0), ivar[row:row + 1].repeat(2, 0), 0,
                            np.array([50.0, 170.0]))
        assert sol.deltachi2[row] == pytest.approx(abs(c[1] - c[0]), abs=0.05)  # + parabola
    assert sol.deltachi2[0] < MIN_DELTACHI2 and sol.zwarn[0] & ZWARN.SMALL_DELTA_CHI2
    assert sol.deltachi2[1] > MIN_DELTACHI2 and not sol.zwarn[1] & ZWARN.SMALL_DELTA_CHI2
    assert abs(sol.shift[1] - 50.0) < 0.5
    assert {round(sol.shift[0]), round(sol.z_second[0] and z_to_shift(sol.z_second[0], STEP))} \
        == {50, 170}
    assert sol.degeneracy[1] == pytest.approx(sol.deltachi2[1] / sol.chi2[1])
    assert not (sol.zwarn & ZWARN.Z_FITLIMIT).any()


def test_second_minimum_must_be_1000_kms_away():
    sc = _line_scanner()
    p = np.arange(NPIX, dtype=float)
    # two lines 8 px apart (≈ 550 km/s): one solution, not two
    flux = (_gauss(p, 300.0, 2.0) + 0.9 * _gauss(p, 308.0, 2.0))[None] * 5.0
    ivar = np.full_like(flux, 4.0)
    sol = solve_redshifts(sc, sc.scan(flux, ivar), flux, ivar, STEP)
    assert sol.second_class[0] == -1 or abs(z_to_shift(sol.z_second[0], STEP) - sol.shift[0]) > 14


def test_fitlimit_at_range_edge():
    sc = _line_scanner()
    p = np.arange(NPIX, dtype=float)
    flux = (_gauss(p, 640.0, 2.0) * 5.0)[None]          # needs shift 390…: inside
    edge = (_gauss(p, 251.0, 2.0) * 5.0)[None]          # line beyond the range: shift ≈ 1
    flux = np.concatenate([flux, (_gauss(p, 249.0, 2.0) * 5.0)[None], edge])
    ivar = np.full_like(flux, 4.0)
    sol = solve_redshifts(sc, sc.scan(flux, ivar), flux, ivar, STEP)
    assert sol.zwarn[1] & ZWARN.Z_FITLIMIT                 # best at shift 0 (true −1)
    assert not sol.zwarn[2] & ZWARN.Z_FITLIMIT


def test_no_data_and_singular_systems_do_not_crash(scanner):
    flux = np.zeros((2, NPIX))
    ivar = np.zeros((2, NPIX))
    ivar[1, :5] = 1.0                                       # almost nothing: singular systems
    flux[1, :5] = 1.0
    curves = scanner.scan(flux, ivar)
    assert all(np.all(np.isfinite(c)) for c in curves)
    sol = solve_redshifts(scanner, curves, flux, ivar, STEP, ngood=(ivar > 0).sum(1))
    assert sol.zwarn[0] & ZWARN.NODATA
    assert np.all(np.isfinite(sol.z))
