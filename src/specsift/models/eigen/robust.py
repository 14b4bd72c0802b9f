"""A star whose χ² is lost to one place of the spectrum stays a star (issue 18).

Why: on real spectra a single artefact — a cosmic ray, a hump at the join of LAMOST's two
arms, a bad red or blue end — is a large χ² term that no star template can have and that a
galaxy or quasar basis absorbs (a cosmic ray as a galaxy's Hα, a red-end dip as a quasar's
line at z ≈ 2.27).  The plain χ² then calls a clean star a QSO "decisively" (gaps of
thousands), although everywhere else the star fits better.  A real extragalactic spectrum
shows its nature over the whole range: a continuum shape and break, several lines.

The check, for every spectrum whose best class is not a star while a STAR basis applies to it
(:meth:`RobustStarMixin._robust_star`, :func:`robust_star_gap`): fit that STAR basis at its
own χ² minimum, and per good pixel take the χ² difference g_p = χ²_star,p − χ²_best,p
(positive where the extragalactic fit is better),

* capped at ±``cap`` (25 = a 5σ residual): one pixel cannot carry more than a 5σ miss, which
  is what a cosmic ray or a bad column is;
* summed in ``nblock`` blocks of equal numbers of good pixels (12: ≈ 450 Å each on LAMOST),
  and the extragalactic fit's best block left out: its advantage must not sit in one place.

If the STAR fit is then better by more than ``tau`` (class penalties included) than every
class that beats it by plain χ² (each at its own minimum), the star is chosen and the
extragalactic solution becomes the second one (DELTACHI2: the second-lowest decision χ²
minus the lowest, over every class: see :meth:`RobustStarMixin._robust_star`).  The star is
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

from ...flags import ZWARN
from .chi2scan import z_to_shift
from .zsolve import MIN_DELTACHI2, curvature_zerr, curve_vertex, exact_fits, pixel_chi2_gap

__all__ = ["ROBUST_DEFAULT", "robust_settings", "block_sums", "robust_star_gap", "decision_gap",
           "RobustStarMixin"]

#: the settings of the shipped model (module docstring); ``surveys`` a tuple, so that a copy
#: of this dict (a model's ``robust_star_``) shares nothing mutable with it
ROBUST_DEFAULT = {"cap": 25.0, "nblock": 12, "tau": 50.0, "surveys": ("LAMOST",)}


def robust_settings(settings: dict | None) -> dict:
    """The defaults updated by ``settings`` (None or {}: the defaults), ``surveys`` as an
    upper-case tuple: a fresh dict that a model may own and change."""
    s = {**ROBUST_DEFAULT, **(settings or {})}
    s["surveys"] = tuple(str(x).upper() for x in (s["surveys"] or ()))
    return s


def block_sums(gap: np.ndarray, good: np.ndarray, cap: float, nblock: int) -> np.ndarray:
    """(N, nblock) sums of the per-pixel gaps ``gap`` (N, P) capped at ±``cap``, over
    ``nblock`` runs of equal numbers of ``good`` pixels of each row, so that a spectrum with
    gaps (or a survey with a shorter range) still gets blocks of equal weight."""
    n, _ = gap.shape
    g = np.where(good, np.clip(gap, -cap, cap), 0.0)
    ngood = np.maximum(good.sum(1), 1)
    rank = np.cumsum(good, axis=1) - 1
    block = np.minimum(rank * nblock // ngood[:, None], nblock - 1)
    key = (np.arange(n)[:, None] * nblock + block)[good]
    return np.bincount(key, weights=g[good], minlength=n * nblock).reshape(n, nblock)


def robust_star_gap(gap: np.ndarray, good: np.ndarray, cap: float, nblock: int) -> np.ndarray:
    """(N,) Σ of the capped per-pixel χ² gaps without the block where they sum highest.

    ``gap`` (N, P): χ²_star,p − χ²_other,p; ``good`` (N, P): the pixels that count; blocks as
    :func:`block_sums`."""
    sums = block_sums(gap, good, cap, nblock)
    return sums.sum(1) - sums.max(1)


def decision_gap(chi2: np.ndarray) -> np.ndarray:
    """(N,) second-lowest minus lowest finite χ² of each row (0 where fewer than two)."""
    c = np.sort(np.where(np.isfinite(chi2), chi2, np.inf), axis=1)
    return np.where(np.isfinite(c[:, 1]), c[:, 1] - c[:, 0], 0.0) if c.shape[1] > 1 \
        else np.zeros(len(c))


def _clears(margins: np.ndarray, tau: float) -> np.ndarray:
    """(N,) the rows whose smallest margin (over the classes that beat the star) is > tau."""
    m = margins.min(1)
    return np.isfinite(m) & (m > tau)


class RobustStarMixin:
    """The robust star check as methods of :class:`~.model.EigenModel`: they read its
    ``scanner``, ``penalty_``, ``grid``, ``robust_star_`` and ``_spectypes`` (the state is
    declared and persisted in :mod:`.model`)."""

    def _robust_star(self, sol, flux, ivar, survey):
        """Switch to STAR the rows the check of the module docstring gives to a star, in
        place of ``sol`` (:class:`~.zsolve.ZSolution`, its χ² with the class penalties).

        Only rows whose ``survey`` is in ``robust_star_["surveys"]`` are checked (empty:
        every row).  The margin is measured twice: on the star at its first minimum (which
        rows to rescan), then on the rescanned star that is reported (a row switches only
        if it still clears ``tau``).  Returns (the decision χ² (N, C), the rows switched,
        (rows, P) the pixels their star fit misses, to leave out of the star velocity): the
        decision χ² is the class χ² with each class a switched row's star beat raised to the
        reported STAR χ² plus its margin, which the class probabilities and DELTACHI2 use (so
        that SPECTYPE follows the decision)."""
        s = robust_settings(self.robust_star_)
        none = sol.chi2_class.copy(), np.zeros(0, int), np.zeros((0, flux.shape[1]), bool)
        cand, sc = self._robust_candidates(sol, s["surveys"], survey)
        data = (ivar[cand] > 0).any(1)             # a NODATA row keeps its answer
        cand, sc = cand[data], sc[data]
        if not len(cand):
            return none
        jstar = np.rint(z_to_shift(sol.z_class[cand, sc], self.grid.step)).astype(int)
        chi_s, model_s = exact_fits(self.scanner, flux[cand], ivar[cand], sc, jstar, True)
        margins = self._robust_margins(sol, flux, ivar, cand, sc, model_s,
                                       sol.chi2_class[cand, sc])
        flip = _clears(margins, s["tau"])
        rows, sc = cand[flip], sc[flip]
        if not len(rows):
            return none
        # clipped in units of the star fit's own χ²/pixel: a real star misses every template
        # by more than its noise, and its strongest lines must stay in the velocity fit
        w = np.clip(ivar[rows], 0, None)
        rchi = np.maximum(chi_s[flip] / np.maximum((w > 0).sum(1), 1), 1.0)
        miss = np.abs(flux[rows] - model_s[flip]) * np.sqrt(w) > np.sqrt(s["cap"] * rchi)[:, None]
        star = self._robust_rescan(flux[rows], ivar[rows], np.where(miss, 0.0, ivar[rows]), sc)
        # the reported star is the rescanned one: its margin must clear tau too
        margins = self._robust_margins(sol, flux, ivar, rows, sc, star["model"], star["chi2"])
        keep = _clears(margins, s["tau"])
        if not keep.any():
            return none
        rows, sc, margins = rows[keep], sc[keep], margins[keep]
        _switch(sol, rows, sc, {k: v[keep] for k, v in star.items()}, self.grid.step)
        decision = sol.chi2_class.copy()
        for c in np.flatnonzero(self._spectypes != "STAR"):
            r = np.flatnonzero(np.isfinite(margins[:, c]))
            decision[rows[r], c] = sol.chi2[rows[r]] + margins[r, c]
        _decision_gaps(sol, rows, decision[rows])
        return decision, rows, miss[keep]

    def _robust_candidates(self, sol, surveys, survey):
        """(rows whose best class is not a star while a STAR basis applies and whose survey
        is checked, that STAR basis)."""
        labels = self._spectypes
        star = np.flatnonzero(labels == "STAR")
        if not len(star):
            return np.zeros(0, int), np.zeros(0, int)
        c2s = sol.chi2_class[:, star]
        has = np.isfinite(c2s).any(1)
        if surveys and survey is not None:        # as :meth:`_active`: case does not matter
            has &= np.isin(np.char.upper(np.asarray(survey).astype(str)), surveys)
        cand = np.flatnonzero((labels[sol.best_class] != "STAR") & has)
        c2 = np.where(np.isfinite(c2s[cand]), c2s[cand], np.inf)
        return cand, star[np.argmin(c2, axis=1)] if len(cand) else np.zeros(0, int)

    def _robust_margins(self, sol, flux, ivar, cand, sc, model_s, chi_star):
        """(len(cand), C) the robust margin of the star fit of rows ``cand`` (basis ``sc``,
        model ``model_s``, χ² ``chi_star`` with its penalty) over every non-star class that
        beats it by plain χ² (each at its own minimum; +inf where a class does not)."""
        s = robust_settings(self.robust_star_)
        pen = np.asarray(self.penalty_, float)
        f, w = flux[cand], ivar[cand]
        good = (w > 0) & np.isfinite(f)
        margins = np.full((len(cand), len(self.bases_)), np.inf)
        for c in np.flatnonzero(self._spectypes != "STAR"):
            chi_c = sol.chi2_class[cand, c]
            best = sol.best_class[cand] == c
            r = np.flatnonzero(best | (np.isfinite(chi_c) & (chi_c < chi_star)))
            if not len(r):
                continue
            model_c = sol.model[cand[r]].copy()
            other = np.flatnonzero(~best[r])
            if len(other):
                jc = np.rint(z_to_shift(sol.z_class[cand[r[other]], c],
                                        self.grid.step)).astype(int)
                model_c[other] = self.scanner.fit_at(f[r[other]], w[r[other]], int(c), jc)[0]
            gap = pixel_chi2_gap(f[r], w[r], model_s[r], model_c)
            rob = robust_star_gap(gap, good[r], s["cap"], int(s["nblock"]))
            margins[r, c] = -(rob + pen[sc[r]] - pen[c])
        return margins

    def _robust_rescan(self, flux, ivar, ivar_star, sc) -> dict:
        """The STAR basis ``sc`` of each row scanned again with ``ivar_star`` (the pixels its
        first fit misses left out): its integer shift (the star velocity refines it), model,
        full-``ivar`` χ² (with its penalty), whether the minimum is at an edge of the range,
        and the ZERR of the curve's curvature."""
        sb = self.scanner.bases
        act = np.zeros((len(sb), len(sc)), bool)
        act[sc, np.arange(len(sc))] = True
        curves = self.scanner.scan(flux, ivar_star, active=act)
        idx = np.array([curves[c][k].argmin() for k, c in enumerate(sc)])
        jstar = np.array([sb[c].jmin for c in sc]) + idx
        _, _, a, edge, _ = curve_vertex(curves, sc, idx, np.array([sb[c].nshift for c in sc]))
        model = exact_fits(self.scanner, flux, ivar_star, sc, jstar, True)[1]
        w = np.clip(ivar, 0, None)                            # χ² with the full ivar
        chi = np.where(w > 0, w * (np.nan_to_num(flux) - model) ** 2, 0.0).sum(1)
        step = self.grid.step
        return {"shift": jstar, "model": model,
                "chi2": chi + np.asarray(self.penalty_, float)[sc], "edge": edge,
                "zerr": curvature_zerr(a, 10.0 ** (jstar * step) - 1.0, step)}


