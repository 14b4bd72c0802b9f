"""verifyfix: the scans that share one Cholesky (:func:`.fit.scan_all`), the coarse stage
split into plan and finish, and the star SUBTYPE's restricted products give the same bits
as the code they replace."""

import numpy as np
import pytest

from specsift.grid import DEFAULT_GRID
from specsift.verify.fit import (
    bin_basis,
    bin_prepared,
    polynomial_products,
    prepare,
    scan,
    scan_all,
)
from specsift.verify.refine import coarse_plan, coarse_stage
from specsift.verify.subtype import _fit_legendre, _inside, _restricted
from specsift.verify.templates import bases_for


def _prep(n: int = 60, seed: int = 0):
    """Products of ``n`` noisy galaxy-like rows on the default grid, some pixels masked."""
    rng = np.random.default_rng(seed)
    bases = bases_for(DEFAULT_GRID.loglam)
    b = bases["GALAXY"]
    P = len(DEFAULT_GRID.loglam)
    shifts = rng.integers(200, 2500, n)
    flux = np.stack([rng.uniform(0.5, 2, b.ntemplate) @ b.vectors[:, b.offset - s:b.offset - s + P]
                     for s in shifts]) + 1.0
    flux = (flux + rng.normal(0, 0.05, flux.shape)).astype(np.float32)
    ivar = rng.uniform(50, 400, flux.shape).astype(np.float32)
    mask = rng.random(flux.shape) < 0.02
    return prepare(flux, ivar, mask), bases, shifts


def test_scan_all_is_scan_job_by_job():
    """Jobs of two sizes (GALAXY T = 4, STAR T = 6), one with no rows, one split off by
    ``max_systems``: every χ² the same bits as its own :func:`.fit.scan`."""
    prep, bases, shifts = _prep()
    rng = np.random.default_rng(1)
    jobs = [(bases["GALAXY"], np.arange(60), shifts, np.arange(-3, 4)),
            (bases["STAR"], rng.permutation(60)[:17], rng.integers(-20, 20, 17), np.arange(-2, 3)),
            (bases["QSO"], np.arange(0), np.zeros(0, np.int64), np.arange(-1, 2)),
            (bases["QSO"], np.arange(5, 30)[::-1], shifts[5:30][::-1] // 3, np.array([0])),
            (bases["GALAXY"], np.array([7]), shifts[[3]], np.arange(-2, 3))]
    for cap in (1 << 16, 30):
        got = scan_all(prep, jobs, max_systems=cap)
        for job, g in zip(jobs, got):
            want = scan(prep, *job)
            assert g.shape == want.shape
            np.testing.assert_array_equal(g, want)


def test_coarse_plan_then_scan_all_is_coarse_stage():
    prep, bases, shifts = _prep(seed=2)
    pb = bin_prepared(prep, 4)
    b = bases["GALAXY"]
    spec = np.arange(0, 60, 2)
    for coarse in (None, (pb, bin_basis(b, 4), 4)):
        want = coarse_stage(prep, b, spec, shifts[spec] + 0.3, 10, coarse, lo_limit=-30)
        plan = coarse_plan(prep, b, spec, shifts[spec] + 0.3, 10, coarse, lo_limit=-30)
        got = plan.finish(scan_all(plan.job[0], [plan.job[1:]])[0])
        for k in ("spec", "best", "lean", "lim_lo", "lim_hi", "chi2"):
            w, g = getattr(want, k), getattr(got, k)
            assert (w is None and g is None) or np.array_equal(w, g), k
        assert got.halfwidth == want.halfwidth


def _restricted_reference(prep, rows, inside, npoly):
    """The restricted products as the stage made them before verifyfix (fancy-indexed
    planes, a fresh zeroed f, count of nonzero float32 weights)."""
    keep = inside.astype(np.float32)
    d = np.empty((len(rows), npoly + 1, prep.npix), np.float32)
    np.multiply(prep.w[rows], keep, out=d[:, 0])
    np.multiply(prep.x3[rows, prep.npoly - 1], keep, out=d[:, npoly])
    w, wf = d[:, 0], d[:, npoly]
    f = np.divide(wf, w, out=np.zeros_like(wf), where=w > 0)
    F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    idx = np.flatnonzero(inside)
    P = _fit_legendre(prep.npix, int(idx[0]), int(idx[-1]), npoly)
    return polynomial_products(d, F, np.count_nonzero(w, axis=1), prep.scale[rows], P)


@pytest.mark.parametrize("npoly", [4, 6])
def test_restricted_products_same_bits(npoly):
    prep, bases, _ = _prep(seed=3)
    star = bases["STAR"]
    inside = _inside(star, star.star_named, prep.npix, 20)
    rows = np.array([3, 0, 17, 17, 42, 59])
    want = _restricted_reference(prep, rows, inside, npoly)
    want = {k: np.array(getattr(want, k)) for k in ("d", "G", "bp", "F", "ngood", "scale")}
    got = _restricted(prep, rows, inside, npoly)
    for k, v in want.items():
        np.testing.assert_array_equal(getattr(got, k), v, err_msg=k)
