"""verify.fit.prepare's bad-pixel repair (triggered by a non-finite Σ w f²): a spectrum with
non-finite flux or infinite ivar gets exactly the products of the same spectrum with those
pixels masked, and the clean spectra of the batch are untouched."""

import numpy as np

from specsift.verify.fit import prepare


def _same(a, b):
    return all(np.array_equal(getattr(a, k), getattr(b, k))
               for k in ("d", "G", "bp", "F", "ngood", "scale"))


def test_prepare_repairs_non_finite_pixels_as_masks():
    rng = np.random.default_rng(0)
    flux = rng.normal(3.0, 1.0, size=(5, 300)).astype(np.float32)
    ivar = rng.uniform(0.5, 2.0, size=flux.shape).astype(np.float32)
    mask = np.zeros(flux.shape, bool)
    dirty_f, dirty_iv = flux.copy(), ivar.copy()
    dirty_f[1, 10] = np.nan
    dirty_f[2, 20:23] = np.inf
    dirty_iv[3, 40] = np.inf
    dirty_f[4, 50] = np.inf
    dirty_iv[4, 50] = 0.0                                # masked by ivar already: still NaN w·f
    bad = ~np.isfinite(dirty_f) | ~np.isfinite(dirty_iv)
    ref = prepare(np.where(bad, 0, flux), np.where(bad, 0, ivar), mask | bad)
    got = prepare(dirty_f, dirty_iv, mask)
    assert _same(got, ref)
    assert np.isfinite(got.F).all() and np.isfinite(got.d).all()
    clean = prepare(flux[[0]], ivar[[0]], mask[[0]])
    assert _same(clean, prepare(flux[[0]], ivar[[0]], None))
