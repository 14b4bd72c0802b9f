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
from functools import lru_cache

import numpy as np

from .cache import IdentityCache
from .frames import Scratch, common_frames, shift_block
from .linalg import chol_quad_t
from .templates import Basis

__all__ = ["Prepared", "prepare", "polynomial_products", "take_rows", "bin_prepared", "bin_sums",
           "bin_basis", "scan", "scan_all", "single_template_chi2", "NPOLY"]

#: polynomial terms (1, x, P₂(x)) in observed λ — Redrock's archetypes and idlspec2d use 3
NPOLY = 3


@dataclass
class Prepared:
    """Per-spectrum data products every fit needs (flux scaled to O(1); χ² is invariant).

    ``d`` holds, per spectrum, the K+1 rows every shift multiplies by the templates:
    w, w·P₁ … w·P_{K−1}, w·f — one block, so that placing a spectrum in a common frame is one
    copy and one GEMM gives all of Σ w Pₖ Tᵢ and Σ w f Tᵢ."""

    d: np.ndarray          # (N, K+1, P) float32: w, w·P₁ … w·P_{K−1}, w·f (w = 0 when masked)
    G: np.ndarray          # (N, K, K) Σ w PₖPₗ
    bp: np.ndarray         # (N, K) Σ w f Pₖ
    F: np.ndarray          # (N,) Σ w f²
    ngood: np.ndarray      # (N,) good pixels
    scale: np.ndarray      # (N,) flux scale divided out
    legendre: np.ndarray   # (K, P)
    binned: dict = field(default_factory=dict, repr=False)   # factor → binned copy

    @property
    def w(self) -> np.ndarray:
        return self.d[:, 0]

    @property
    def x3(self) -> np.ndarray:
        """(N, K, P) view: w·P₁ … w·P_{K−1}, w·f."""
        return self.d[:, 1:]

    @property
    def npix(self) -> int:
        return self.d.shape[2]

    @property
    def npoly(self) -> int:
        return self.d.shape[1] - 1


def legendre(npix: int, npoly: int = NPOLY) -> np.ndarray:
    """(npoly, npix) Legendre polynomials over the grid, x from −1 to 1."""
    return np.polynomial.legendre.legvander(np.linspace(-1.0, 1.0, npix), npoly - 1).T


def prepare(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray | None,
            npoly: int = NPOLY, scratch: "Scratch | None" = None) -> Prepared:
    """Per-spectrum products; w = 0 on masked pixels, where ivar is not positive, and where
    flux or ivar is not finite.

    Written as few full passes over the (N, P) arrays as it can be (it runs on every batch,
    ~65 MB of float32 for 1024 spectra): the bad-pixel repair is only done when the product
    w·f shows a non-finite value.  ``scratch``: memory to hold the products in (its previous
    contents are overwritten, every element), so that a stage preparing batch after batch
    does not map and zero 65 MB of fresh pages each time (≈ 15–20 µs a spectrum of system
    time)."""
    n, npix = flux.shape
    shape = (n, npoly + 1, npix)
    d = np.empty(shape, np.float32) if scratch is None else scratch.take(shape)
    w, wf = d[:, 0], d[:, npoly]
    np.fmax(ivar, np.float32(0), out=w, casting="unsafe")     # NaN or negative ivar → 0
    if mask is not None:
        np.copyto(w, 0.0, where=mask)
    f = np.asarray(flux, np.float32)
    np.multiply(w, f, out=wf)
    # Σ w f² is finite exactly when every w·f is (a non-finite w·f makes its term NaN or
    # ±inf; finite float32 terms cannot overflow float64), so F doubles as the check for
    # non-finite flux or infinite ivar without a pass over an (N, P) isfinite array
    F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    if not np.isfinite(F).all():
        bad = ~np.isfinite(wf)
        w[bad] = 0.0
        wf[bad] = 0.0
        f = np.where(np.isfinite(f), f, np.float32(0))
        F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    ngood = np.count_nonzero(w, axis=1)
    wsum = w.sum(1, dtype=np.float64)
    rms = np.sqrt(F / np.maximum(wsum, 1e-30))
    scale = np.where(rms > 0, rms, 1.0)
    w *= (scale ** 2)[:, None].astype(np.float32)      # χ² (and F) invariant: f→f/a, w→a²w
    wf *= scale[:, None].astype(np.float32)
    return polynomial_products(d, F, ngood, scale)


