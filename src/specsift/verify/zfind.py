"""Where to look and which fit wins: the candidate windows of a batch, the winner among their
fits, and DELTACHI2 (Redrock's zfind, with :mod:`.windows` as its fitz).

Separate from :mod:`.stage` because these are the rules of the decision — which (SPECTYPE, z)
windows a spectrum gets from the model's candidates, when the model's own answer stands, which
row is the DELTACHI2 partner, where a whole-range coarse scan (Redrock's zscan) looks when no
candidate convinces — while the stage turns the decision into catalog columns (Z, ZERR, ZWARN,
SUBTYPE, CLASS_LABEL).  Tests and benchmarks can call them on window fits without a catalog.
``opt`` everywhere is the stage's :class:`.stage.VerifyOptions`.
"""

from __future__ import annotations

import numpy as np

from ..constants import C_KMS
from .candidates import Candidates
from .fit import bin_basis, bin_prepared, scan_all, take_rows
from .templates import SPECTYPES, Z_MAX
from .windows import Reusing, Windows, lowest_per_spectrum

__all__ = ["NET_KMS", "SAME_KMS", "FIT_KEYS", "QSO_LINE_SCATTER", "candidate_rows", "solve",
           "best_rows", "far_rows", "is_net", "full_range_candidates", "qso_systemic_kms",
           "quasar_posterior"]

#: rounds of refining DELTACHI2 partners (:meth:`.windows.Windows.partners`) and deciding
#: again; one nearly always suffices (a second only where a refined partner won)
_PARTNER_ROUNDS = 3
#: a fitted row this close to the model's z (same SPECTYPE) is the model's own answer
NET_KMS = 2000.0
#: candidates closer than this are one solution (Redrock's max_velo_diff)
SAME_KMS = 1000.0

#: the per-row fit results :func:`solve` returns for the winner and for the STAR window
FIT_KEYS = ("shift", "err", "chi2", "coef", "ncoef", "edge", "ishift")   # ishift: COEFF's pixel

#: (vacuum rest wavelength Å, km/s): the intrinsic scatter about the systemic redshift of a
#: quasar redshift measured from each of the strong lines a template fit follows — Shen et
#: al. 2016, ApJ 831, 7 (SDSS-RM, systemic z from host stellar absorption): [O III] 5007 56,
#: Mg II 205, C III] 233, C IV 415, Si IV 477 km/s.  (Their [O II] 46 and [Ne V] 119 are left
#: out: both are weak or absent in most quasar spectra, so they do not set a template fit.)
QSO_LINE_SCATTER = ((5008.24, 56.0), (2799.9, 205.0), (1908.73, 233.0), (1549.48, 415.0),
                    (1396.76, 477.0))


def candidate_rows(cands: Candidates, todo: np.ndarray, opt, step: float):
    """(spectrum, spectype, z, half-width) of every candidate window to fit: STAR at z = 0 and
    a nearby GALAXY (0 ≤ z ≤ ``lowz_galaxy_zmax``) for every spectrum, then the model's
    candidates, each GALAXY/QSO one as both; candidates of one type within half a window of
    each other are one row."""
    n = len(todo)
    spec, typ, z = [todo], [np.full(n, "STAR", "U6")], [np.zeros(n)]
    hw = [np.full(n, opt.star_halfwidth)]
    if opt.lowz_galaxy_zmax > 0:
        spec.append(todo), typ.append(np.full(n, "GALAXY", "U6"))
        z.append(np.full(n, opt.lowz_galaxy_zmax / 2))
        hw.append(np.full(n, int(np.ceil(np.log10(1 + opt.lowz_galaxy_zmax) / step / 2))))
    fixed = sum(len(x) for x in spec)
    swap = {"GALAXY": "QSO", "QSO": "GALAXY"}
    # the model's own reach (ln(1+z)) in pixels: the window covers at least that
    reach = np.ceil(np.nan_to_num(cands.reach_or_nan()) / np.log(10) / step).astype(np.int64)
    for j in range(cands.z.shape[1]):
        zz, tt = cands.z[todo, j], cands.spectype[todo, j]
        ok = np.isfinite(zz) & np.isin(tt, SPECTYPES)
        # an extragalactic candidate is tried as the other extragalactic type too: a quasar
        # the model calls a galaxy at the right z is the commonest class error on real data
        other = np.where(tt == "GALAXY", swap["GALAXY"],
                         np.where(tt == "QSO", swap["QSO"], "")).astype("U6")
        two = ok & (other != "")
        for t_, sel in ((tt, ok), (other, two)):
            spec.append(todo[sel]), typ.append(t_[sel]), z.append(zz[sel])
            hw.append(np.where(t_[sel] == "QSO", opt.qso_halfwidth,
                               np.maximum(opt.halfwidth, reach[todo[sel], j])))
    spec, typ, z, hw = (np.concatenate(a) for a in (spec, typ, z, hw))
    zmax = np.select([typ == t for t in Z_MAX], list(Z_MAX.values()), 0.0)
    keep = (z > -0.01) & (z < zmax)
    # the stellar window around z = 0 already covers a STAR candidate near it
    keep &= ~((typ == "STAR") & (np.arange(len(z)) >= fixed))
    spec, typ, z, hw = spec[keep], typ[keep], z[keep], hw[keep]
    key = np.rint(np.log10(1 + z) / step / max(opt.halfwidth, 1)).astype(np.int64)
    _, first = np.unique(np.stack([spec, np.searchsorted(SPECTYPES, typ), key, hw]), axis=1,
                         return_index=True)
    first = np.sort(first)
    return spec[first], typ[first], z[first], hw[first]


