"""How the line fits are batched must not change their answers: quasar windows that are
the same fit up to the rest wavelength (C IV, C III], Mg II:
:func:`specsift.lines.models.window_groups`) are fitted as one stacked problem of their
(row, window) pairs (``lines/measure.py``), each pair coming back as its own window's
separate fit would; and the solver's active set, re-sliced only when
:data:`~specsift.lines.solver.RESLICE_MIN` rows have left, gives every row the same
answer whenever it is re-sliced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from specsift.lines.continuum import template_columns
from specsift.lines.fit import fit_lines
from specsift.lines.measure import SDSS_NOISE_CORR, measure_lines, sdss_sigma_inst
from specsift.lines.models import quasar_models, rest_scaled, window_groups
from specsift.simulate import apply_instrument
from specsift.simulate.quasars import make_quasars
from specsift.spectra import DEFAULT_GRID as GRID


def test_broad_only_windows_share_one_group_and_the_others_stay_alone():
    """C IV, C III] and Mg II (one broad line in a ±15000 km/s window, bins of 4) are one
    group; Lyα (with N V), Hβ and Hα (with narrow lines) differ in their lines and stay
    alone; with Fe II templates (under C IV and Mg II only) C III] leaves the group."""
    cols = [c for c, _, _ in quasar_models()]
    named = [tuple(cols[i] for i in g) for g in window_groups()]
    assert ("CIV_BROAD", "CIII_BROAD", "MGII_BROAD") in named
    assert ("LYALPHA_BROAD",) in named and ("HBETA_BROAD",) in named
    assert ("HALPHA_BROAD",) in named and sum(map(len, named)) == len(cols)
    fe = [tuple(cols[i] for i in g) for g in window_groups(feii=True)]
    assert ("CIV_BROAD", "MGII_BROAD") in fe and ("CIII_BROAD",) in fe
    m = dict((c, mdl) for c, mdl, _ in quasar_models())
    assert rest_scaled(m["CIV_BROAD"]) == rest_scaled(m["MGII_BROAD"])
    assert rest_scaled(m["CIV_BROAD"]) != rest_scaled(m["LYALPHA_BROAD"])


def _quasars(z, seed=3):
    flux, _ = make_quasars(np.random.default_rng(seed), z, GRID, weak=np.zeros(z.size, bool),
                           bal_fraction=0.0)
    flux = flux * (20.0 / np.median(flux, axis=1))[:, None]
    obs, ivar, _, _ = apply_instrument(flux, GRID, np.full(z.size, 15.0),
                                       np.random.default_rng(seed + 1), bad_pixel_rate=0.0)
    return obs, ivar


@pytest.mark.parametrize("feii", [False, True])
def test_stacked_windows_give_each_window_its_separate_fit(feii):
    """Quasars at 1.2 ≤ z ≤ 2.6 reach C IV, C III] and Mg II in different combinations
    (one spectrum in two or three windows): the stacked fit's result per window equals
    fit_lines on that window alone (every field, to float32 rounding of the redshift the
    pair is fitted at), and its iterations too; with Fe II templates (C IV and Mg II
    stacked, each pair with its own window's template values) as well."""
    z = np.linspace(1.2, 2.6, 12)
    obs, ivar = _quasars(z)
    _, fits = measure_lines(GRID.loglam, obs, ivar, z, np.full(z.size, "QSO"),
                            return_fits=True, feii=feii)
    rows, per = fits["QSO"]
    np.testing.assert_array_equal(rows, np.arange(z.size))
    models = {c: m for c, m, _ in quasar_models(feii=feii)}
    sig = np.broadcast_to(sdss_sigma_inst(GRID.loglam), obs.shape)
    shared = [c for c in ("CIV_BROAD", "CIII_BROAD", "MGII_BROAD") if c in per]
    assert len(shared) == 3
    in_two = sum(np.isin(np.arange(z.size), per[c][0]) for c in shared)
    assert (in_two >= 2).any()                    # a spectrum fitted in several windows
    for col in shared:
        s, got = per[col]
        m = models[col]
        extra = template_columns(m, GRID.loglam, z[s]) if m.templates else None
        want = fit_lines(m, GRID.loglam, obs, ivar, z[s], sig[s],
                         noise_corr=SDSS_NOISE_CORR, rows=s, extra=extra)
        for f in dataclasses.fields(want):
            a, b = getattr(got, f.name), getattr(want, f.name)
            if a.dtype.kind in "biu":
                np.testing.assert_array_equal(a, b, err_msg=f"{col} {f.name}")
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.nanmax(np.abs(b)),
                                           err_msg=f"{col} {f.name}")


def _same(got, want, what):
    for f in dataclasses.fields(want):
        np.testing.assert_array_equal(getattr(got, f.name), getattr(want, f.name),
                                      err_msg=f"{what} {f.name}")


def test_rows_carried_along_after_converging_do_not_change_any_answer(monkeypatch):
    """Re-slicing the active set after every finished row, or never, gives every row the
    same result bit for bit as the default (rows are independent; a finished row carried
    along is written back when it finishes and never again), and the rows finish at
    different iterations, so carrying them along is exercised."""
    from specsift.lines import solver
    z = np.linspace(0.15, 0.3, 10)                            # Hβ and Hα windows
    obs, ivar = _quasars(z, seed=5)
    _, model, _ = next(m for m in quasar_models() if m[0] == "HBETA_BROAD")
    sig = np.broadcast_to(sdss_sigma_inst(GRID.loglam), obs.shape)

    def fit():
        return fit_lines(model, GRID.loglam, obs, ivar, z, sig, noise_corr=SDSS_NOISE_CORR)

    default = fit()
    assert len(set(default.n_iter.tolist())) > 2 and default.converged.all()
    for every in (1, 10 ** 6):
        monkeypatch.setattr(solver, "RESLICE_MIN", every)
        _same(fit(), default, f"RESLICE_MIN={every}")
