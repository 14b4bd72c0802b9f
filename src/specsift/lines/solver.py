"""The Levenberg–Marquardt iteration of the line fit (split from :mod:`.fit`).

Why a module of its own: iterating every row of a :class:`~.problem.Problem` to its
minimum (the damping, the variable-projection step, the stopping tests, the active set) is
one job; :mod:`.fit` sets the fit up and turns its minimum into fluxes, widths and errors.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_ITER", "FTOL", "XTOL", "FULL_STEPS", "inverse"]


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


#: Levenberg–Marquardt iteration cap of a row (see :func:`_levenberg_marquardt`)
MAX_ITER = 50
#: relative χ² decrease (actual and predicted) below which a row has converged (MINPACK's ftol)
FTOL = 1e-6
#: step below which a row has converged, in units of each parameter's error (1/√H_ii)
XTOL = 0.01
#: iterations that step every parameter together before the amplitudes are projected
#: (:func:`_levenberg_marquardt`)
FULL_STEPS = 3
#: largest steady shrink factor of the steps counted (what is left ≤ 1 / (1 − r) steps)
RATE_MAX = 0.9


def _linear(prob, theta, jac=True):
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
    d = np.arange(lin)
    H[:, d, d] += np.where(H[:, d, d] <= 1e-30, 1.0, 1e-12 * H[:, d, d].max(1, keepdims=True))
    hinv = _block_inverse(H, prob.lin_groups)
    theta = theta.copy()
    theta[:, :lin] = np.matmul(hinv, rhs[..., None])[..., 0]
    out, J = prob.complete(theta, profs, A, jac)
    return theta, out, J, hinv


def _block_inverse(H, groups):
    """Inverse of a block-diagonal ``H`` whose blocks are the index sets ``groups`` (one
    set: the plain batched inverse).  The blocks are padded with the identity to the
    largest and inverted in one batched call (one call per block, six for a galaxy, cost
    more than the one 15 × 15 inverse they replace)."""
    if len(groups) == 1 and groups[0].size == H.shape[1]:
        return inverse(H)
    k = H.shape[1]
    q = max(idx.size for idx in groups)
    pad = np.zeros((len(groups), q), np.int64)
    valid = np.zeros((len(groups), q), bool)
    for b, idx in enumerate(groups):
        pad[b, :idx.size], valid[b, :idx.size] = idx, True
    both = valid[:, :, None] & valid[:, None, :]                          # (B, q, q)
    blk = np.where(both, H[:, pad[:, :, None], pad[:, None, :]], 0.0)     # (N, B, q, q)
    d = np.arange(q)
    diag = blk[:, :, d, d]
    blk[:, :, d, d] = np.where(valid, diag, 1.0)
    inv = inverse(blk.reshape(-1, q, q)).reshape(blk.shape)
    out = np.zeros_like(H)
    dk = np.arange(k)
    out[:, dk, dk] = 1.0 / H[:, dk, dk]        # parameters of no window: their own
    b, i, j = np.nonzero(both)
    out[:, pad[b, i], pad[b, j]] = inv[:, b, i, j]
    return out


def _reduced(H, g, hinv, lin):
    """The normal equations of the widths and velocities with the linear parameters
    eliminated (the Schur complement S = H_nn − H_nc H_cc⁻¹ H_cn and its gradient):
    solved with its own damping, their step is Kaufman's variable-projection step."""
    Hcn = H[:, :lin, lin:]
    X = np.matmul(hinv, np.concatenate([Hcn, g[:, :lin, None]], axis=2))
    HnX = np.matmul(Hcn.transpose(0, 2, 1), X)
    return H[:, lin:, lin:] - HnX[..., :-1], g[:, lin:] - HnX[..., -1]


def _held_at_bounds(prob, theta, step, M, g):
    """The step with every width or velocity that sits at its bound and is pushed past it
    held there, the others solved again without it (an active-set step).

    Why: clamping such a step afterwards leaves the other parameters' moves made for the
    clamped one's: a quasar whose broad Hβ velocity sat at its bound took step after
    rejected step, none of them a descent any more (``tests/test_lines_safeguards.py``)."""
    lo, hi = prob.bounds()
    x = theta[:, prob.ks:]
    tol = 1e-6 * (hi - lo)
    held = ((x <= lo + tol) & (step < 0)) | ((x >= hi - tol) & (step > 0))
    rows = held.any(1)
    if not rows.any():
        return step
    Mh, gh, hh = M[rows].copy(), g[rows].copy(), held[rows]
    Mh[hh[:, :, None] | hh[:, None, :]] = 0.0
    k, j = np.nonzero(hh)
    Mh[k, j, j] = 1.0
    gh[hh] = 0.0
    step = step.copy()
    step[rows] = np.linalg.solve(Mh, gh[..., None])[..., 0]
    return step


