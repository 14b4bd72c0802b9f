"""A star whose χ² is lost to one place of the spectrum stays a star (issue 18).

Why: on real spectra a single artefact — a cosmic ray, a hump at the join of LAMOST's two
arms, a bad red or blue end — is a large χ² term that no star template can have and that a
galaxy or quasar basis absorbs (a cosmic ray as a galaxy's Hα, a red-end dip as a quasar's
line at z ≈ 2.27).  The plain χ² then calls a clean star a QSO "decisively" (gaps of
thousands), although everywhere else the star fits better.  A real extragalactic spectrum
shows its nature over the whole range: a continuum shape and break, several lines.

The check, for every spectrum whose best class is not a star while a STAR basis applies to it
(:func:`robust_star_gap`): fit that STAR basis at its own χ² minimum, and per good pixel take
the χ² difference g_p = χ²_star,p − χ²_best,p (positive where the extragalactic fit is better),

* capped at ±``cap`` (25 = a 5σ residual): one pixel cannot carry more than a 5σ miss, which
  is what a cosmic ray or a bad column is;
* summed in ``nblock`` blocks of equal numbers of good pixels (12: ≈ 450 Å each on LAMOST),
  and the extragalactic fit's best block left out: its advantage must not sit in one place.

If the STAR fit is then better by more than ``tau`` (class penalties included) than every
class that beats it by plain χ² (each at its own minimum), the star is chosen and the
extragalactic solution becomes the second one (DELTACHI2: the second-lowest decision χ²
minus the lowest, over every class: see :func:`robust_star_check`).  The star is
then scanned again, and its velocity measured, without the pixels its fit misses by more
than √(cap·χ²/pixel) σ: the artefact may have pulled the star's own minimum too (a red-end
dip drags the LAMOST star basis to −1200 km/s).
A faint true quasar whose one line carries its whole advantage loses only a few χ² outside
that block, which ``tau`` (50) stays above; on the artefacts above the margin is 90 – 9000.
``cap``, ``nblock`` and ``tau`` were chosen on the LAMOST training split (stars and galaxies)
and on simulated spectra of every class (seed 24), docs/eigen.md "Robust star check".  Only
rows of ``surveys`` are checked (LAMOST): a lone emission line (a Lyα emitter on DESI) is
indistinguishable from an artefact by this test.
"""

from __future__ import annotations

import numpy as np

from ...classes import spectype_of
from ...flags import ZWARN
from .chi2scan import z_to_shift
from .zsolve import MIN_DELTACHI2

__all__ = ["ROBUST_DEFAULT", "robust_settings", "robust_star_gap", "robust_star_check"]

#: the settings of the shipped model (module docstring); ``surveys`` a tuple, so that a copy
#: of this dict (a model's ``robust_star_``) shares nothing mutable with it
ROBUST_DEFAULT = {"cap": 25.0, "nblock": 12, "tau": 50.0, "surveys": ("LAMOST",)}


def robust_settings(settings: dict | None) -> dict:
    """The defaults updated by ``settings`` (None or {}: the defaults), ``surveys`` as an
    upper-case tuple: a fresh dict that a model may own and change."""
    s = {**ROBUST_DEFAULT, **(settings or {})}
    s["surveys"] = tuple(str(x).upper() for x in (s["surveys"] or ()))
    return s


