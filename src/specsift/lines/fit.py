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
doublet members with a fixed atomic ratio share one amplitude.  The flux is linear, so the
start is a linear least-squares solve at the guessed widths; errors come from the inverse
Hessian (ivar-weighted) at the solution, with widths and velocities free, so a flux error
includes its width uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from .table import C_KMS

__all__ = ["Component", "Group", "LineModel", "FitResult", "fit_lines", "fit_pixels"]

_LN10 = np.log(10.0)
_SQRT2 = np.float32(np.sqrt(2.0))
_SQRT2PI = np.float32(np.sqrt(2.0 * np.pi))
#: working precision of the model and Jacobian (the normal equations are solved in float64)
_DT = np.float32


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


def _regions(model: LineModel, loglam: np.ndarray, z: np.ndarray):
    """First pixel (N, M) of every fit bin of every region at each redshift, and the
    regions' column slices."""
    start, step = loglam[0], loglam[1] - loglam[0]
    b = model.bin
    cols, slices, m0 = [], [], 0
    for lo, hi in model.regions:
        w = int(np.ceil(np.log10(hi / lo) / step / b)) + 1
        i0 = np.floor((np.log10(lo) + np.log10(1 + z) - start) / step).astype(np.int64)
        cols.append(i0[:, None] + b * np.arange(w)[None, :])
        slices.append(slice(m0, m0 + w))
        m0 += w
    return np.concatenate(cols, axis=1), slices


def fit_pixels(model: LineModel, loglam, z) -> np.ndarray:
    """(N, M) first pixel of every fit bin of ``model``'s windows at redshifts ``z``
    (pixels, may fall outside the spectrum), in the order :func:`fit_lines` uses."""
    return _regions(model, np.asarray(loglam, float), np.atleast_1d(np.asarray(z, float)))[0]


