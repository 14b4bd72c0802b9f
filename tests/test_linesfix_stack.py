"""Quasar windows whose models differ only in their lines (Hβ and Hα:
:func:`specsift.lines.models.line_stacks`) are fitted as one problem whose rows keep their
own models (:mod:`specsift.lines.stack`); every row's result must be its own window's
separate fit, bit for bit, and where the models' evaluation differs the windows are fitted
apart with the same results."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _spectra import noisy_quasars

from specsift.lines import measure as measure_mod
from specsift.lines.fit import fit_lines
from specsift.lines.measure import SDSS_NOISE_CORR, measure_lines, sdss_sigma_inst
from specsift.lines.models import line_stacks, quasar_models, window_groups
from specsift.lines.stack import NotStackable
from specsift.spectra import DEFAULT_GRID as GRID


def _quasars(z, seed=7):
    return noisy_quasars(z, seed)


def test_hbeta_and_halpha_are_one_stack_and_nothing_else_is():
    cols = [c for c, _, _ in quasar_models()]
    groups = window_groups()
    named = [tuple(cols[i] for g in st for i in groups[g]) for st in line_stacks()]
    assert ("HBETA_BROAD", "HALPHA_BROAD") in named
    assert sum(map(len, named)) == len(cols)
    assert all(len(st) == 1 or named[k] == ("HBETA_BROAD", "HALPHA_BROAD")
               for k, st in enumerate(line_stacks()))
    fe = [tuple(cols[i] for g in st for i in window_groups(feii=True)[g])
          for st in line_stacks(feii=True)]
    assert ("HBETA_BROAD",) in fe and ("HALPHA_BROAD",) in fe    # Fe II under Hβ only


def _same(got, want, what):
    for f in dataclasses.fields(want):
        np.testing.assert_array_equal(getattr(got, f.name), getattr(want, f.name),
                                      err_msg=f"{what} {f.name}")


def _check_separate(z, seed=7):
    obs, ivar = _quasars(z, seed)
    _, fits = measure_lines(GRID.loglam, obs, ivar, z, np.full(z.size, "QSO"),
                            return_fits=True)
    rows, per = fits["QSO"]
    models = {c: m for c, m, _ in quasar_models()}
    sig = np.broadcast_to(sdss_sigma_inst(GRID.loglam), obs.shape)
    for col in ("HBETA_BROAD", "HALPHA_BROAD"):
        s, got = per[col]
        want = fit_lines(models[col], GRID.loglam, obs, ivar, z[s], sig[s],
                         noise_corr=SDSS_NOISE_CORR, rows=rows[s])
        _same(got, want, col)
    return per


def test_stacked_hbeta_halpha_give_each_window_its_separate_fit(monkeypatch):
    """Quasars at 0.1 ≤ z ≤ 0.75 reach Hβ, Hα or both: the stacked fit (which runs: the
    stacking is counted) gives every window its separate fit, every field bit for bit,
    iterations too."""
    from specsift.lines import fit as fit_mod
    stacked = []
    orig = fit_mod.stack_problems

    def counted(probs):
        stacked.append([p.n for p in probs])
        return orig(probs)

    monkeypatch.setattr(fit_mod, "stack_problems", counted)
    per = _check_separate(np.linspace(0.1, 0.75, 14))
    assert any(len(k) == 2 for k in stacked)
    both = np.intersect1d(per["HBETA_BROAD"][0], per["HALPHA_BROAD"][0])
    assert both.size and len(set(per["HALPHA_BROAD"][1].n_iter.tolist())) > 1


@pytest.mark.parametrize("why", ["not stackable", "too many rows"])
def test_when_the_models_do_not_stack_the_windows_are_fitted_apart(monkeypatch, why):
    """A stack the models' evaluation does not allow (:class:`NotStackable`, forced here)
    or of more pairs than :data:`~specsift.lines.measure.STACK_ROWS_MAX` falls back to one
    fit per window group, with the same answers."""
    from specsift.lines import fit as fit_mod

    def refuse(probs):
        if len(probs) > 1:
            raise NotStackable("forced")
        return probs[0]

    if why == "too many rows":
        monkeypatch.setattr(measure_mod, "STACK_ROWS_MAX", 2)
        monkeypatch.setattr(fit_mod, "stack_problems", lambda probs: pytest.fail("stacked"))
    else:
        monkeypatch.setattr(fit_mod, "stack_problems", refuse)
    _check_separate(np.linspace(0.1, 0.75, 6), seed=9)


def test_models_of_another_layout_are_not_stacked():
    """Windows whose groups' bounds differ raise :class:`NotStackable` (the caller then
    fits them apart), and so do a kind order that is not sorted."""
    from specsift.lines.fit import Group
    models = {c: m for c, m, _ in quasar_models()}
    hb, ha = models["HBETA_BROAD"], models["HALPHA_BROAD"]
    wider = dataclasses.replace(ha, groups=(ha.groups[0], Group("narrow", 150.0, 800.0, 600.0)))
    z = np.array([0.2, 0.3])
    obs, ivar = _quasars(z)
    with pytest.raises(NotStackable):
        fit_lines(hb, GRID.loglam, obs, ivar, z, 69.0, others=(wider,), kind=np.array([0, 1]))
    with pytest.raises(ValueError):
        fit_lines(hb, GRID.loglam, obs, ivar, z, 69.0, others=(ha,), kind=np.array([1, 0]))
    assert measure_mod.NotStackable is NotStackable
