"""What one Levenberg–Marquardt row-iteration of the line fits costs, piece by piece.

    PYTHONPATH=src .venv/bin/python benchmarks/lines_profile.py [--n 1024] [--fits 256]
                                                               [--reps 3] [--only hbeta]

The batches are ``benchmarks/lines_speed.py``'s (its simulated store batch and its copies of
the 8 SDSS spec files, after the model and the verification stage).  Every ``fit_lines``
call ``add_lines`` makes is recorded and then run again on its own, ``--reps`` times, with
exclusive-time wrappers (``time.process_time``, ~1 µs a call) around the pieces of an
iteration: the profile evaluation (erf/exp, ``_profiles_at``; the narrow lines' spans,
``_reaches``; the merged-set bookkeeping, ``_all_profiles``), the linear design and the
model/Jacobian assembly (``linear_design``, ``complete``), the grams JᵀWJ (``gram``: the
linear solve's and the normal equations'), the batched inverse of the linear block
(``_block_inverse``), the reduced step (``_reduced``, ``_reduced_step``, ``_secant``) and
the acceptance (``_accept``, ``chi2``), the active set's re-slices (``take``) and the
one-off set-up and error propagation (``Problem()``, ``_covered``, ``meat``, the final
inverses).  Per fit: ms per fit and µs per row-iteration of each piece, at all its rows and
at a tenth of them: the difference is the per-row cost, what is left at a tenth mostly the
fixed cost of an iteration (its numpy calls), which the small fits of a batch pay for few
rows.  numpy's BLAS is held to one thread, as ``predict --threads 1`` holds it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import model_for_bench, sim_store  # noqa: E402
from lines_speed import first_batch  # noqa: E402
from predict_speed import fits_copies  # noqa: E402


class Timers:
    """Exclusive process time of wrapped functions (a wrapped callee's time is taken out
    of its wrapped caller's)."""

    def __init__(self):
        self.acc, self.calls, self._stack, self._undo = defaultdict(float), defaultdict(int), [], []

    def wrap(self, owner, name, label=None):
        fn, label = getattr(owner, name), label or name

        def timed(*a, **k):
            t0 = time.process_time()
            self._stack.append(0.0)
            try:
                return fn(*a, **k)
            finally:
                dt = time.process_time() - t0
                self.acc[label] += dt - self._stack.pop()
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1] += dt
        setattr(owner, name, timed)
        self._undo.append((owner, name, fn))

    def reset(self):
        self.acc.clear()
        self.calls.clear()

    def restore(self):
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)


def install(t: Timers) -> None:
    """Wrap the pieces of an iteration where their callers look them up."""
    from specsift.lines import fit as F
    from specsift.lines import linear as L
    from specsift.lines import problem as PB
    from specsift.lines import profiles as PR
    from specsift.lines import solver as S
    M = PR.ModelEvaluation
    for owner, name, label in [
            (M, "_profiles_at", None), (M, "_reaches", None), (M, "_all_profiles", None),
            (M, "linear_design", None), (M, "complete", None), (M, "gram", None),
            (L, "_block_inverse", None), (S, "_reduced", None), (S, "_reduced_step", None),
            (S, "_secant", None), (S, "_accept", None), (S, "_chi2_of", "chi2"),
            (S, "projected_trial", None), (S, "joint_trial", None),
            (S, "normal_equations", "normal_equations (rest)"),
            (F, "normal_equations", "normal_equations (rest)"),
            (S, "linear_solve", "linear_solve (rest)"), (F, "linear_solve", "linear_solve (rest)"),
            (PB.Problem, "take", "take"), (S._Rows, "take", "take"),
            (F, "levenberg_marquardt", "LM loop (rest)"), (F, "Problem", "Problem()"),
            (F, "inverse", "final inverses"), (F, "_covered", None),
            (F, "_correlated_meat", "meat")]:
        t.wrap(owner, name, label)


