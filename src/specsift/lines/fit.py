"""Vectorised Gaussian line fit: fluxes, widths and velocities of N spectra at once.

Why this shape: on a log-λ grid a line of velocity width σ has the same width in pixels at
every wavelength, and a rest-frame window maps onto a fixed number of pixels at any
redshift.  So each spectrum's fit pixels are a few fixed-length windows ("regions") gathered
into one (N, M) array, and a Levenberg–Marquardt fit of every spectrum runs as batched
(N, P, P) linear algebra — no Python loop over spectra.

Model, per region r (rest-frame wavelength window):
    f(λ) = Σ_lines F_l · G(λ; λ_l (1+z)(1+v_g/c), s_g) + b_r0 + b_r1 · t
with pixel-integrated Gaussians G (erf), F the integrated line flux (flux × Å), s_g the total
width (intrinsic ⊕ instrumental) and v_g the velocity of the line's kinematic group g,
shared by every line of the group (SDSS ties widths and redshifts the same way).  Fluxes of
doublet members with a fixed atomic ratio share one amplitude.  The fluxes and backgrounds
are linear, so the start is a linear least-squares solve at the guessed widths, and after
the first few joint steps they are solved exactly at every trial width and velocity
(variable projection, :mod:`.solver`); errors come from the inverse
Hessian (ivar-weighted) at the solution, with widths and velocities free, so a flux error
includes its width uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .linear import inverse, linear_solve, normal_equations
from .noise import bin_noise
from .problem import DT, Problem, regions
from .profiles import integrated
from .solver import FTOL, MAX_ITER, XTOL, levenberg_marquardt
from .stack import stack_problems

#: the line fit's answers change with this: a run's plan records it, so a resume cannot mix
#: two fits in one catalog (1: five fixed iterations; 2: each row iterated to convergence;
#: 3: variable projection after three joint steps — the same minima to a fraction of an
#: error, a few rows another minimum, higher or lower; 4: a rejected projected step's
#: successor at most half as long, :data:`.solver.SHRINK` — the same minima, values within
#: a few hundredths of an error but one galaxy's Hβ EW, 0.435σ on the simulated store
#: batch: its continuum is read at the pixel nearest the fitted centre, which moved
#: 0.0005 pixel; docs/lines.md "How the fits are batched")
FIT_VERSION = 4

__all__ = ["Component", "Group", "LineModel", "FitResult", "fit_lines", "fit_pixels",
           "MAX_ITER", "FTOL", "XTOL"]


@dataclass(frozen=True)
class Group:
    """Lines sharing one width and velocity; starting width and the allowed ranges (km/s)."""
    name: str
    sigma0: float
    sigma_max: float
    v_max: float


@dataclass(frozen=True)
class Component:
    """One Gaussian: ``flux = ratio × amplitude[amp]``, width ``scale × s[group]``."""
    key: str
    wave: float
    group: int
    amp: int
    region: int
    ratio: float = 1.0
    scale: float = 1.0


@dataclass(frozen=True)
class LineModel:
    components: tuple[Component, ...]
    groups: tuple[Group, ...]
    regions: tuple[tuple[float, float], ...]      # rest-frame Å windows
    n_amp: int
    slope: bool = False                           # a linear background term per region
    #: pixels per fit bin: broad lines (σ ≥ 8 px) lose nothing when fitted on bins of a few
    #: pixels (the model is integrated over each bin exactly), and cost a quarter
    bin: int = 1
    #: rest-frame templates fitted as extra linear continuum terms (e.g. quasar Fe II);
    #: :func:`fit_lines` takes their values at the fit bins (``extra=``)
    templates: tuple[str, ...] = ()
    #: the ivar-only ("white") errors, which SDSS's rules are applied to, hold the window
    #: backgrounds fixed: SDSS fits a galaxy's lines on its stellar model with no local
    #: background term (see :func:`specsift.lines.models.galaxy_model`)
    white_fixed_background: bool = False
    #: iterations that step every parameter together before variable projection takes
    #: over (:func:`.solver.levenberg_marquardt`); None: :data:`.solver.FULL_STEPS`
    full_steps: int | None = None

    @property
    def n_back(self) -> int:
        return len(self.regions) * (2 if self.slope else 1) + len(self.templates)


@dataclass
class FitResult:
    """Fitted parameters; amplitudes are integrated fluxes in flux-density units × Å."""
    amp: np.ndarray            # (N, n_amp)
    amp_err: np.ndarray        # (N, n_amp); 0 where the amplitude had no data
    amp_err_white: np.ndarray  # the same, ignoring the noise correlation (ivar alone)
    sigma: np.ndarray          # (N, G) intrinsic Gaussian σ, km/s (instrument removed)
    sigma_err: np.ndarray
    sigma_err_white: np.ndarray
    velocity: np.ndarray       # (N, G) km/s
    velocity_err: np.ndarray
    back: np.ndarray           # (N, n_back) background terms
    cov_amp: np.ndarray        # (N, n_amp, n_amp) covariance of the amplitudes
    covered: np.ndarray        # (N, n_amp) bool: amplitude had good pixels at its centre
    chi2: np.ndarray           # (N,)
    npix: np.ndarray           # (N,)
    idx: np.ndarray            # (N, M) pixel index of each fit pixel
    centre: np.ndarray         # (N, L) nearest pixel to each component's fitted centre
    back_at: np.ndarray        # (N, L) background term at each component's centre
    model: np.ndarray          # (N, M) best-fit line + background model on the fit pixels
    n_iter: np.ndarray         # (N,) Levenberg–Marquardt iterations the row took
    converged: np.ndarray      # (N,) bool: False = stopped at ``max_iter`` unconverged

    def rows(self, sel) -> "FitResult":
        """The result of the rows ``sel`` (a slice or index array) alone: every field has
        one row per spectrum, so a fit of several windows' (row, window) pairs stacked
        into one problem splits back into each window's own result."""
        return FitResult(**{f.name: getattr(self, f.name)[sel] for f in fields(self)})


