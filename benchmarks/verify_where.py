"""Where the verification stage's time goes, on real SDSS spec files against simulated spectra.

    .venv/bin/python benchmarks/verify_where.py [--fits 400] [--n 2000] [--reps 3]

Why: verification costs about twice as much a spectrum on the SDSS spec files of
``benchmarks/predict_speed.py --fits`` as on its simulated store, and the question is whether
real spectra get more windows, more pixels or other sub-steps.  Each sub-step of
``specsift.verify.stage`` is wrapped by a CPU timer and counter for the run (nothing in the
package changes): the window scans (coarse on construction, fine in ``refine``), the
template-error refit and its running median, the line-driven STAR check, star SUBTYPE, the
whole-z rescue, ``prepare``.  One torch thread, gasnet, batches of 1024 (``--fits`` copies of
the 8 real spec files in ``../shared/data/sdss``, one batch as ``predict`` makes them; the
store of ``predict_speed.py``); µs per spectrum and counts per spectrum, the best of
``--reps`` passes (the first untimed).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402
from predict_speed import fits_copies  # noqa: E402

T: dict = collections.defaultdict(float)
C: dict = collections.defaultdict(int)


def _timed(mod, name: str, key: str, count=None) -> None:
    """Replace ``mod.name`` by a wrapper adding its CPU time to T[key] (and ``count``)."""
    f = getattr(mod, name)

    def g(*a, **k):
        t0 = time.process_time()
        r = f(*a, **k)
        T[key] += time.process_time() - t0
        if count:
            count(a, r)
        return r
    setattr(mod, name, g)


def _add(key, n):
    C[key] += int(n)


def instrument() -> None:
    import numpy as np

    import specsift.verify.stage as st
    import specsift.verify.template_error as te
    import specsift.verify.windows as win
    _timed(st, "prepare", "prepare")
    _timed(st, "solve", "windows (solve)")
    _timed(st, "full_range_candidates", "whole-z rescue scan", lambda a, r: _add("rescued", len(a[2])))
    _timed(st, "refit_template_limited", "template-error refit")
    _timed(te, "_level", "  its running median", lambda a, r: _add("template-error rows", len(a[0])))
    _timed(st, "_star_check", "STAR check")
    _timed(st, "star_beats_winner", "  (rows checked)", lambda a, r: _add("STAR-check rows", len(a[2])))
    _timed(st, "star_subtypes", "star SUBTYPE", lambda a, r: _add("stars", len(a[2])))
    init, refine = win.Windows.__init__, win.Windows.refine

    def w_init(self, prep, bases, spec, typ, *a, **k):
        t0 = time.process_time()
        init(self, prep, bases, spec, typ, *a, **k)
        T["  coarse scans"] += time.process_time() - t0
        _add("windows", len(spec))

    def w_refine(self, rows):
        before = int(self.res["fine"].sum())
        t0 = time.process_time()
        refine(self, rows)
        T["  fine scans"] += time.process_time() - t0
        _add("windows refined", int(self.res["fine"].sum()) - before)
    win.Windows.__init__, win.Windows.refine = w_init, w_refine
    del np


def measure(model, inputs, reps: int) -> tuple[float, dict, dict, dict]:
    import numpy as np
    import torch

    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    items = []
    for unit in plan_units([inputs], 1024):
        for _, b in iter_unit(unit, 1024, model.grid):
            with torch.inference_mode():
                cat, cands = model.propose(model.check_batch(b))
            items.append((b, cat, cands))
    n = sum(len(b) for b, _, _ in items)
    best = None
    for r in range(reps + 1):
        T.clear()
        C.clear()
        t0 = time.process_time()
        outs = [verify_catalog(model.check_batch(b), c, k) for b, c, k in items]
        total = time.process_time() - t0
        if r and (best is None or total < best[0]):
            best = (total, dict(T), dict(C), outs)
    total, t, c, outs = best
    npix = np.concatenate([np.asarray(o["NPIXELS"]) for o in outs])
    types = collections.Counter(np.concatenate([np.asarray(o["SPECTYPE"]) for o in outs]).tolist())
    c["median NPIXELS"] = float(np.median(npix))
    return total / n, {k: v / n for k, v in t.items()}, {k: v / n for k, v in c.items()} | {
        "median NPIXELS": c["median NPIXELS"]}, dict(types)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", type=int, default=400)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import torch

    from specsift import load_model
    torch.set_num_threads(1)
    instrument()
    model = load_model("gasnet").prepare("cpu", 1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {f"{a.fits} SDSS spec files": measure(model, fits_copies(Path(tmp) / "f", a.fits,
                                                                          "spec-*.fits"), a.reps),
                f"{a.n} simulated": measure(model, sim_store(a.n), a.reps)}
    names = list(runs)
    print(f"\n| verify (µs / spectrum) | {' | '.join(names)} |")
    print("|---|" + "---|" * len(names))
    print(f"| whole stage | {' | '.join(f'{1e6 * r[0]:.0f}' for r in runs.values())} |")
    keys = sorted({k for r in runs.values() for k in r[1]}, key=lambda k: -runs[names[0]][1].get(k, 0))
    for k in keys:
        print(f"| {k} | {' | '.join(f'{1e6 * r[1].get(k, 0):.0f}' for r in runs.values())} |")
    print(f"\n| per spectrum | {' | '.join(names)} |")
    print("|---|" + "---|" * len(names))
    for k in sorted({k for r in runs.values() for k in r[2]}):
        print(f"| {k} | {' | '.join(f'{r[2].get(k, 0):.3g}' for r in runs.values())} |")
    for name, r in runs.items():
        print(f"\n{name}: verified SPECTYPE {r[3]}")


if __name__ == "__main__":
    main()
