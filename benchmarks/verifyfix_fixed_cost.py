"""How the verify stage's cost per spectrum grows as the same spectra are verified in smaller
batches: the 2000 spectra of predict_speed.py's simulated store proposed as one batch, then
verified as 1, 2, 4, … batches, the sizes interleaved pass by pass (and, with ``--base``,
both revisions alternating batch by batch), medians of ``--reps`` passes.

    .venv/bin/python benchmarks/verifyfix_fixed_cost.py [--base main] [--sizes 2000 1000 500 250 16]

Why: a line through the stage's µs a spectrum at B = 256 … 2048 (``/work/prof/stage_bs.py``)
reads as ≈ 50 ms a batch + 0.40 ms a row, but the same rows in 2 batches of 1000 cost what
one of 2000 does: the extra cost of small batches is work that shrinks less than the rows
(scans of a few rows: the walk's steps, the rescue, one coarse scan per window group), not a
constant.  Timing each size on the same rows, interleaved, separates that from the drift of a
shared machine.  Prints µs a spectrum per size (and the ratio this/base per size with
``--base``), and the implied cost of one more batch at each size: (t(B) − t(2000))·2000 /
(2000/B − 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="git revision to compare with (default: this checkout alone)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 1000, 500, 250, 16])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    fns = {}
    if a.base:
        from predict_ab import Version, extract
        extract(a.base, Path(tmp.name))
        sys.path.insert(0, tmp.name)
        fns["base"] = Version("specsift_base").fns["verify_catalog"]
    from specsift.models.base import load_model
    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    fns["this"] = verify_catalog
    m = load_model("gasnet").prepare("cpu", 1)
    unit = plan_units([sim_store(2000)], 4096)[0]
    _, batch = next(iter_unit(unit, 4096, m.grid))
    b = m.check_batch(batch)
    with torch.inference_mode():
        cat, cands = m.propose(b)
    n = len(b)
    slices = {s: [(b[o:o + s], cat[o:o + s], cands.take(slice(o, o + s)))
                  for o in range(0, n, s)] for s in a.sizes}
    us = {(k, s): [] for k in fns for s in a.sizes}
    for i in range(a.reps + 1):                  # the first pass builds the caches
        for s in (a.sizes if i % 2 else a.sizes[::-1]):
            tot = dict.fromkeys(fns, 0.0)
            for j, sl in enumerate(slices[s]):
                for k in (list(fns) if (i + j) % 2 else list(fns)[::-1]):
                    t0 = time.process_time()
                    fns[k](*sl)
                    tot[k] += time.process_time() - t0
            if i:
                for k in fns:
                    us[(k, s)].append(1e6 * tot[k] / n)
    full = max(a.sizes)
    for k in fns:
        t_full = np.median(us[(k, full)])
        for s in a.sizes:
            t = np.median(us[(k, s)])
            nb = -(-n // s)
            extra = (t - t_full) * n / 1e3 / (nb - -(-n // full)) if nb > -(-n // full) else 0.0
            line = f"{k}: B={s} ({nb} batches) {t:.0f} µs a spectrum; one more batch ≈ {extra:.1f} ms"
            if k == "this" and "base" in fns:
                r = np.array(us[("this", s)]) / np.array(us[("base", s)])
                line += f"; this/base median {np.median(r):.3f} ({np.percentile(r, 25):.3f}–" \
                        f"{np.percentile(r, 75):.3f})"
            print(line)
    tmp.cleanup()


if __name__ == "__main__":
    main()
