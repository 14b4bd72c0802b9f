"""The Hβ + Hα quasar windows fitted as one stacked problem (``lines/stack.py``) against
the two separate fits, at several numbers of (row, window) pairs: where stacking pays
(``lines.measure.STACK_ROWS_MAX``).

    PYTHONPATH=src .venv/bin/python benchmarks/linesfix_stack.py [--reps 3]

The pairs are those of the batch of 400 copies of the SDSS spec files
(``benchmarks/predict_speed.py``'s; after the model and the verification stage) and of
the simulated store's first batch of 1024, the first n of each window; CPU seconds
(``time.process_time``, one thread), the fastest of ``--reps`` alternated calls; both fits' results are
checked equal, field by field.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import model_for_bench, sim_store  # noqa: E402
from lines_speed import fastest  # noqa: E402
from linesfix_ab import batches  # noqa: E402
from predict_speed import fits_copies  # noqa: E402


def stacked_call(batch, cat):
    """(args, kwargs) of the stacked Hβ + Hα fit_lines call of ``add_lines`` (None: none)."""
    import specsift.lines.measure as M
    from specsift.lines import add_lines
    calls, orig = [], M.fit_lines

    def rec(*a, **k):
        calls.append((a, k))
        return orig(*a, **k)

    M.fit_lines, saved = rec, M.STACK_ROWS_MAX
    M.STACK_ROWS_MAX = 10 ** 9
    try:
        add_lines(batch, cat)
    finally:
        M.fit_lines, M.STACK_ROWS_MAX = orig, saved
    return next(((a, k) for a, k in calls if k.get("others")), None)


def scan(a, k, counts, reps):
    from dataclasses import fields

    from specsift.lines.fit import fit_lines
    kind = k["kind"]
    by_kind = [np.flatnonzero(kind == q) for q in (0, 1)]
    models = (a[0],) + tuple(k["others"])
    for n0, n1 in counts:
        sel = np.concatenate([by_kind[0][:n0], by_kind[1][:n1]])
        st = ((a[0],) + a[1:4] + (a[4][sel], a[5][sel]),
              {**k, "rows": k["rows"][sel], "kind": kind[sel]})
        sep = []
        for q, mdl in enumerate(models):
            s = sel[kind[sel] == q]
            kw = {n: v for n, v in k.items() if n not in ("others", "kind")}
            sep.append(((mdl,) + a[1:4] + (a[4][s], a[5][s]), {**kw, "rows": k["rows"][s]}))
        one = fit_lines(*st[0], **st[1])
        apart = [fit_lines(*x, **y) for x, y in sep]
        same = all(np.array_equal(getattr(one, f.name), np.concatenate(
            [getattr(r, f.name) for r in apart]), equal_nan=getattr(one, f.name).dtype.kind == "f")
            for f in fields(one))
        t_st = fastest(lambda: fit_lines(*st[0], **st[1]), reps)
        t_sep = fastest(lambda: [fit_lines(*x, **y) for x, y in sep], reps)
        print(f"| {sel.size} ({int((kind[sel] == 0).sum())} Hβ) | "
              f"{1e3 * t_st:.1f} | {1e3 * t_sep:.1f} | {1e3 * (t_sep - t_st):+.1f} | "
              f"{'yes' if same else 'NO'} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import torch

    from specsift import load_model
    torch.set_num_threads(1)
    model = load_model(model_for_bench(None)[0])
    with tempfile.TemporaryDirectory() as tmp:
        fits = batches(model, fits_copies(Path(tmp) / "fits", 400, "spec-*.fits"), 1024)[0]
    store = batches(model, sim_store(2000), 1024)[0]
    print("| pairs | stacked ms | separate ms | saved ms | same results |\n|---|---|---|---|---|")
    for b, counts in ((store, [(8, 4), (32, 16)]),
                      (fits, [(20, 10), (40, 20), (60, 40), (100, 50), (150, 75), (250, 150)])):
        call = stacked_call(*b)
        if call is not None:
            scan(*call, counts, a.reps)


if __name__ == "__main__":
    main()