def polynomial_products(d: np.ndarray, F, ngood, scale, P: np.ndarray | None = None) -> Prepared:
    """The :class:`Prepared` of a block ``d`` (N, K+1, P) whose first row holds the cleaned,
    scaled weights w and whose last holds w·f: fills w·P₁ … w·P_{K−1} in place and adds
    Σ w PₖPₗ and Σ w f Pₖ (K from the shape of ``d``; ``P`` (K, P): the polynomials, default
    :func:`legendre` over the whole grid, P₀ = 1).  Split from :func:`prepare` so that a fit on
    fewer pixels or with more terms (the star SUBTYPE) starts from the batch's cleaned
    weights instead of cleaning the spectra again."""
    n, npoly, npix = d.shape[0], d.shape[1] - 1, d.shape[2]
    w, wf = d[:, 0], d[:, npoly]
    P, PP, iu = _poly_tables(npix, npoly) if P is None else _given_tables(P)
    g = (w @ PP).astype(np.float64)
    G = np.zeros((n, npoly, npoly))
    G[:, iu[0], iu[1]] = g
    G[:, iu[1], iu[0]] = g
    bp = (wf @ P.T).astype(np.float64)
    for k in range(1, npoly):
        np.multiply(w, P[k], out=d[:, k])
    return Prepared(d, G, bp, F, ngood, scale, P)


@lru_cache(maxsize=32)
def _poly_tables(npix: int, npoly: int):
    """:func:`_tables` of :func:`legendre` (``npix``, ``npoly``), cached: ``legvander`` and
    the products were ≈ 0.05–0.15 ms of every :func:`prepare` (a fixed cost of each batch,
    and of each of the STAR check's and the template-error refit's own products)."""
    return _tables(legendre(npix, npoly))


_GIVEN = IdentityCache()


def _given_tables(P: np.ndarray):
    """:func:`_tables` of a caller's polynomials ``P``: cached by identity where ``P`` is
    read-only (:func:`.subtype._fit_legendre`'s are), built each call where not."""
    if P.flags.writeable:
        return _tables(P)
    return _GIVEN.get(P, None, lambda _: _tables(P))


def _tables(P: np.ndarray):
    """(P as float32 (K, P), products PₖPₗ (k ≤ l) as float32 (P, K(K+1)/2), their indices),
    read-only: the tables :func:`polynomial_products` multiplies the weights by."""
    P = P.astype(np.float32)
    iu = np.triu_indices(P.shape[0])
    PP = (P[iu[0]] * P[iu[1]]).T
    for a in (P, PP, *iu):
        a.flags.writeable = False
    return P, PP, iu


def take_rows(prep: Prepared, rows) -> Prepared:
    """``prep`` of the spectra ``rows`` only (e.g. to bin just the few a pass needs)."""
    rows = np.asarray(rows, np.int64)
    return Prepared(prep.d[rows], prep.G[rows], prep.bp[rows], prep.F[rows],
                    prep.ngood[rows], prep.scale[rows], prep.legendre)


def bin_prepared(prep: Prepared, factor: int) -> Prepared:
    """``prep`` on pixels ``factor`` times wider (sums of w, w·Pₖ, w·f), for the coarse scan.

    Why: the coarse χ² of binned data and binned templates is the fine one with both sides
    smoothed — close enough to find the minimum within a few pixels, at 1/factor² of the cost
    (factor fewer pixels and factor fewer shifts)."""
    if factor in prep.binned:           # the rescue pass bins the same batch again
        return prep.binned[factor]
    pb = prep.npix // factor
    out = Prepared(bin_sums(prep.d, pb, factor), prep.G, prep.bp, prep.F, prep.ngood, prep.scale,
                   prep.legendre)
    prep.binned[factor] = out
    return out


