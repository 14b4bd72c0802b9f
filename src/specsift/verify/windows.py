"""The candidate windows of a batch, fitted in two steps: the coarse scan of every window, then
the fine stage (:func:`.refine.fine_stage`) only for the windows that can still matter.

Why: the fine stage — five or more full-resolution shifts per window, walking on where the
minimum is at an end — was about two thirds of the window fits, and most of the ~4.3 windows
a spectrum gets (STAR at z 0, GALAXY at low z, each network candidate as GALAXY and as QSO)
lose to the best one by far already on the coarse χ².  A window goes to the fine stage when
its coarse χ² is within ``max(fine_margin_min, fine_margin · |best coarse χ²|)`` of the best
coarse χ² of its spectrum, and always when it is the network's own answer (whose margin rule
in :func:`.zfind.best_rows` needs its fine χ²) or the STAR window near z = 0 (the fit the
line-driven STAR check hands a row it turns into a star).  The margin is relative because coarse and fine
χ² differ by a few per cent of χ² at high S/N: the coarse scan bins templates by 4 pixels,
which blurs narrow lines, so a galaxy can lose to a quasar template at the same z by
thousands on the coarse χ² and win on the fine one.  On the 2000 simulated spectra of
``benchmarks/predict_speed.py`` (8889 windows) a relative margin of 0.1 missed the fine
winner of 4 spectra, 0.2 of none, 0.3 of none with 61 % of the windows refined (before the
STAR window and the network's answer were always refined).  Since then, with every window
refined (``fine_margin=None``), no winner that is neither of those two lay further than
0.066·|best| above its spectrum's best coarse χ² on that store, 0.003 on the real SDSS,
LAMOST and DESI spectra of ``../shared`` (``benchmarks/verify_margins.py``); 0.15 (the
default) gives the exhaustive answers there with 5204 fine fits instead of 5859 at 0.3 on
the store, 2150 instead of 2717 on the 1551 LAMOST spectra.

A window left at the coarse stage has χ² = inf (it is neither chosen nor the DELTACHI2
partner) and its coarse shift; :meth:`Windows.partners` names those to refine after all where
a spectrum's far windows (more than 1000 km/s from its winner) of lowest coarse χ² — its likely
DELTACHI2 partners — were left at the coarse stage.
"""

from __future__ import annotations

import numpy as np

from .fit import bin_basis, bin_prepared, scan_all
from .refine import coarse_plan, fine_stage
from .resolution import convolved

__all__ = ["Windows", "Reusing", "lowest_per_spectrum"]

#: width of the COEFF vector column (Redrock's REDSHIFTS has 10); stage re-exports it
NCOEFF_MAX = 10


def blank_rows(n: int) -> dict:
    """The per-row results of ``n`` windows before any fit: the one source of what a row shows
    where a field is not set (:class:`Windows` starts from it, :class:`Reusing` hides with it
    the fine fits its decision has not asked for)."""
    return {"chi2": np.full(n, np.inf), "shift": np.zeros(n), "err": np.zeros(n),
            "edge": np.zeros(n, bool), "coef": np.zeros((n, NCOEFF_MAX)),
            "ncoef": np.zeros(n, int), "coarse": np.full(n, np.inf),
            "fine": np.zeros(n, bool), "ishift": np.zeros(n, np.int64)}


#: the fields the coarse stage sets (the others exist only after the fine stage)
COARSE_FIELDS = ("coarse", "shift", "ishift")


def show_coarse(res: dict, rows: np.ndarray, coarse_shift: np.ndarray) -> None:
    """Rows ``rows`` of ``res`` as at the coarse stage: every fine-only field blank (as
    :func:`blank_rows`), the shifts the coarse ones."""
    blank = blank_rows(len(rows))
    for k, v in blank.items():
        if k not in COARSE_FIELDS:
            res[k][rows] = v
    res["shift"][rows] = res["ishift"][rows] = coarse_shift


