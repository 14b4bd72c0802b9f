"""The variable-projection pieces of the line fit (``lines/solver.py``, ``lines/linear.py``)
against reference computations: the exact linear solve against a dense least-squares
solve, the reduced (Schur-complement) step against the nonlinear part of the full
Gauss–Newton step, the active-set step at a bound, the secant update's secant condition,
and the block-diagonal inverse of a galaxy's linear normal matrix."""

from __future__ import annotations

import numpy as np
import pytest
from test_lines_fit import _dense, _models, _problem

from specsift.lines import linear, solver
from specsift.lines.models import galaxy_model, quasar_models


@pytest.mark.parametrize("name,model,z,extra", _models(), ids=lambda v: v if isinstance(v, str) else "")
def test_linear_parameters_are_the_least_squares_solution(name, model, z, extra):
    """At fixed widths and velocities, :func:`linear.linear_solve`'s amplitudes and backgrounds
    minimise χ² (a dense weighted least-squares solve of the same design), and the model
    and Jacobian it returns are ``evaluate``'s at that point; parameters without any
    weighted pixel (row 0's first window has none) get 0."""
    prob, theta = _problem(model, z=z, extra=extra)
    prob.w[0, prob.blocks[0][0]] = 0                  # row 0: no data in its first window
    th, out, J, hinv = linear.linear_solve(prob, theta)
    np.testing.assert_array_equal(th[:, prob.ks:], theta[:, prob.ks:])
    A = _dense(prob, prob.linear_design(prob.profiles(theta)))[:, :, :prob.ks]   # (N, M, K)
    sw = np.sqrt(prob.w.astype(float))
    for i in range(prob.n):
        Aw = A[i] * sw[i, :, None]
        used = np.abs(Aw).sum(0) > 0                  # a parameter without data stays 0
        assert (~used).any() == (i == 0)
        if used.any():
            want = np.linalg.lstsq(Aw[:, used], prob.y[i] * sw[i], rcond=None)[0]
            got = th[i, :prob.ks][used]
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
        assert np.all(th[i, :prob.ks][~used] == 0)
    want_out, want_J = prob.evaluate(th)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-4)
    for a, b in zip(J, want_J):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_reduced_step_is_the_nonlinear_part_of_the_full_step():
    """With the linear parameters at their optimum, the Gauss–Newton step of every
    parameter and the step on the Schur complement agree in the widths and velocities
    (Kaufman's variable-projection step)."""
    model = next(m for col, m, _ in quasar_models() if col == "HBETA_BROAD")
    prob, theta = _problem(model, z=0.3)
    prec, mean, _ = prob.prior()
    th, out, J, hinv = linear.linear_solve(prob, theta)
    H, g = linear.normal_equations(prob, J, prob.y - out, prec, mean, th)
    full = np.linalg.solve(H, g[..., None])[..., 0]
    S, gr = linear._reduced(H, g, hinv, prob.ks)
    red = np.linalg.solve(S, gr[..., None])[..., 0]
    np.testing.assert_allclose(red, full[:, prob.ks:], rtol=1e-4,
                               atol=1e-6 * np.abs(full[:, prob.ks:]).max())
    # the linear parameters' gradient vanishes at their optimum
    assert np.abs(g[:, :prob.ks]).max() < 1e-3 * np.abs(g[:, prob.ks:]).max() + 1e-6


def test_a_parameter_at_its_bound_is_held_and_the_others_solved_without_it():
    model = next(m for col, m, _ in quasar_models() if col == "HBETA_BROAD")
    prob, theta = _problem(model, n=3, z=0.3)
    lo, hi = prob.bounds()
    k = prob.ks + len(model.groups)                    # the broad line's velocity
    theta[:, k] = lo[:, k - prob.ks]                   # at −v_max
    rng = np.random.default_rng(1)
    nn = prob.np - prob.ks
    A = rng.normal(size=(3, nn, nn))
    M = A @ A.transpose(0, 2, 1) + nn * np.eye(nn)
    g = rng.normal(size=(3, nn))
    step = np.linalg.solve(M, g[..., None])[..., 0]
    step[0, k - prob.ks] = -abs(step[0, k - prob.ks])  # row 0 pushed past the bound
    step[1, k - prob.ks] = abs(step[1, k - prob.ks])   # row 1 away from it: free
    got = solver._held_at_bounds(prob, theta, step, M, g)
    j = k - prob.ks
    assert got[0, j] == 0.0
    free = np.delete(np.arange(nn), j)
    want = np.linalg.solve(M[0][np.ix_(free, free)], g[0, free])
    np.testing.assert_allclose(got[0, free], want, rtol=1e-10)
    np.testing.assert_array_equal(got[1], step[1])


def test_secant_update_satisfies_the_secant_condition():
    """After the Dennis–Gay–Welsch update (S + cor) s = y for the rows updated (sizing
    τ = 1 from a zero start), the others keep their term."""
    rng = np.random.default_rng(2)
    n, nn = 4, 3
    A = rng.normal(size=(n, nn, nn))
    S = A @ A.transpose(0, 2, 1) + np.eye(nn)
    s = rng.normal(size=(n, nn))
    y = np.matmul(S * 0.5, s[..., None])[..., 0]        # true curvature half of S's
    rows = np.array([True, True, False, True])
    cor = solver._secant(np.zeros((n, nn, nn)), S, s, y, rows)
    lhs = np.matmul(S + cor, s[..., None])[..., 0]
    np.testing.assert_allclose(lhs[rows], y[rows], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(cor[~rows], 0.0)
    np.testing.assert_allclose(cor, cor.transpose(0, 2, 1), atol=1e-12)   # symmetric


def test_galaxy_linear_normal_matrix_is_inverted_block_by_block():
    """A galaxy's six windows share no linear parameter: six blocks, and their inverse
    equals the dense one."""
    prob, theta = _problem(galaxy_model()[0], z=0.12)
    assert len(prob.lin_groups) == len(galaxy_model()[0].regions)
    assert sorted(np.concatenate(prob.lin_groups).tolist()) == list(range(prob.ks))
    H, _ = prob.gram(prob.linear_design(prob.profiles(theta)), prob.y, limit=prob.ks)
    d = np.arange(prob.ks)
    H[:, d, d] += np.where(H[:, d, d] <= 1e-30, 1.0, 0.0)
    np.testing.assert_allclose(linear._block_inverse(H, prob.lin_groups), np.linalg.inv(H),
                               rtol=1e-8, atol=1e-12)
    q = next(m for col, m, _ in quasar_models() if col == "HALPHA_BROAD")
    assert len(_problem(q, z=0.3)[0].lin_groups) == 1