def robust_star_gap(gap: np.ndarray, good: np.ndarray, cap: float, nblock: int) -> np.ndarray:
    """(N,) Σ of the capped per-pixel χ² gaps without the block where they sum highest.

    ``gap`` (N, P): χ²_star,p − χ²_other,p; ``good`` (N, P): the pixels that count.  Blocks
    are ``nblock`` runs of equal numbers of good pixels of each row, so that a spectrum with
    gaps (or a survey with a shorter range) still gets blocks of equal weight."""
    n, p = gap.shape
    g = np.where(good, np.clip(gap, -cap, cap), 0.0)
    ngood = np.maximum(good.sum(1), 1)
    rank = np.cumsum(good, axis=1) - 1
    block = np.minimum(rank * nblock // ngood[:, None], nblock - 1)
    key = (np.arange(n)[:, None] * nblock + block)[good]
    sums = np.bincount(key, weights=g[good], minlength=n * nblock).reshape(n, nblock)
    return sums.sum(1) - sums.max(1)


def robust_star_check(scanner, sol, flux, ivar, penalty, step: float, settings=None,
                      survey=None):
    """Switch to STAR the rows the check of the module docstring gives to a star, in place.

    ``sol``: the :class:`~.zsolve.ZSolution` (its χ² include ``penalty`` (C,)), ``step``
    the log10-λ pixel, ``survey`` (N,) each row's SURVEY: only rows of
    ``settings["surveys"]`` are checked (empty or None: every row).  The margin is measured
    twice: on the star at its first minimum (which rows to rescan), then on the rescanned star
    that is reported (a row switches only if it still clears ``tau``).  Returns (rows
    switched, their robust margin, the decision χ² (N, C), the ivar for the star velocity):
    the decision χ² is the class χ² with each class a switched row's star beat raised to the
    reported STAR χ² plus its margin, which the class probabilities and DELTACHI2 use (so that
    SPECTYPE follows the decision); the ivar has the pixels the star fit misses zeroed on the
    switched rows."""
    s = robust_settings(settings)
    labels = np.array([spectype_of(b.label) for b in scanner.bases])
    pen = np.asarray(penalty, float)
    none = (np.zeros(0, int), np.zeros(0), sol.chi2_class.copy(), ivar)
    cand, sc = _candidates(sol, labels, s, survey)
    if not len(cand):
        return none
    jstar = np.rint(z_to_shift(sol.z_class[cand, sc], step)).astype(int)
    model_s, chi_s = _fit(scanner, flux[cand], ivar[cand], sc, jstar)
    margins = _margins(scanner, sol, flux[cand], ivar[cand], cand, sc, model_s,
                       sol.chi2_class[cand, sc], labels, pen, step, s)
    flip = _clears(margins, s["tau"])
    rows, sc = cand[flip], sc[flip]
    if not len(rows):
        return none
    # clipped in units of the star fit's own χ²/pixel: a real star misses every template by
    # more than its noise, and its strongest lines must stay in the velocity fit
    w = np.clip(ivar[rows], 0, None)
    rchi = np.maximum(chi_s[flip] / np.maximum((w > 0).sum(1), 1), 1.0)
    miss = np.abs(flux[rows] - model_s[flip]) * np.sqrt(w) > np.sqrt(s["cap"] * rchi)[:, None]
    iv_rows = np.where(miss, 0.0, ivar[rows])
    star = _rescan(scanner, flux[rows], ivar[rows], iv_rows, sc, pen)
    # the reported star is the rescanned one: its margin must clear tau too
    margins = _margins(scanner, sol, flux[rows], ivar[rows], rows, sc, star["model"],
                       star["chi2"], labels, pen, step, s)
    keep = _clears(margins, s["tau"])
    if not keep.any():
        return none
    rows, sc, margins, iv_rows = rows[keep], sc[keep], margins[keep], iv_rows[keep]
    _switch(sol, rows, sc, {k: v[keep] for k, v in star.items()}, step)
    decision = sol.chi2_class.copy()
    for c in np.flatnonzero(labels != "STAR"):
        r = np.flatnonzero(np.isfinite(margins[:, c]))
        decision[rows[r], c] = sol.chi2[rows[r]] + margins[r, c]
    # DELTACHI2 over every class, as PROB_* and LOW_CLASS_CONFIDENCE see them: a class the
    # check never compared (worse than the star by plain χ²) can be nearer than the margin
    sol.deltachi2[rows] = decision_gap(decision[rows])
    sol.degeneracy[rows] = sol.deltachi2[rows] / np.maximum(sol.chi2[rows], 1e-30)
    sol.chi2_second[rows] = sol.chi2[rows] + sol.deltachi2[rows]
    sol.zwarn[rows[sol.deltachi2[rows] < MIN_DELTACHI2]] |= int(ZWARN.SMALL_DELTA_CHI2)
    ivar_star = np.array(ivar, copy=True)
    ivar_star[rows] = iv_rows
    return rows, margins.min(1), decision, ivar_star


def _clears(margins: np.ndarray, tau: float) -> np.ndarray:
    """(N,) the rows whose smallest margin (over the classes that beat the star) is > tau."""
    m = margins.min(1)
    return np.isfinite(m) & (m > tau)


def decision_gap(chi2: np.ndarray) -> np.ndarray:
    """(N,) second-lowest minus lowest finite χ² of each row (0 where fewer than two)."""
    c = np.sort(np.where(np.isfinite(chi2), chi2, np.inf), axis=1)
    return np.where(np.isfinite(c[:, 1]), c[:, 1] - c[:, 0], 0.0) if c.shape[1] > 1 \
        else np.zeros(len(c))


def _candidates(sol, labels, s, survey):
    """(rows whose best class is not a star while a STAR basis applies, that STAR basis)."""
    star = np.flatnonzero(labels == "STAR")
    if not len(star):
        return np.zeros(0, int), np.zeros(0, int)
    c2s = sol.chi2_class[:, star]
    has = np.isfinite(c2s).any(1)
    if s["surveys"] and survey is not None:      # as :meth:`_active`: case does not matter
        has &= np.isin(np.char.upper(np.asarray(survey).astype(str)), s["surveys"])
    cand = np.flatnonzero((labels[sol.best_class] != "STAR") & has)
    c2 = np.where(np.isfinite(c2s[cand]), c2s[cand], np.inf)
    return cand, star[np.argmin(c2, axis=1)] if len(cand) else np.zeros(0, int)


def _fit(scanner, flux, ivar, cls, shift):
    """(models, χ²) of the rows, each with basis ``cls[i]`` at integer ``shift[i]``."""
    model, chi = np.zeros(flux.shape), np.zeros(len(flux))
    for c in np.unique(cls):
        r = np.flatnonzero(cls == c)
        m, _, x = scanner.fit_at(flux[r], ivar[r], int(c), shift[r])
        model[r], chi[r] = m, x
    return model, chi


def _margins(scanner, sol, f, w, cand, sc, model_s, chi_star, labels, pen, step, s):
    """(len(cand), C) the robust margin of the star (``model_s``, χ² ``chi_star`` with its
    penalty) over every non-star class that beats it by plain χ² (each at its own minimum;
    +inf where a class does not beat it)."""
    good = (w > 0) & np.isfinite(f)
    margins = np.full((len(cand), len(labels)), np.inf)
    for c in np.flatnonzero(labels != "STAR"):
        chi_c = sol.chi2_class[cand, c]
        best = sol.best_class[cand] == c
        r = np.flatnonzero(best | (np.isfinite(chi_c) & (chi_c < chi_star)))
        if not len(r):
            continue
        model_c = sol.model[cand[r]].copy()
        other = np.flatnonzero(~best[r])
        if len(other):
            jc = np.rint(z_to_shift(sol.z_class[cand[r[other]], c], step)).astype(int)
            model_c[other] = scanner.fit_at(f[r[other]], w[r[other]], int(c), jc)[0]
        gap = w[r] * ((f[r] - model_s[r]) ** 2 - (f[r] - model_c) ** 2)
        rob = robust_star_gap(gap, good[r], s["cap"], int(s["nblock"]))
        margins[r, c] = -(rob + pen[sc[r]] - pen[c])
    return margins


def _rescan(scanner, flux, ivar, ivar_star, sc, pen) -> dict:
    """The STAR basis ``sc`` of each row scanned again with ``ivar_star`` (the pixels its
    first fit misses left out): its shift, model, full-``ivar`` χ² (with its penalty),
    whether the minimum is at an edge of the range, and the curvature's 1σ in pixels."""
    act = np.zeros((len(scanner.bases), len(sc)), bool)
    act[sc, np.arange(len(sc))] = True
    cur = scanner.scan(flux, ivar_star, active=act)
    cur = np.stack([cur[c][k] for k, c in enumerate(sc)])
    idx = cur.argmin(1)
    nsh = np.array([scanner.bases[c].nshift for c in sc])
    jstar = np.array([scanner.bases[c].jmin for c in sc]) + idx
    model = _fit(scanner, flux, ivar_star, sc, jstar)[0]
    w = np.clip(ivar, 0, None)
    chi = np.where(w > 0, w * (np.nan_to_num(flux) - model) ** 2, 0.0).sum(1)
    k, i = np.arange(len(sc)), np.clip(idx, 1, nsh - 2)
    a = 0.5 * (cur[k, i - 1] + cur[k, i + 1] - 2 * cur[k, i])
    sig = np.where(a > 0, 1.0 / np.sqrt(np.where(a > 0, a, 1.0)), 1.0)
    return {"shift": jstar, "model": model, "chi2": chi + pen[sc],
            "edge": (idx == 0) | (idx == nsh - 1), "sigma_px": sig}


def _switch(sol, rows, sc, star: dict, step: float) -> None:
    """Bookkeeping: the rescanned ``star`` (:func:`_rescan`) becomes the solution of
    ``rows``, the former answer their second candidate (DELTACHI2 is set by the caller)."""
    sol.second_class[rows], sol.z_second[rows] = sol.best_class[rows], sol.z[rows]
    sol.best_class[rows], sol.shift[rows] = sc, star["shift"]
    sol.z[rows] = 10.0 ** (star["shift"] * step) - 1.0
    sol.chi2[rows] = star["chi2"]
    sol.chi2_class[rows, sc] = star["chi2"]     # the reported star fit, not its first minimum
    sol.model[rows] = star["model"]
    zw = sol.zwarn[rows] & ~np.int64(int(ZWARN.SMALL_DELTA_CHI2) | int(ZWARN.Z_FITLIMIT))
    zw[star["edge"]] |= int(ZWARN.Z_FITLIMIT)
    sol.zwarn[rows] = zw
    # ZERR from the rescanned curve's parabola (the star velocity, where there is one,
    # measures it again)
    sol.zerr[rows] = np.log(10.0) * step * (1.0 + sol.z[rows]) * star["sigma_px"]
