"""The batched Cholesky's fast path (no per-column masking) against its masked loop."""

import numpy as np

from specsift.verify.linalg import _chol_quad_masked, chol_quad, chol_quad_t


def _systems(k, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((k, 3 * k, n))
    return np.einsum("ain,bin->abn", X, X), rng.standard_normal((k, n))


def test_fast_path_same_bits_as_masked_loop():
    for k, n in ((7, 500), (9, 37), (20, 11)):
        A, b = _systems(k, n)
        q, x = chol_quad_t(A, b, coef=True)
        qm, xm = _chol_quad_masked(A, b, coef=True)
        assert np.array_equal(q, qm) and np.array_equal(x, xm)
        assert np.array_equal(chol_quad_t(A, b), qm)


def test_solution_solves_the_systems():
    A, b = _systems(7, 50, seed=1)
    q, x = chol_quad(np.moveaxis(A, -1, 0), b.T, coef=True)
    ref = np.linalg.solve(np.moveaxis(A, -1, 0), b.T[..., None])[..., 0]
    assert np.allclose(x, ref, rtol=1e-8, atol=1e-10)
    assert np.allclose(q, np.einsum("nk,nk->n", b.T, ref), rtol=1e-10)


def test_degenerate_column_dropped_not_failed():
    """A template zero on every pixel (its row and column of M zero) in some systems: the
    fallback drops that column there; the other systems keep the fast path's values."""
    A, b = _systems(7, 40, seed=2)
    A[3, :, :5] = 0.0
    A[:, 3, :5] = 0.0
    q, x = chol_quad_t(A, b, coef=True)
    assert np.all(np.isfinite(q)) and np.all(x[3, :5] == 0.0)
    keep = [0, 1, 2, 4, 5, 6]
    for i in range(5):                       # = the fit without the dead column
        Ai = A[np.ix_(keep, keep, [i])][..., 0]
        ref = b[keep, i] @ np.linalg.solve(Ai, b[keep, i])
        assert np.isclose(q[i], ref, rtol=1e-10)
    q5, _ = chol_quad_t(A[..., 5:], b[:, 5:], coef=True)
    assert np.allclose(q[5:], q5, rtol=1e-12)


def test_the_einsum_fallback_gives_the_same_bits(monkeypatch):
    """numpy < 2 has no numpy._core.c_einsum: linalg then uses np.einsum, same results."""
    import specsift.verify.linalg as la
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 6, 9)).astype(np.float32)
    M = np.einsum("nij,nkj->nik", a, a) + 6 * np.eye(6, dtype=np.float32)
    b = rng.normal(size=(40, 6)).astype(np.float32)
    want = la.chol_quad(M, b, coef=True)
    monkeypatch.setattr(la, "_einsum", np.einsum)
    got = la.chol_quad(M, b, coef=True)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
