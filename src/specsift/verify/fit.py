"""Narrow-window χ² fits: template basis + a low-order polynomial, at integer pixel shifts.

On a log-λ grid a redshift is a shift of the rest-frame templates by s pixels
(log10(1+z) = s·step).  For one spectrum and one shift the best linear combination of T
templates and K polynomial terms (Legendre in observed λ, absorbing flux-calibration errors as
the SDSS pipeline does) solves the (T+K)² normal equations; χ² = Σwf² − bᵀM⁻¹b.

Why this layout: the template-side products (TᵢTⱼ and Tᵢ) are the same for every spectrum, so
the spectra of a chunk are placed in a common rest frame (rows sorted by shift, so the frame is
barely wider than a spectrum) and every shift of the window is two float32 GEMMs over the whole
chunk — BLAS at tens of GFLOP/s instead of a per-spectrum loop.  The polynomial-only block does
not depend on the shift and is computed once per spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linalg import chol_quad
from .templates import Basis

__all__ = ["Prepared", "prepare", "take_rows", "bin_prepared", "bin_basis", "scan", "refine",
           "normal_equations", "single_template_chi2", "NPOLY"]

#: polynomial terms (1, x, P₂(x)) in observed λ — Redrock's archetypes and idlspec2d use 3
NPOLY = 3
_CHUNK_ROWS = 128
_CHUNK_SPREAD = 512


@dataclass
class Prepared:
    """Per-spectrum data products every fit needs (flux scaled to O(1); χ² is invariant)."""

    w: np.ndarray          # (N, P) float32 ivar, 0 on masked pixels
    x3: np.ndarray         # (N, K, P) float32: w·P₁ … w·P_{K−1}, w·f
    G: np.ndarray          # (N, K, K) Σ w PₖPₗ
    bp: np.ndarray         # (N, K) Σ w f Pₖ
    F: np.ndarray          # (N,) Σ w f²
    ngood: np.ndarray      # (N,) good pixels
    scale: np.ndarray      # (N,) flux scale divided out
    legendre: np.ndarray   # (K, P)
    binned: dict = field(default_factory=dict, repr=False)   # factor → binned copy

    @property
    def npix(self) -> int:
        return self.w.shape[1]

    @property
    def npoly(self) -> int:
        return self.x3.shape[1]


def legendre(npix: int, npoly: int = NPOLY) -> np.ndarray:
    """(npoly, npix) Legendre polynomials over the grid, x from −1 to 1."""
    return np.polynomial.legendre.legvander(np.linspace(-1.0, 1.0, npix), npoly - 1).T


def prepare(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray, npoly: int = NPOLY) -> Prepared:
    """Per-spectrum products (a SpectraBatch already has ivar = 0 on masked pixels)."""
    w = np.array(ivar, np.float32)               # a SpectraBatch has ivar = 0 where masked
    bad = mask | ~(w > 0)
    f = np.array(flux, np.float32)
    if bad.any() or not np.isfinite(f).all():    # arrays from elsewhere: be safe
        bad |= ~np.isfinite(f)
        w[bad], f[bad] = 0.0, 0.0
    ngood = np.count_nonzero(w, axis=1)
    wf = w * f
    wsum = w.sum(1, dtype=np.float64)
    F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    rms = np.sqrt(F / np.maximum(wsum, 1e-30))
    scale = np.where(rms > 0, rms, 1.0)
    w *= (scale ** 2)[:, None].astype(np.float32)      # χ² (and F) invariant: f→f/a, w→a²w
    wf *= scale[:, None].astype(np.float32)
    P = legendre(flux.shape[1], npoly).astype(np.float32)
    iu = np.triu_indices(npoly)
    g = (w @ (P[iu[0]] * P[iu[1]]).T).astype(np.float64)
    G = np.zeros((len(w), npoly, npoly))
    G[:, iu[0], iu[1]] = g
    G[:, iu[1], iu[0]] = g
    bp = (wf @ P.T).astype(np.float64)
    x3 = np.empty((len(w), npoly, w.shape[1]), np.float32)
    for k in range(1, npoly):
        np.multiply(w, P[k], out=x3[:, k - 1])
    x3[:, npoly - 1] = wf
    return Prepared(w, x3, G, bp, F, ngood, scale, P)


def take_rows(prep: Prepared, rows) -> Prepared:
    """``prep`` of the spectra ``rows`` only (e.g. to bin just the few a pass needs)."""
    rows = np.asarray(rows, np.int64)
    return Prepared(prep.w[rows], prep.x3[rows], prep.G[rows], prep.bp[rows], prep.F[rows],
                    prep.ngood[rows], prep.scale[rows], prep.legendre)


def bin_prepared(prep: Prepared, factor: int) -> Prepared:
    """``prep`` on pixels ``factor`` times wider (sums of w, w·Pₖ, w·f), for the coarse scan.

    Why: the coarse χ² of binned data and binned templates is the fine one with both sides
    smoothed — close enough to find the minimum within a few pixels, at 1/factor² of the cost
    (factor fewer pixels and factor fewer shifts)."""
    if factor in prep.binned:           # the rescue pass bins the same batch again
        return prep.binned[factor]
    pb = prep.npix // factor
    out = Prepared(_bsum(prep.w, pb, factor), _bsum(prep.x3, pb, factor), prep.G, prep.bp,
                   prep.F, prep.ngood, prep.scale, prep.legendre)
    prep.binned[factor] = out
    return out


def _bsum(a: np.ndarray, nb: int, factor: int) -> np.ndarray:
    """Sums of ``factor`` neighbouring pixels over the last axis (``nb`` bins).

    Why not ``reshape(..., nb, factor).sum(-1)``: numpy reduces a length-4 axis one short
    row at a time, 10× slower than adding ``factor`` strided slices; the slices are added in
    the order numpy's own sum uses (sequential below 8 terms, pairwise at 8), so the result
    is bit for bit the same."""
    cut = nb * factor
    parts = [a[..., j:cut:factor] for j in range(factor)]
    if factor == 8:
        return ((parts[0] + parts[1]) + (parts[2] + parts[3])) + \
               ((parts[4] + parts[5]) + (parts[6] + parts[7]))
    out = parts[0].copy()
    for q in parts[1:]:
        out += q
    return out


_BINNED: dict = {}


def bin_basis(basis: Basis, factor: int) -> Basis:
    """``basis`` binned by ``factor`` with the phase that lines its bins up with the data's
    (offset mod factor): binned shift k is a shift of k·factor original pixels."""
    key = (id(basis.vectors), factor)
    if key not in _BINNED:
        phase, off = basis.offset % factor, basis.offset // factor
        v = basis.vectors[:, phase:]
        lb = v.shape[1] // factor
        vb = v[:, :lb * factor].reshape(v.shape[0], lb, factor).mean(-1)
        _BINNED[key] = (Basis(basis.spectype, np.ascontiguousarray(vb, np.float32), off,
                              basis.step * factor), basis.vectors)
    return _BINNED[key][0]


def _template_side(basis: Basis):
    """(L, T(T+1)/2 + T) products TᵢTⱼ (i ≤ j) and Tᵢ, and (L, T) Tᵢ — cached on the basis."""
    cached = getattr(_template_side, "_cache", {})
    key = id(basis.vectors)
    if key not in cached:
        V = basis.vectors.astype(np.float64)
        iu = np.triu_indices(V.shape[0])
        y1 = np.concatenate([(V[iu[0]] * V[iu[1]]).T, V.T], axis=1).astype(np.float32)
        cached[key] = (np.ascontiguousarray(y1), np.ascontiguousarray(V.T.astype(np.float32)), iu,
                       basis.vectors)
        _template_side._cache = cached
    return cached[key][:3]


def _rows_slice(Y: np.ndarray, start: int, length: int) -> np.ndarray:
    """Y[start:start+length] with zero rows outside Y."""
    if start >= 0 and start + length <= len(Y):
        return Y[start:start + length]
    out = np.zeros((length, Y.shape[1]), Y.dtype)
    lo, hi = max(start, 0), min(start + length, len(Y))
    if hi > lo:
        out[lo - start:hi - start] = Y[lo:hi]
    return out


def _chunks(centres_sorted: np.ndarray):
    lo = 0
    n = len(centres_sorted)
    while lo < n:
        hi = lo + 1
        while (hi < n and hi - lo < _CHUNK_ROWS
               and centres_sorted[hi] - centres_sorted[lo] <= _CHUNK_SPREAD):
            hi += 1
        yield lo, hi
        lo = hi


def _frames(prep: Prepared, spec, centres):
    """Chunks of rows in a common rest frame: (rows, Rw (n, J), R3 (K·n, J), s_max, J).

    Rows sorted by shift share one frame barely wider than a spectrum; row r's data sit at
    frame columns s_max − centre[r] … + P, so template index (offset − s_max + j − d) meets
    frame column j at shift centre + d for every row at once."""
    P, K = prep.npix, prep.npoly
    order = np.argsort(centres, kind="stable")
    # one buffer per call, reused by every chunk: fresh large arrays cost a page fault per
    # 4 kB page, which on a busy machine was most of this function's time
    rows_max = min(_CHUNK_ROWS, len(spec))
    spread = int(np.ptp(centres)) if len(centres) else 0
    width = P + min(spread, _CHUNK_SPREAD)
    buf_w = np.empty(rows_max * width, np.float32)
    buf_3 = np.empty(rows_max * K * width, np.float32)
    for lo, hi in _chunks(centres[order]):
        rows = order[lo:hi]
        n = len(rows)
        c = centres[rows]
        s_max = int(c.max())
        J = P + s_max - int(c.min())
        sp = spec[rows]
        Rw = buf_w[:n * J].reshape(n, J)
        R3 = buf_3[:n * K * J].reshape(n, K, J)
        for i, (r, o) in enumerate(zip(sp, s_max - c)):   # a row copy beats np.take here
            Rw[i, o:o + P] = prep.w[r]
            R3[i, :, o:o + P] = prep.x3[r]
            # zero only the margins: filling the whole buffer first wrote every byte twice
            if o:
                Rw[i, :o] = 0.0
                R3[i, :, :o] = 0.0
            if o + P < J:
                Rw[i, o + P:] = 0.0
                R3[i, :, o + P:] = 0.0
        yield rows, Rw, R3.reshape(n * K, J), s_max, J


def _normal(prep: Prepared, basis: Basis, spec, centres, offsets):
    """Yield (rows, M (n, S, T+K, T+K), b (n, S, T+K)) chunk by chunk."""
    S = len(offsets)
    T, K = basis.ntemplate, prep.npoly
    y1, y2, iu = _template_side(basis)
    ntt = len(iu[0])
    n1 = y1.shape[1]
    for rows, Rw, R3, s_max, J in _frames(prep, spec, centres):
        n = len(rows)
        q0 = basis.offset - s_max
        if S <= 16:
            # all shifts of a window in one GEMM each: the data side is read once
            Y1 = np.concatenate([_rows_slice(y1, q0 - int(d), J) for d in offsets], axis=1)
            Y2 = np.concatenate([_rows_slice(y2, q0 - int(d), J) for d in offsets], axis=1)
            A = (Rw @ Y1).reshape(n, S, n1).astype(np.float64)
            B = (R3 @ Y2).reshape(n, K, S, T).transpose(0, 2, 1, 3).astype(np.float64)
        else:
            # long scans (the whole-z rescue): copying every template slice would cost more
            # than the products, so one shift at a time
            A = np.stack([Rw @ _rows_slice(y1, q0 - int(d), J) for d in offsets], axis=1)
            B = np.stack([(R3 @ _rows_slice(y2, q0 - int(d), J)).reshape(n, K, T)
                          for d in offsets], axis=1)
            A, B = A.astype(np.float64), B.astype(np.float64)
        M = np.empty((n, S, T + K, T + K))
        b = np.empty((n, S, T + K))
        M[:, :, iu[0], iu[1]] = A[..., :ntt]
        M[:, :, iu[1], iu[0]] = A[..., :ntt]
        M[:, :, :T, T] = A[..., ntt:]
        M[:, :, :T, T + 1:] = B[:, :, :K - 1].transpose(0, 1, 3, 2)
        b[:, :, :T] = B[:, :, K - 1]
        M[:, :, T:, :T] = M[:, :, :T, T:].transpose(0, 1, 3, 2)
        M[:, :, T:, T:] = prep.G[spec[rows]][:, None]
        b[:, :, T:] = prep.bp[spec[rows]][:, None]
        yield rows, M, b


def single_template_chi2(prep: Prepared, basis: Basis, templates: np.ndarray, spec, shifts):
    """χ² (R, J) of each of ``templates`` (J, L) alone, with the polynomial, for spectrum
    ``spec[r]`` at integer shift ``shifts[r]`` (templates on ``basis``'s rest grid) — the
    SDSS pipeline's way of naming a star's type."""
    spec = np.asarray(spec, np.int64)
    shifts = np.asarray(shifts, np.int64)
    Jt, K = len(templates), prep.npoly
    t = templates.T.astype(np.float32)                      # (L, J)
    ysq = np.ascontiguousarray(np.concatenate([t * t, t], axis=1))
    out = np.zeros((len(spec), Jt))
    for rows, Rw, R3, s_max, J in _frames(prep, spec, shifts):
        n = len(rows)
        q0 = basis.offset - s_max
        A = (Rw @ _rows_slice(ysq, q0, J)).astype(np.float64)                 # (n, 2J)
        B = (R3 @ _rows_slice(t, q0, J)).astype(np.float64).reshape(n, K, Jt)
        M = np.zeros((n, Jt, 1 + K, 1 + K))
        b = np.zeros((n, Jt, 1 + K))
        M[:, :, 0, 0] = A[:, :Jt]
        M[:, :, 0, 1] = M[:, :, 1, 0] = A[:, Jt:]
        for k in range(1, K):
            M[:, :, 0, 1 + k] = M[:, :, 1 + k, 0] = B[:, k - 1]
        M[:, :, 1:, 1:] = prep.G[spec[rows]][:, None]
        b[:, :, 0] = B[:, K - 1]
        b[:, :, 1:] = prep.bp[spec[rows]][:, None]
        quad = chol_quad(M.reshape(n * Jt, 1 + K, 1 + K), b.reshape(n * Jt, 1 + K))
        out[rows] = prep.F[spec[rows]][:, None] - quad.reshape(n, Jt)
    return out


def normal_equations(prep: Prepared, basis: Basis, spec, shifts):
    """M (R, T+K, T+K) and b (R, T+K) of each spectrum ``spec[r]`` at integer ``shifts[r]``."""
    spec = np.asarray(spec, np.int64)
    shifts = np.asarray(shifts, np.int64)
    k = basis.ntemplate + prep.npoly
    M, b = np.zeros((len(spec), k, k)), np.zeros((len(spec), k))
    for rows, m, bb in _normal(prep, basis, spec, shifts, np.zeros(1, np.int64)):
        M[rows], b[rows] = m[:, 0], bb[:, 0]
    return M, b


def scan(prep: Prepared, basis: Basis, spec: np.ndarray, centres: np.ndarray,
         offsets: np.ndarray, coef: bool = False):
    """χ² (R, S) of spectra ``spec`` (R,) at integer shifts ``centres[r] + offsets[j]``;
    with ``coef`` also the coefficients (R, S, T+K): templates first, then the polynomial."""
    spec = np.asarray(spec, np.int64)
    centres = np.asarray(centres, np.int64)
    offsets = np.asarray(offsets, np.int64)
    R, S = len(spec), len(offsets)
    k = basis.ntemplate + prep.npoly
    chi2 = np.full((R, S), np.inf)
    coefs = np.zeros((R, S, k)) if coef else None
    for rows, M, b in _normal(prep, basis, spec, centres, offsets):
        n = len(rows)
        out = chol_quad(M.reshape(n * S, k, k), b.reshape(n * S, k), coef)
        quad = out[0] if coef else out
        chi2[rows] = prep.F[spec[rows]][:, None] - quad.reshape(n, S)
        if coef:
            coefs[rows] = out[1].reshape(n, S, k)
    return (chi2, coefs) if coef else chi2


def _walk(prep: Prepared, basis: Basis, spec, best, lim_lo, lim_hi, steps: int = 5,
          reach: int = 2):
    """Walk downhill one pixel at a time (at most ``steps`` decisions) from ``best`` while the
    χ² minimum of (best − 1, best, best + 1) is at an end: the integer minimum, χ² at it and
    its neighbours (R, 3), and the coefficients at it.

    Why this way: shifts ``best ± reach`` are scanned at once (one common frame, one GEMM per
    chunk: a coarse minimum on 4-pixel bins lies within ±2 pixels of the fine one nearly
    always), and the walk reads them from that table; only a row that walks past them gets
    its one missing shift scanned.  The decisions are those of a walk that scans
    (best − 1, best, best + 1) at every step."""
    R, k = len(spec), basis.ntemplate + prep.npoly
    mid = reach + steps                       # table column of the starting shift
    tab = np.zeros((R, 2 * mid + 1))
    tcf = np.zeros((R, 2 * mid + 1, k))
    known = np.zeros((R, 2 * mid + 1), bool)
    offs = np.arange(-reach, reach + 1)
    tab[:, mid + offs], tcf[:, mid + offs] = scan(prep, basis, spec, best, offs, coef=True)
    known[:, mid + offs] = True
    best, pos = best.copy(), np.full(R, mid)
    c3, coef = np.zeros((R, 3)), np.zeros((R, k))
    todo = np.arange(R)
    for _ in range(steps):
        if not len(todo):
            break
        for side in (-1, 1):
            need = todo[~known[todo, pos[todo] + side]]
            if len(need):
                cn, cfn = scan(prep, basis, spec[need], best[need] + side,
                               np.zeros(1, np.int64), coef=True)
                tab[need, pos[need] + side], tcf[need, pos[need] + side] = cn[:, 0], cfn[:, 0]
                known[need, pos[need] + side] = True
        c = np.take_along_axis(tab[todo], pos[todo][:, None] + np.array([-1, 0, 1]), 1)
        c3[todo], coef[todo] = c, tcf[todo, pos[todo]]
        kk = np.argmin(c, axis=1)
        move = (kk != 1) & (best[todo] > lim_lo[todo]) & (best[todo] < lim_hi[todo])
        todo, d = todo[move], kk[move] - 1
        best[todo] += d
        pos[todo] += d
    return best, c3, coef


@dataclass
class Refined:
    shift: np.ndarray      # (R,) fractional pixel shift of the χ² minimum
    shift_err: np.ndarray  # (R,) 1σ in pixels from the curvature (Δχ² = 1)
    chi2: np.ndarray       # (R,) χ² at the integer minimum
    coef: np.ndarray       # (R, T+K) at the integer minimum (flux scale restored)
    at_edge: np.ndarray    # (R,) the minimum stayed at the edge of the allowed range


def refine(prep: Prepared, basis: Basis, spec, centres, halfwidth: int,
           coarse: tuple[Prepared, Basis, int] | None = None,
           lo_limit: int | None = None) -> Refined:
    """Coarse scan of ``centres ± halfwidth`` on the binned data of ``coarse`` (prep, basis,
    factor) — or every other pixel without it —, then (−1, 0, +1) scans at full resolution
    around its minimum, walking on while the minimum is at an end, and a parabola through
    the integer minimum and its neighbours.

    ``lo_limit``: smallest shift allowed (e.g. z ≥ −0.005); centres are moved above it."""
    spec = np.asarray(spec, np.int64)
    centres = np.asarray(np.rint(centres), np.int64)
    if lo_limit is not None:
        centres = np.maximum(centres, lo_limit + halfwidth)
    if coarse is not None:
        pb, bb, fac = coarse
        kc = np.rint(centres / fac).astype(np.int64)
        hb = -(-halfwidth // fac)
        offs = np.arange(-hb, hb + 1)
        chi2 = scan(pb, bb, spec, kc, offs)
        best = fac * (kc + offs[np.argmin(chi2, axis=1)])
    else:
        offs = np.arange(-halfwidth, halfwidth + 1, 2)
        chi2 = scan(prep, basis, spec, centres, offs)
        best = centres + offs[np.argmin(chi2, axis=1)]
    lim_lo = centres - halfwidth - 3
    lim_hi = centres + halfwidth + 3
    best, c3, coef = _walk(prep, basis, spec, best, lim_lo, lim_hi)
    cm, c0, cp = c3[:, 0], c3[:, 1], c3[:, 2]
    curv = cm - 2 * c0 + cp
    ok = curv > 0
    delta = np.where(ok, (cm - cp) / (2 * np.where(ok, curv, 1.0)), 0.0).clip(-0.5, 0.5)
    err = np.where(ok, np.sqrt(2.0 / np.where(ok, curv, 1.0)), float(halfwidth))
    chi_min = np.where(ok, c0 - 0.5 * curv * delta ** 2, c0)
    edge = (best <= lim_lo + 1) | (best >= lim_hi - 1)
    coef = coef * prep.scale[spec][:, None]
    return Refined(best + delta, err, chi_min, coef, edge)