def fit_pixels(model: LineModel, loglam, z) -> np.ndarray:
    """(N, M) first pixel of every fit bin of ``model``'s windows at redshifts ``z``
    (pixels, may fall outside the spectrum), in the order :func:`fit_lines` uses."""
    return regions(model, np.asarray(loglam, float), np.atleast_1d(np.asarray(z, float)))[0]


def fit_lines(model: LineModel, loglam, resid, ivar, z, sigma_inst=69.0,
              max_iter: int = MAX_ITER, noise_corr: float = 0.0, continuum=None,
              extra=None, rows=None, ftol: float = FTOL, xtol: float = XTOL,
              others: tuple = (), kind=None) -> FitResult:
    """Fit ``model`` to continuum-subtracted spectra ``resid`` (N, P) at redshifts ``z``.

    ``sigma_inst`` is the instrumental Gaussian σ in km/s: a scalar, per spectrum (N,), per
    pixel (P,) or both (N, P); it is read at each line's centre.  ``noise_corr``: lag-1
    correlation of neighbouring pixels' noise (resampled coadds have it; ivar does not say
    so); the errors then come from the sandwich H⁻¹ (Jᵀ W C W J) H⁻¹ with that correlation.
    Pixels with ``ivar == 0`` do not count; a line with no good pixel near its centre comes
    back with ``covered = False`` and zero error.  ``continuum``: (design, cov) of the
    linear continuum model subtracted from ``resid`` — ``design(idx)`` its (N, K, M) basis
    at the fit pixels, ``cov`` (N, K, K) its coefficients' covariance — whose uncertainty is
    then propagated into the errors (δθ = −H⁻¹ JᵀW B δc); the white-noise errors stay
    ivar-only, as SDSS's are.  ``extra`` (N, M, T): the values of ``model.templates`` at
    the fit bins (:func:`fit_pixels`), each fitted with a free amplitude (one window only).
    ``rows``: fit only these rows of ``resid`` / ``ivar`` (``z``, ``sigma_inst`` and
    ``extra`` are then the rows' own), their window pixels gathered without copying the
    rows whole (a quasar window's subset was two (N, P) copies per window).
    ``max_iter``, ``ftol``, ``xtol``: each row iterates until it has converged (see
    :func:`.solver.levenberg_marquardt`) or for ``max_iter`` iterations, then comes back with
    ``converged = False``; negative tolerances run every row ``max_iter`` iterations.
    ``others``, ``kind``: more models of the same layout (:mod:`.stack`) and, per row, which
    one fits it (0: ``model``, k: ``others[k - 1]``; non-decreasing): one fit, each row's
    result that of its own model's fit, bit for bit; :class:`.stack.NotStackable` where the
    models' evaluation differs.
    No spectra: a result of 0 rows; a non-finite redshift: ValueError (no window to fit).
    """
    z = np.atleast_1d(np.asarray(z, float))
    if (np.shape(resid)[0] if rows is None else len(rows)) == 0:
        return _empty_result(model, loglam)
    if not np.isfinite(z).all():
        bad = np.flatnonzero(~np.isfinite(z))
        raise ValueError(f"fit_lines: redshift not finite (NaN or inf) for {bad.size} of "
                         f"{z.size} spectra (first rows {bad[:5].tolist()}): the fit windows "
                         "sit at (1 + z) × the rest wavelengths; leave such spectra out "
                         "(measure_lines does)")
    prob = _problem((model,) + tuple(others), np.asarray(loglam, float), resid, ivar, z,
                    sigma_inst, extra, rows, kind)
    theta = np.zeros((prob.n, prob.np))
    theta[:, prob.ks:prob.ku] = prob.s_start
    prec, mean, _ = prob.prior()
    # start: the starting widths, v = 0, amplitudes and backgrounds solved there
    theta, out, J, hinv = linear_solve(prob, theta)
    theta, out, J, n_done, conv = levenberg_marquardt(prob, theta, out, J, hinv, prec, mean,
                                                      max_iter, ftol, xtol)
    H, _ = normal_equations(prob, J, prob.y - out, prec, mean, theta)
    cov = hinv = inverse(H)
    if noise_corr > 0:
        cov = cov @ _correlated_meat(prob, J, H, noise_corr, prec) @ cov
    if continuum is not None:
        cov = cov + _continuum_cov(prob, J, hinv, *continuum)
    err = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    err_w = np.sqrt(np.clip(np.diagonal(_white(prob, H, hinv), axis1=1, axis2=2), 0, None))
    covered = _covered(prob, theta, J)
    centre, back_at = _at_centres(prob, theta)
    kp = prob.kms_pix
    return FitResult(
        amp=np.where(covered, theta[:, :prob.ka], np.nan),
        amp_err=np.where(covered, err[:, :prob.ka], 0.0),
        amp_err_white=np.where(covered, err_w[:, :prob.ka], 0.0),
        sigma=theta[:, prob.ks:prob.ku] * kp, sigma_err=err[:, prob.ks:prob.ku] * kp,
        sigma_err_white=err_w[:, prob.ks:prob.ku] * kp,
        velocity=theta[:, prob.ku:] * kp, velocity_err=err[:, prob.ku:] * kp,
        back=theta[:, prob.ka:prob.ks], cov_amp=cov[:, :prob.ka, :prob.ka],
        covered=covered, chi2=(prob.w * (prob.y - out) ** 2).sum(1),
        npix=(prob.w > 0).sum(1), idx=prob.idx, centre=centre, back_at=back_at, model=out,
        n_iter=n_done, converged=conv)