def _erf(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array through torch (vectorised: 1.4 ns an element against scipy's
    20, which was half the line stage; equal to float32 rounding)."""
    try:
        import torch
    except ImportError:                                   # pragma: no cover
        return erf(x)
    return torch.erf(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _gauss_pix(first, width, c, s, b: int = 1):
    """Unit Gaussian integrated over ``width`` consecutive bins of ``b`` pixels from pixel
    ``first`` (N, 1), and its derivatives in the centre c and width s (pixels); erf/exp at
    the W+1 shared edges only."""
    e = first - _DT(0.5) + _DT(b) * np.arange(width + 1, dtype=_DT) - c
    u = e / s
    E = _erf(u / _SQRT2)
    phi = np.exp(-0.5 * u * u) / (_SQRT2PI * s)
    ephi = e * phi
    return (0.5 * (E[..., 1:] - E[..., :-1]), phi[..., :-1] - phi[..., 1:],
            (ephi[..., :-1] - ephi[..., 1:]) / s)


class _Problem:
    """The arrays one fit needs, gathered once: data, weights and geometry of the windows."""

    def __init__(self, model, loglam, resid, ivar, z, sigma_inst, extra=None):
        n, p = resid.shape
        self.model = model
        self.step = loglam[1] - loglam[0]
        self.kms_pix = C_KMS * _LN10 * self.step
        idx, self.slices = _regions(model, loglam, z)
        rows = np.arange(n)[:, None]
        self.idx = idx
        self.bin = b = model.bin
        self.x = idx.astype(_DT)
        if b == 1:
            inside = (idx >= 0) & (idx < p)
            ic = np.clip(idx, 0, p - 1)
            self.y = np.where(inside, resid[rows, ic], 0.0).astype(_DT)
            self.w = np.where(inside, ivar[rows, ic], 0.0).astype(_DT)
            self.inv_dlam = (1.0 / (10.0 ** loglam[ic] * _LN10 * self.step)).astype(_DT)  # 1/Å
        else:
            # a bin: ivar-weighted mean of its pixels, weight the sum of their ivars; the
            # model is the line's integral over the whole bin / the bin's width in Å
            fine = idx[:, :, None] + np.arange(b)[None, None, :]
            inside = (fine >= 0) & (fine < p)
            ic = np.clip(fine, 0, p - 1)
            wf = np.where(inside, ivar[rows[:, :, None], ic], 0.0)
            self.w = wf.sum(2).astype(_DT)
            yw = (wf * resid[rows[:, :, None], ic]).sum(2)
            self.y = np.where(self.w > 0, yw / np.where(self.w > 0, self.w, 1), 0).astype(_DT)
            dlam = (10.0 ** loglam * (_LN10 * self.step))[ic].sum(2)     # per pixel once
            self.inv_dlam = (1.0 / dlam).astype(_DT)
        start = loglam[0]
        self.c0 = np.stack([(np.log10(c.wave) + np.log10(1 + z) - start) / self.step
                            for c in model.components], axis=1).astype(_DT)   # (N, L) pixels
        # instrumental σ (pixels) at each component's centre: scalar, (N,), (P,) or (N, P)
        # (read at the centres first, then scaled: scaling a broadcast (N, P) view first
        # materialised it, a tenth of the problem's set-up)
        si = np.asarray(sigma_inst)
        cpix = np.clip(np.rint(self.c0).astype(np.int64), 0, p - 1)
        if si.ndim == 2:
            si = si[np.arange(n)[:, None], cpix]
        elif si.ndim == 1 and si.size == p and p != n:
            si = si[cpix]
        else:
            si = np.broadcast_to(np.reshape(si, (-1, 1)) if si.ndim else si, self.c0.shape)
        self.s_inst_l = np.asarray(si, float) / self.kms_pix
        g = len(model.groups)
        self.n, self.m = n, idx.shape[1]
        self.ka, self.kb = model.n_amp, model.n_back
        self.ks = self.ka + self.kb
        self.ku = self.ks + g
        self.np = self.ku + g
        self.t = np.concatenate([np.linspace(-1, 1, sl.stop - sl.start)
                                 for sl in self.slices]).astype(_DT)
        self.s_inst_l = np.ascontiguousarray(self.s_inst_l, dtype=_DT)
        n_t = len(model.templates)
        self.extra = (np.zeros((n, self.m, 0), _DT) if not n_t else
                      np.ascontiguousarray(extra, dtype=_DT))
        if self.extra.shape != (n, self.m, n_t):
            raise ValueError(f"extra: {self.extra.shape} for {n} spectra × {self.m} bins × "
                             f"{n_t} templates")
        comps = model.components
        self.scale = np.array([c.scale for c in comps], _DT)
        self.ratio = np.array([c.ratio for c in comps], _DT)
        self.group = np.array([c.group for c in comps], np.int64)
        self.amp = np.array([c.amp for c in comps], np.int64)
        self.blocks = self._blocks()
        self.back_blocks = [None] * len(self.blocks)        # filled on first use
        # group widths are intrinsic σ in pixels; a line's width adds its instrument's σ
        self.s_min = np.full((n, g), 0.02)
        self.s_max = np.broadcast_to(np.array([gr.sigma_max for gr in model.groups])
                                     / self.kms_pix, (n, g))
        self.u_max = np.array([gr.v_max for gr in model.groups]) / self.kms_pix
        self.s_start = np.broadcast_to(np.array([gr.sigma0 for gr in model.groups])
                                       / self.kms_pix, (n, g)).copy()

    def _blocks(self):
        """(slice, parameter columns) of each region: the only parameters whose Jacobian
        is non-zero on its pixels (its lines' amplitudes, widths and velocities, its
        background), so that the Jacobian is stored as one small dense block per window
        and JᵀWJ is a sum of small blocks (a galaxy's 19 × 19 normal matrix is ~7 × 7 per
        window: fourteen times fewer products).  Also, per region, its components and the
        (3L, Q) matrix that sums their profile, width and centre derivatives into the
        block's columns (one matmul instead of a strided write per component)."""
        mdl = self.model
        out, self.comp_of, self.mix, self.sets = [], [], [], []
        n_t = len(mdl.templates)
        for k, sl in enumerate(self.slices):
            col = self.ka + (2 * k if mdl.slope else k)
            cols = {col, col + 1} if mdl.slope else {col}
            cols |= set(range(self.ks - n_t, self.ks))                   # template terms
            comps = [j for j, c in enumerate(mdl.components) if c.region == k]
            for j in comps:
                c = mdl.components[j]
                cols |= {c.amp, self.ks + c.group, self.ku + c.group}
            cols = np.array(sorted(cols))
            pos = {int(q): i for i, q in enumerate(cols)}
            L = len(comps)
            mix = np.zeros((3 * L, cols.size), _DT)
            for i, j in enumerate(comps):
                c = mdl.components[j]
                mix[i, pos[c.amp]] += 1.0
                mix[L + i, pos[self.ks + c.group]] += 1.0
                mix[2 * L + i, pos[self.ku + c.group]] += 1.0
            out.append((sl, cols))
            self.comp_of.append(np.array(comps, np.int64))
            self.mix.append(mix)
            self.sets.append(self._sets(sl, comps, mix))
        return out

    def _sets(self, sl, comps, mix):
        """Window k's components in evaluation sets (components, first bin, bins, mix
        rows): the lines that can be anywhere in the window together over all of it, and
        each narrow line of a wide window (a quasar's [O III] or narrow Hα in its ±15000
        km/s window) alone over the bins within 8 σ of anywhere its centre may go (at
        the largest width allowed): beyond that its profile is 0 in float32, and
        evaluating it over the whole window was a third of a low-z quasar's fit."""
        w = sl.stop - sl.start
        L = len(comps)
        full, out = [], []
        for i, j in enumerate(comps):
            c = self.model.components[j]
            gr = self.model.groups[c.group]
            s_max = np.hypot(c.scale * gr.sigma_max / self.kms_pix, self.s_inst_l[:, j].max())
            reach = (8.0 * s_max + gr.v_max / self.kms_pix) / self.bin + 2.0       # bins
            rel = (self.c0[:, j] - self.x[:, sl.start] + 0.5) / self.bin         # bins
            lo = int(max(np.floor(rel.min() - reach), 0))
            hi = int(min(np.ceil(rel.max() + reach) + 1, w))
            if hi - lo < 0.7 * w:
                out.append((np.array([j]), lo, hi - lo, mix[[i, L + i, 2 * L + i]]))
            else:
                full.append(i)
        if full:
            f = np.array(full)
            out.insert(0, (np.asarray(comps)[f], 0, w, mix[np.concatenate([f, L + f, 2 * L + f])]))
        return out

    def gram(self, J, r=None, limit=None):
        """JᵀWJ (N, P, P) and, if ``r``, JᵀW r (N, P) in float64 from the Jacobian's
        blocks (:meth:`evaluate`); ``limit``: only parameters < limit (the linear start)."""
        n, P = self.n, self.np if limit is None else limit
        H = np.zeros((n, P, P))
        g = np.zeros((n, P)) if r is not None else None
        for (sl, cols), Jr in zip(self.blocks, J):
            if limit is not None:
                keep = cols < limit
                cols, Jr = cols[keep], Jr[:, :, keep]
            Jw = Jr * self.w[:, sl, None]
            Hr = np.matmul(Jw.transpose(0, 2, 1), Jr)
            # batched matmuls, not einsum: numpy's einsum on these shapes was 15× slower
            gr = (np.matmul(r[:, None, sl].astype(_DT), Jw)[:, 0] if r is not None
                  else None)
            if len(self.blocks) == 1 and cols.size == P:                 # one window: dense
                H += Hr
                if r is not None:
                    g += gr
            else:
                H[:, cols[:, None], cols[None, :]] += Hr
                if r is not None:
                    g[:, cols] += gr
        return H, g

    def evaluate(self, theta, jac=True, parts=None, keep=False):
        """Model (N, M) and, if ``jac``, the Jacobian as a list of per-window blocks
        (N, W_k, Q_k) over the columns of :attr:`blocks`.

        Why blocks and one call per window: every component of a window is evaluated in
        one (N, L, W) erf/exp call, and its derivatives are summed into the block's columns
        by one matmul — a component-by-component loop writing strided columns of a dense
        (N, M, P) Jacobian was most of the fit's time.

        ``keep``: also return each window's unit-amplitude profiles and derivatives;
        ``parts``: those of an earlier call at the same widths and velocities, reused (the
        linear start changes amplitudes and backgrounds only, so the evaluation after it
        needs no erf/exp)."""
        mdl = self.model
        n, m = self.n, self.m
        theta = theta.astype(_DT)
        out = np.empty((n, m), _DT)
        blocks = [] if jac else None
        kept = []
        n_t = self.extra.shape[2]
        for k, (sl, cols) in enumerate(self.blocks):
            w = sl.stop - sl.start
            col = self.ka + (2 * k if mdl.slope else k)
            comps = self.comp_of[k]
            back = np.broadcast_to(theta[:, col, None], (n, w))
            if mdl.slope:
                back = back + theta[:, col + 1, None] * self.t[None, sl]
            if n_t:
                back = back + np.matmul(self.extra[:, sl],
                                        theta[:, self.ks - n_t:self.ks, None])[..., 0]
            if comps.size == 0:
                out[:, sl] = back
                if jac:
                    blocks.append(self._back_block(k, sl, cols).copy())
                continue
            o = back.copy()
            blk = self._back_block(k, sl, cols).copy() if jac else None
            for e, (cs, off, ws, mix) in enumerate(self.sets[k]):
                if parts is None:
                    prof, xs, xc = self._profiles(theta, cs, sl.start + off, ws)
                else:
                    prof, xs, xc = parts[k][e]
                if keep:
                    kept.append((k, e, (prof, xs, xc)))
                a = theta[:, self.amp[cs]]                                     # (N, L)
                o[:, off:off + ws] += np.matmul(a[:, None, :], prof)[:, 0]
                if jac:
                    D = np.concatenate([prof, a[..., None] * xs, a[..., None] * xc],
                                       axis=1)                                 # (N, 3L, W)
                    blk[:, off:off + ws] += np.matmul(D.transpose(0, 2, 1), mix)  # (N, W, Q)
            out[:, sl] = o
            if jac:
                blocks.append(blk)
        if keep:
            kept = {k: {e: v for kk, e, v in kept if kk == k} for k in range(len(self.blocks))}
        return (out, blocks, kept) if keep else (out, blocks)

    def _profiles(self, theta, cs, first, ws):
        """Unit-amplitude profiles of components ``cs`` over ``ws`` bins from bin column
        ``first`` and their width and centre derivatives, each (N, L, ws)."""
        sc = self.scale[cs]
        sg = theta[:, self.ks + self.group[cs]] * sc                           # (N, L)
        s = np.sqrt(sg * sg + self.s_inst_l[:, cs] ** 2)
        cen = self.c0[:, cs] + theta[:, self.ku + self.group[cs]]
        integ, d_c, d_s = _gauss_pix(self.x[:, first, None, None], ws, cen[..., None],
                                     s[..., None], self.bin)
        inv = self.ratio[cs][None, :, None] * self.inv_dlam[:, None, first:first + ws]
        prof = integ * inv
        xs = ((sc * sg / s)[..., None] * d_s) * inv              # ∂/∂width at unit amplitude
        xc = d_c * inv                                           # ∂/∂centre
        return prof, xs, xc

    def _back_block(self, k, sl, cols):
        """The background and template columns of window k's Jacobian block (N, W, Q);
        the same at every step, so made once (read-only: callers add it, never write it)."""
        if self.back_blocks[k] is None:
            self.back_blocks[k] = self._make_back_block(k, sl, cols)
        return self.back_blocks[k]

    def _make_back_block(self, k, sl, cols):
        mdl = self.model
        n, w = self.n, sl.stop - sl.start
        blk = np.zeros((n, w, cols.size), _DT)
        col = self.ka + (2 * k if mdl.slope else k)
        pos = {int(q): i for i, q in enumerate(cols)}
        blk[:, :, pos[col]] = 1.0
        if mdl.slope:
            blk[:, :, pos[col + 1]] = self.t[None, sl]
        n_t = self.extra.shape[2]
        for e in range(n_t):
            blk[:, :, pos[self.ks - n_t + e]] = self.extra[:, sl, e]
        return blk

    def prior(self):
        """Weak Gaussian priors on width and velocity (keep them defined for absent lines)."""
        g = len(self.model.groups)
        prec = np.zeros((self.n, self.np))
        mean = np.zeros((self.n, self.np))
        prec[:, self.ks:self.ku] = 1.0 / self.s_start ** 2          # 100 % of the start width
        mean[:, self.ks:self.ku] = self.s_start
        prec[:, self.ku:] = 1.0 / (0.5 * np.maximum(self.u_max, 1.0)[None, :]) ** 2
        return prec, mean, g

    def clamp(self, theta):
        theta[:, self.ks:self.ku] = np.clip(theta[:, self.ks:self.ku], self.s_min, self.s_max)
        theta[:, self.ku:] = np.clip(theta[:, self.ku:], -self.u_max, self.u_max)
        return theta


def _normal(prob, J, r, prec, mean, theta):
    H, g = prob.gram(J, r)
    diag = np.arange(H.shape[1])
    H[:, diag, diag] += prec
    g += prec * (mean - theta)
    # amplitudes without any weighted pixel: pin them at their current value
    empty = H[:, diag, diag] <= 1e-30
    H[:, diag, diag] = np.where(empty, 1.0, H[:, diag, diag])
    return H, g


def _chi2_of(prob, out, theta, prec, mean):
    data = (prob.w * (prob.y - out) ** 2).sum(1, dtype=np.float64)
    return data + (prec * (theta - mean) ** 2).sum(1)


def fit_lines(model: LineModel, loglam, resid, ivar, z, sigma_inst=69.0,
              n_iter: int = 5, noise_corr: float = 0.0, continuum=None,
              extra=None) -> FitResult:
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
    """
    z = np.atleast_1d(np.asarray(z, float))
    prob = _Problem(model, np.asarray(loglam, float), resid, ivar, z, sigma_inst, extra)
    theta = np.zeros((prob.n, prob.np))
    theta[:, prob.ks:prob.ku] = prob.s_start
    prec, mean, _ = prob.prior()
    # linear start: amplitudes and backgrounds at the starting widths
    _, J, parts = prob.evaluate(np.where(np.arange(prob.np) < prob.ka, 1.0, theta), keep=True)
    lin = prob.ks
    H, rhs = prob.gram(J, prob.y, limit=lin)
    d = np.arange(lin)
    H[:, d, d] += np.where(H[:, d, d] <= 1e-30, 1.0, 1e-12 * H[:, d, d].max(1, keepdims=True))
    theta[:, :lin] = np.linalg.solve(H, rhs[..., None])[..., 0]
    lam = np.full(prob.n, 1e-3)
    out, J = prob.evaluate(theta, parts=parts)         # same widths: the profiles reused
    del parts
    chi2 = _chi2_of(prob, out, theta, prec, mean)
    dg = np.arange(prob.np)
    for _ in range(n_iter):
        H, g = _normal(prob, J, prob.y - out, prec, mean, theta)
        H[:, dg, dg] *= 1.0 + lam[:, None]
        step = np.linalg.solve(H, g[..., None])[..., 0]
        trial = prob.clamp(theta + step)
        out_t, J_t = prob.evaluate(trial)
        chi2_t = _chi2_of(prob, out_t, trial, prec, mean)
        better = chi2_t < chi2
        theta = np.where(better[:, None], trial, theta)
        # keep the trial's arrays and copy back the rejected rows (~a quarter of them)
        worse = ~better
        out_t[worse] = out[worse]
        for blk, blk_t in zip(J, J_t):
            blk_t[worse] = blk[worse]
        out, J = out_t, J_t
        chi2 = np.where(better, chi2_t, chi2)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    H, _ = _normal(prob, J, prob.y - out, prec, mean, theta)
    cov = hinv = _inverse(H)
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
        npix=(prob.w > 0).sum(1), idx=prob.idx, centre=centre, back_at=back_at, model=out)


def _at_centres(prob: _Problem, theta):
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


def _correlated_meat(prob: _Problem, J, H, rho1: float, prec=None):
    """Jᵀ W C W J for noise correlated as SDSS's resampling makes it: kernel [c, 1, c], lag-1
    correlation ``rho1``, lag-2 c²/(1 + 2c²); pairs across two windows are not neighbours.
    On bins of b pixels: the variance of a bin's mean is v = 1 + 2((b−1)ρ₁ + (b−2)ρ₂)/b
    times the white one and neighbouring bins correlate by (ρ₁ + 2ρ₂)/(b v)."""
    c = (1 - np.sqrt(max(1 - 2 * rho1 ** 2, 0.0))) / (2 * rho1)
    rho2 = c * c / (1 + 2 * c * c)
    b = prob.bin
    if b == 1:
        v, lags = 1.0, ((1, rho1), (2, rho2))
    else:
        v = 1 + 2 * ((b - 1) * rho1 + max(b - 2, 0) * rho2) / b
        lags = ((1, (rho1 + (2 if b >= 2 else 1) * rho2) / (b * v)),)
    sw = np.sqrt(prob.w)
    meat = H.copy()                              # white part (with the priors) = H
    if v != 1.0:
        d = np.arange(H.shape[1])
        data = H.copy()
        if prec is not None:
            data[:, d, d] -= prec
        meat = meat + (v - 1.0) * data
    for (sl, cols), blk in zip(prob.blocks, J):  # pairs within one window only
        V = blk * sw[:, sl, None]
        for lag, rho in lags:
            L = np.matmul(V[:, :-lag].transpose(0, 2, 1), V[:, lag:]).astype(np.float64)
            meat[:, cols[:, None], cols[None, :]] += v * rho * (L + L.transpose(0, 2, 1))
    return meat


def _continuum_cov(prob: _Problem, J, hinv, design, ccov):
    """Covariance the continuum's coefficient errors give the fit parameters: the line
    fit is linear in the data, δθ = −H⁻¹ Jᵀ W B δc, so Cov = G C Gᵀ with G = H⁻¹ JᵀWB."""
    B = np.asarray(design(prob.idx), np.float32) * prob.w[:, None, :]     # (N, K, M)
    JB = np.zeros((prob.n, prob.np, B.shape[1]))
    for (sl, cols), blk in zip(prob.blocks, J):
        JB[:, cols] += np.matmul(blk.transpose(0, 2, 1),
                                 B[:, :, sl].transpose(0, 2, 1))
    G = hinv @ JB
    return G @ np.asarray(ccov, float) @ G.transpose(0, 2, 1)


def _white(prob: _Problem, H, hinv):
    """The ivar-only covariance of a fit like SDSS's: its line fit has no template
    (Fe II) terms, so its errors are ours with those amplitudes held fixed (the
    conditional covariance); the rules' thresholds were set on such errors.  (With them
    free, four real SDSS BROADLINE quasars of 17 fell below the 10σ test.)"""
    n_t = prob.extra.shape[2]
    if not n_t:
        return hinv
    t = np.arange(prob.ks - n_t, prob.ks)
    Hc = H.copy()
    Hc[:, t, :] = 0.0
    Hc[:, :, t] = 0.0
    Hc[:, t, t] = 1.0
    return _inverse(Hc)


def _inverse(H):
    """Batched inverse; the rare singular matrix (a degenerate fit) gets a pseudo-inverse.
    Through torch where it is installed: 1.6× numpy's batched inverse on these shapes."""
    try:
        import torch
    except ImportError:                                   # pragma: no cover
        torch = None
    if torch is not None:
        inv, info = torch.linalg.inv_ex(torch.from_numpy(np.ascontiguousarray(H, float)))
        out, bad = inv.numpy(), np.nonzero(info.numpy())[0]
    else:
        try:
            return np.linalg.inv(H)
        except np.linalg.LinAlgError:
            out, bad = np.empty_like(H), np.arange(H.shape[0])
    for k in bad:
        out[k] = np.linalg.pinv(H[k])
    return out


