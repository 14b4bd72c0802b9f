"""The STAR check's polynomial-first scan and the template-error refit's pre-test: the same
answers as the paths they shortcut."""

import numpy as np
import pytest

from specsift.grid import DEFAULT_GRID
from specsift.verify.fit import bin_basis, prepare, scan
from specsift.verify.polyfirst import poly_factor, scan_poly_first
from specsift.verify.template_error import _may_dominate, template_error_dominates
from specsift.verify.templates import bases_for


def _binned_rows(n: int, nb: int = 509, seed: int = 0):
    """Binned 16-term products of ``n`` noisy rows shaped like a star (the STAR basis at z 0
    plus a bent continuum), some bins masked; row 0 has only 10 good bins (G singular)."""
    rng = np.random.default_rng(seed)
    b = bin_basis(bases_for(DEFAULT_GRID.loglam)["STAR"], 8)
    x = np.linspace(-1, 1, nb)
    tmpl = b.vectors[:, b.offset:b.offset + nb]
    flux = (rng.uniform(0.5, 2, (n, len(tmpl))) @ tmpl + 3 * (1 + 0.4 * x ** 2)
            + rng.normal(0, 0.05, (n, nb))).astype(np.float32)
    ivar = rng.uniform(100, 400, (n, nb)).astype(np.float32)
    mask = rng.random((n, nb)) < 0.03
    mask[0, 10:] = True
    return prepare(flux, ivar, mask, npoly=16), b


@pytest.mark.parametrize("star", [True, False])
def test_poly_first_scan_is_the_full_scan(star):
    """χ² of every row and shift as :func:`.fit.scan` gives it, to the rounding of the
    other order of elimination (the GEMM inputs are the same float32 products): at one
    common shift (the STAR window, no frame copy) and at scattered shifts of another basis;
    the degenerate row (too few bins for 16 terms) takes ``scan`` itself."""
    prep, bstar = _binned_rows(40)
    pf = poly_factor(prep)
    assert not pf.ok[0] and pf.ok[1:].all()
    n = 40
    if star:
        basis, spec, kc = bstar, np.arange(n), np.zeros(n, np.int64)
        offs = np.arange(-2, 3)
    else:
        basis = bin_basis(bases_for(DEFAULT_GRID.loglam)["QSO"], 8)
        spec = np.random.default_rng(1).permutation(n)[:30]
        kc = np.random.default_rng(2).integers(5, 200, 30)
        offs = np.arange(-1, 2)
    want = scan(prep, basis, spec, kc, offs)
    got = scan_poly_first(prep, pf, basis, spec, kc, offs)
    assert got.shape == want.shape and np.isfinite(got).all()
    fine = spec != 0
    # to 1e-9 where both orders see the same float32 GEMM sums (an AVX-512 machine); on an
    # AVX2 one OpenBLAS's kernels round the two paths' products differently, ≤ 6e-5 of the
    # largest χ² (4.1 of 7.7e4): a wrong elimination is off by the χ² itself
    np.testing.assert_allclose(got[fine], want[fine], rtol=1e-9,
                               atol=3e-4 * np.abs(want[fine]).max())
    row0 = np.flatnonzero(~fine)              # the fallback: scan of that row alone
    assert np.array_equal(got[row0], scan(prep, basis, spec[row0], kc[row0], offs))


def test_poly_factor_is_the_polynomial_fit():
    """|y|² = b_Pᵀ G⁻¹ b_P: F − |y|² is the 16-term polynomial's own χ²."""
    prep, _ = _binned_rows(12)
    pf = poly_factor(prep)
    ok = np.flatnonzero(pf.ok)
    want = np.einsum("nk,nk->n", prep.bp[ok], np.linalg.solve(prep.G[ok], prep.bp[ok][..., None])[..., 0])
    np.testing.assert_allclose(pf.yy[ok], want, rtol=1e-9)


def test_refit_pre_test_never_rejects_a_row_the_test_keeps():
    """:func:`_may_dominate` is a necessary condition of :func:`template_error_dominates`
    (an upper bound on the running median), on rows around S/N 1/ε with NaN and infinite
    flux, masked and non-positive ivar — and it does reject rows well below S/N 1/ε."""
    rng = np.random.default_rng(7)
    kept = rejected = 0
    for trial in range(12):
        n, npix = 150, int(rng.integers(30, 600))
        snr = rng.lognormal(np.log(12), 0.6, n)[:, None]
        cont = 1 + 0.5 * np.sin(np.linspace(0, rng.uniform(1, 20), npix))[None]
        flux = (cont + rng.normal(0, 1, (n, npix)) / snr).astype(np.float32)
        flux[:, rng.integers(0, npix, 5)] = rng.choice([np.nan, 50.0, -3.0])
        flux[trial, :9] = np.nan
        ivar = (snr ** 2 * rng.uniform(0.5, 1.5, (n, npix))).astype(np.float32)
        ivar[rng.random((n, npix)) < 0.05] = rng.choice([0.0, np.nan, -1.0])
        good = (ivar > 0) & (rng.random((n, npix)) > 0.05)
        flux[3, 7] = np.inf
        test = template_error_dominates(flux, ivar, good, 0.068)
        maybe = _may_dominate(flux, ivar, good, 0.068)
        assert not (test & ~maybe).any()
        assert maybe[3]                                      # infinite flux: always passes
        kept += test.sum()
        rejected += (~maybe).sum()
    assert kept > 100 and rejected > 300


def test_star_check_bins_a_view_to_the_same_sums():
    """:func:`.starcheck._bin_plane` (binning a view of the rows' range) gives the sums of
    binning the fancy-indexed rows, for a full range, a range with gaps, sparse rows, and
    none."""
    from specsift.verify.fit import bin_sums
    from specsift.verify.starcheck import _bin_plane
    rng = np.random.default_rng(3)
    flux = rng.normal(5, 1, (30, 4076)).astype(np.float32)
    ivar = rng.uniform(1, 4, (30, 4076)).astype(np.float32)
    prep = prepare(flux, ivar, rng.random((30, 4076)) < 0.02)
    for rows in (np.arange(30), np.arange(4, 20), np.array([2, 3, 5, 6, 7, 9]),
                 np.array([0, 29]), np.arange(0)):
        for k in (0, prep.npoly):
            want = bin_sums(prep.d[rows, k], 509, 8)
            got = _bin_plane(prep, k, rows, 509, 8)
            assert got.shape == want.shape and np.array_equal(got, want)