def _problem(models, loglam, resid, ivar, z, sigma_inst, extra, rows, kind) -> Problem:
    """:func:`fit_lines`' problem; with several ``models``, each kind's rows' own problem
    (built as that model's separate fit builds it) stacked into one
    (:func:`.stack.stack_problems`)."""
    if len(models) == 1:
        return Problem(models[0], loglam, resid, ivar, z, sigma_inst, extra, rows)
    kind = np.asarray(kind)
    if kind.shape != z.shape or (np.diff(kind) < 0).any():
        raise ValueError(f"kind: one non-decreasing model index per row needed, got shape "
                         f"{kind.shape} for {z.size} rows")
    n, p = z.size, np.shape(resid)[1]
    si = np.asarray(sigma_inst)
    per_row = si.ndim == 2 or (si.ndim == 1 and not (si.size == p and p != n))
    rows = np.arange(n) if rows is None else np.asarray(rows)
    probs = []
    for k, mdl in enumerate(models):
        a, b = np.searchsorted(kind, [k, k + 1])
        if b > a:
            probs.append(Problem(mdl, loglam, resid, ivar, z[a:b], si[a:b] if per_row else si,
                                 None if extra is None else extra[a:b], rows[a:b]))
    return stack_problems(probs)


def _empty_result(model: LineModel, loglam) -> FitResult:
    """The fit of no spectra: every field with 0 rows and the shape and dtype a fit gives
    it, so that it stacks with other results (a batch in which no spectrum reaches a
    window)."""
    na, g, L = model.n_amp, len(model.groups), len(model.components)
    m = fit_pixels(model, loglam, np.zeros(0)).shape[1]
    f64 = {"amp": na, "amp_err": na, "amp_err_white": na, "sigma": g, "sigma_err": g,
           "sigma_err_white": g, "velocity": g, "velocity_err": g, "back": model.n_back,
           "back_at": L}
    return FitResult(**{k: np.empty((0, w)) for k, w in f64.items()},
                     cov_amp=np.empty((0, na, na)), covered=np.empty((0, na), bool),
                     chi2=np.empty(0, DT), npix=np.empty(0, np.int64),
                     idx=np.empty((0, m), np.int64), centre=np.empty((0, L), np.int64),
                     model=np.empty((0, m), DT), n_iter=np.empty(0, np.int16),
                     converged=np.empty(0, bool))