#: least share of a line's light on good pixels for it to count as measured
MIN_GOOD_FRACTION = 0.6


def _covered(prob: _Problem, theta, J) -> np.ndarray:
    """An amplitude is measured when one of its lines has ≥ 3 good pixels within ±2σ and
    ≥ :data:`MIN_GOOD_FRACTION` of its light on good pixels.  Why the share: a line whose
    core is masked (a bad-pixel run, a saturated sky line) was "measured" from its wings
    alone (a real SDSS starburst's Hα came out at 0.7 × Hβ and turned it into an AGN)."""
    cov = np.zeros((prob.n, prob.ka), bool)
    th = theta.astype(_DT)
    for (sl, _), comps in zip(prob.blocks, prob.comp_of):     # a window's lines at once
        if comps.size == 0:
            continue
        sg = th[:, prob.ks + prob.group[comps]] * prob.scale[comps]                # (N, L)
        s = np.sqrt(sg * sg + prob.s_inst_l[:, comps] ** 2)[..., None]
        cen = (prob.c0[:, comps] + th[:, prob.ku + prob.group[comps]])[..., None]
        mid = (prob.x[:, sl] + _DT(0.5 * (prob.bin - 1)))[:, None, :]
        good = (prob.w[:, sl] > 0)[:, None, :]
        near = (np.abs(mid - cen) <= np.maximum(2 * s, prob.bin)) & good         # (N, L, W)
        integ = _gauss_pix(prob.x[:, sl.start, None, None], sl.stop - sl.start, cen, s,
                           prob.bin)[0]
        share = (integ * good).sum(2) / np.maximum(integ.sum(2), 1e-12)
        ok = (near.sum(2) >= 3) & (share >= MIN_GOOD_FRACTION)                   # (N, L)
        for i, a in enumerate(prob.amp[comps]):
            cov[:, a] |= ok[:, i]
    return cov