def bin_sums(a: np.ndarray, nb: int, factor: int) -> np.ndarray:
    """Sums of ``factor`` neighbouring pixels over the last axis (``nb`` bins), as a product
    with a vector of ones.

    Why not ``reshape(..., nb, factor).sum(-1)``: numpy reduces a short last axis one row at
    a time, ~10× slower; the product runs through BLAS-like inner loops (3× faster than
    adding ``factor`` strided slices) and differs from the plain sum by float32 rounding."""
    cut = nb * factor
    ones = np.ones(factor, a.dtype)
    return np.ascontiguousarray(a[..., :cut].reshape(*a.shape[:-1], nb, factor) @ ones)


_BINNED = IdentityCache()


def bin_basis(basis: Basis, factor: int) -> Basis:
    """``basis`` binned by ``factor`` with the phase that lines its bins up with the data's
    (offset mod factor): binned shift k is a shift of k·factor original pixels."""
    def build(_):
        phase, off = basis.offset % factor, basis.offset // factor
        v = basis.vectors[:, phase:]
        lb = v.shape[1] // factor
        vb = v[:, :lb * factor].reshape(v.shape[0], lb, factor).mean(-1)
        return Basis(basis.spectype, np.ascontiguousarray(vb, np.float32), off,
                     basis.step * factor)
    return _BINNED.get(basis.vectors, factor, build)


_SIDE = IdentityCache()


def _template_side(vectors: np.ndarray):
    """(L, T(T+1)/2) products TᵢTⱼ (i ≤ j) and (L, T) Tᵢ of templates ``vectors`` (T, L),
    float32, cached per template array."""
    def build(_):
        V = vectors.astype(np.float64)
        iu = np.triu_indices(V.shape[0])
        return (np.ascontiguousarray((V[iu[0]] * V[iu[1]]).T.astype(np.float32)),
                np.ascontiguousarray(V.T.astype(np.float32)), iu)
    return _SIDE.get(vectors, None, build)


def _normal_t(prep: Prepared, basis: Basis, spec, centres, offsets, M, b) -> None:
    """Fill ``M`` (k, k, R, S) and ``b`` (k, R, S), k = T + K, float64, with the normal
    equations of rows ``spec`` (sorted by ``centres``) in the layout
    :func:`.linalg.chol_quad_t` reads (batch axes last).  Only the lower triangle of ``M``
    is written: the Cholesky reads nothing else (the upper one was a third of this
    function's copies).

    The two GEMMs of each chunk (each chunk's rows are one contiguous run) write into one
    float32 table of all rows, and ``M`` and ``b`` are filled from it once: the same
    products in the same places as a fill per chunk, without its half-dozen numpy calls a
    chunk (a scan of rows at scattered shifts — the walk's steps, a small batch's windows —
    is mostly chunks of a few rows)."""
    S = len(offsets)
    T, K = basis.ntemplate, prep.npoly
    ytt, yt, iu = _template_side(basis.vectors)
    ntt = len(iu[0])
    R = len(spec)
    A = np.empty((R, S * ntt), np.float32)
    B = np.empty((R, K + 1, S * T), np.float32)
    for rows, D, s_max, J in common_frames(prep, spec, centres):
        n, r0 = len(rows), int(rows[0])
        q0 = basis.offset - s_max
        # Σ w TᵢTⱼ, and Σ (w, w·Pₖ, w·f) Tᵢ: two GEMMs per chunk, every shift at once
        np.matmul(D[:, 0], shift_block(ytt, q0, offsets, J), out=A[r0:r0 + n])
        np.matmul(D.reshape(n * (K + 1), J), shift_block(yt, q0, offsets, J),
                  out=B[r0:r0 + n].reshape(n * (K + 1), S * T))
    A = A.reshape(R, S, ntt).transpose(2, 0, 1)                      # (ntt, R, S)
    B = B.reshape(R, K + 1, S, T).transpose(1, 3, 0, 2)              # (K+1, T, R, S)
    M[iu[1], iu[0]] = A
    M[T:, :T] = B[:K]
    M[T:, T:] = prep.G[spec].transpose(1, 2, 0)[..., None]
    b[:T] = B[K]
    b[T:] = prep.bp[spec].T[..., None]


