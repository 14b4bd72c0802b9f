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
from _spectra import noisy_quasars

from specsift.lines.continuum import template_columns
from specsift.lines.fit import fit_lines
from specsift.lines.measure import SDSS_NOISE_CORR, measure_lines, sdss_sigma_inst
from specsift.lines.models import quasar_models, rest_scaled, window_groups
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


def test_rest_scaled_tells_apart_windows_differing_in_any_field_but_names():
    """Every field of the line model, its components and groups (the names aside)
    changes :func:`rest_scaled`'s key, so two windows differing in it are never stacked;
    the changes below cover every field (a field added later fails the coverage check
    until it gets one), and renaming alone keeps the key."""
    from specsift.lines.fit import Component, Group, LineModel
    m = {c: mdl for c, mdl, _ in quasar_models()}["CIV_BROAD"]
    c1, g0 = m.components[1], m.groups[0]
    comp = {"wave": 1.01 * c1.wave, "group": 1, "amp": 5, "region": 1, "ratio": 0.5,
            "scale": 2.0}
    grp = {"sigma0": 1.0, "sigma_max": 1.0, "v_max": 1.0}
    top = {"regions": ((1000.0, 2000.0),), "n_amp": 7, "slope": not m.slope, "bin": m.bin + 1,
           "templates": ("t",), "white_fixed_background": not m.white_fixed_background,
           "full_steps": 9}
    names = lambda cls: {f.name for f in dataclasses.fields(cls)}         # noqa: E731
    assert names(Component) == set(comp) | {"key"} and names(Group) == set(grp) | {"name"}
    assert names(LineModel) == set(top) | {"components", "groups"}
    key = rest_scaled(m)
    for k, v in comp.items():
        other = (m.components[0], dataclasses.replace(c1, **{k: v})) + m.components[2:]
        assert rest_scaled(dataclasses.replace(m, components=other)) != key, k
    for k, v in grp.items():
        other = (dataclasses.replace(g0, **{k: v}),) + m.groups[1:]
        assert rest_scaled(dataclasses.replace(m, groups=other)) != key, k
    for k, v in top.items():
        assert rest_scaled(dataclasses.replace(m, **{k: v})) != key, k
    renamed = dataclasses.replace(
        m, components=tuple(dataclasses.replace(c, key="X") for c in m.components),
        groups=tuple(dataclasses.replace(g, name="Y") for g in m.groups))
    assert rest_scaled(renamed) == key


def _quasars(z, seed=3):
    return noisy_quasars(z, seed)


@pytest.mark.parametrize("feii", [False, True])
def test_stacked_windows_give_each_window_its_separate_fit(feii):
    """Quasars at 1.2 ≤ z ≤ 2.6 reach C IV, C III] and Mg II in different combinations
    (one spectrum in two or three windows): the stacked fit's result per window equals
    fit_lines on that window alone, every field bit for bit, and its iterations too; with
    Fe II templates (C IV and Mg II stacked, each pair with its own window's template
    values) as well."""
    z = np.linspace(1.2, 2.6, 12)
    per = _stacked_equal_separate(z, feii)
    shared = [c for c in ("CIV_BROAD", "CIII_BROAD", "MGII_BROAD") if c in per]
    assert len(shared) == 3
    in_two = sum(np.isin(np.arange(z.size), per[c][0]) for c in shared)
    assert (in_two >= 2).any()                    # a spectrum fitted in several windows


def test_without_civ_rows_ciii_is_the_stacked_reference():
    """At 1.0 ≤ z ≤ 1.3 no spectrum reaches C IV: the group's first window with rows,
    C III], is the model every pair is fitted with (Mg II's at (1 + z) λ_MgII / λ_CIII]),
    and each window's result is still its separate fit's, bit for bit."""
    z = np.linspace(1.0, 1.3, 8)
    per = _stacked_equal_separate(z, False)
    assert "CIV_BROAD" not in per
    assert per["CIII_BROAD"][0].size and per["MGII_BROAD"][0].size


def _stacked_equal_separate(z, feii):
    """measure_lines' per-window fits of quasars at ``z``, each window's checked against
    fit_lines on that window alone.  Equal bit for bit, not to a tolerance: a pair fitted
    at (1 + z) λ_own / λ_ref − 1 with the reference model differs from its own window's
    fit only in float64 roundings of the redshift, and the fit uses the redshift only
    through integer pixels (each bin's first pixel, floored) and float32 line centres,
    which a 1e-16 relative difference does not move; the rows are independent."""
    obs, ivar = _quasars(z)
    _, fits = measure_lines(GRID.loglam, obs, ivar, z, np.full(z.size, "QSO"),
                            return_fits=True, feii=feii)
    rows, per = fits["QSO"]
    np.testing.assert_array_equal(rows, np.arange(z.size))
    models = {c: m for c, m, _ in quasar_models(feii=feii)}
    sig = np.broadcast_to(sdss_sigma_inst(GRID.loglam), obs.shape)
    for col in (c for c in ("CIV_BROAD", "CIII_BROAD", "MGII_BROAD") if c in per):
        s, got = per[col]
        m = models[col]
        extra = template_columns(m, GRID.loglam, z[s]) if m.templates else None
        want = fit_lines(m, GRID.loglam, obs, ivar, z[s], sig[s],
                         noise_corr=SDSS_NOISE_CORR, rows=s, extra=extra)
        _same(got, want, col)
    return per


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
