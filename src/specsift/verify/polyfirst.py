"""χ² scans with many polynomial terms, the polynomial block factored once a spectrum.

Why: the line-driven STAR check (:mod:`.starcheck`) fits T = 4–6 templates with K = 16
Legendre terms at 5 + 3 binned shifts a spectrum.  :func:`.fit.scan` orders the unknowns
templates first and builds and factors the whole (T + K)² normal matrix at every shift and
for every basis, although its K × K polynomial block G = Σ w PₖPₗ is the same at all of
them: 8 copies of that block a spectrum, and a 22-column Cholesky loop over them.  Ordered
polynomial first, the normal matrix [[G, Bᵀ], [B, A]] (B = Σ w Tᵢ Pₖ, A = Σ w TᵢTⱼ) factors
as L (G = L Lᵀ, once a spectrum), Z = L⁻¹ Bᵀ, and the Schur complement A − ZᵀZ (T × T, per
shift); with y = L⁻¹ b_P and r = b_T − Zᵀ y,

    bᵀ M⁻¹ b = |y|² + rᵀ (A − ZᵀZ)⁻¹ r,

the same quadratic form in another order of elimination (the same χ² up to float64
rounding).  Only the T-column Cholesky of the Schur complement is left per shift.

A spectrum whose G is not positive definite enough (a pivot below 1e-9 of its diagonal, as
:func:`.linalg.chol_quad_t` judges: too few good bins for 16 terms) is scanned by
:func:`.fit.scan`, whose masked Cholesky drops the degenerate columns in its own order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fit import Prepared, _template_side, scan
from .frames import common_frames, shift_block
from .linalg import chol_quad_t
from .templates import Basis

__all__ = ["PolyFactor", "poly_factor", "scan_poly_first"]

#: a pivot of G below this fraction of its diagonal is degenerate (as in .linalg)
_PIVOT_TOL = 1e-9


@dataclass
class PolyFactor:
    """The polynomial block of every spectrum of a :class:`.fit.Prepared`, factored."""
    Linv: np.ndarray       # (N, K, K) L⁻¹, G = L Lᵀ (rows not ``ok``: zeros)
    y: np.ndarray          # (N, K) L⁻¹ b_P
    yy: np.ndarray         # (N,) |y|² = b_Pᵀ G⁻¹ b_P: the polynomial's share of bᵀM⁻¹b
    ok: np.ndarray         # (N,) G positive definite enough for this path


def poly_factor(prep: Prepared) -> PolyFactor:
    """:class:`PolyFactor` of ``prep``'s G and b_P (float64)."""
    G = np.asarray(prep.G, np.float64)
    n, K = G.shape[0], G.shape[1]
    ok = np.ones(n, bool)
    try:
        L = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:            # some G not positive definite: one by one
        L = np.zeros_like(G)
        for i in range(n):
            try:
                L[i] = np.linalg.cholesky(G[i])
            except np.linalg.LinAlgError:
                ok[i] = False
    d = np.diagonal(L, axis1=1, axis2=2)
    ok &= (d * d > _PIVOT_TOL * np.maximum(np.diagonal(G, axis1=1, axis2=2), 1e-300)).all(1)
    L[~ok] = np.eye(K)                        # placeholders: those rows take .fit.scan
    Linv = _lower_inverse(L)
    Linv[~ok] = 0.0
    y = np.einsum("nkl,nl->nk", Linv, np.asarray(prep.bp, np.float64))
    return PolyFactor(Linv, y, np.einsum("nk,nk->n", y, y), ok)


def _lower_inverse(L: np.ndarray) -> np.ndarray:
    """(N, K, K) inverses of the lower-triangular ``L`` by forward substitution, row by row
    over the whole stack (np.linalg.inv's LU was ≈ 10× slower on 256 16 × 16 blocks)."""
    K = L.shape[1]
    X = np.zeros_like(L)
    inv_d = 1.0 / np.diagonal(L, axis1=1, axis2=2)
    for i in range(K):
        X[:, i, i] = inv_d[:, i]
        if i:
            X[:, i, :i] = -np.einsum("nm,nmk->nk", L[:, i, :i], X[:, :i, :i]) * inv_d[:, i, None]
    return X


def scan_poly_first(prep: Prepared, pf: PolyFactor, basis: Basis, spec, centres,
                    offsets) -> np.ndarray:
    """χ² (R, S) of spectra ``spec`` at integer shifts ``centres[r] + offsets[j]``, as
    :func:`.fit.scan` gives them (module docstring), ``pf``: :func:`poly_factor` of ``prep``."""
    spec = np.asarray(spec, np.int64)
    centres = np.asarray(centres, np.int64)
    offsets = np.asarray(offsets, np.int64)
    R, S = len(spec), len(offsets)
    chi2 = np.empty((R, S))
    if R == 0:
        return chi2
    good = pf.ok[spec]
    if not good.all():
        bad = np.flatnonzero(~good)
        chi2[bad] = scan(prep, basis, spec[bad], centres[bad], offsets)
        if not good.any():
            return chi2
    # rows in shift order, as the frames take them: each chunk is one slice of M and r
    at = np.flatnonzero(good)
    at = at[np.argsort(centres[at], kind="stable")]
    spec, centres = spec[at], centres[at]
    n_at = len(at)
    T, K = basis.ntemplate, prep.npoly
    ytt, yt, iu = _template_side(basis.vectors)
    ntt = len(iu[0])
    M = np.empty((T, T, n_at, S))            # the Schur complements, lower triangle
    r = np.empty((T, n_at, S))
    for rows, D, s_max, J in _frames(prep, spec, centres):
        n = len(rows)
        sl = slice(int(rows[0]), int(rows[-1]) + 1)
        q0 = basis.offset - s_max
        A = (D[:, 0] @ shift_block(ytt, q0, offsets, J)).reshape(n, S, ntt)
        B = (D.reshape(n * (K + 1), J) @ shift_block(yt, q0, offsets, J)).reshape(n, K + 1, S, T)
        sp = spec[rows]
        Z = np.matmul(pf.Linv[sp], B[:, :K].reshape(n, K, S * T)).reshape(n, K, S, T)
        Zt = Z.transpose(0, 2, 3, 1)                                   # (n, S, T, K)
        ZZ = np.matmul(Zt, Z.transpose(0, 2, 1, 3))                    # (n, S, T, T)
        # Schur complement A − ZᵀZ (lower triangle) and r = b_T − Zᵀy, batch axes last
        M[iu[1], iu[0], sl] = (A - ZZ[:, :, iu[1], iu[0]]).transpose(2, 0, 1)
        r[:, sl] = (B[:, K] - np.einsum("nstk,nk->nst", Zt, pf.y[sp])).transpose(2, 0, 1)
    quad = chol_quad_t(M.reshape(T, T, n_at * S), r.reshape(T, n_at * S)).reshape(n_at, S)
    chi2[at] = (prep.F[spec] - pf.yy[spec])[:, None] - quad
    return chi2


def _frames(prep: Prepared, spec, centres):
    """:func:`.frames.common_frames`, except where every row is at one shift and ``spec`` is
    every spectrum of ``prep`` in order (the STAR check's window around z = 0): then ``prep``'s
    own block is the frame, no copy."""
    if (len(spec) == prep.d.shape[0] and np.ptp(centres) == 0
            and np.array_equal(spec, np.arange(len(spec)))):
        yield np.arange(len(spec)), prep.d, int(centres[0]), prep.npix
        return
    yield from common_frames(prep, spec, centres)