def single_template_chi2(prep: Prepared, basis: Basis, templates: np.ndarray, spec, shifts):
    """χ² (R, J) of each of ``templates`` (J, L) alone, with the polynomial, for spectrum
    ``spec[r]`` at integer shift ``shifts[r]`` (templates on ``basis``'s rest grid) — the
    SDSS pipeline's way of naming a star's type."""
    spec = np.asarray(spec, np.int64)
    shifts = np.asarray(shifts, np.int64)
    Jt, K = len(templates), prep.npoly
    tsq, t = _single_side(templates)
    zero = np.zeros(1, np.int64)
    out = np.zeros((len(spec), Jt))
    for rows, D, s_max, J in common_frames(prep, spec, shifts):
        n = len(rows)
        q0 = basis.offset - s_max
        A = (D[:, 0] @ shift_block(tsq, q0, zero, J)).T                 # (Jt, n) Σ w t²
        B = (D.reshape(n * (K + 1), J) @ shift_block(t, q0, zero, J))
        B = B.reshape(n, K + 1, Jt).transpose(1, 2, 0)                   # (K+1, Jt, n)
        M = np.empty((1 + K, 1 + K, Jt, n))
        b = np.empty((1 + K, Jt, n))
        M[0, 0] = A
        M[0, 1:] = B[:K]
        M[1:, 0] = B[:K]
        M[1:, 1:] = prep.G[spec[rows]].transpose(1, 2, 0)[:, :, None]
        b[0] = B[K]
        b[1:] = prep.bp[spec[rows]].T[:, None]
        quad = chol_quad_t(M.reshape(1 + K, 1 + K, Jt * n), b.reshape(1 + K, Jt * n))
        out[rows] = prep.F[spec[rows]][:, None] - quad.reshape(Jt, n).T
    return out


_SINGLE = IdentityCache()


def _single_side(templates: np.ndarray):
    """(L, J) squares and values of single templates ``templates`` (J, L), float32, cached."""
    def build(_):
        t = np.ascontiguousarray(templates.T.astype(np.float32))        # (L, J)
        return np.ascontiguousarray(t * t), t
    return _SINGLE.get(templates, None, build)


def scan(prep: Prepared, basis: Basis, spec: np.ndarray, centres: np.ndarray,
         offsets: np.ndarray, coef: bool = False):
    """χ² (R, S) of spectra ``spec`` (R,) at integer shifts ``centres[r] + offsets[j]``;
    with ``coef`` also the coefficients (R, S, T+K): templates first, then the polynomial.

    The normal equations of every chunk are gathered and solved in one batched Cholesky:
    its cost is mostly per numpy call, so one call over all rows beats one per chunk."""
    spec = np.asarray(spec, np.int64)
    centres = np.asarray(centres, np.int64)
    offsets = np.asarray(offsets, np.int64)
    R, S = len(spec), len(offsets)
    k = basis.ntemplate + prep.npoly
    if R == 0:
        return (np.zeros((0, S)), np.zeros((0, S, k))) if coef else np.zeros((0, S))
    # rows in shift order, as the frames take them: each chunk's equations are then one
    # contiguous slice of M (a fancy-indexed copy of every chunk cost more than its GEMMs)
    order = np.argsort(centres, kind="stable")
    spec, centres = spec[order], centres[order]
    M = np.empty((k, k, R, S))           # lower triangle filled (all the Cholesky reads)
    b = np.empty((k, R, S))
    _normal_t(prep, basis, spec, centres, offsets, M, b)
    out = chol_quad_t(M.reshape(k, k, R * S), b.reshape(k, R * S), coef)
    quad = out[0] if coef else out
    chi2 = np.empty((R, S))
    chi2[order] = prep.F[spec][:, None] - quad.reshape(R, S)
    if coef:
        cf = np.empty((R, S, k))
        cf[order] = out[1].reshape(k, R, S).transpose(1, 2, 0)
        return chi2, cf
    return chi2