def recorded_fits(batches):
    """{(batch, fit label): (model, args, kwargs)} of every fit_lines call of add_lines."""
    import specsift.lines.measure as M
    from specsift.lines import add_lines
    calls, orig, cur = {}, M.fit_lines, [None]

    def rec(model, loglam, resid, *a, **k):
        label = ("galaxy lines" if len(model.regions) > 1 else
                 f"quasar window {model.regions[0][0]:.0f}-{model.regions[0][1]:.0f} Å")
        calls[cur[0], label] = (model, (loglam, resid) + a, k)
        return orig(model, loglam, resid, *a, **k)

    M.fit_lines = rec
    try:
        for name, (batch, cat) in batches.items():
            cur[0] = name
            add_lines(batch, cat)
    finally:
        M.fit_lines = orig
    return calls


def first_rows(args, kw, m):
    """The same fit on its first ``m`` rows (its per-row arguments cut to them; without
    the continuum's error propagation, whose design is made for every row)."""
    rows = kw.get("rows")
    n = len(rows) if rows is not None else args[1].shape[0]

    def cut(x):
        return x[:m] if isinstance(x, np.ndarray) and x.ndim and x.shape[0] == n else x

    loglam, resid, ivar, *rest = args
    # the continuum's error propagation (a galaxy's) is built for all rows: left out here
    kw = {k: (None if k == "continuum" else cut(v)) for k, v in kw.items()}
    # with ``rows`` the data are the whole batch's, indexed by ``rows``: never cut (a batch
    # whose row count equals the fit's — a stacked fit's pairs — lost its ivar rows)
    data = (resid, ivar) if rows is not None else (resid[:m], ivar[:m])
    return (loglam, *data, *[cut(x) for x in rest]), kw


def profile(t: Timers, model, args, kw, reps):
    from specsift.lines.fit import fit_lines
    res = fit_lines(model, *args, **kw)
    t.reset()
    t0 = time.process_time()
    for _ in range(reps):
        fit_lines(model, *args, **kw)
    total = (time.process_time() - t0) / reps
    return total, int(res.n_iter.sum()), len(res.n_iter), {k: v / reps for k, v in t.acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="simulated batch size")
    ap.add_argument("--fits", type=int, default=256, help="spec files in the real batch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=None, help="fits whose label contains this (e.g. 4619)")
    a = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from specsift import load_model
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    model = load_model(model_for_bench(None)[0])
    with tempfile.TemporaryDirectory() as tmp:
        batches = {"store": first_batch(model, sim_store(2000), a.n),
                   "spec files": first_batch(
                       model, fits_copies(Path(tmp) / "fits", a.fits, "spec-*.fits"), a.n)}
    calls = recorded_fits(batches)
    t = Timers()
    install(t)
    try:
        for (src, label), (mdl, args, kw) in calls.items():
            if a.only and a.only not in label:
                continue
            n = len(kw["rows"]) if kw.get("rows") is not None else args[1].shape[0]
            full = profile(t, mdl, args, kw, a.reps)
            tenth = profile(t, mdl, *first_rows(args, kw, max(n // 10, 1)), a.reps)
            print(f"\n{src}, {label}: {full[2]} rows, {full[1]} row-iterations, "
                  f"{1e3 * full[0]:.1f} ms ({1e6 * full[0] / full[1]:.1f} µs a row-iteration); "
                  f"a tenth of the rows ({tenth[2]}): {1e3 * tenth[0]:.1f} ms "
                  f"({tenth[1]} row-iterations)")
            print("\n| piece | ms per fit | share | µs per row-iteration | at a tenth of the "
                  "rows: ms per fit |\n|---|---|---|---|---|")
            for k, v in sorted(full[3].items(), key=lambda kv: -kv[1]):
                print(f"| {k} | {1e3 * v:.2f} | {v / full[0]:.1%} | {1e6 * v / full[1]:.2f} "
                      f"| {1e3 * tenth[3].get(k, 0.0):.2f} |")
    finally:
        t.restore()


if __name__ == "__main__":
    main()