def _switch(sol, rows, sc, star: dict, step: float) -> None:
    """Bookkeeping: the rescanned ``star`` (:meth:`RobustStarMixin._robust_rescan`) becomes
    the solution of ``rows``, the former answer their second candidate."""
    sol.second_class[rows], sol.z_second[rows] = sol.best_class[rows], sol.z[rows]
    sol.best_class[rows], sol.shift[rows] = sc, star["shift"]
    sol.z[rows] = 10.0 ** (star["shift"] * step) - 1.0
    sol.chi2[rows] = star["chi2"]
    sol.chi2_class[rows, sc] = star["chi2"]     # the reported star fit, not its first minimum
    sol.model[rows] = star["model"]
    zw = sol.zwarn[rows] & ~np.int64(int(ZWARN.SMALL_DELTA_CHI2) | int(ZWARN.Z_FITLIMIT))
    zw[star["edge"]] |= int(ZWARN.Z_FITLIMIT)
    sol.zwarn[rows] = zw
    sol.zerr[rows] = star["zerr"]     # the star velocity, where there is one, measures it again


def _decision_gaps(sol, rows, decision) -> None:
    """DELTACHI2 of switched ``rows`` over every class of their ``decision`` χ², as PROB_* and
    LOW_CLASS_CONFIDENCE see them (a class the check never compared, worse than the star by
    plain χ², can be nearer than the margin); χ²₂ = χ²₁ + DELTACHI2, degeneracy, ZWARN."""
    sol.deltachi2[rows] = decision_gap(decision)
    sol.degeneracy[rows] = sol.deltachi2[rows] / np.maximum(sol.chi2[rows], 1e-30)
    sol.chi2_second[rows] = sol.chi2[rows] + sol.deltachi2[rows]
    sol.zwarn[rows[sol.deltachi2[rows] < MIN_DELTACHI2]] |= int(ZWARN.SMALL_DELTA_CHI2)
