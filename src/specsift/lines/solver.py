"""The Levenberg–Marquardt iteration of the line fit (split from :mod:`.fit`).

Why a module of its own: iterating every row of a :class:`~.problem.Problem` to its
minimum (the damping, the variable-projection step, the stopping tests, the active set) is
one job; :mod:`.fit` sets the fit up and turns its minimum into fluxes, widths and errors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .linear import _chi2_of, _reduced, diagonal, linear_solve, normal_equations

__all__ = ["MAX_ITER", "FTOL", "XTOL", "FULL_STEPS", "levenberg_marquardt", "joint_trial",
           "projected_trial", "choose_augmented"]


#: Levenberg–Marquardt iteration cap of a row (see :func:`levenberg_marquardt`)
MAX_ITER = 50
#: relative χ² decrease (actual and predicted) below which a row has converged (MINPACK's ftol)
FTOL = 1e-6
#: step below which a row has converged, in units of each parameter's error (1/√H_ii)
XTOL = 0.01
#: iterations that step every parameter together before the amplitudes are projected
#: (:func:`levenberg_marquardt`)
FULL_STEPS = 3
#: largest steady shrink factor of the steps counted (what is left ≤ 1 / (1 − r) steps)
RATE_MAX = 0.9
#: fewest rows leaving the active set that re-slice it: in the tail a re-slice (every
#: per-row array and cached constant sliced, :meth:`.problem.Problem.take`, the gram's
#: index made again) cost more than carrying a few finished rows along
RESLICE_MIN = 4
#: after a rejected step, the next may move the widths and velocities at most this
#: share of the rejected one's largest move (in errors, :func:`_scaled`), the damping
#: growing as before.  Why: Nielsen's damping grows from where the accepted steps left it
#: (often 1e-6 or less), and below ~1e-3 it hardly shortens a step whose length the step
#: bound set: rows took the same rejected step 4–6 times over (a quarter of all steps
#: were rejections, half of them repeats: a one-off trace of the store batch), and the
#: slowest rows set every fit's tail.
#: The trade-off: the step test (``xtol``, :func:`_accept`) is on the trial step whether
#: or not it lowered χ², so a row whose steps keep being rejected is declared converged
#: once SHRINK has halved them below ``xtol`` errors — after ~log2(step / xtol)
#: rejections, at a point where no χ² decrease was found — where without SHRINK only the
#: growing damping shortened them (more slowly).  MINPACK's lmder stops the same way (its
#: trust region below xtol ‖x‖).  What it costs (docs/lines.md "How the fits are
#: batched", ``benchmarks/lines_speed.py --reps 1 --rounds 1 --against CHECKOUT_OF_690f0c2
#: --converged``): store-batch values > 0.01σ from the 300-iteration fit 74 → 179 of
#: 11 719, > 0.1σ 6 → 8, > 1σ 3 → 3
SHRINK = 0.5


def _held_at_bounds(prob, theta, step, M, g):
    """The step with every width or velocity that sits at its bound and is pushed past it
    held there, the others solved again without it (an active-set step).

    Why: clamping such a step afterwards leaves the other parameters' moves made for the
    clamped one's: a quasar whose broad Hβ velocity sat at its bound took step after
    rejected step, none of them a descent any more (``tests/test_lines_safeguards.py``)."""
    lo_in, hi_in = prob.inner_bounds()
    x = theta[:, prob.ks:]
    held = ((x <= lo_in) & (step < 0)) | ((x >= hi_in) & (step > 0))
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
    # accepted where y and s are not near orthogonal (cos > 1e-6): a tiny yᵀs, relative
    # to the vectors' own sizes, makes the update's 1/yᵀs terms huge and its sign noise
    # (the norms as np.linalg.norm makes them, without its wrapper's calls)
    ok = rows & (ys > 1e-6 * np.sqrt(np.add.reduce(y * y, 1)) * np.sqrt(np.add.reduce(s * s, 1)))
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


@dataclass
class _Rows:
    """Per-row state of the active set: every array's first axis is the active rows, so
    :meth:`take` slices all of it in one loop (state added here cannot be left unsliced
    and misalign its rows)."""
    th: np.ndarray          # (n, P) parameters
    o: np.ndarray           # (n, M) model
    Jb: list                # Jacobian blocks (n, Q, W)
    c2: np.ndarray          # χ² (with the priors)
    hi: np.ndarray          # inverse of the linear parameters' normal matrix
    pr: np.ndarray          # prior precision and mean
    mu: np.ndarray
    lam: np.ndarray         # damping and its growth factor (Nielsen)
    nu: np.ndarray
    last: np.ndarray        # each row's last accepted step size
    cor: np.ndarray         # secant estimate of χ²'s neglected curvature
    s_prev: np.ndarray      # the last accepted step and the reduced gradient before it
    g_prev: np.ndarray
    fresh: np.ndarray       # the last step was accepted: update ``cor`` from it
    aug: np.ndarray         # the next step uses S + cor (NL2SOL's switch)
    radius: np.ndarray      # longest width / velocity step allowed (:func:`_within`; ∞: none)

    @classmethod
    def start(cls, th, o, Jb, c2, hi, pr, mu, **state):
        """The state of ``n`` rows before their first step: damping 1e-3 (growth 2), no
        step taken, no secant term, no step limit; ``state`` overrides any of these."""
        n, nn = th.shape[0], th.shape[1] - hi.shape[1]
        init = dict(lam=np.full(n, 1e-3), nu=np.full(n, 2.0), last=np.zeros(n),
                    cor=np.zeros((n, nn, nn)), s_prev=np.zeros((n, nn)),
                    g_prev=np.zeros((n, nn)), fresh=np.zeros(n, bool), aug=np.zeros(n, bool),
                    radius=np.full(n, np.inf))
        return cls(th=th, o=o, Jb=Jb, c2=c2, hi=hi, pr=pr, mu=mu, **{**init, **state})

    def take(self, keep):
        return _Rows(**{f.name: ([b[keep] for b in v] if isinstance(v, list) else v[keep])
                        for f in fields(self) for v in (getattr(self, f.name),)})


@dataclass
class _Trial:
    """One trial point of every active row and the decreases its models predict."""
    theta: np.ndarray
    out: np.ndarray
    J: list
    hinv: np.ndarray
    pred: np.ndarray        # of the model the step was taken with
    pred_gn: np.ndarray     # plain Gauss–Newton's and the augmented model's
    pred_aug: np.ndarray
    dnl: np.ndarray         # the (clamped) width / velocity step
    gr: np.ndarray | None   # the reduced gradient (projected steps only)


def joint_trial(prob, st: _Rows, H, g) -> _Trial:
    """A damped Gauss–Newton step of every parameter together (the path of the fit before
    variable projection: it decides which minimum a row with several goes to)."""
    Hd = H.copy()
    dv = diagonal(Hd)
    dv *= 1.0 + st.lam[:, None]
    trial = prob.clamp(st.th + np.linalg.solve(Hd, g[..., None])[..., 0])
    d = trial - st.th
    pred = 2.0 * (g * d).sum(1) - (d * np.matmul(H, d[..., None])[..., 0]).sum(1)
    out_t, J_t = prob.evaluate(trial)
    # the linear parameters' inverse is not used in this phase: the row's own is kept
    return _Trial(trial, out_t, J_t, st.hi, pred, pred, pred, d[:, prob.ks:], None)


def projected_trial(prob, st: _Rows, H, g, hd) -> _Trial:
    """Kaufman's variable-projection step: the widths and velocities stepped on the Schur
    complement S (with the secant term where :attr:`_Rows.aug`), bounded
    (:meth:`Problem.step_bound`), held at their bounds (:func:`_held_at_bounds`), and the
    linear parameters solved exactly at the trial point (:func:`linear_solve`).  A row
    whose augmented model S + cor predicts no decrease for its own step (S + cor need not
    be positive definite) steps on S alone."""
    lin = prob.ks
    S, gr = _reduced(H, g, st.hi, lin)
    if st.fresh.any():
        st.cor = _secant(st.cor, S, st.s_prev, st.g_prev - gr, st.fresh)
    aug = st.aug
    trial, dnl = _reduced_step(prob, st, np.where(aug[:, None, None], S + st.cor, S), hd, gr)
    pred_gn, pred_aug = _predicted(gr, dnl, S, st.cor)
    bad = aug & ~(pred_aug > 0)
    if bad.any():                             # back to plain Gauss–Newton there
        trial_s, dnl_s = _reduced_step(prob, st, S, hd, gr)
        trial = np.where(bad[:, None], trial_s, trial)
        dnl = np.where(bad[:, None], dnl_s, dnl)
        pred_gn, pred_aug = _predicted(gr, dnl, S, st.cor)
        aug = aug & ~bad
    pred = np.where(aug, pred_aug, pred_gn)
    trial, out_t, J_t, hi_t = linear_solve(prob, trial)
    return _Trial(trial, out_t, J_t, hi_t, pred, pred_gn, pred_aug, dnl, gr)


def _reduced_step(prob, st: _Rows, M, hd, gr):
    """The trial point and its (clamped) width / velocity move of the damped step on the
    reduced normal matrix ``M``."""
    lin = prob.ks
    Md = M.copy()
    dv = diagonal(Md)
    dv += st.lam[:, None] * hd[:, lin:]
    step = np.linalg.solve(Md, gr[..., None])[..., 0]
    step = _held_at_bounds(prob, st.th, step, Md, gr)
    trial = st.th.copy()
    trial[:, lin:] += step * np.minimum(prob.step_bound(st.th, step),
                                        _within(st, step, hd[:, lin:]))[:, None]
    trial = prob.clamp(trial)
    return trial, trial[:, lin:] - st.th[:, lin:]


def _scaled(step, hd):
    """Largest move of a width / velocity ``step`` in units of its error (1/√H_ii)."""
    return (np.abs(step) * np.sqrt(hd)).max(1)


def _within(st: _Rows, step, hd):
    """(N,) factor ≤ 1 that shortens each row's width / velocity ``step`` to its
    :attr:`_Rows.radius` (:func:`_scaled` units)."""
    size = _scaled(step, hd)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(size > st.radius, st.radius / size, 1.0)


def _predicted(gr, dnl, S, cor):
    """Linearised χ² decrease of the move ``dnl``, the linear parameters following:
    Gauss–Newton's (curvature S) and the augmented model's (S + cor)."""
    lin_t = 2.0 * (gr * dnl).sum(1)
    pred_gn = lin_t - (dnl * np.matmul(S, dnl[..., None])[..., 0]).sum(1)
    pred_aug = lin_t - (dnl * np.matmul(S + cor, dnl[..., None])[..., 0]).sum(1)
    return pred_gn, pred_aug


def choose_augmented(pred_gn, pred_aug, gain):
    """NL2SOL's switch (Dennis, Gay & Welsch 1981): the next step uses the model (plain
    Gauss–Newton or with the secant term) that predicted this step's decrease better."""
    return np.abs(pred_aug - gain) < np.abs(pred_gn - gain)