def _secant(cor, S, s, y, rows):
    """Dennis–Gay–Welsch update of ``cor``, the part of the widths' and velocities' χ²
    curvature that Gauss–Newton leaves out (the residual times the model's second
    derivatives), from the last accepted step ``s`` and its change of gradient ``y``
    (NL2SOL's augmented model, with its sizing), for ``rows`` only.

    Why: the broad-line windows are large-residual problems (a core + wing profile does
    not fit a real quasar's line exactly): there the Gauss–Newton curvature overestimates
    χ²'s along the broad line's width and velocity, each step goes only part of the way
    (a gain ratio above 1 at every step) and the fit creeps."""
    ys = (y * s).sum(1)
    ok = rows & (ys > 1e-12 * np.maximum(np.abs(y).sum(1) * np.abs(s).sum(1), 1e-300))
    ysh = y - np.matmul(S, s[..., None])[..., 0]                          # y#
    cs = np.matmul(cor, s[..., None])[..., 0]
    scs = (s * cs).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(np.abs(scs) > 0, np.minimum(1.0, np.abs((s * ysh).sum(1)) / np.abs(scs)), 1.0)
    c = cor * tau[:, None, None]
    e = ysh - cs * tau[:, None]
    den = np.where(ok, ys, 1.0)
    upd = ((e[:, :, None] * y[:, None, :] + y[:, :, None] * e[:, None, :]) / den[:, None, None]
           - ((e * s).sum(1) / den ** 2)[:, None, None] * (y[:, :, None] * y[:, None, :]))
    return np.where(ok[:, None, None], c + upd, cor)