class _Decisions:
    """What :class:`Windows` and :class:`Reusing` decide from :attr:`res` and :attr:`opt`:
    which rows go to the fine stage."""

    def worth_refining(self, spec, n: int) -> np.ndarray:
        """Rows whose coarse χ² is within the margin (module docstring) of their spectrum's
        best; every row where ``fine_margin`` is None."""
        c = self.res["coarse"]
        if self.opt.fine_margin is None:
            return np.ones(len(c), bool)
        best = np.full(n, np.inf)
        np.minimum.at(best, spec, c)
        b = best[spec]
        near = c <= b + np.maximum(self.opt.fine_margin_min, self.opt.fine_margin * np.abs(b))
        return near | ~np.isfinite(b)        # no usable coarse χ² at all: refine every window

    def partners(self, spec, far: np.ndarray) -> np.ndarray:
        """Mask of the rows to refine so that DELTACHI2 has the right fine partner: per
        spectrum, of its rows ``far`` from its winner, those whose coarse χ² is within
        max(``fine_margin_min``, ``partner_margin`` · |lowest|) of the lowest far coarse χ²,
        where not refined yet (a refined far row need not be the lowest: the STAR window
        always is refined).  Why a margin and not the lowest alone: the fine partner is the
        lowest far coarse row nearly always, but not always — on the simulated store the
        fine partner's coarse χ² was within 0.4 % of the lowest far one every time
        (``fine_margin=None`` fits), and where it was not the lowest one, DELTACHI2 came from
        a worse partner; ``partner_margin=None``: the lowest alone."""
        res, opt = self.res, self.opt
        c = res["coarse"]
        cand = np.flatnonzero(far)
        out = np.zeros(len(spec), bool)
        if not len(cand):
            return out
        order, first = lowest_per_spectrum(spec[cand], c[cand])
        out[cand[order[first]]] = True
        margin = opt.partner_margin
        if margin is not None:
            low = np.full(int(spec.max()) + 1, np.inf)
            np.minimum.at(low, spec[cand], c[cand])
            lo = low[spec[cand]]
            out[cand[c[cand] <= lo + np.maximum(opt.fine_margin_min, margin * np.abs(lo))]] = True
        return out & ~res["fine"]


class Windows(_Decisions):
    """Rows (``spec``, ``typ``, ``z``, ``hw``): the coarse stage is run on construction;
    :meth:`refine` runs the fine stage on a subset; :attr:`res` holds the results (χ², shift,
    σ of the shift, edge, coefficients; ``coarse`` χ²; ``fine``: refined)."""

    def __init__(self, prep, bases, spec, typ, z, hw, opt, sigma=None):
        self.prep, self.opt, self.sigma = prep, opt, sigma
        n = len(spec)
        pb = bin_prepared(prep, opt.coarse_factor) if opt.coarse_factor > 1 else None
        sig = np.zeros(n) if sigma is None else np.asarray(sigma)[spec]
        self.res = blank_rows(n)
        plans = []
        for st, s_pix in sorted(set(zip(typ, sig))):
            b = convolved(bases[st], s_pix)
            star = st == "STAR"
            lo = int(np.floor(b.shift_of(-0.005)))
            coarse = None if pb is None else (pb, bin_basis(b, opt.coarse_factor),
                                              opt.coarse_factor)
            for h in np.unique(hw[(typ == st) & (sig == s_pix)]):
                sel = np.flatnonzero((typ == st) & (hw == h) & (sig == s_pix))
                plans.append((b, star, sel, coarse_plan(prep, b, spec[sel], b.shift_of(z[sel]),
                                                        int(h), coarse,
                                                        lo_limit=None if star else lo)))
        # every group's coarse scan with one Cholesky per system size: the same values as
        # a scan each (.fit.scan_all), one numpy call loop instead of one per group
        chi2s = scan_all(pb if pb is not None else prep, [p.job[1:] for *_, p in plans])
        self.groups = []
        for (b, star, sel, plan), chi2 in zip(plans, chi2s):
            c = plan.finish(chi2)
            self.res["coarse"][sel] = c.chi2
            self.res["shift"][sel] = self.res["ishift"][sel] = c.best
            self.groups.append((b, star, sel, c))
        self.coarse_shift = self.res["shift"].copy()      # what a row shows until refined

    def refine(self, rows: np.ndarray) -> None:
        """The fine stage for the rows of mask ``rows`` not refined yet."""
        r = self.res
        todo = rows & ~r["fine"]
        for b, star, sel, c in self.groups:
            f = np.flatnonzero(todo[sel])
            if not len(f):
                continue
            out = fine_stage(self.prep, b, c.take(f))
            idx = sel[f]
            r["chi2"][idx], r["shift"][idx], r["err"][idx] = out.chi2, out.shift, out.shift_err
            r["edge"][idx] = out.at_edge & ~star
            r["ishift"][idx] = out.ishift
            k = min(out.coef.shape[1], NCOEFF_MAX)
            r["coef"][idx, :k] = out.coef[:, :k]
            r["ncoef"][idx] = out.coef.shape[1]
        r["fine"] |= todo