def _accept(prob, st: _Rows, t: _Trial, hd, ftol, xtol, projected):
    """Take each row's trial point where it lowered χ², update the damping and the secant
    state; returns the rows that have converged (the stopping tests, on what is left of a
    row whose steps shrink by a steady factor)."""
    chi2_t = _chi2_of(prob, t.out, t.theta, st.pr, st.mu)
    better = chi2_t < st.c2
    c2_old = st.c2
    scale = np.maximum(st.c2, 1e-30)
    size = (np.abs(t.theta - st.th) * np.sqrt(hd)).max(1)
    # a row creeping along a flat direction (a weak line's width) shrinks its steps
    # by a steady factor r: what is left is ~ size / (1 − r), not the step itself
    rate = np.where(better & (st.last > size), size / np.where(st.last > 0, st.last, 1), 0.0)
    rate = np.minimum(rate, RATE_MAX)
    small_f = ((np.abs(st.c2 - chi2_t) <= ftol * scale)
               & (t.pred <= ftol * scale * (1 - rate * rate)))
    # on rejected steps too (as MINPACK): with SHRINK a rejected row's steps halve until
    # this ends it (see :data:`SHRINK`)
    small_x = size <= xtol * (1 - rate)
    st.last = np.where(better, size, st.last)
    st.th = np.where(better[:, None], t.theta, st.th)
    worse = ~better
    if worse.any():                           # rejected rows keep their point
        t.out[worse] = st.o[worse]
        t.hinv[worse] = st.hi[worse]
        for blk, blk_t in zip(st.Jb, t.J):
            blk_t[worse] = blk[worse]
    st.o, st.Jb, st.hi = t.out, t.J, t.hinv
    st.c2 = np.where(better, chi2_t, st.c2)
    st.aug = choose_augmented(t.pred_gn, t.pred_aug, c2_old - chi2_t)
    if projected:
        st.s_prev = np.where(better[:, None], t.dnl, st.s_prev)
        st.g_prev = np.where(better[:, None], t.gr, st.g_prev)
        st.fresh = better
    # Nielsen's damping update (Madsen, Nielsen & Tingleff 2004, as in levmar): the
    # gain ratio ρ of actual to predicted decrease sets an accepted step's next
    # damping, a rejected step doubles its growth factor (the fixed ×0.3 / ×10 of the
    # old 5 iterations overshot and was rejected ~40 % of the time on slow rows)
    with np.errstate(over="ignore"):    # pred ≤ 0: ±huge, clipped to the ends below
        rho = np.minimum(np.maximum((c2_old - chi2_t) / np.where(t.pred > 0, t.pred, 1e-300),
                                    -1.0), 2.0)
    lam = np.where(better, st.lam * np.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), st.lam * st.nu)
    st.nu = np.where(better, 2.0, np.minimum(st.nu * 2.0, 1e3))
    # bounded: a row rejected again and again (at its minimum, or fed NaN) would
    # overflow; at 1e10 × S_ii its steps are ~0 and the step test ends it (a NaN row
    # never passes a test: it runs to the cap and is flagged)
    st.lam = np.minimum(np.maximum(lam, 1e-15), 1e10)
    # a rejected step's successor is at most SHRINK as long (see :data:`SHRINK`)
    if projected:
        moved = _scaled(t.dnl, hd[:, prob.ks:])
        st.radius = np.where(better | (moved == 0), np.inf, SHRINK * moved)
    return small_f | small_x


