"""The verification stage: the model proposes, a template χ² fit decides.

For every spectrum: the model's candidates (:class:`.Candidates`) plus STAR at z = 0 are each
fitted in a narrow window of pixel shifts (:func:`.refine.coarse_stage` then
:func:`.refine.fine_stage`: coarse scan, walk to the integer minimum, parabola), with the SDSS
pipeline's templates (:mod:`.templates`) and a quadratic polynomial.  The lowest χ² wins
(:mod:`.zfind`: the windows and the decision; this module turns it into catalog columns).
Redrock's conventions are kept: DELTACHI2 is the χ² of the best candidate more than 1000 km/s
away minus the best (or, when every candidate lies within 1000 km/s, of the polynomial-only
fit: nothing else there), SMALL_DELTA_CHI2 below 9; CHI2, NPIXELS, NCOEFF, COEFF as in
Redrock's REDSHIFTS table.  The network's answer stays in the catalog as Z_NET, ZERR_NET,
SPECTYPE_NET, SUBTYPE_NET, CLASS_LABEL_NET (and PROB_*); ZWARN bit 19 NET_DISAGREE marks rows
where fit and network differ in SPECTYPE or by > 1000 km/s."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from astropy.table import Table

from ..catalog import keep_net_answer, put_columns
from ..classes import spectype_of
from ..constants import C_KMS
from ..flags import ZWARN
from ..spectra import survey_of
from .candidates import Candidates
from .fit import Scratch, prepare
from .linalg import chol_quad
from .resolution import extra_sigma_pix
from .starcheck import noise_star_beats_winner, star_beats_winner
from .subtype import star_subtypes
from .survey_noise import star_fit_digest, survey_var_boost
from .template_error import QSO_TEMPLATE_ERROR, refit_template_limited
from .templates import bases_for
from .windows import NCOEFF_MAX, Windows
from .zfind import FIT_KEYS, SAME_KMS, full_range_candidates, quasar_posterior, solve

__all__ = ["VerifyOptions", "verify_catalog", "C_KMS", "NCOEFF_MAX", "VERIFY_COLUMNS", "sky_mask"]

#: columns the stage appends to the model's catalog (it also rewrites Z, ZERR, ZWARN, SPECTYPE,
#: SUBTYPE, DELTACHI2 and CLASS_LABEL)
VERIFY_COLUMNS = ("Z_NET", "ZERR_NET", "SPECTYPE_NET", "SUBTYPE_NET", "CLASS_LABEL_NET", "CHI2",
                  "NPIXELS", "NCOEFF", "COEFF")
#: Redrock's threshold for ZWARN SMALL_DELTA_CHI2
SMALL_DELTA_CHI2 = 9.0
#: vacuum wavelengths (Å) of the night sky's strongest optical line, [O I] 5577 (air 5577.34), and
#: the half-width masked around it in the fit: its subtraction residual (a few per cent of a
#: line many times brighter than a faint target) is in no pipeline's ivar, and a quasar's Lyα
#: at z ≈ 3.59 fits it (simulated quasars went there: GF(0.003) 0.98 → 0.96)
SKY_LINES = (5578.89,)
SKY_HALFWIDTH = 15.0
#: memory for each batch's fit products (:func:`.fit.prepare`), reused batch after batch
_SCRATCH = Scratch()


@dataclass
class VerifyOptions:
    """Search windows (pixels of the grid step, 69 km/s on the default grid) and ZERR scale.

    ``zerr_scale``: factor on the curvature σ per SPECTYPE that puts 68 % of |Δz| within ZERR on
    real labelled spectra — stars: 1185 LAMOST stars, galaxies and quasars: the SDSS spectra of
    ``../shared/data/sdss`` (17 and 31); ``benchmarks/real_surveys.py --calibrate``, docs/verify.md.
    The galaxy and quasar factors (≈ 3–4) say the templates miss real spectra by more than the
    noise: the curvature σ alone is too small."""

    star_halfwidth: int = 15          # |v| < 1000 km/s
    halfwidth: int = 10               # around a model's GALAXY candidate: ±690 km/s
    qso_halfwidth: int = 24           # around a QSO candidate: ±1660 km/s (quasar z errors are wider)
    coarse_factor: int = 4            # pixels per bin in the coarse scan (0: no binning)
    min_good: int = 50                # fewer good pixels: not verified (row kept as the model's)
    lowz_galaxy_zmax: float = 0.012   # GALAXY tried on 0 ≤ z ≤ this for every spectrum (0: off)
    rescue_deltachi2: float = 50.0    # below: a coarse scan of the whole z range adds candidates
    rescue_factor: int = 8            # pixels per bin of that scan
    #: also rescued: a best fit that explains less than this share of the χ² the polynomial
    #: alone leaves above the noise (χ²_poly − N_pix) — no candidate explains the spectrum (a
    #: DESI quasar at S/N 27 that the model called a z 0 galaxy fitted STAR explaining 2 % of
    #: it, with DELTACHI2 > 50, so the DELTACHI2 test alone never looked elsewhere).  0.2
    #: rescued bright LAMOST stars too (template mismatch), and the whole-z scan then found
    #: spurious z ≈ 6 quasars: STAR 99.93 % → 99.45 %; at 0.1 none (99.93 %)
    rescue_explained: float = 0.1
    net_margin: float = 25.0          # the model's answer stands unless beaten by this Δχ²
    #: a window goes on from the coarse to the fine stage when its coarse χ² is within
    #: max(fine_margin_min, fine_margin · |best coarse χ²|) of its spectrum's best
    #: (:mod:`.windows`); None: every window
    fine_margin: float | None = 0.15
    fine_margin_min: float = 100.0
    #: a far window (more than 1000 km/s from the winner) goes to the fine stage when its
    #: coarse χ² is within max(fine_margin_min, partner_margin · |lowest|) of the lowest far
    #: one of its spectrum: the DELTACHI2 partner's candidates (:meth:`.windows.Windows.partners`;
    #: None: the lowest far window alone)
    partner_margin: float | None = 0.01
    zerr_scale: dict = field(default_factory=lambda: {"STAR": 0.93, "GALAXY": 2.94, "QSO": 3.67})
    #: km/s added in quadrature to a STAR's ZERR per survey (the reader's SURVEY column): the
    #: per-visit systematic a template fit cannot see (wavelength calibration, fibre, plate).
    #: Repeat LAMOST visits of the same stars (dr8-ccf, 150 pairs) differ by 1.4826·MAD
    #: ≈ 9.6 km/s, i.e. ≈ 6.8 km/s per visit, while the curvature σ is ≈ 1 km/s (pull width
    #: 6.2 → 0.98 with the floor).  No survey without repeat visits to measure it on gets one.
    star_zerr_floor_kms: dict = field(default_factory=lambda: {"LAMOST": 6.8})
    #: a galaxy/quasar winner is compared once more with STAR near z = 0 on the lines alone
    #: (:mod:`.starcheck`); STAR wins by more than this Δχ² (None: no check)
    star_check_margin: float | None = 25.0
    #: then, on rows of a survey with a measured residual variance (LAMOST,
    #: :mod:`.survey_noise`) that the line-driven check leaves to a GALAXY/QSO winner, STAR
    #: and the winner compared with that variance (:func:`.starcheck.noise_star_beats_winner`);
    #: STAR wins by more than this Δχ² (None: no such check; it runs within the line-driven
    #: check, so ``star_check_margin=None`` turns it off too).  docs/verify.md "Survey-noise
    #: STAR check"
    noise_check_margin: float | None = 50.0
    #: a QSO winner whose χ² exceeds ``template_error_chi2`` × N and whose template error
    #: exceeds the noise on its median pixel (the template, not the noise, limits the fit)
    #: has its z refined again, within ±``template_error_halfwidth`` pixels
    #: (±3300 km/s: the spread of quasar line velocities, C IV blueshifts of up to ≈ 3000
    #: km/s), with the templates' fractional error ε added to the variance
    #: (:mod:`.template_error`; None: never)
    qso_template_error: float | None = QSO_TEMPLATE_ERROR
    template_error_chi2: float = 2.0
    template_error_halfwidth: int = 48
    #: verified quasars: the line-shift systematic in ZERR and the model's own z as a prior
    #: (:func:`.zfind.quasar_posterior`); False: the fit's z and ZERR alone
    quasar_posterior: bool = True




def _fit_rows(prep, bases, spec, typ, z, hw, opt, sigma=None):
    """χ² fits of every window, each taken to the fine stage; ``sigma`` (per spectrum,
    pixels): the spectrum's LSF beyond the templates' (:mod:`.resolution`), each group of
    equal σ fitted with its own basis (:class:`.windows.Windows`)."""
    w = Windows(prep, bases, spec, typ, z, hw, opt, sigma)
    w.refine(np.ones(len(spec), bool))
    return w.res



def _star_check(prep, bases, todo, sol, opt, noise_chi2, batch, bad, sigma, decision) -> None:
    """Where the line-driven comparison (:mod:`.starcheck`) prefers STAR to a GALAXY/QSO
    winner, the row becomes its standard STAR fit near z = 0 — the STAR window :func:`.zfind.solve`
    fitted already, with the spectrum's resolution (its z, σ, χ², coefficients) —, with
    DELTACHI2 the line-driven Δχ² by which STAR won.  ``noise_chi2`` (per row of ``todo``):
    the winner's χ² on the noise alone, as the decision compared it (before any refit).
    Rows of a survey with a residual variance that the line-driven comparison leaves to the
    winner get the survey-noise comparison too (``batch``, its ``bad`` pixels and LSF
    ``sigma``; ``decision``: the winner's integer shift and coefficients before the
    template-error refit, the fit whose χ² decided), DELTACHI2 then its Δχ²."""
    # a winner that fits to within the noise (χ² < N + 3·√(2N)) leaves no bent continuum to
    # hide a star's lines: STAR could only win by fitting below the noise, so skip it there.
    # "Within the noise" is judged on the decision's χ² (inverse-variance weights), not on the
    # template-error refit's, whose weights add the templates' error to the variance and so
    # bring a badly fitted quasar under N by construction: that skipped the check for every
    # refitted QSO winner, and whether a star met one depended on the model proposing a QSO
    # at that z (a LAMOST F9 star, eigen's second χ² minimum QSO z 0.385: χ² 10 806 against
    # the STAR window's 17 105 at N 3885, refit χ² 3368, line-driven Δχ² 236 for STAR)
    n = prep.ngood[todo].astype(np.float64)
    ext = np.flatnonzero((sol["type"] != "STAR") & (noise_chi2 > n + 3 * np.sqrt(2 * n)))
    if not len(ext):
        return
    won, delta = star_beats_winner(prep, bases, todo[ext], sol["type"][ext], sol["shift"][ext],
                                   opt.star_halfwidth, opt.star_check_margin)
    if opt.noise_check_margin is not None:
        _noise_check(batch, bad, sigma, todo[ext], sol, decision, ext, won, delta,
                     opt.noise_check_margin)
    pos = ext[won]
    if not len(pos):
        return
    sol["type"][pos] = "STAR"
    sol["z"][pos] = bases["STAR"].z_of(sol["star_shift"][pos])
    for k in FIT_KEYS:
        sol[k][pos] = sol[f"star_{k}"][pos]
    sol["dchi2"][pos] = delta[won]


def _noise_check(batch, bad, sigma, spec, sol, decision, ext, won, delta, margin) -> None:
    """Mark in ``won`` (and ``delta``: its Δχ²) the rows ``ext`` of ``sol`` (spectra ``spec``)
    of a survey with a residual variance that the survey-noise comparison gives to STAR; the
    rest stay as the line-driven check left them."""
    survey = survey_of(batch.meta, len(batch))[spec]
    sig = np.zeros(len(batch)) if sigma is None else sigma
    for name in np.unique(survey[~won]):
        boost = survey_var_boost(name, batch.loglam, _fit_digest())
        look = np.flatnonzero(~won & (survey == name))
        if boost is None or not len(look):
            continue
        r = ext[look]
        r_won, d = noise_star_beats_winner(
            batch, ~bad, sig, spec[look], sol["type"][r], decision["ishift"][r],
            decision["coef"][r], sol["star_ishift"][r], sol["star_coef"][r], boost, margin)
        won[look[r_won]] = True
        delta[look[r_won]] = d[r_won]


@lru_cache(maxsize=1)
def _fit_digest() -> str:
    """This stage's STAR fit, as the survey-noise α files record theirs."""
    return star_fit_digest(SKY_LINES, SKY_HALFWIDTH)


