"""The line stage's fast paths against the plain numpy they replace (bit for bit: the
line stage's answers must not move when it gets faster)."""

from __future__ import annotations

import numpy as np
import pytest

from specsift.lines import continuum as C
from specsift.spectra import DEFAULT_GRID


def _reference_design(ll, pc, lz, templates):
    """The basis as it was built before the pair table: two fancy-index gathers of the
    (K, R) components, products term by term."""
    _, rstart, rstep = C._basis()
    n = lz.shape[0]
    pos = (np.broadcast_to(ll, (n,) + np.shape(ll)[-1:]) - lz - rstart) / rstep
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, templates.shape[1] - 2)
    f = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    pc = np.broadcast_to(pc if pc.ndim == 3 else pc[:, None, :], (C._N_POLY,) + i0.shape)
    t = templates[:, i0] * (1 - f) + templates[:, i0 + 1] * f                  # (K, N, C)
    rows = [t[k] * pc[j] for k in range(t.shape[0]) for j in range(C._N_MULT)]
    return np.stack(rows + list(pc), axis=1)


@pytest.mark.parametrize("boxcar", [False, True])
def test_design_from_the_pair_table_equals_the_gathers(boxcar):
    rng = np.random.default_rng(3)
    loglam = DEFAULT_GRID.loglam
    z = rng.uniform(0.0, 0.9, 7)
    lz = np.log10(1 + z)[:, None]
    cols = np.sort(rng.integers(0, loglam.size, (7, 50)), axis=1)
    pc = rng.normal(size=(C._N_POLY, 7, 50)).astype(np.float32)
    templates = C._boxcar_basis() if boxcar else C._basis()[0]
    got = C._design(loglam[cols], pc, lz, C._pair_table(boxcar))
    want = _reference_design(loglam[cols], pc, lz, templates)
    assert got.dtype == np.float32 and got.shape == want.shape == (7, 22, 50)
    np.testing.assert_array_equal(got, want)
    # one grid shared by every row, (J, C) polynomials: the binned fit's call
    got = C._design(loglam[:50], pc[:, 0], lz, C._pair_table(boxcar))
    np.testing.assert_array_equal(got, _reference_design(loglam[:50], pc[:, 0], lz, templates))


@pytest.mark.parametrize("b", [2, 4, C._BIN])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bin_sums_equal_numpy_reductions(b, dtype):
    """The continuum's 6-pixel bins and the quasar windows' 2- and 4-pixel bins."""
    from specsift.lines.problem import bin_sum
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(9, 31, b)) ** 3).astype(dtype)
    x[2, 5, 1] = 0.0
    x[4, 7] = -1.0
    np.testing.assert_array_equal(bin_sum(x), x.sum(2))
    np.testing.assert_array_equal(C._bin_all_positive(x), (x > 0).all(2))
    assert bin_sum(x).dtype == dtype


def test_add_line_columns_equals_adding_the_line_table():
    """The stage's one-Column-per-line append against the Table it replaced: same names,
    order, values, dtypes, units, and no copies."""
    from astropy.table import Table

    from specsift.lines.measure import _empty, add_line_columns, line_table
    cols = _empty(5)
    cols["HALPHA_FLUX"][:] = np.arange(5, dtype=np.float32)
    base = Table({"Z": np.zeros(5), "SPECTYPE": ["GALAXY"] * 5})
    want = base.copy(copy_data=False)
    want.add_columns(list(line_table(cols).columns.values()), copy=False)
    got = base.copy(copy_data=False)
    add_line_columns(got, cols)
    assert got.colnames == want.colnames
    for k in want.colnames:
        assert got[k].dtype == want[k].dtype and got[k].unit == want[k].unit, k
        np.testing.assert_array_equal(got[k], want[k])
    assert str(got["HALPHA_FLUX"].unit) == "1e-17 erg / (s cm2)"
    assert np.shares_memory(got["HALPHA_FLUX"], cols["HALPHA_FLUX"])


@pytest.mark.parametrize("window", ["HBETA_BROAD", "HALPHA_BROAD"])
def test_fit_of_some_rows_equals_the_fit_of_their_copies(window):
    """``fit_lines(..., rows=)`` (a quasar window's subset, its pixels gathered from the
    whole batch) against the fit of the rows copied out first, as the stage did."""
    from specsift.lines.fit import fit_lines
    from specsift.lines.models import quasar_models
    rng = np.random.default_rng(5)
    loglam = DEFAULT_GRID.loglam
    flux = rng.normal(1, 1, (9, loglam.size)).astype(np.float32)
    ivar = rng.uniform(0.5, 2.0, flux.shape).astype(np.float32)
    ivar[:, ::41] = 0
    rows = np.array([7, 1, 4, 8])
    z = rng.uniform(0.1, 0.3, rows.size)
    model = {col: m for col, m, _ in quasar_models(False, False)}[window]
    want = fit_lines(model, loglam, flux[rows], ivar[rows], z, 65.0, noise_corr=0.28)
    got = fit_lines(model, loglam, flux, ivar, z, 65.0, noise_corr=0.28, rows=rows)
    for name in ("amp", "amp_err", "amp_err_white", "sigma", "velocity", "back", "chi2",
                 "covered", "model"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert np.isfinite(want.amp).any()


@pytest.mark.parametrize("b", [2, 4])
def test_bin_widths_table_equals_the_per_bin_gather(b):
    """Quasar windows' bin widths in Å from the per-start table against the gather of
    every pixel's width it replaced, windows off either edge of the spectrum included."""
    from specsift.lines.problem import _LN10, _bin_widths
    loglam = DEFAULT_GRID.loglam
    p, step = loglam.size, loglam[1] - loglam[0]
    idx = np.array([[-40, -5, -1, 0, 3], [p - 3, p - 1, p, p + 7, 100]])
    ic = np.clip(idx[:, :, None] + np.arange(b), 0, p - 1)
    want = (10.0 ** loglam * (_LN10 * step))[ic].sum(2)
    np.testing.assert_array_equal(_bin_widths(loglam, step, b, idx), want)


def test_masked_bins_equal_the_binned_pixel_mask():
    """The continuum's masked bins (intervals set by counting on the bins) equal the
    pixel mask of every narrow line, any-reduced over each bin — for lines inside the
    grid, straddling its ends and off it."""
    loglam = DEFAULT_GRID.loglam
    nb = loglam.size // C._BIN
    z = np.concatenate([[0.0, 1e-4, 0.5, 1.2, 3.0], np.random.default_rng(8).uniform(0, 1, 40)])
    got = C._masked_bins(loglam, z, nb)
    want = C.line_mask(loglam, z)[:, :nb * C._BIN].reshape(z.size, nb, C._BIN).any(2)
    assert got.shape == (z.size, nb) and got.any() and not got.all()
    np.testing.assert_array_equal(got, want)
