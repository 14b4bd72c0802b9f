"""Stage CPU per spectrum at several batch sizes, and the line stage's Levenberg–Marquardt fits.

    PYTHONPATH=src .venv/bin/python benchmarks/stage_batch_sizes.py [--sizes 256 512 1024 2048]
                                                                    [--passes 2] [--lm]

Why: a stage whose cost per batch does not shrink with its rows (a fit's iterations on the
few rows of a window, per-call packing) counts more per spectrum in small batches; the
table says which stage that is.  The same 2000-spectrum simulated store as
``benchmarks/predict_speed.py``, its stage loop (``predict_speed.stages``) at each size in
turn, ``--passes`` times interleaved, the faster pass of each printed (µs a spectrum, one
thread).  ``--lm``: each ``levenberg_marquardt`` call of the line stage on the batches of
1024 (rows, CPU ms, iterations per row: mean, max), for the fits that pay ~1 ms an iteration
whatever their rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import STAGES, sim_store  # noqa: E402


def stage_table(model, store, sizes, passes) -> None:
    from predict_speed import stages
    res = {b: [] for b in sizes}
    for _ in range(passes):
        for b in sizes:
            res[b].append(stages(model, store, b))
    n = res[sizes[0]][0]["n"]
    print("| stage | " + " | ".join(f"B = {b}" for b in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for s in STAGES + ("total",):
        def us(r):
            return 1e6 * (sum(r[x] for x in STAGES) if s == "total" else r[s]) / n
        print(f"| {s} | " + " | ".join(f"{min(us(r) for r in res[b]):.0f}" for b in sizes) + " |")


def lm_trace(model, store) -> None:
    """Every LM call of ``add_lines`` on the store's batches of 1024 (after verification)."""
    import torch

    import specsift.lines.fit as fit
    from specsift.lines import add_lines
    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    log, orig = [], fit.levenberg_marquardt

    def traced(prob, *a, **k):
        t0 = time.thread_time()
        r = orig(prob, *a, **k)
        log.append((prob.n, time.thread_time() - t0, r[3]))
        return r
    batches = [b for unit in plan_units([store], 1024) for _, b in iter_unit(unit, 1024, model.grid)]
    with torch.inference_mode():
        cats = [verify_catalog(model.check_batch(b), *model.propose(model.check_batch(b)))
                for b in batches]
    fit.levenberg_marquardt = traced
    try:
        for k, (b, c) in enumerate(zip(batches, cats)):
            log.clear()
            add_lines(b, c)
            print(f"\nbatch {k} ({len(b)} spectra): LM {1e3 * sum(x[1] for x in log):.0f} ms")
            print("| rows | CPU ms | iterations mean | max |\n|---|---|---|---|")
            for n, t, it in log:
                print(f"| {n} | {1e3 * t:.1f} | {np.mean(it):.1f} | {int(np.max(it))} |")
    finally:
        fit.levenberg_marquardt = orig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--lm", action="store_true", help="also trace the line stage's LM fits")
    a = ap.parse_args()
    import torch

    from specsift import load_model
    torch.set_num_threads(1)
    store = sim_store(2000)
    model = load_model("gasnet").prepare("cpu", 1)
    print(f"command: python benchmarks/stage_batch_sizes.py {' '.join(sys.argv[1:])}\n")
    stage_table(model, store, a.sizes, a.passes)
    if a.lm:
        lm_trace(model, store)


if __name__ == "__main__":
    main()
