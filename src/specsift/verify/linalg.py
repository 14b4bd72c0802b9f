"""Batched Cholesky for thousands of tiny normal-equation systems at once.

Why by hand: the verification solves ~50 systems of size 7–9 per spectrum; LAPACK through
``np.linalg.solve`` costs ~1.5 µs per system in call overhead, while the column loop below
runs each of its ~k²/2 steps over the whole stack, batch axis last and contiguous.  A pivot
that is not positive (a template that is zero on every good pixel, or a degenerate column)
drops that column from the fit instead of failing.

Two paths, the same numbers: nearly every batch has only positive pivots, so
:func:`chol_quad_t` first runs the column loop without the per-column masking (about half
of its numpy calls, and its cost is mostly per call: a verification batch makes ~180 of
them, most on a few thousand systems) and checks every pivot once at the end; a batch
with a pivot that is not positive enough is solved again by the masked loop
(:func:`_chol_quad_masked`), whose values for positive pivots are the same bits.
"""

from __future__ import annotations

import numpy as np

try:        # numpy's C einsum without np.einsum's Python dispatch (same bits); numpy >= 2
    from numpy._core._multiarray_umath import c_einsum as _einsum
except ImportError:         # numpy 1.26 (allowed by pyproject), or a future move of the name
    _einsum = np.einsum

__all__ = ["chol_quad", "chol_quad_t"]


def chol_quad(M: np.ndarray, b: np.ndarray, coef: bool = False):
    """For SPD ``M`` (n, k, k) and ``b`` (n, k): ``bᵀ M⁻¹ b`` (n,) and, with ``coef``,
    the solutions ``x = M⁻¹ b`` (n, k)."""
    out = chol_quad_t(np.moveaxis(M, 0, -1), np.asarray(b).T, coef)
    return (out[0], out[1].T) if coef else out


def chol_quad_t(A: np.ndarray, bb: np.ndarray, coef: bool = False):
    """:func:`chol_quad` with the batch axis last: ``A`` (k, k, n), ``bb`` (k, n); with
    ``coef`` the solutions come back as (k, n).  Only the lower triangle of ``A`` is read."""
    k, n = bb.shape
    A = np.asarray(A, np.float64)
    L = np.empty((k, k, n))          # strict lower triangle only: the diagonal is never read
    inv = np.empty((k, n))
    s = np.empty((k, n))             # the pivots, checked once at the end
    y = np.empty((k, n))
    with np.errstate(invalid="ignore", divide="ignore"):   # a bad pivot: redone below
        for j in range(k):
            if j:
                np.subtract(A[j, j], _einsum("mn,mn->n", L[j, :j], L[j, :j]), out=s[j])
            else:
                s[0] = A[0, 0]
            np.sqrt(s[j], out=inv[j])
            np.divide(1.0, inv[j], out=inv[j])
            if j + 1 < k:
                if j:
                    np.multiply(A[j + 1:, j] - _einsum("imn,mn->in", L[j + 1:, :j], L[j, :j]),
                                inv[j], out=L[j + 1:, j])
                else:
                    np.multiply(A[1:, 0], inv[0], out=L[1:, 0])
            if j:
                np.multiply(bb[j] - _einsum("mn,mn->n", L[j, :j], y[:j]), inv[j], out=y[j])
            else:
                np.multiply(bb[0], inv[0], out=y[0])
    diag = np.diagonal(A).T                                  # (k, n) view
    if not (s > 1e-9 * np.maximum(diag, 1e-300)).all():
        return _chol_quad_masked(A, bb, coef)
    quad = _einsum("mn,mn->n", y, y)
    if not coef:
        return quad
    x = np.zeros((k, n))
    for j in range(k - 1, -1, -1):
        x[j] = (y[j] - _einsum("mn,mn->n", L[j + 1:, j], x[j + 1:])) * inv[j]
    return quad, x


def _chol_quad_masked(A: np.ndarray, bb: np.ndarray, coef: bool = False):
    """:func:`chol_quad_t` where a pivot may not be positive: that column is dropped
    (its inverse pivot 0), pivot by pivot."""
    k, n = bb.shape
    L = np.empty((k, k, n))          # lower triangle only: each entry written before it is read
    inv = np.zeros((k, n))
    for j in range(k):
        s = A[j, j] - np.einsum("mn,mn->n", L[j, :j], L[j, :j]) if j else A[j, j].copy()
        ok = s > 1e-9 * np.maximum(A[j, j], 1e-300)
        inv[j] = np.where(ok, 1.0 / np.sqrt(np.where(ok, s, 1.0)), 0.0)
        L[j, j] = np.where(ok, s * inv[j], 0.0)              # = √s
        if j + 1 < k:
            r = A[j + 1:, j] - (np.einsum("imn,mn->in", L[j + 1:, :j], L[j, :j]) if j else 0.0)
            L[j + 1:, j] = r * inv[j]
    y = np.zeros((k, n))
    for j in range(k):
        y[j] = (bb[j] - (np.einsum("mn,mn->n", L[j, :j], y[:j]) if j else 0.0)) * inv[j]
    quad = np.einsum("mn,mn->n", y, y)
    if not coef:
        return quad
    x = np.zeros((k, n))
    for j in range(k - 1, -1, -1):
        x[j] = (y[j] - np.einsum("mn,mn->n", L[j + 1:, j], x[j + 1:])) * inv[j]
    return quad, x
