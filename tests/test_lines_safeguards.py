"""The safeguards of the variable-projection line fit (``lines/solver.py``), each on a
spectrum where it matters: bounded steps (``Problem.step_bound``), a velocity held at its
bound (``solver._held_at_bounds``) and the secant term of a large-residual fit
(``solver._secant`` with NL2SOL's switch, ``solver.choose_augmented``).  Each test fails
with its safeguard switched off (the held bound and the secant term are compared against
the fit with them switched off, in the test)."""

from __future__ import annotations

import numpy as np
from test_lines_fit import _problem

from specsift.lines import linear, solver
from specsift.lines.fit import fit_lines
from specsift.lines.models import quasar_models
from specsift.lines.problem import Problem
from specsift.spectra import DEFAULT_GRID


def _hbeta_model():
    return next(m for col, m, _ in quasar_models() if col == "HBETA_BROAD")


def _hbeta(amp, back, sigma, velocity, n=3, z=0.3):
    """Noiseless spectra of the Hβ window's own model (broad core and wing amplitudes,
    [O III], narrow Hβ; σ and v in km/s of the broad and narrow groups), ivar 100, and
    the problem they were drawn with."""
    model, grid = _hbeta_model(), DEFAULT_GRID
    zz = z + 0.002 * np.arange(n)
    zero = np.zeros((n, grid.size), np.float32)
    prob = Problem(model, grid.loglam, zero, zero + 1, zz, 69.0)
    theta = np.zeros((n, prob.np))
    theta[:, :prob.ka] = amp
    theta[:, prob.ka:prob.ks] = back
    theta[:, prob.ks:prob.ku] = np.array(sigma) / prob.kms_pix
    theta[:, prob.ku:] = np.array(velocity) / prob.kms_pix
    out, _ = prob.evaluate(theta, jac=False)
    flux = np.zeros((n, grid.size), np.float32)
    for k in range(model.bin):                       # each bin's value over its pixels
        flux[np.arange(n)[:, None], prob.idx + k] = out
    return model, grid.loglam, flux, np.full_like(flux, 100.0), zz


def test_step_bound_shortens_a_step_to_its_limit_and_keeps_its_direction():
    """A step past the limits (half a group's total width for its width, one total width
    for its velocity) is scaled down, as a whole, to exactly its most limiting one; a step
    within them is left as it is."""
    prob, theta = _problem(_hbeta_model(), n=4, z=0.3)
    g = len(_hbeta_model().groups)
    s = theta[:, prob.ks:prob.ku]
    w = np.tile(np.sqrt(s * s + prob.inst_min ** 2), 2)                  # (N, 2G)
    lim = w * np.repeat([0.5, 1.0], g)
    rng = np.random.default_rng(3)
    step = rng.normal(size=lim.shape) * lim * np.array([[8.0], [3.0], [30.0], [0.2]])
    step[3] = 0.4 * lim[3] * np.sign(step[3])                         # within the limits
    f = prob.step_bound(theta, step)
    assert f.shape == (4,) and np.all(f > 0)              # one positive factor: same direction
    np.testing.assert_allclose((np.abs(step * f[:, None]) / lim).max(1), [1, 1, 1, 0.4],
                               rtol=1e-12)
    # a width alone and a velocity alone, each far past its limit: exactly at it
    for j in (0, g):
        one = np.zeros_like(step)
        one[:, j] = -50.0 * lim[:, j]
        np.testing.assert_allclose(one[:, j] * prob.step_bound(theta, one), -lim[:, j],
                                   rtol=1e-12)


def test_a_velocity_at_its_bound_pushed_past_it_is_held_and_the_row_converges(monkeypatch):
    """A broad Hβ blueshifted past the velocity bound (−3600 km/s, v_max 3000): the fit
    reaches −v_max with the gradient pushing further, the bound holds it there and the
    others are solved without it, so the row converges in a few iterations; with the step
    merely clamped the rows take several times as many (one to the cap).  (Both without
    the rejected steps' shrinking, :data:`solver.SHRINK`, which rescues the clamped rows
    too: 9–11 iterations against 7 with it.)  With the default SHRINK as well: held at
    the bound, converged in at most 8 iterations (7 when written)."""
    spec = _hbeta((600.0, 300.0, 150.0, 40.0), (10.0, 1.0), (2500.0, 150.0), (-3600.0, 100.0))
    v_max = _hbeta_model().groups[0].v_max
    default = fit_lines(*spec, 69.0)
    np.testing.assert_allclose(default.velocity[:, 0], -v_max, rtol=1e-9)
    assert default.converged.all() and default.n_iter.max() <= 8
    monkeypatch.setattr(solver, "SHRINK", np.inf)
    res = fit_lines(*spec, 69.0)
    np.testing.assert_allclose(res.velocity[:, 0], -v_max, rtol=1e-9)
    assert res.converged.all() and res.n_iter.max() <= 10
    monkeypatch.setattr(solver, "_held_at_bounds", lambda prob, th, step, M, g: step)
    clamped = fit_lines(*spec, 69.0)
    assert clamped.n_iter.min() > 2 * res.n_iter.max()
    assert np.all(clamped.chi2 >= res.chi2 - 1e-3 * res.chi2)          # no better for it