def scan_all(prep: Prepared, jobs, max_systems: int = 8192) -> list:
    """χ² (R, S) of each of ``jobs`` — (basis, spec, centres, offsets) tuples, each as
    :func:`scan` gives it (the same frames and GEMMs, so the same bits) — with one batched
    Cholesky for the jobs of one size T + K, up to ``max_systems`` systems a call (their
    normal equations: 3 MB at T + K = 7; a stack of 60 000, every coarse group of a batch of
    1024, fell out of cache and cost more than it saved), instead of one per job.

    Why: a Cholesky's cost is mostly per numpy call (:mod:`.linalg`), and a batch makes many
    small scans that do not depend on each other — the coarse scan of every window group
    (type, LSF, half-width), the 64-shift slices of the whole-z rescue scan of a few rows;
    each system is solved on its own along the batch axis, so stacking them changes no
    value."""
    out = [None] * len(jobs)
    groups: dict = {}                        # k → list of job groups, each ≤ max_systems
    for i, (basis, spec, _, offsets) in enumerate(jobs):
        size = len(spec) * len(offsets)
        g = groups.setdefault(basis.ntemplate + prep.npoly, [[0, []]])
        if g[-1][1] and g[-1][0] + size > max_systems:
            g.append([0, []])
        g[-1][0] += size
        g[-1][1].append(i)
    for k, gs in groups.items():
        for tot, idx in gs:
            _solve_jobs(prep, [jobs[i] for i in idx], k, tot, idx, out)
    return out


def _solve_jobs(prep: Prepared, jobs, k: int, tot: int, idx, out: list) -> None:
    """:func:`scan_all` of ``jobs`` (all of size ``k``, ``tot`` systems) into ``out[idx]``."""
    parts, o = [], 0
    for basis, spec, centres, offsets in jobs:
        spec, centres, offsets = (np.asarray(a, np.int64) for a in (spec, centres, offsets))
        order = np.argsort(centres, kind="stable")          # as :func:`scan` orders its rows
        parts.append((basis, spec[order], centres[order], offsets, order, o))
        o += len(spec) * len(offsets)
    M = np.empty((k, k, tot))                # lower triangles (all the Cholesky reads)
    b = np.empty((k, tot))
    for basis, spec, centres, offsets, order, o in parts:
        R, S = len(spec), len(offsets)
        if R and S:
            _normal_t(prep, basis, spec, centres, offsets,
                      _view(M[:, :, o:o + R * S], (k, k, R, S)),
                      _view(b[:, o:o + R * S], (k, R, S)))
    quad = chol_quad_t(M, b) if tot else np.zeros(0)
    for i, (basis, spec, centres, offsets, order, o) in zip(idx, parts):
        R, S = len(spec), len(offsets)
        chi2 = np.empty((R, S))
        chi2[order] = prep.F[spec][:, None] - quad[o:o + R * S].reshape(R, S)
        out[i] = chi2


def _view(a: np.ndarray, shape) -> np.ndarray:
    """``a`` reshaped to ``shape`` as a view (its last axis split): writes must reach ``a``."""
    v = a.reshape(shape)
    if v.size and not np.may_share_memory(v, a):       # cannot happen: a split last axis
        raise AssertionError("scan_all: a reshape copied")
    return v