def solve(prep, bases, cands, todo, opt, n, net_t, net_z, poly_chi2, sigma=None,
          reuse=None, keep: list | None = None) -> dict:
    """Fit every candidate window of the spectra ``todo`` and pick the lowest χ²: per spectrum
    (in ``todo`` order) type, z, shift, σ of the shift, χ², DELTACHI2, coefficients, edge.
    ``poly_chi2``: (N,) χ² of the polynomial alone (:func:`.stage._poly_chi2`), the floor of the
    'next best' answer.  ``keep``: a list this solve appends its windows to (rows and
    :class:`.windows.Windows`); ``reuse``: such windows of an earlier solve of the same batch,
    whose rows this one takes instead of fitting them again (:class:`.windows.Reusing`)."""
    step = bases["STAR"].step
    spec, typ, zc, hw = candidate_rows(cands, todo, opt, step)
    w = (Windows(prep, bases, spec, typ, zc, hw, opt, sigma) if reuse is None else
         _reusing(reuse, prep, bases, spec, typ, zc, hw, opt, sigma))
    if keep is not None:
        keep.append((spec, typ, zc, hw, w))
    # the fine stage where a window can still matter (.windows); always for the network's
    # answer (the margin rule of best_rows) and for the STAR window (what .stage._star_check hands a row
    # it turns into a star)
    w.refine(w.worth_refining(spec, n) | is_net(spec, typ, zc, net_t, net_z) | (typ == "STAR"))
    res = w.res
    zfit = bases["STAR"].z_of(res["shift"])     # every basis shares the batch's step
    best, other, far = best_rows(spec, typ, zfit, res["chi2"], n, net_t, net_z, opt.net_margin)
    for _ in range(_PARTNER_ROUNDS):
        more = w.partners(spec, far)
        if not more.any():
            break
        # a DELTACHI2 partner left at the coarse stage: refine it (and decide again: a
        # refined far row may win, and the new winner have its own far rows)
        w.refine(more)
        res = w.res
        zfit = bases["STAR"].z_of(res["shift"])
        best, other, far = best_rows(spec, typ, zfit, res["chi2"], n, net_t, net_z,
                                     opt.net_margin)
    b = best[todo]
    other = np.minimum(other[todo], poly_chi2[todo])
    star_row = np.zeros(n, np.int64)        # every spectrum's STAR window near z = 0 (candidate_rows)
    star_row[spec[typ == "STAR"]] = np.flatnonzero(typ == "STAR")
    s = star_row[todo]
    return {"type": typ[b], "z": zfit[b], "dchi2": other - res["chi2"][b],
            **{k: res[k][b] for k in FIT_KEYS}, **{f"star_{k}": res[k][s] for k in FIT_KEYS}}