def _at_centres(prob: Problem, theta):
    """Nearest pixel and background level at every component's fitted centre."""
    mdl = prob.model
    cen = np.stack([prob.c0[:, j] + theta[:, prob.ku + c.group]
                    for j, c in enumerate(mdl.components)], axis=1)
    back = np.zeros_like(cen)
    for j, c in enumerate(mdl.components):
        sl = prob.slices[c.region]
        col = prob.ka + (2 * c.region if mdl.slope else c.region)
        back[:, j] = theta[:, col]
        if mdl.slope:
            first = prob.x[:, sl.start] + 0.5 * (prob.bin - 1)          # first bin's centre
            tc = 2 * (cen[:, j] - first) / (prob.bin * max(sl.stop - sl.start - 1, 1)) - 1
            back[:, j] += theta[:, col + 1] * tc
    n_t = prob.extra.shape[2]
    if n_t:                                  # template terms (one window): at the centre bin
        for j in range(cen.shape[1]):
            k = np.clip(((cen[:, j] - prob.x[:, 0]) / prob.bin).astype(np.int64), 0, prob.m - 1)
            t_at = prob.extra[np.arange(prob.n), k]                          # (N, T)
            back[:, j] += (theta[:, prob.ks - n_t:prob.ks] * t_at).sum(1)
    return np.rint(cen).astype(np.int64), back


def _correlated_meat(prob: Problem, J, H, rho1: float, prec=None):
    """Jᵀ W C W J for noise correlated as SDSS's resampling makes it (lag-1 correlation
    ``rho1``; the bins' variance factor and lags from :func:`.noise.bin_noise`, the one
    copy the continuum fit uses too); pairs across two windows are not neighbours."""
    v, lags = bin_noise(prob.bin, rho1)
    sw = np.sqrt(prob.w)
    meat = H.copy()                              # white part (with the priors) = H
    if v != 1.0:
        d = np.arange(H.shape[1])
        data = H.copy()
        if prec is not None:
            data[:, d, d] -= prec
        meat = meat + (v - 1.0) * data
    for (sl, cols), blk in zip(prob.blocks, J):  # pairs within one window only
        V = blk * sw[:, None, sl]
        for lag, rho in lags:
            L = np.matmul(V[:, :, :-lag], V[:, :, lag:].transpose(0, 2, 1)).astype(np.float64)
            meat[:, cols[:, None], cols[None, :]] += v * rho * (L + L.transpose(0, 2, 1))
    return meat


