"""The linear algebra of the line fit (split from :mod:`.solver`): the normal equations,
χ², the exact solve of the linear parameters, the Schur complement of the widths and
velocities, and batched inverses.

Why a module of its own: these are the fit's linear-algebra pieces, the same whatever
the iteration around them does; :mod:`.solver` is the Levenberg–Marquardt loop (its
steps, damping, stopping tests and active set), which calls them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["normal_equations", "linear_solve", "inverse", "diagonal"]


def diagonal(H: np.ndarray) -> np.ndarray:
    """Writable view (N, P) of the diagonals of a C-contiguous stack ``H`` (N, P, P).

    Why: the fit updates the diagonals of its normal matrices several times an iteration
    (priors, pinned amplitudes, ridge, damping); through ``H[:, d, d]`` each update was a
    fancy-indexed gather and scatter, small numpy calls a fit's tail and a small window
    pay for few rows (``benchmarks/lines_profile.py``).  The arithmetic is the same, so
    are the numbers."""
    n, p, _ = H.shape
    if not H.flags.c_contiguous:
        raise ValueError(f"diagonal: a C-contiguous (N, P, P) stack needed, got strides "
                         f"{H.strides}")
    return H.reshape(n, p * p)[:, ::p + 1]


def normal_equations(prob, J, r, prec, mean, theta):
    """Gauss–Newton normal matrix H = JᵀWJ + P (N, P, P) and gradient g = JᵀW r + P (μ − θ)
    (N, P) of χ² with the priors (precision ``prec``, mean ``mean``: :meth:`Problem.prior`)
    at ``theta``, from the Jacobian blocks ``J`` and the residual ``r``.  An amplitude
    without any weighted pixel (its line off the spectrum or masked) has a zero row and
    column: its diagonal is set to 1, so the solve leaves it where it is instead of
    failing on a singular matrix."""
    H, g = prob.gram(J, r)
    dv = diagonal(H)
    dv += prec
    g += prec * (mean - theta)
    # amplitudes without any weighted pixel: pin them at their current value
    dv[...] = np.where(dv <= 1e-30, 1.0, dv)
    return H, g


def _chi2_of(prob, out, theta, prec, mean):
    """(N,) χ² of the model ``out`` at ``theta``: the weighted data term (summed in float64:
    the float32 model's M-bin sum would lose the small decreases the stopping tests
    compare) plus the priors' (:func:`normal_equations`'s ``prec``, ``mean``)."""
    data = (prob.w * (prob.y - out) ** 2).sum(1, dtype=np.float64)
    return data + (prec * (theta - mean) ** 2).sum(1)


def linear_solve(prob, theta):
    """θ with its linear parameters (amplitudes, backgrounds, templates) solved exactly at
    its widths and velocities, the model, the Jacobian blocks and the inverse of the linear
    parameters' normal matrix: one profile evaluation (erf/exp), the design's gram, a
    batched inverse and the model assembled from the same profiles.  No prior acts on the
    linear parameters (:meth:`Problem.prior`) and :meth:`Problem.clamp` bounds only the
    widths and velocities, so the exact solve is the constrained optimum; an amplitude
    without any weighted pixel gets 0 (its normal row is the identity), and a 1e-12 relative
    ridge keeps a degenerate pair (a broad line's core and wings) solvable."""
    lin = prob.ks
    profs = prob.profiles(theta)
    A = prob.linear_design(profs)
    H, rhs = prob.gram(A, prob.y, limit=lin)
    dv = diagonal(H)
    dv += np.where(dv <= 1e-30, 1.0, 1e-12 * dv.max(1, keepdims=True))
    hinv = _block_inverse(H, prob.lin_groups)
    theta = theta.copy()
    theta[:, :lin] = np.matmul(hinv, rhs[..., None])[..., 0]
    out, J = prob.complete(theta, profs, A)
    return theta, out, J, hinv


def _block_inverse(H, groups):
    """Inverse of a block-diagonal ``H`` whose blocks are the index sets ``groups`` (one
    set: the plain batched inverse).  The blocks are padded with the identity to the
    largest and inverted in one batched call (one call per block, six for a galaxy, cost
    more than the one 15 × 15 inverse they replace); their gather and scatter places are
    made once per set of blocks (:func:`_block_places`: they were a third of the call on
    a fit's few last rows)."""
    n, P = H.shape[0], H.shape[1]
    if len(groups) == 1 and groups[0].size == P:
        return inverse(H)
    gather, keep, fill, put_to, put_from = _block_places(
        tuple(tuple(int(i) for i in idx) for idx in groups), P)
    q = gather.shape[-1]
    blk = np.where(keep, H.reshape(n, P * P)[:, gather], fill)            # (N, B, q, q)
    inv = inverse(blk.reshape(-1, q, q)).reshape(n, -1)
    out = np.zeros((n, P * P))
    out[:, put_to] = inv[:, put_from]
    return out.reshape(n, P, P)


@lru_cache(maxsize=64)
def _block_places(groups: tuple, P: int):
    """(flat places in H (B, q, q) of each block padded to q, which are real, the padding's
    values (1 on its diagonal, 0 elsewhere), the flat places in H of the real entries and
    where they sit in the blocks) of :func:`_block_inverse`'s blocks ``groups``."""
    q = max(len(idx) for idx in groups)
    pad = np.zeros((len(groups), q), np.int64)
    valid = np.zeros((len(groups), q), bool)
    for b, idx in enumerate(groups):
        pad[b, :len(idx)], valid[b, :len(idx)] = idx, True
    keep = valid[:, :, None] & valid[:, None, :]                          # (B, q, q)
    fill = np.zeros(keep.shape)
    d = np.arange(q)
    fill[:, d, d] = np.where(valid, 0.0, 1.0)
    b, i, j = np.nonzero(keep)
    return (pad[:, :, None] * P + pad[:, None, :], keep, fill, pad[b, i] * P + pad[b, j],
            (b * q + i) * q + j)


def _reduced(H, g, hinv, lin):
    """The normal equations of the widths and velocities with the linear parameters
    eliminated (the Schur complement S = H_nn − H_nc H_cc⁻¹ H_cn and its gradient):
    solved with its own damping, their step is Kaufman's variable-projection step."""
    Hcn = H[:, :lin, lin:]
    X = np.matmul(hinv, np.concatenate([Hcn, g[:, :lin, None]], axis=2))
    HnX = np.matmul(Hcn.transpose(0, 2, 1), X)
    return H[:, lin:, lin:] - HnX[..., :-1], g[:, lin:] - HnX[..., -1]


def inverse(H):
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