def _reusing(reuse, prep, bases, spec, typ, zc, hw, opt, sigma) -> Reusing:
    """Windows of rows (``spec``, ``typ``, ``zc``, ``hw``): those equal to a row of
    ``reuse`` (an earlier solve's ``keep`` entry) taken from it, the others fitted."""
    o_spec, o_typ, o_zc, o_hw, old = reuse
    mine = np.flatnonzero(np.isin(o_spec, spec))
    where = {(int(o_spec[i]), str(o_typ[i]), float(o_zc[i]), int(o_hw[i])): int(i) for i in mine}
    found = np.array([where.get((int(a), str(t), float(z), int(h)), -1)
                      for a, t, z, h in zip(spec, typ, zc, hw)], np.int64)
    at_old, at_new = np.flatnonzero(found >= 0), np.flatnonzero(found < 0)
    new = Windows(prep, bases, spec[at_new], typ[at_new], zc[at_new], hw[at_new], opt, sigma)
    return Reusing(old, found[at_old], at_old, new, at_new, opt)


def full_range_candidates(prep, bases, spec, n, opt, k: int = 3) -> Candidates:
    """The ``k`` lowest separated χ² minima of a coarse scan (pixels binned by
    ``rescue_factor``) over the whole z range of GALAXY and QSO, as candidates (n rows; NaN
    outside ``spec``)."""
    fac = opt.rescue_factor
    # bin only the rescued spectra (a few per cent of a batch): binning all of it cost more
    # than their scan
    pb = bin_prepared(take_rows(prep, spec), fac)
    local = np.arange(len(spec))
    zs, ts, jobs, slices = [], [], [], []
    zero = np.zeros(len(spec), np.int64)
    for st in ("GALAXY", "QSO"):
        bb = bin_basis(bases[st], fac)
        lo = int(np.ceil(bb.shift_of(opt.lowz_galaxy_zmax)))
        hi = int(np.floor(bb.shift_of(Z_MAX[st])))
        shifts = np.arange(lo, hi + 1)
        # 64 shifts a scan: one GEMM each, on a template table (fit._multi_shift) of a few
        # MB; one Cholesky for all of them (scan_all: the same values as a scan each)
        first = len(jobs)
        jobs += [(bb, local, zero, shifts[j:j + 64]) for j in range(0, len(shifts), 64)]
        slices.append((st, bb, shifts, first, len(jobs)))
    chi2s = scan_all(pb, jobs)
    for st, bb, shifts, first, last in slices:
        chi2 = np.concatenate(chi2s[first:last], axis=1)
        zs.append(bb.z_of(shifts[_minima(chi2, k)]))
        ts.append(np.full(zs[-1].shape, st, "U6"))
    z = np.full((n, 2 * k), np.nan)
    t = np.full((n, 2 * k), "", "U6")
    z[spec], t[spec] = np.concatenate(zs, axis=1), np.concatenate(ts, axis=1)
    return Candidates(z, t)


def _minima(chi2: np.ndarray, k: int, sep: int = 6) -> np.ndarray:
    """Indices (R, k) of the k lowest local minima of each row, at least ``sep`` apart."""
    c = chi2.copy()
    out = np.zeros((len(c), k), np.int64)
    cols = np.arange(c.shape[1])
    for j in range(k):
        i = np.argmin(c, axis=1)
        out[:, j] = i
        c[np.abs(cols[None] - i[:, None]) < sep] = np.inf
    return out


def best_rows(spec, typ, z, chi2, n, net_t=None, net_z=None, margin: float = 0.0):
    """Per spectrum: the chosen row and the DELTACHI2 partner χ² (the lowest χ² more than
    1000 km/s from the chosen row); and per row whether it is that far (:func:`far_rows`).
    The lowest χ² is chosen, except that the model's own answer
    (its SPECTYPE, within ``NET_KMS`` of its z) is kept when its χ² is within ``margin`` of the
    lowest: a fit that prefers another solution by less than that is not evidence enough to
    overrule a model that was right on its simulated test set."""
    best = np.full(n, -1)
    order, first = lowest_per_spectrum(spec, chi2)
    best[spec[order][first]] = order[first]
    if net_t is not None and margin > 0:
        mine = is_net(spec, typ, z, net_t, net_z)
        own = np.full(n, -1)
        oc = np.where(mine, chi2, np.inf)
        order, first = lowest_per_spectrum(spec, oc)
        pick = order[first & np.isfinite(oc[order])]
        own[spec[pick]] = pick
        keep = (own >= 0) & (best >= 0)
        keep[keep] = chi2[own[keep]] <= chi2[best[keep]] + margin
        best[keep] = own[keep]
    other = np.full(n, np.inf)
    far = far_rows(z, best[spec])
    np.minimum.at(other, spec[far], chi2[far])
    return best, other, far