def test_secant_term_is_chosen_on_a_large_residual_fit_and_saves_iterations(monkeypatch):
    """A broad Hβ the core + wing model cannot fit (three Gaussians of different widths
    and velocities): Gauss–Newton's curvature overestimates χ²'s, so the augmented model
    predicts some steps' decrease better and is chosen, and the fit takes fewer
    iterations than with the secant term held at zero."""
    broad = [_hbeta((a, 0.0, 0.0, 0.0), (0.0, 0.0), (s, 150.0), (v, 0.0))[2]
             for a, s, v in ((500.0, 900.0, -900.0), (500.0, 3000.0, 1200.0),
                             (300.0, 7000.0, -2500.0))]
    model, loglam, flux, ivar, z = _hbeta((0.0, 0.0, 150.0, 40.0), (10.0, 1.0),
                                          (2500.0, 150.0), (0.0, 100.0))
    flux = flux + sum(broad)
    chosen = []
    switch = solver.choose_augmented

    def record(*a):
        aug = switch(*a)
        chosen.append(int(aug.sum()))
        return aug

    monkeypatch.setattr(solver, "choose_augmented", record)
    res = fit_lines(model, loglam, flux, ivar, z, 69.0)
    assert res.converged.all() and sum(chosen) >= 1
    monkeypatch.setattr(solver, "_secant", lambda cor, S, s, y, rows: np.zeros_like(cor))
    plain = fit_lines(model, loglam, flux, ivar, z, 69.0)
    assert plain.converged.all()
    assert res.n_iter.sum() < plain.n_iter.sum() and res.n_iter.max() < plain.n_iter.min()
    np.testing.assert_allclose(res.chi2, plain.chi2, rtol=1e-4)       # the same minimum


def test_an_augmented_model_predicting_no_decrease_falls_back_to_gauss_newton():
    """Where S + cor is indefinite along its own step (it predicts no χ² decrease), the
    projected step is the plain Gauss–Newton one on S, and its prediction is S's."""
    prob, theta = _problem(_hbeta_model(), n=4, z=0.3)
    prec, mean, _ = prob.prior()
    th, out, J, hinv = linear.linear_solve(prob, theta)
    H, g = linear.normal_equations(prob, J, prob.y - out, prec, mean, th)
    hd = H[:, np.arange(prob.np), np.arange(prob.np)].copy()
    S, _ = linear._reduced(H, g, hinv, prob.ks)
    n, nn = prob.n, prob.np - prob.ks

    def rows(cor, aug):
        return solver._Rows.start(th, out, J, np.zeros(n), hinv, prec, mean, cor=cor, aug=aug)

    cor = np.zeros((n, nn, nn))
    cor[:2] = -3.0 * S[:2]                        # rows 0, 1: S + cor negative definite
    cor[2] = 0.1 * S[2]                           # row 2: a harmless term, kept
    aug = np.array([True, True, True, False])
    t = solver.projected_trial(prob, rows(cor, aug), H, g, hd)
    gn = solver.projected_trial(prob, rows(np.zeros_like(cor), np.zeros(n, bool)), H, g, hd)
    assert np.all(t.pred > 0)
    np.testing.assert_array_equal(t.theta[[0, 1, 3]], gn.theta[[0, 1, 3]])
    np.testing.assert_array_equal(t.pred[[0, 1, 3]], gn.pred[[0, 1, 3]])
    assert not np.array_equal(t.theta[2], gn.theta[2])


def test_secant_update_is_skipped_where_the_step_and_its_gradient_change_are_near_orthogonal():
    """yᵀs ≤ 1e-6 ‖y‖‖s‖ (here cos 1e-8): the update's 1/yᵀs terms would be huge, so the
    row keeps its term; a well-posed pair (cos 0.5) is updated."""
    rng = np.random.default_rng(4)
    nn = 3
    A = rng.normal(size=(2, nn, nn))
    S = A @ A.transpose(0, 2, 1) + np.eye(nn)
    s = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    y = np.array([[1e-8, 1.0, 0.0], [0.5, np.sqrt(0.75), 0.0]])
    cor = solver._secant(np.zeros((2, nn, nn)), S, s, y, np.array([True, True]))
    np.testing.assert_array_equal(cor[0], 0.0)
    assert np.abs(cor[1]).max() > 0


def test_a_rejected_step_is_followed_by_one_at_most_shrink_as_long():
    """After a rejected step (χ² not lowered) the next trial moves the widths and
    velocities at most :data:`solver.SHRINK` of the rejected move (in errors), whatever
    the damping; an accepted step lifts the limit again."""
    prob, theta = _problem(_hbeta_model(), n=4, z=0.3)
    prec, mean, _ = prob.prior()
    th, out, J, hinv = linear.linear_solve(prob, theta)
    H, g = linear.normal_equations(prob, J, prob.y - out, prec, mean, th)
    hd = H[:, np.arange(prob.np), np.arange(prob.np)].copy()
    n = prob.n

    def rows(c2):
        return solver._Rows.start(th, out, J, c2, hinv, prec, mean, lam=np.full(n, 1e-8))

    st = rows(np.zeros(n))                        # χ² 0: every trial is worse
    t = solver.projected_trial(prob, st, H, g, hd)
    moved = solver._scaled(t.dnl, hd[:, prob.ks:])
    assert np.all(moved > 0)
    solver._accept(prob, st, t, hd, solver.FTOL, solver.XTOL, True)
    np.testing.assert_allclose(st.radius, solver.SHRINK * moved)
    again = solver.projected_trial(prob, st, H, g, hd)
    np.testing.assert_allclose(solver._scaled(again.dnl, hd[:, prob.ks:]),
                               solver.SHRINK * moved, rtol=1e-6)
    st = rows(np.full(n, np.inf))                 # every trial is better
    solver._accept(prob, st, solver.projected_trial(prob, st, H, g, hd), hd, solver.FTOL,
                   solver.XTOL, True)
    assert np.all(np.isinf(st.radius))