def _levenberg_marquardt(prob, theta, out, J, hinv, prec, mean, max_iter, ftol, xtol,
                         full_steps=None):
    """Iterate every row until it has converged, as MINPACK's lmder stops: a step whose
    actual and predicted relative χ² decreases are both ≤ ``ftol``, or which moves no
    parameter by more than ``xtol`` of its error (conditional, 1/√H_ii), ends the row.

    Variable projection (Golub & Pereyra 1973; Kaufman's step, Ruhe & Wedin 1980): the
    amplitudes and backgrounds enter the model linearly, so at every trial point they are
    solved exactly (:func:`_linear`) and only the widths and velocities take damped steps,
    on the normal equations with the linear parameters eliminated (:func:`_reduced`).  Why:
    with every parameter stepped together, a broad line's nearly degenerate core and wing
    amplitudes and widths crept along their valley and rows ran to the cap; the tail
    iterations on few rows each pay an iteration's whole fixed cost (its numpy calls).

    Why per row: a fixed 5 iterations left real SDSS quasars' broad-line windows far from
    their minimum (docs/lines.md "Convergence", with its commands), while galaxies
    converge in a few.  Rows that have converged leave the active set (the problem is
    re-sliced when a tenth of its rows have left), so they stop costing.  Returns
    (θ, model, Jacobian blocks, iterations per row, converged per row); a row still
    moving at ``max_iter`` comes back with ``converged`` False.  A row creeping along a
    flat direction (a weak line's width) shrinks its steps by a steady factor r, so the
    tests are on what is left, ≈ step / (1 − r) (r ≤ :data:`RATE_MAX`)."""
    n, lin = prob.n, prob.ks
    if full_steps is None:
        full_steps = FULL_STEPS if prob.model.full_steps is None else prob.model.full_steps
    dg, dn = np.arange(prob.np), np.arange(prob.np - lin)
    chi2 = _chi2_of(prob, out, theta, prec, mean)
    n_done = np.zeros(n, np.int16)
    conv = np.zeros(n, bool)
    act, alive = np.arange(n), np.ones(n, bool)
    sub, th, o, Jb, c2, hi = prob, theta, out, J, chi2, hinv   # replaced, not written, below
    lam, pr, mu = np.full(n, 1e-3), prec, mean
    last = np.zeros(n)                            # each row's last accepted step size
    nu = np.full(n, 2.0)

    def put(sel):                                 # write rows ``sel`` of the active set back
        r = act[sel]
        theta[r], out[r], chi2[r] = th[sel], o[sel], c2[sel]
        for blk, b in zip(J, Jb):
            blk[r] = b[sel]

    nn = prob.np - lin
    cor = np.zeros((n, nn, nn))                   # secant estimate of χ²'s neglected curvature
    s_prev, g_prev = np.zeros((n, nn)), np.zeros((n, nn))
    fresh, aug = np.zeros(n, bool), np.zeros(n, bool)
    for it in range(max_iter):
        if it == full_steps and it > 0:           # the amplitudes projected from here on
            th, o, Jb, hi = _linear(sub, th)
            c2 = _chi2_of(sub, o, th, pr, mu)
        H, g = _normal(sub, Jb, sub.y - o, pr, mu, th)
        hd = H[:, dg, dg].copy()
        if it < full_steps:
            # every parameter stepped together (the path of the fit before variable
            # projection: it decides which minimum a row with several goes to)
            Hd = H.copy()
            Hd[:, dg, dg] *= 1.0 + lam[:, None]
            trial = sub.clamp(th + np.linalg.solve(Hd, g[..., None])[..., 0])
            d = trial - th
            pred_gn = pred_aug = pred = (2.0 * (g * d).sum(1)
                                         - (d * np.matmul(H, d[..., None])[..., 0]).sum(1))
            dnl = d[:, lin:]
            out_t, J_t = sub.evaluate(trial)
            hi_t = hi.copy()
        else:
            S, gr = _reduced(H, g, hi, lin)
            if fresh.any():
                cor = _secant(cor, S, s_prev, g_prev - gr, fresh)
            M = np.where(aug[:, None, None], S + cor, S)
            Md = M.copy()
            Md[:, dn, dn] += lam[:, None] * hd[:, lin:]
            step = np.linalg.solve(Md, gr[..., None])[..., 0]
            step = _held_at_bounds(sub, th, step, Md, gr)
            trial = th.copy()
            trial[:, lin:] += step * sub.step_bound(th, step)[:, None]
            trial = sub.clamp(trial)
            dnl = trial[:, lin:] - th[:, lin:]
            # linearised χ² decrease of the (clamped) step, the linear parameters following
            lin_t = 2.0 * (gr * dnl).sum(1)
            pred_gn = lin_t - (dnl * np.matmul(S, dnl[..., None])[..., 0]).sum(1)
            pred_aug = lin_t - (dnl * np.matmul(S + cor, dnl[..., None])[..., 0]).sum(1)
            pred = np.where(aug, pred_aug, pred_gn)
            trial, out_t, J_t, hi_t = _linear(sub, trial)
        chi2_t = _chi2_of(sub, out_t, trial, pr, mu)
        better = chi2_t < c2
        c2_old = c2
        scale = np.maximum(c2, 1e-30)
        size = (np.abs(trial - th) * np.sqrt(hd)).max(1)
        # a row creeping along a flat direction (a weak line's width) shrinks its steps
        # by a steady factor r: what is left is ~ size / (1 − r), not the step itself
        rate = np.where(better & (last > size), size / np.where(last > 0, last, 1), 0.0)
        rate = np.minimum(rate, RATE_MAX)
        small_f = ((np.abs(c2 - chi2_t) <= ftol * scale)
                   & (pred <= ftol * scale * (1 - rate * rate)))
        small_x = size <= xtol * (1 - rate)
        last = np.where(better, size, last)
        th = np.where(better[:, None], trial, th)
        worse = ~better
        if worse.any():                           # rejected rows keep their point
            out_t[worse] = o[worse]
            hi_t[worse] = hi[worse]
            for blk, blk_t in zip(Jb, J_t):
                blk_t[worse] = blk[worse]
        o, Jb, hi = out_t, J_t, hi_t
        c2 = np.where(better, chi2_t, c2)
        # NL2SOL's switch (Dennis, Gay & Welsch 1981): the next step uses the model (plain
        # Gauss–Newton or with the secant term) that predicted this step's decrease better
        gain = c2_old - chi2_t
        aug = np.abs(pred_aug - gain) < np.abs(pred_gn - gain)
        if it >= full_steps:
            s_prev = np.where(better[:, None], dnl, s_prev)
            g_prev = np.where(better[:, None], gr, g_prev)
            fresh = better
        # Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, as in levmar): the
        # gain ratio ρ of actual to predicted decrease sets an accepted step's next
        # damping, a rejected step doubles its growth factor (the fixed ×0.3 / ×10 of the
        # old 5 iterations overshot and was rejected ~40 % of the time on slow rows)
        with np.errstate(over="ignore"):    # pred ≤ 0: ±huge, clipped to the ends below
            rho = np.minimum(np.maximum((c2_old - chi2_t) / np.where(pred > 0, pred, 1e-300),
                                        -1.0), 2.0)
        lam = np.where(better, lam * np.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), lam * nu)
        nu = np.where(better, 2.0, np.minimum(nu * 2.0, 1e3))
        # bounded: a row rejected again and again (at its minimum, or fed NaN) would
        # overflow; at 1e10 × S_ii its steps are ~0 and the step test ends it (a NaN row
        # never passes a test: it runs to the cap and is flagged)
        lam = np.minimum(np.maximum(lam, 1e-15), 1e10)
        n_done[act[alive]] += 1
        fin = alive & (small_f | small_x)
        if fin.any():
            put(fin)
            conv[act[fin]] = True
            alive &= ~fin
        k = int(alive.sum())
        if k == 0:
            break
        if k <= 0.9 * sub.n:                      # re-slice: converged rows stop costing
            keep = np.nonzero(alive)[0]
            sub = sub.take(keep)
            th, o, c2, lam, pr, mu = th[keep], o[keep], c2[keep], lam[keep], pr[keep], mu[keep]
            last, nu, hi = last[keep], nu[keep], hi[keep]
            cor, s_prev, g_prev = cor[keep], s_prev[keep], g_prev[keep]
            fresh, aug = fresh[keep], aug[keep]
            Jb = [b[keep] for b in Jb]
            act, alive = act[keep], np.ones(k, bool)
    if alive.any():
        put(alive)
    return theta, out, J, n_done, conv


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