class Reusing(_Decisions):
    """The windows of one decision of which some are rows of an earlier :class:`Windows` of
    the same batch, taken instead of fitted again: row ``at_old[i]`` here is row
    ``old_rows[i]`` of ``old``, the rows ``at_new`` are ``new``'s (in order).  The
    :class:`Windows` interface (:attr:`res`, :meth:`refine`, :meth:`worth_refining`,
    :meth:`partners`), and the same decisions as windows all fitted anew, up to float32
    rounding (the reused rows were fitted in other chunks of rows, so a flat minimum can move;
    docs/speed.md "the rescue reuses"): a row shows its fine fit only
    once this decision asks for it (an earlier row's coarse stage until then, however far the
    earlier decision took it), so that an earlier fine fit is reused, never an extra row of
    the decision.  Both :class:`Windows` must come from the same batch's fit products,
    options and σ (asserted): a reused fit is only the one a new fit would give then.

    Why: the rescue's second decision (:mod:`.stage`) is the first one's windows plus those of
    the whole-z scan's minima; fitting the first ones again was a large share of its cost
    (``benchmarks/verify_profile.py`` prints the second decision's time)."""

    def __init__(self, old: Windows, old_rows, at_old, new: Windows, at_new, opt):
        if not (old.prep is new.prep and old.opt is new.opt is opt and old.sigma is new.sigma):
            raise ValueError("Reusing: the earlier windows were fitted on other fit products, "
                             "options or σ")
        self.opt = opt
        self.parts = ((old, np.asarray(old_rows, np.int64), np.asarray(at_old, np.int64)),
                      (new, np.arange(len(at_new)), np.asarray(at_new, np.int64)))
        self.asked = np.zeros(len(at_old) + len(at_new), bool)

    @property
    def res(self) -> dict:
        out = blank_rows(len(self.asked))
        for w, rows, at in self.parts:
            for k, v in w.res.items():
                out[k][at] = v[rows]
            hidden = ~self.asked[at]                   # not asked for here: coarse only
            show_coarse(out, at[hidden], w.coarse_shift[rows[hidden]])
        return out

    def refine(self, rows: np.ndarray) -> None:
        for w, own, at in self.parts:
            m = np.zeros(len(w.res["chi2"]), bool)
            m[own] = rows[at]
            w.refine(m)                                 # fits only rows not fine yet
        self.asked |= rows


def lowest_per_spectrum(spec: np.ndarray, key: np.ndarray):
    """(order, first): rows sorted by spectrum then ``key``, and the mask of each spectrum's
    first (lowest-``key``) row in that order — the per-spectrum minimum the decision and the
    partner search both take."""
    order = np.lexsort((key, spec))
    first = np.ones(len(order), bool)
    first[1:] = spec[order][1:] != spec[order][:-1]
    return order, first