def levenberg_marquardt(prob, theta, out, J, hinv, prec, mean, max_iter, ftol, xtol):
    """Iterate every row until it has converged, as MINPACK's lmder stops: a step whose
    actual and predicted relative χ² decreases are both ≤ ``ftol``, or which moves no
    parameter by more than ``xtol`` of its error (conditional, 1/√H_ii), ends the row.

    Variable projection (Golub & Pereyra 1973; Kaufman's step, Ruhe & Wedin 1980): the
    amplitudes and backgrounds enter the model linearly, so at every trial point they are
    solved exactly (:func:`linear_solve`) and only the widths and velocities take damped
    steps, on the normal equations with the linear parameters eliminated
    (:func:`projected_trial`); the first ``prob.model.full_steps`` (None:
    :data:`FULL_STEPS`) step every parameter together (:func:`joint_trial`).  Why: with
    every parameter stepped together, a broad line's nearly degenerate core and wing
    amplitudes and widths crept along their valley and rows ran to the cap; the tail
    iterations on few rows each pay an iteration's whole fixed cost (its numpy calls).

    Why per row: a fixed 5 iterations left real SDSS quasars' broad-line windows far from
    their minimum (docs/lines.md "Convergence", with its commands), while galaxies
    converge in a few.  Rows that have converged leave the active set (the problem is
    re-sliced when a tenth of its rows, at least :data:`RESLICE_MIN`, have left), so they
    stop costing.  Returns (θ, model, Jacobian blocks, iterations per row, converged per
    row); a row still moving at ``max_iter`` comes back with ``converged`` False.  A row
    creeping along a flat direction (a weak line's width) shrinks its steps by a steady
    factor r, so the tests are on what is left, ≈ step / (1 − r) (r ≤ :data:`RATE_MAX`)."""
    n = prob.n
    full_steps = FULL_STEPS if prob.model.full_steps is None else prob.model.full_steps
    chi2 = _chi2_of(prob, out, theta, prec, mean)
    n_done = np.zeros(n, np.int16)
    conv = np.zeros(n, bool)
    act, alive = np.arange(n), np.ones(n, bool)
    # the state's arrays are replaced, not written, below: theta, out, chi2, J stay the
    # caller's until :func:`put` writes finished rows back
    st = _Rows.start(theta, out, J, chi2, hinv, prec, mean)
    sub = prob

    def put(sel):                                 # write rows ``sel`` of the active set back
        r = act[sel]
        theta[r], out[r], chi2[r] = st.th[sel], st.o[sel], st.c2[sel]
        for blk, b in zip(J, st.Jb):
            blk[r] = b[sel]

    for it in range(max_iter):
        if it == full_steps and it > 0:           # the amplitudes projected from here on
            st.th, st.o, st.Jb, st.hi = linear_solve(sub, st.th)
            st.c2 = _chi2_of(sub, st.o, st.th, st.pr, st.mu)
        H, g = normal_equations(sub, st.Jb, sub.y - st.o, st.pr, st.mu, st.th)
        hd = diagonal(H).copy()
        projected = it >= full_steps
        t = projected_trial(sub, st, H, g, hd) if projected else joint_trial(sub, st, H, g)
        done = _accept(sub, st, t, hd, ftol, xtol, projected)
        n_done[act[alive]] += 1
        fin = alive & done
        if fin.any():
            put(fin)
            conv[act[fin]] = True
            alive &= ~fin
        k = int(alive.sum())
        if k == 0:
            break
        if sub.n - k >= max(0.1 * sub.n, RESLICE_MIN):   # re-slice: converged rows stop costing
            keep = np.nonzero(alive)[0]
            sub, st = sub.take(keep), st.take(keep)
            act, alive = act[keep], np.ones(k, bool)
    if alive.any():
        put(alive)
    return theta, out, J, n_done, conv