def _continuum_cov(prob: Problem, J, hinv, design, ccov):
    """Covariance the continuum's coefficient errors give the fit parameters: the line
    fit is linear in the data, δθ = −H⁻¹ Jᵀ W B δc, so Cov = G C Gᵀ with G = H⁻¹ JᵀWB."""
    B = np.asarray(design(prob.idx), np.float32) * prob.w[:, None, :]     # (N, K, M)
    JB = np.zeros((prob.n, prob.np, B.shape[1]))
    for (sl, cols), blk in zip(prob.blocks, J):
        JB[:, cols] += np.matmul(blk, B[:, :, sl].transpose(0, 2, 1))
    G = hinv @ JB
    return G @ np.asarray(ccov, float) @ G.transpose(0, 2, 1)


def _white(prob: Problem, H, hinv):
    """The ivar-only covariance of a fit like SDSS's: its line fit has no template
    (Fe II) terms, and for galaxies no local background (``white_fixed_background``), so
    its errors are ours with those terms held fixed (the conditional covariance); the
    rules' thresholds were set on such errors.  (With Fe II free, four real SDSS
    BROADLINE quasars of 17 fell below the 10σ test.)"""
    n_t = prob.extra.shape[2]
    lo = prob.ka if prob.model.white_fixed_background else prob.ks - n_t
    if lo == prob.ks:
        return hinv
    t = np.arange(lo, prob.ks)
    Hc = H.copy()
    Hc[:, t, :] = 0.0
    Hc[:, :, t] = 0.0
    Hc[:, t, t] = 1.0
    return inverse(Hc)


#: least share of a line's light on good pixels for it to count as measured
MIN_GOOD_FRACTION = 0.6


def _covered(prob: Problem, theta, J) -> np.ndarray:
    """An amplitude is measured when one of its lines has ≥ 3 good pixels within ±2σ and
    ≥ :data:`MIN_GOOD_FRACTION` of its light on good pixels.  Why the share: a line whose
    core is masked (a bad-pixel run, a saturated sky line) was "measured" from its wings
    alone (a real SDSS starburst's Hα came out at 0.7 × Hβ and turned it into an AGN)."""
    cov = np.zeros((prob.n, prob.ka), bool)
    th = theta.astype(DT)
    for (sl, _), comps in zip(prob.blocks, prob.comp_of):     # a window's lines at once
        if comps.size == 0:
            continue
        sg = th[:, prob.ks + prob.group[comps]] * prob.scale[comps]                # (N, L)
        s = np.sqrt(sg * sg + prob.s_inst_l[:, comps] ** 2)[..., None]
        cen = (prob.c0[:, comps] + th[:, prob.ku + prob.group[comps]])[..., None]
        mid = (prob.x[:, sl] + DT(0.5 * (prob.bin - 1)))[:, None, :]
        good = (prob.w[:, sl] > 0)[:, None, :]
        near = (np.abs(mid - cen) <= np.maximum(2 * s, prob.bin)) & good         # (N, L, W)
        integ = integrated(prob.x[:, sl.start, None, None], sl.stop - sl.start, cen, s,
                            prob.bin)
        share = (integ * good).sum(2) / np.maximum(integ.sum(2), 1e-12)
        ok = (near.sum(2) >= 3) & (share >= MIN_GOOD_FRACTION)                   # (N, L)
        if prob.amp_rows is None:
            for i, a in enumerate(prob.amp[comps]):
                cov[:, a] |= ok[:, i]
            continue
        rows = np.arange(prob.n)                 # a stacked problem: each row's own amplitudes
        for i, j in enumerate(comps):
            cov[rows, prob.amp_rows[:, j]] |= ok[:, i]
    return cov
