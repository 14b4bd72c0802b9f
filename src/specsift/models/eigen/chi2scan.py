"""Vectorised χ² scan of spectra against shifted linear bases (the heart of ``eigen``).

Geometry.  Observed and rest-frame grids share one log10-λ step δ, so a redshift is an
integer pixel shift ``j`` with log10(1+z) = j·δ.  A basis (template) of K rest-frame
vectors T (K, R) covers shifts ``jmin … jmax``; its rest grid starts at
``obs_start − jmax·δ`` and has R = P + jmax − jmin pixels, so that at shift j the model
in observed pixel p is ``T[p + u]`` with ``u = jmax − j``.

Linear fit at every shift.  The model is Σ_k a_k T_k(shift) + Σ_m c_m Q_m(p), where Q is
a low-order Legendre polynomial in observed pixel, orthonormalised per spectrum with
the weights w = ivar (so ΣwQ_mQ_n = δ_mn).  A polynomial in log λ keeps the same span
after any shift, so "continuum polynomial in the observed frame" and "in the rest frame"
are the same model.  Eliminating the polynomial gives, for every shift,

    χ²(j) = Σwf² − |b_Q|² − b'ᵀ S⁻¹ b',   b' = b_T − C b_Q,   S = A_TT − C Cᵀ

with b_T,k = Σ_p w f T_k[p+u], A_TT,kl = Σ_p w T_kT_l[p+u], C_km = Σ_p wQ_m T_k[p+u] and
b_Q = Σ w f Q.  Every u-dependent sum is a cross-correlation of a per-spectrum array
(wf, w, wQ_m) with a fixed array (T_k or T_kT_l): one FFT per spectrum array and one
inverse FFT per (array, template product) pair gives it for ALL shifts at once
(``direct`` GEMMs instead when there are only a few shifts, e.g. stars).  The K×K systems
are solved for all spectra and shifts together by an unrolled symmetric elimination
over (N, U) tensors — far faster than a LAPACK call per matrix — with pivots below a
relative tolerance dropped (singular/degenerate directions contribute nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...constants import C_KMS

__all__ = ["ScanBasis", "Chi2Scanner", "legendre", "orthonormal_poly", "C_KMS"]



def legendre(npix: int, npoly: int) -> np.ndarray:
    """(npoly, npix) Legendre polynomials P_0…P_{npoly-1} on x ∈ [-1, 1] over the grid."""
    x = np.linspace(-1.0, 1.0, npix)
    out = np.empty((npoly, npix))
    for m in range(npoly):
        c = np.zeros(m + 1)
        c[m] = 1.0
        out[m] = np.polynomial.legendre.legval(x, c)
    return out


def orthonormal_poly(w: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
    """Per-spectrum w-orthonormal polynomial basis Q (N, M, P): Σ_p w Q_m Q_n = δ_mn.

    Columns with (almost) no weight are zeroed instead of blowing up.
    """
    m = poly.shape[0]
    gram = torch.einsum("np,mp,lp->nml", w, poly, poly)
    scale = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(1e-30)
    d = scale.rsqrt()
    g = gram * d[:, :, None] * d[:, None, :]
    g = g + 1e-9 * torch.eye(m, dtype=w.dtype)
    chol, info = torch.linalg.cholesky_ex(g)
    bad = info != 0
    if bad.any():  # degenerate coverage: fall back to the first polynomial only
        eye = torch.eye(m, dtype=w.dtype).expand(int(bad.sum()), m, m).clone()
        chol[bad] = eye
    # Q = L⁻¹ D P  (rows), so that Q W Qᵀ = L⁻¹ g L⁻ᵀ = I
    dp = d[:, :, None] * poly[None]
    q = torch.linalg.solve_triangular(chol, dp, upper=False)
    empty = (torch.diagonal(gram, dim1=1, dim2=2) <= 1e-20)
    q[empty[:, :, None].expand_as(q)] = 0.0
    return q


@dataclass
class ScanBasis:
    """One class's linear basis on its rest grid and the shifts it is scanned over."""

    label: str
    basis: np.ndarray          # (K, R) rest-frame vectors, R = P + jmax - jmin
    jmin: int                  # smallest shift (log10(1+z_min)/δ)
    jmax: int                  # largest shift
    #: "" = every spectrum; else only spectra of that SURVEY (upper case), for which it
    #: replaces the survey-less basis of the same label (e.g. a STAR basis of LAMOST's own
    #: star library, at LAMOST's resolution and flux calibration)
    survey: str = ""

    @property
    def nshift(self) -> int:
        return self.jmax - self.jmin + 1

    @property
    def nvec(self) -> int:
        return int(self.basis.shape[0])

    def redshifts(self, step: float) -> np.ndarray:
        """z of every shift of the scan."""
        j = np.arange(self.jmin, self.jmax + 1, dtype=np.float64)
        return 10.0 ** (j * step) - 1.0


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a, k)]