def _star_floor(batch, todo: np.ndarray, spectype: np.ndarray, opt: VerifyOptions) -> np.ndarray:
    """The per-visit systematic (in z) of each verified row: the STAR floor of its survey."""
    if not opt.star_zerr_floor_kms:
        return np.zeros(todo.size)
    survey = survey_of(batch.meta, len(batch))[todo]
    kms = np.array([opt.star_zerr_floor_kms.get(s, 0.0) for s in survey])
    return np.where(spectype == "STAR", kms, 0.0) / C_KMS


def sky_mask(loglam: np.ndarray) -> np.ndarray:
    """(P,) True on the pixels within ``SKY_HALFWIDTH`` of a ``SKY_LINES`` line."""
    wave = 10.0 ** np.asarray(loglam, np.float64)
    return np.any([np.abs(wave - w) < SKY_HALFWIDTH for w in SKY_LINES], axis=0)


def _poly_chi2(prep) -> np.ndarray:
    return prep.F - chol_quad(prep.G, prep.bp)


def verify_catalog(batch, table: Table, cands: Candidates,
                   options: VerifyOptions | None = None, *, copy: bool = True) -> Table:
    """The model's catalog ``table`` for ``batch`` with the verified columns (module docstring).

    Rows with fewer than ``min_good`` good pixels, or flagged NODATA, keep the model's
    answer (Z_NET = Z) with CHI2 NaN.  BLAS runs on one thread here: the GEMMs are small, and
    OpenBLAS's spinning extra threads would double the CPU time for no gain in wall time.

    ``copy=False``: the columns are set in ``table`` itself, which is returned — for a caller
    that drops its table (:func:`~specsift.verify.verify_batch`): the shallow copy of a
    catalog's columns was ~1 ms of a one-spectrum batch."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        return _verify(batch, table, cands, options, copy)


@lru_cache(maxsize=1)
def _blas_controller():
    """One ThreadpoolController per process: building one inspects every loaded library
    (milliseconds), which batches of one spectrum (one SDSS file each) would pay every time."""
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def _verify(batch, table: Table, cands: Candidates, options: VerifyOptions | None,
            copy: bool = True) -> Table:
    opt = options or VerifyOptions()
    n = len(table)
    # every read of ``table`` below is of a column the stage never replaces before its
    # last read, so ``out`` may be ``table`` itself (copy=False)
    out = table.copy(copy_data=False) if copy else table
    keep_net_answer(out, table)                 # Z_NET … CLASS_LABEL_NET
    chi2 = np.full(n, np.nan)
    dchi2 = np.asarray(table["DELTACHI2"], np.float64).copy() if "DELTACHI2" in table.colnames \
        else np.full(n, np.nan)
    coef = np.zeros((n, NCOEFF_MAX), np.float32)
    ncoef = np.zeros(n, np.int16)
    npix = np.zeros(n, np.int32)
    zwarn = np.asarray(table["ZWARN"], np.int64).copy()
    z = np.asarray(table["Z"], np.float64).copy()
    zerr = np.asarray(table["ZERR"], np.float64).copy()
    spectype = np.asarray(table["SPECTYPE"], dtype="U6").copy()
    subtype = np.asarray(table["SUBTYPE"], dtype="U20").copy()
    bad = batch.mask | sky_mask(batch.loglam)             # prepare reads it, never writes it
    prep = prepare(batch.flux, batch.ivar, bad,
                   scratch=_SCRATCH)         # this batch's products: dead when the call returns
    npix[:] = prep.ngood
    todo = np.flatnonzero((prep.ngood >= opt.min_good)
                          & ((zwarn & ZWARN.NODATA) == 0))
    if len(todo):
        bases = bases_for(batch.loglam)
        net_t0, net_z0 = spectype.copy(), z.copy()
        sigma = extra_sigma_pix(batch)        # LSF beyond the templates': per spectrum
        poly_all = _poly_chi2(prep)           # χ² of the polynomial alone: once a batch
        first = []                            # its windows: the rescue reuses them
        sol = solve(prep, bases, cands, todo, opt, n, net_t0, net_z0, poly_all, sigma,
                    keep=first)
        poly = poly_all[todo]
        excess = poly - prep.ngood[todo]
        bad_fit = (excess > 0) & (poly - sol["chi2"] < opt.rescue_explained * excess)
        rescue = todo[(sol["dchi2"] < opt.rescue_deltachi2) | bad_fit]
        if len(rescue):
            # not convincing: scan the whole z range coarsely for more candidates, then decide
            # again with them (rare, so its cost stays small on average)
            extra = full_range_candidates(prep, bases, rescue, n, opt)
            again = solve(prep, bases, Candidates.concat([cands, extra]), rescue, opt, n,
                          net_t0, net_z0, poly_all, sigma, reuse=first[0])
            pos = np.searchsorted(todo, rescue)
            for k in sol:
                sol[k][pos] = again[k]
        noise_chi2 = sol["chi2"].copy()   # on the noise alone, before the refit below
        decision = {k: sol[k].copy() for k in ("ishift", "coef")}   # ditto: the fit it scored
        if opt.qso_template_error:
            refit_template_limited(batch, bad, bases, todo, sol, opt, sigma, prep.ngood,
                                   _fit_rows)
        if opt.star_check_margin is not None:
            _star_check(prep, bases, todo, sol, opt, noise_chi2, batch, bad, sigma, decision)
        t_b = sol["type"]
        z[todo] = sol["z"]
        scale = np.select([t_b == t for t in opt.zerr_scale], list(opt.zerr_scale.values()),
                          1.0)
        zerr[todo] = sol["err"] * bases["STAR"].step * np.log(10) * (1 + z[todo]) * scale
        zerr[todo] = np.hypot(zerr[todo], _star_floor(batch, todo, t_b, opt) * (1 + z[todo]))
        z_fit = z[todo].copy()            # the fit's own z: NET_DISAGREE compares it
        if opt.quasar_posterior:          # line-shift systematic; the model's z as prior
            wave = 10.0 ** np.asarray(batch.loglam, np.float64)[[0, -1]]
            reach = np.nanmax(np.nan_to_num(cands.reach_or_nan()[todo], nan=0.0), axis=1,
                              initial=0.0)                     # K = 0 candidates: no reach
            z[todo], zerr[todo], _ = quasar_posterior(
                z[todo], zerr[todo], t_b, net_t0[todo], net_z0[todo],
                np.asarray(table["ZERR"], np.float64)[todo], reach, wave)
        chi2[todo] = sol["chi2"]
        dchi2[todo] = sol["dchi2"]
        coef[todo] = sol["coef"]
        ncoef[todo] = sol["ncoef"]
        net_t = spectype[todo].copy()
        net_z = np.asarray(table["Z"], np.float64)[todo]
        spectype[todo] = t_b
        same = t_b == net_t
        subtype[todo] = np.where(same, subtype[todo], "")
        star = np.flatnonzero(t_b == "STAR")
        if len(star):
            subtype[todo[star]] = star_subtypes(batch, bases["STAR"], todo[star],
                                                sol["shift"][star], prep=prep)
        zw = zwarn[todo] & ~np.int64(ZWARN.SMALL_DELTA_CHI2 | ZWARN.Z_FITLIMIT)
        zw[dchi2[todo] < SMALL_DELTA_CHI2] |= ZWARN.SMALL_DELTA_CHI2
        zw[sol["edge"]] |= ZWARN.Z_FITLIMIT
        dv = np.abs(z_fit - net_z) / (1 + z_fit) * C_KMS
        zw[~same | (dv > SAME_KMS)] |= ZWARN.NET_DISAGREE
        zwarn[todo] = zw
    put_columns(out, {"Z": z, "ZERR": zerr, "ZWARN": zwarn, "SPECTYPE": spectype,
                      "SUBTYPE": subtype, "CLASS_LABEL": _class_labels(table, spectype, subtype),
                      "DELTACHI2": dchi2, "CHI2": chi2, "NPIXELS": npix, "NCOEFF": ncoef,
                      "COEFF": coef})
    return out


def _class_labels(table: Table, spectype, subtype) -> np.ndarray:
    """CLASS_LABEL consistent with the verified SPECTYPE: the network's label where it agrees,
    else the most probable label of the verified SPECTYPE (a star: its SUBTYPE's label)."""
    labels = [c[5:] for c in table.colnames if c.startswith("PROB_")]
    lab = np.asarray(table["CLASS_LABEL"], dtype="U24").copy()
    if not labels:
        return lab
    P = np.stack([np.asarray(table[f"PROB_{c}"], np.float64) for c in labels], axis=1)
    types = np.array([spectype_of(c) for c in labels])
    for i in np.flatnonzero(np.array([spectype_of(s) if s else "" for s in lab]) != spectype):
        if not spectype[i]:
            continue
        if spectype[i] == "STAR" and f"STAR_{subtype[i][:2]}" in labels:
            lab[i] = f"STAR_{subtype[i][:2]}"
            continue
        cand = np.flatnonzero(types == spectype[i])
        lab[i] = labels[cand[np.argmax(P[i, cand])]] if len(cand) else lab[i]
    return lab