def far_rows(z, best_row) -> np.ndarray:
    """Rows more than ``SAME_KMS`` from their spectrum's chosen row ``best_row`` (−1: none)."""
    bz = z[best_row]
    return (best_row >= 0) & (np.abs(z - bz) / (1 + bz) * C_KMS > SAME_KMS)


def is_net(spec, typ, z, net_t, net_z) -> np.ndarray:
    """Rows that are the model's own answer (its SPECTYPE, within ``NET_KMS`` of its z)."""
    nz = net_z[spec]
    return (typ == net_t[spec]) & (np.abs(z - nz) / (1 + nz) * C_KMS < NET_KMS)


def qso_systemic_kms(z, wave_lo: float, wave_hi: float) -> np.ndarray:
    """(N,) km/s: the intrinsic scatter of a quasar's template redshift about its systemic
    one — that of the best systemic indicator of :data:`QSO_LINE_SCATTER` observed within
    ``wave_lo``–``wave_hi`` Å at ``z`` (the last, Si IV, where none is)."""
    z = np.asarray(z, np.float64)
    out = np.full(z.shape, QSO_LINE_SCATTER[-1][1])
    for lam, kms in QSO_LINE_SCATTER:
        obs = lam * (1 + z)
        out = np.where((obs > wave_lo) & (obs < wave_hi), np.minimum(out, kms), out)
    return out


def quasar_posterior(z, zerr, spectype, net_t, net_z, net_zerr, reach, wave_range):
    """Verified quasar redshifts and errors with the line-shift systematic and the model's own
    estimate: (z, zerr, combined) for the verified rows (all arrays (N,), ``reach``: the model's
    stated reach in ln(1+z), NaN where none, :class:`.Candidates`).

    Why: a quasar's broad lines sit away from its systemic redshift by a scatter no template
    carries (C IV blueshifted by 0–2000 km/s, Richards et al. 2002), so a template fit measures
    a line redshift whose error about the systemic one is at least the line's intrinsic scatter
    (:func:`qso_systemic_kms`, Shen et al. 2016): that is added in quadrature to every QSO's
    ZERR.  Where the model calls the same quasar (QSO, within ``NET_KMS``), its z is a second,
    independent estimate: its p(z) is the prior (GaSNet's p(z), Redrock's priors), the fit the
    likelihood, and for two Gaussians the posterior is their inverse-variance mean with σ⁻² =
    σ_fit⁻² + σ_model⁻².  That treats the model's error as independent of this quasar's line
    shift: its ZERR is calibrated about the systemic z (on simulated quasars whose lines are
    shifted), so it is not the fit's systematic counted twice — an approximation, most for
    ``eigen``, itself a template fit of the same pixels; the real SDSS quasars' coverage
    (docs/verify.md) is the check that the combined error stays honest.  The model's σ is its
    ZERR, never narrower than the reach it declares (speccznet: ±4.5 bins of 1390 km/s, so its
    110 km/s ZERR is not taken at face value and its prior has no weight).  Only quasars: a
    galaxy's or star's template redshift is its systemic one, the fit's error is the noise, and
    the model adds nothing the fit lacks."""
    z = np.asarray(z, np.float64)
    zerr = np.asarray(zerr, np.float64)
    qso = np.asarray(spectype) == "QSO"
    sys_z = qso_systemic_kms(z, *wave_range) * (1 + z) / C_KMS
    fit_err = np.where(qso, np.hypot(zerr, sys_z), zerr)
    nz = np.asarray(net_z, np.float64)
    prior = np.fmax(np.asarray(net_zerr, np.float64),
                    np.nan_to_num(np.asarray(reach, np.float64)) * (1 + nz))
    with np.errstate(invalid="ignore"):          # the model's own answer, and a quasar
        both = (qso & is_net(np.arange(len(z)), np.asarray(spectype), z, np.asarray(net_t), nz)
                & np.isfinite(prior) & (prior > 0) & (fit_err > 0))
    w = np.zeros(z.shape)
    w[both] = fit_err[both] ** 2 / (fit_err[both] ** 2 + prior[both] ** 2)
    post_err = fit_err.copy()
    post_err[both] = 1.0 / np.sqrt(1.0 / fit_err[both] ** 2 + 1.0 / prior[both] ** 2)
    return z + w * np.where(both, nz - z, 0.0), post_err, both