class _Prepared:
    """Per-basis precomputation: template (product) spectra or their FFTs."""

    def __init__(self, sb: ScanBasis, npix: int, dtype, method: str):
        t = torch.as_tensor(np.asarray(sb.basis, dtype=np.float64))
        k, r = t.shape
        if r != npix + sb.jmax - sb.jmin:
            raise ValueError(f"basis {sb.label!r}: rest grid has {r} px, expected "
                             f"{npix + sb.jmax - sb.jmin} for {npix} px and shifts "
                             f"{sb.jmin}…{sb.jmax}")
        self.sb, self.k, self.nu = sb, k, sb.nshift
        self.pairs = _pairs(k)
        ia = torch.tensor([a for a, _ in self.pairs])
        ib = torch.tensor([b for _, b in self.pairs])
        self.ia, self.ib = ia, ib
        self.idiag = torch.tensor([self.pairs.index((i, i)) for i in range(k)])
        tt = t[ia] * t[ib]                                          # (KK, R)
        self.method = method if method != "auto" else ("direct" if self.nu <= 96 else "fft")
        if self.method == "fft":
            self.nfft = _fast_len(r)
            self.ft = torch.fft.rfft(t, n=self.nfft).to(_cdtype(dtype))       # (K, F)
            self.ftt = torch.fft.rfft(tt, n=self.nfft).to(_cdtype(dtype))     # (KK, F)
        elif self.method == "direct":
            # windows[u, k, p] = T_k[p + u]  →  (P, U*K) matrices for GEMMs
            win = t.unfold(1, npix, 1)                          # (K, U, P)
            wtt = tt.unfold(1, npix, 1)                         # (KK, U, P)
            self.wt = win.permute(2, 1, 0).reshape(npix, -1).to(dtype).contiguous()
            self.wtt = wtt.permute(2, 1, 0).reshape(npix, -1).to(dtype).contiguous()
        else:
            raise ValueError(f"unknown scan method {method!r} (use 'fft', 'direct' or 'auto')")

    def correlate(self, wr, w, wq, fft_chunk: int = 2):
        """b' (N,K,U), A (N,KK,U), C (N,M,K,U) for all shifts u = jmax - j.

        ``wr`` is w·(f − polynomial fit): correlating it with T gives b' = b_T − C b_Q
        directly (linearity), so the polynomial needs no separate correction of b.
        FFT path: spectra are multiplied and inverse-transformed ``fft_chunk`` at a time,
        which keeps the (spectra, terms, frequencies) product in cache — at 16 spectra
        per block it is ~30 MB and the complex multiply and irFFT ran 2–5× slower
        (2 per block measured fastest on a 1-thread scan of the shipped model).
        """
        n, m = wq.shape[0], wq.shape[1]
        k, kk, nu = self.k, len(self.pairs), self.nu
        if self.method == "direct":
            b = (wr @ self.wt).reshape(n, nu, k).permute(0, 2, 1)
            a = (w @ self.wtt).reshape(n, nu, kk).permute(0, 2, 1)
            c = (wq.reshape(n * m, -1) @ self.wt).reshape(n, m, nu, k).permute(0, 1, 3, 2)
            return b, a, c
        L = self.nfft
        stack = torch.cat([wr[:, None], w[:, None], wq], dim=1)   # (N, 2+M, P)
        fs = torch.fft.rfft(stack, n=L).conj_physical()
        nf = fs.shape[-1]
        nterm = k + kk + m * k
        out = torch.empty((n, nterm, nu), dtype=wr.dtype)
        h = max(1, min(int(fft_chunk), n))
        prod = torch.empty((h, nterm, nf), dtype=fs.dtype)
        for lo in range(0, n, h):
            hi = min(lo + h, n)
            pr, f = prod[: hi - lo], fs[lo:hi]
            # products written in place into one tensor → a single irfft call per block
            torch.mul(f[:, 0:1], self.ft[None], out=pr[:, :k])
            torch.mul(f[:, 1:2], self.ftt[None], out=pr[:, k:k + kk])
            torch.mul(f[:, 2:, None], self.ft[None, None],
                      out=pr[:, k + kk:].view(hi - lo, m, k, nf))
            out[lo:hi] = torch.fft.irfft(pr, n=L)[..., :nu]
        b = out[:, :k]
        a = out[:, k:k + kk]
        c = out[:, k + kk:].reshape(n, m, k, nu)
        return b, a, c


