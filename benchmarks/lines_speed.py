"""Where the emission-line stage's time goes: ``add_lines`` on one batch of simulated spectra
and one batch of real SDSS spec files, per fit, per object.

    PYTHONPATH=src .venv/bin/python benchmarks/lines_speed.py [--n 1024] [--fits 256] [--reps 3]
                                                             [--against ../main --rounds 7]
                                                             [--converged]
                                                             [--full-steps K]

One thread, CPU time (``time.process_time``), the fastest of ``--reps`` calls (the machine is
shared: the fastest is the least disturbed).  The batches are those of
``benchmarks/predict_speed.py`` (its cached simulated ``thirteen`` store; copies of the 8
spec files of ``../shared/data/sdss``), after the model and the verification stage.  The
table: per batch its mix, ``add_lines`` µs per spectrum, and each fit (galaxy continuum,
galaxy lines, each quasar window) in ms per batch and µs per object it fits — which says
whether a batch costs more because its objects do or because it has more of the costly ones
(windows fitted as one stacked problem, ``lines.models.window_groups``, are one fit whose
objects are (row, window) pairs), and each fit's Levenberg–Marquardt iterations per row
(median / max / rows that stopped at the cap unconverged).

``--against CHECKOUT``: also time another checkout's line stage (its ``src/specsift/lines``,
loaded as a second package beside this one) on the same batches in the same process,
alternating the two ``--rounds`` times: on a shared machine the load drifts by ±30 % between
runs, and alternating in one process puts both under the same load (the table gives the
fastest and the median round and the ratio of the medians) and both trees' total LM
row-iterations per batch (deterministic: they do not depend on the load).

``--converged`` (with ``--against``): also fit both batches with the other checkout's line
stage run 300 iterations for every row (its ``fit_lines`` defaults ``max_iter=300``,
``ftol = xtol = -1``, as ``benchmarks/lines_compare.py --n-iter 300 --tol -1`` does for a
catalog) and print how far each tree's answers are from that converged fit: line values
(fluxes, EWs, σ) more than 0.01, 0.1 and 1 σ away (σ from the converged fit's ``_IVAR``),
the largest, and the rows with a flux > 0.1 σ away.

``--full-steps K``: the quasar windows take K joint steps before variable projection
(``lines.solver.FULL_STEPS``, default 3; galaxies take none whatever K): ``--full-steps 0``
shows what the joint first steps cost in iterations.
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
from _predict_common import fastest, model_for_bench, sim_store  # noqa: E402
from lines_compare import pulls  # noqa: E402
from predict_speed import fits_copies  # noqa: E402


def first_batch(model, store, batch_size):
    """The first batch of ``store`` with its catalog after the model and verification."""
    import torch

    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    for unit in plan_units([store], batch_size):
        for _, batch in iter_unit(unit, batch_size, model.grid):
            with torch.inference_mode():
                cat, cands = model.propose(model.check_batch(batch))
            return batch, verify_catalog(model.check_batch(batch), cat, cands)
    raise ValueError(f"{store}: no spectra")


def row_iterations(pkg: str, batch, cat) -> int:
    """Total LM row-iterations of one ``add_lines`` call of package ``pkg``'s line stage
    (``specsift.lines`` or :func:`other_add_lines`'s ``specsift._lines_other``): the sum
    over every fit of its rows' ``n_iter`` (a tree with the fixed count: 5 a row)."""
    import importlib
    M = importlib.import_module(pkg + ".measure")
    orig, total = M.fit_lines, [0]

    def fit(model, loglam, resid, *a, **k):
        r = orig(model, loglam, resid, *a, **k)
        it = getattr(r, "n_iter", None)
        total[0] += int(it.sum()) if it is not None and it.size else 5 * r.amp.shape[0]
        return r

    M.fit_lines = fit
    try:
        importlib.import_module(pkg + ".stage").add_lines(batch, cat)
    finally:
        M.fit_lines = orig
    return total[0]


def breakdown(batch, cat, reps):
    """(add_lines seconds, {fit name: (seconds, objects, iterations)}, total row-iterations)
    for one batch."""
    import specsift.lines.measure as M
    from specsift.lines import add_lines
    acc = defaultdict(float)
    objs, iters, rows_it = {}, {}, [0]
    orig_fit, orig_cont = M.fit_lines, M.stellar_continuum

    stacked = _stacked_labels()

    def fit(model, loglam, resid, *a, **k):
        t0 = time.process_time()
        r = orig_fit(model, loglam, resid, *a, **k)
        key = "galaxy lines" if len(model.regions) > 1 else stacked.get(model) or \
            f"quasar window {model.regions[0][0]:.0f}-{model.regions[0][1]:.0f} Å (bins of {model.bin})"
        acc[key] += time.process_time() - t0
        # a quasar window's subset is given as ``rows`` of the whole batch
        objs[key] = resid.shape[0] if k.get("rows") is None else len(k["rows"])
        it = getattr(r, "n_iter", None)             # a tree with a fixed count has none
        rows_it[0] += int(it.sum()) if it is not None and it.size else 5 * r.amp.shape[0]
        iters[key] = ("5 (fixed)" if it is None or not it.size else
                      f"{np.median(it):.0f} / {it.max()} / {(~r.converged).sum()}")
        return r

    def cont(loglam, flux, *a, **k):
        t0 = time.process_time()
        r = orig_cont(loglam, flux, *a, **k)
        acc["galaxy continuum"] += time.process_time() - t0
        objs["galaxy continuum"] = flux.shape[0]
        return r

    add_lines(batch, cat)                                      # warm (caches)
    total = fastest(lambda: add_lines(batch, cat), reps)
    M.fit_lines, M.stellar_continuum = fit, cont
    try:
        add_lines(batch, cat)
    finally:
        M.fit_lines, M.stellar_continuum = orig_fit, orig_cont
    return total, {k: (acc[k], objs[k], iters.get(k, "")) for k in acc}, rows_it[0]


def _stacked_labels() -> dict:
    """{model a stacked fit may run with (any window of its group: the first that has
    rows): its label}: quasar windows fitted as one problem (``lines.models.window_groups``)
    are timed as one fit, named by their lines (objects are then (row, window) pairs).
    Keyed by value (a frozen dataclass), not identity: ``quasar_models()`` and
    ``quasar_models(False, False)`` are two cache entries."""
    from specsift.lines import models
    if not hasattr(models, "window_groups"):
        return {}
    qm = models.quasar_models()
    out = {}
    for g in models.window_groups():
        if len(g) > 1:
            names = " + ".join(qm[i][0].replace("_BROAD", "") for i in g)
            for i in g:
                out[qm[i][1]] = f"quasar windows {names}, stacked (bins of {qm[i][1].bin})"
    return out


def other_add_lines(checkout: Path):
    """``add_lines`` of another checkout's ``lines`` package, imported as
    ``specsift._lines_other`` (its relative imports resolve inside it; the rest of
    ``specsift`` is this tree's)."""
    import importlib
    import types
    path = Path(checkout).resolve() / "src" / "specsift" / "lines"
    if not (path / "stage.py").exists():
        raise SystemExit(f"{checkout}: no src/specsift/lines/stage.py")
    pkg = types.ModuleType("specsift._lines_other")
    pkg.__path__ = [str(path)]
    sys.modules["specsift._lines_other"] = pkg
    importlib.import_module("specsift._lines_other.stage")
    return "specsift._lines_other"


def against(batches, pkg: str, rounds: int, name: str, reference: bool = False) -> None:
    """This tree's add_lines and package ``pkg``'s alternated ``rounds`` times per batch;
    ``reference``: then both against ``pkg``'s converged fit (:func:`converged`)."""
    import importlib

    from specsift.lines import add_lines
    other = importlib.import_module(pkg + ".stage").add_lines
    print(f"\n| batch | {name}: fastest / median µs per spectrum | this tree: fastest / median "
          "| ratio of medians | LM row-iterations: other → this | answers |"
          "\n|---|---|---|---|---|---|")
    for label, (batch, cat) in batches.items():
        add_lines(batch, cat)
        other(batch, cat)
        mine, theirs = [], []
        for _ in range(rounds):
            for f, acc in ((other, theirs), (add_lines, mine)):
                t0 = time.process_time()
                f(batch, cat)
                acc.append(1e6 * (time.process_time() - t0) / len(batch))
        med = lambda v: float(np.median(v))  # noqa: E731
        print(f"| {label} | {min(theirs):.0f} / {med(theirs):.0f} | {min(mine):.0f} / "
              f"{med(mine):.0f} | {med(theirs) / med(mine):.2f} | "
              f"{row_iterations(pkg, batch, cat)} → {row_iterations('specsift.lines', batch, cat)} | "
              f"{same_answers(other(batch, cat), add_lines(batch, cat))} |")
    if not reference:
        return
    print(f"\n| batch | against {name}'s converged fit (300 iterations every row): values "
          "> 0.01 / 0.1 / 1 σ away — " + name + " | this tree |\n|---|---|---|")
    for label, (batch, cat) in batches.items():
        ref = converged(pkg, batch, cat)
        print(f"| {label} | {distance(ref, other(batch, cat))} | "
              f"{distance(ref, add_lines(batch, cat))} |")


def converged(pkg: str, batch, cat):
    """Package ``pkg``'s ``add_lines`` with every row run 300 iterations (its
    ``fit_lines`` defaults patched for the call, as ``lines_compare.py --n-iter 300 --tol
    -1`` does): the reference a faster fit is measured against."""
    import importlib
    F = importlib.import_module(pkg + ".fit")
    code, saved = F.fit_lines.__code__, F.fit_lines.__defaults__
    names = code.co_varnames[:code.co_argcount]
    first = len(names) - len(saved)
    new = list(saved)
    for name, value in (("max_iter", 300), ("ftol", -1.0), ("xtol", -1.0)):
        new[names.index(name) - first] = value
    F.fit_lines.__defaults__ = tuple(new)
    try:
        return importlib.import_module(pkg + ".stage").add_lines(batch, cat)
    finally:
        F.fit_lines.__defaults__ = saved


def distance(ref, b) -> str:
    """How far catalog ``b``'s line values are from the converged ``ref``'s, in ``ref``'s
    errors: counts of values > 0.01 / 0.1 / 1 σ away (of all measured), the largest, and
    rows with a flux > 0.1 σ away."""
    scaled = pulls(ref, b)
    fluxes = [p for col, p in scaled.items() if col.endswith("_FLUX")]
    p = np.stack(list(scaled.values()))
    v = p[np.isfinite(p)]
    rows = int((np.nanmax(np.stack(fluxes), axis=0, initial=0.0) > 0.1).sum())
    return (f"{(v > 0.01).sum()} / {(v > 0.1).sum()} / {(v > 1).sum()} of {v.size}, "
            f"largest {v.max(initial=0):.3g}σ, rows with a flux > 0.1σ: {rows}")


def same_answers(a, b) -> str:
    """How far two line catalogs of one batch are apart: the largest difference of a flux,
    EW or σ in units of its error, the largest ivar ratio, and whether the measured lines
    and the rule-decided labels are the same in every row."""
    pull = max((float(np.nanmax(p, initial=0.0)) for p in pulls(a, b).values()), default=0.0)
    ivar = 0.0
    for col in a.colnames:
        x, y = np.asarray(a[col]), np.asarray(b[col])
        if col.endswith("_IVAR"):
            m = (x > 0) & (y > 0)
            if m.any():
                ivar = max(ivar, float(np.abs(np.log(x[m] / y[m])).max()))
    measured = all(np.array_equal(np.isfinite(np.asarray(a[c], float)),
                                  np.isfinite(np.asarray(b[c], float)))
                   for c in a.colnames if c.endswith("_FLUX"))
    labels = all(np.array_equal(np.asarray(a[c]), np.asarray(b[c]))
                 for c in ("SUBCLASS_LINES", "CLASS_LABEL", "SUBTYPE", "SUBTYPE_FROM_LINES"))
    return (f"max {pull:.3f}σ, ivar ×{np.exp(ivar):.3f}, same lines measured: "
            f"{'yes' if measured else 'NO'}, same labels: {'yes' if labels else 'NO'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="simulated batch size")
    ap.add_argument("--fits", type=int, default=256, help="spec files in the real batch")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--model", default=None)
    ap.add_argument("--against", default=None, metavar="CHECKOUT",
                    help="also alternate with this checkout's line stage in one process")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--converged", action="store_true",
                    help="with --against: both trees against the other's 300-iteration fit")
    ap.add_argument("--full-steps", type=int, default=None, metavar="K",
                    help="joint steps of the quasar windows before variable projection "
                         "(this tree only; default lines.solver.FULL_STEPS)")
    a = ap.parse_args()
    if a.full_steps is not None:
        import specsift.lines.solver as S
        S.FULL_STEPS = a.full_steps
    import torch

    from specsift import load_model
    torch.set_num_threads(1)
    model = load_model(model_for_bench(a.model)[0])
    with tempfile.TemporaryDirectory() as tmp:
        batches = {f"simulated (store, batch {a.n})": first_batch(model, sim_store(2000), a.n),
                   f"{a.fits} SDSS spec files": first_batch(
                       model, fits_copies(Path(tmp) / "fits", a.fits, "spec-*.fits"), a.n)}
    for name, (batch, cat) in batches.items():
        st = np.char.strip(np.asarray(cat["SPECTYPE"]).astype(str))
        n = len(batch)
        total, fits, rows_it = breakdown(batch, cat, a.reps)
        mix = ", ".join(f"{k} {np.mean(st == k):.0%}" for k in ("GALAXY", "QSO", "STAR"))
        print(f"\n{name}: {n} spectra ({mix}); add_lines {1e6 * total / n:.0f} µs per spectrum")
        print("\n| fit | objects | ms per batch | µs per spectrum of the batch | µs per object "
              "| LM iterations: median / max / rows at the cap |")
        print("|---|---|---|---|---|---|")
        for k, (sec, m, it) in sorted(fits.items(), key=lambda kv: -kv[1][0]):
            print(f"| {k} | {m} | {1e3 * sec:.1f} | {1e6 * sec / n:.0f} | {1e6 * sec / m:.0f} "
                  f"| {it} |")
        print(f"\ntotal LM row-iterations (every fit, every row): {rows_it}")
    if a.against:
        against(batches, other_add_lines(a.against), a.rounds, a.against, a.converged)


if __name__ == "__main__":
    main()
