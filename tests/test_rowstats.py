"""row_median_mad's vectorised selection against a plain per-row sort: bit for bit, since
the network inputs (and so every catalog answer) depend on it."""

import numpy as np
import pytest

from specsift.models.inputs import normalise
from specsift.rowstats import row_median_mad


def _reference(a):
    """Per row: median of the sorted finite values, then of the sorted |v − median| (float32
    throughout, as the fast path computes them)."""
    med = np.full((len(a), 1), np.nan, np.float32)
    mad = np.full((len(a), 1), np.nan, np.float32)
    for r, row in enumerate(a):
        v = np.sort(row[np.isfinite(row)])
        n = len(v)
        if n:
            med[r] = 0.5 * (v[(n - 1) // 2] + v[n // 2])
            d = np.sort(np.abs(v - med[r]))
            mad[r] = 0.5 * (d[(n - 1) // 2] + d[n // 2])
    return med, mad


@pytest.mark.parametrize("width", [1, 2, 3, 8, 101, 600])
def test_row_median_mad_is_the_plain_sort_bit_for_bit(width):
    rng = np.random.default_rng(width)
    a = rng.normal(size=(64, width)).astype(np.float32)
    a[::3] = np.round(a[::3] * 2)                              # ties
    a[rng.random(a.shape) < rng.random((64, 1))] = np.nan      # 0–100 % bad per row
    a[5] = np.nan
    ref_med, ref_mad = _reference(a)
    med, mad = row_median_mad(a, np.isfinite(a).sum(1))
    assert med.dtype == ref_med.dtype == mad.dtype
    assert np.array_equal(med, ref_med, equal_nan=True)
    assert np.array_equal(mad, ref_mad, equal_nan=True)
    b = a.copy()
    med2, mad2 = row_median_mad(b, np.isfinite(a).sum(1), overwrite_input=True)
    assert np.array_equal(med2, med, equal_nan=True) and np.array_equal(mad2, mad, equal_nan=True)
    assert np.array_equal(b, np.sort(a, axis=1), equal_nan=True)   # left sorted, as documented


def test_normalise_ignores_whatever_bad_pixels_hold():
    rng = np.random.default_rng(0)
    flux = rng.normal(5.0, 1.0, size=(6, 50)).astype(np.float32)
    ivar = np.full_like(flux, 4.0)
    mask = np.zeros(flux.shape, bool)
    mask[0, :5] = True
    ivar[1, 10:20] = 0.0
    clean = normalise(flux, ivar, mask)
    dirty = flux.copy()
    dirty[0, :5] = np.inf
    dirty[1, 10:20] = -1e30
    dirty[2, 7] = np.nan                                        # not finite: bad by itself
    out = normalise(dirty, ivar, mask)
    assert np.array_equal(out[:2], clean[:2])
    assert np.all(out[2, :, 7] == 0) and np.all(np.isfinite(out))
    assert np.array_equal(out[3:], clean[3:])


def test_running_median_is_scipys_nd_median_filter():
    """The 1-D path over padded rows gives scipy's (N, P) median_filter bit for bit: rows of
    noise, ties (a flat run), steps at the edges, widths 1 to 31, and rows shorter than the
    window (every window then holds edge copies)."""
    from scipy.ndimage import median_filter

    from specsift.rowstats import running_median
    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 500)) * 5 + 10
    a[1, 100:260] = 0.0
    a[2, :20] = -50.0
    a[3, -9:] = 80.0
    a[4] = np.round(a[4])                         # many ties
    for size in (1, 3, 15, 31):
        want = median_filter(a, size=(1, size), mode="nearest")
        np.testing.assert_array_equal(running_median(a, size), want)
    short = a[:, :5]
    np.testing.assert_array_equal(running_median(short, 15),
                                  median_filter(short, size=(1, 15), mode="nearest"))
    f32 = a.astype(np.float32)
    got = running_median(f32, 15)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, median_filter(f32, size=(1, 15), mode="nearest"))


def test_running_median_rejects_even_width_and_wrong_shape():
    from specsift.rowstats import running_median
    with pytest.raises(ValueError, match="odd"):
        running_median(np.zeros((2, 10)), 4)
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        running_median(np.zeros(10), 3)