def _cdtype(dtype):
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c ≥ n (fast FFT sizes; scipy's ``next_fast_len``)."""
    from scipy.fft import next_fast_len
    return int(next_fast_len(int(n), real=True))


def quadform_sym(s: torch.Tensor, b: torch.Tensor, pairs, k: int, rtol: float = 1e-7,
                 scale: torch.Tensor | None = None, inplace: bool = False):
    """bᵀ S⁻¹ b for symmetric S given as packed upper pairs (N, KK, U) and b (N, K, U).

    Unrolled Gaussian elimination (LDLᵀ) on whole (N, U) slabs: ~K³/6 fused multiply-adds
    over all spectra and shifts at once, far cheaper than one LAPACK call per K×K system.
    A pivot ≤ rtol·scale_i (scale: (N, K), by default each diagonal's largest value over
    the shifts — the size that FFT round-off is relative to) means that direction is
    (nearly) absent at that shift or a combination of the others or of the polynomial:
    it is dropped, i.e. contributes nothing — the guard against singular systems (a basis
    vector shifted off the data, no good pixels under it, a vector ≈ polynomial).
    ``inplace``: overwrite ``s`` and ``b`` (saves copies in the scan).
    """
    if not inplace:
        s, b = s.clone(), b.clone()
    idx = {p: i for i, p in enumerate(pairs)}
    S = {p: s[:, i] for p, i in idx.items()}
    bb = [b[:, i] for i in range(k)]
    if scale is None:
        scale = torch.stack([S[(i, i)].abs().amax(-1) for i in range(k)], dim=1)
    thresh = rtol * scale + 1e-30                     # (N, K)
    q = torch.zeros_like(bb[0])
    f = torch.empty_like(q)
    for i in range(k):
        piv = S[(i, i)]
        ok = piv > thresh[:, i:i + 1]
        inv = torch.where(ok, piv, torch.ones_like(piv)).reciprocal_().mul_(ok)
        q.addcmul_(bb[i] * inv, bb[i])
        for j in range(i + 1, k):
            torch.mul(S[(i, j)], inv, out=f)
            bb[j].addcmul_(f, bb[i], value=-1.0)
            for l in range(j, k):
                S[(j, l)].addcmul_(f, S[(i, l)], value=-1.0)
    return q


class Chi2Scanner:
    """χ²(shift) of N spectra against several bases, plus a polynomial continuum.

    ``scan(flux, ivar)`` returns one (N, nshift) χ² array per basis (index 0 = jmin).
    """

    def __init__(self, bases: list[ScanBasis], npix: int, npoly: int = 3,
                 dtype=torch.float64, method: str = "auto", chunk: int = 16):
        if not bases:
            raise ValueError("Chi2Scanner needs at least one basis")
        self.bases, self.npix, self.npoly = list(bases), int(npix), int(npoly)
        self.dtype, self.chunk = dtype, int(chunk)
        self.poly = torch.as_tensor(legendre(npix, npoly), dtype=torch.float64)
        self._prep = [_Prepared(sb, npix, dtype, method) for sb in self.bases]
        self._padded: dict = {}

    def scan(self, flux, ivar, active: np.ndarray | None = None) -> list[np.ndarray]:
        """χ² curves; ``active`` (C, N) bool: basis c is fitted to row n only where
        active[c, n] (the others get +inf: that basis does not apply to that spectrum, e.g.
        a survey's own STAR basis on another survey's spectra).  Bases with the same rows
        share one pass (one polynomial orthonormalisation per chunk)."""
        flux = torch.as_tensor(np.asarray(flux, dtype=np.float64))
        ivar = torch.as_tensor(np.asarray(ivar, dtype=np.float64))
        if flux.shape != ivar.shape or flux.ndim != 2 or flux.shape[1] != self.npix:
            raise ValueError(f"flux/ivar must both be (N, {self.npix}); got "
                             f"{tuple(flux.shape)} and {tuple(ivar.shape)}")
        n = flux.shape[0]
        if active is None:
            active = np.ones((len(self._prep), n), bool)
        outs = [np.full((n, p.nu), np.inf, dtype=np.float64) for p in self._prep]
        groups: dict = {}
        for c, act in enumerate(np.asarray(active, bool)):
            groups.setdefault(act.tobytes(), (np.flatnonzero(act), []))[1].append(c)
        for rows, which in groups.values():
            # direct-GEMM bases only (stars): bigger blocks, so that the (P, shifts·K²/2)
            # window matrix (80 MB for K = 16) is streamed once per 64 spectra, not per 16
            direct = all(self._prep[c].method == "direct" for c in which)
            step = self.chunk * (4 if direct else 1)
            for lo in range(0, len(rows), step):
                r = rows[lo:lo + step]
                sl = slice(r[0], r[-1] + 1) if r[-1] - r[0] + 1 == len(r) else r
                for c, cur in zip(which, self._scan_chunk(flux[sl], ivar[sl], which)):
                    outs[c][r] = cur
        return outs

    def _scan_chunk(self, f, w, which=None):
        w = torch.where(torch.isfinite(w) & (w > 0), w, torch.zeros_like(w))
        f = torch.where(w > 0, f, torch.zeros_like(f))
        # Unit-free: divide by the rms flux (χ² is unchanged: f/s, w·s²).
        ngood = (w > 0).sum(1).clamp_min(1)
        s = torch.sqrt((f * f).sum(1) / ngood).clamp_min(1e-30)[:, None]
        f, w = f / s, w * s * s
        q = orthonormal_poly(w, self.poly)                          # (N, M, P)
        wf = w * f
        bq = torch.einsum("np,nmp->nm", wf, q)
        chi0 = (wf * f).sum(1) - (bq * bq).sum(1)                    # after the polynomial
        wq = w[:, None] * q
        wr = wf - torch.einsum("nmp,nm->np", wq, bq)                 # w·(f − poly fit)
        dt = self.dtype
        wr_, w_, wq_ = wr.to(dt), w.to(dt), wq.to(dt)
        res = []
        for p in (self._prep if which is None else [self._prep[i] for i in which]):
            bprime, a, c = p.correlate(wr_, w_, wq_)
            dscale = a[:, p.idiag].abs().amax(-1)
            # S = A_TT − C Cᵀ, in place over A's (N, U) slabs (cache-sized pieces)
            s_pack = a
            for i, (ka, kb) in enumerate(p.pairs):
                for mm in range(c.shape[1]):
                    s_pack[:, i].addcmul_(c[:, mm, ka], c[:, mm, kb], value=-1.0)
            quad = quadform_sym(s_pack, bprime, p.pairs, p.k, scale=dscale, inplace=True,
                                rtol=1e-5 if dt == torch.float32 else 1e-11)
            # correlation index u = jmax - j  →  flip so that column 0 is jmin
            res.append((chi0[:, None] - quad.to(torch.float64)).flip(-1).numpy())
        return res

    # ------------------------------------------------------------------ exact fits
    def fit_at(self, flux, ivar, index: int, shift, return_model: bool = True):
        """Exact (float64) best fit of basis ``index`` at given, possibly fractional, shifts.

        The scan itself may run in float32; the values that decide z, ZERR and DELTACHI2
        are recomputed here.  For a fractional shift the rest vectors are linearly
        interpolated, so the model is that of the refined redshift (reconstructions,
        residuals, anomaly score).  Returns (model (N,P) or None, coeff (N,K+M), chi2 (N,)).
        """
        flux, ivar = np.asarray(flux), np.asarray(ivar)
        n = flux.shape[0]
        shift = np.broadcast_to(np.asarray(shift, np.float64), (n,))
        if n > self.chunk:       # blocks: the (N, K+M, P) float64 design stays in cache
            parts = [self.fit_at(flux[lo:lo + self.chunk], ivar[lo:lo + self.chunk], index,
                                 shift[lo:lo + self.chunk], return_model)
                     for lo in range(0, n, self.chunk)]
            return ((np.concatenate([p[0] for p in parts]) if return_model else None),
                    np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
        f = torch.as_tensor(np.asarray(flux, np.float64))
        w = torch.as_tensor(np.asarray(ivar, np.float64))
        w = torch.where(torch.isfinite(w) & (w > 0), w, torch.zeros_like(w))
        f = torch.where(w > 0, f, torch.zeros_like(f))
        x = self.design(index, shift)                               # (N, K+M, P)
        xw = x * w[:, None, :]
        ata = xw @ x.transpose(1, 2)
        atb = (xw @ f[:, :, None])[..., 0]
        nk = ata.shape[1]
        diag = torch.diagonal(ata, dim1=1, dim2=2)
        ridge = 1e-10 * diag.amax(dim=1, keepdim=True) + 1e-30
        a_reg = ata + torch.diag_embed(ridge.expand(n, nk))
        coeff = torch.linalg.solve(a_reg, atb[..., None])[..., 0]
        model = (coeff[:, None, :] @ x)[:, 0]
        chi2 = (w * (f - model) ** 2).sum(1)
        return (model.numpy() if return_model else None), coeff.numpy(), chi2.numpy()

    def design(self, index: int, shift) -> torch.Tensor:
        """(N, K+M, P) float64 shifted basis vectors then the polynomials.

        Fractional shifts interpolate the rest vectors linearly; integer ones are exact
        windows of the basis (no interpolation cost).
        """
        sb = self.bases[index]
        if index not in self._padded:
            t = torch.as_tensor(np.asarray(sb.basis, np.float64))
            self._padded[index] = torch.cat([t, t[:, -1:]], dim=1)
        t_pad = self._padded[index]
        shift = np.atleast_1d(np.asarray(shift, np.float64))
        u = sb.jmax - shift                                         # fractional offsets
        u0 = np.clip(np.floor(u + 1e-9).astype(np.int64), 0, sb.nshift - 1)
        frac = torch.as_tensor(np.clip(u - u0, 0.0, 1.0))
        # windows[u] = T[:, u:u+P]: whole rows copied per spectrum, no per-pixel gather
        k, n = t_pad.shape[0], shift.size
        x = torch.empty((n, k + self.npoly, self.npix), dtype=torch.float64)
        fr = frac.numpy()
        for i, ui in enumerate(u0.tolist()):
            x[i, :k] = t_pad[:, ui:ui + self.npix]
            if fr[i] > 1e-9:
                x[i, :k] += (t_pad[:, ui + 1:ui + 1 + self.npix] - x[i, :k]) * fr[i]
        x[:, k:] = self.poly[None]
        return x


def shift_to_z(shift, step: float):
    """z for a (fractional) pixel shift: 1+z = 10^(shift·δ)."""
    return 10.0 ** (np.asarray(shift, np.float64) * step) - 1.0


def z_to_shift(z, step: float):
    """The (fractional) pixel shift of redshift ``z``: log10(1+z)/δ (float64)."""
    return np.log10(1.0 + np.asarray(z, np.float64)) / step


def velocity_pixels(dv_kms: float, step: float) -> float:
    """Pixel shift equivalent to a velocity difference (same at every z on a log grid)."""
    return math.log10(1.0 + dv_kms / C_KMS) / step
