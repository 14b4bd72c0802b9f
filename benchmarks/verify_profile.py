"""Where the verification stage's CPU time goes, on the simulated store of predict_speed.py.

    .venv/bin/python benchmarks/verify_profile.py [--n 2000] [--reps 3] [--fits 400]

Prints two tables (µs per spectrum, medians of ``--reps`` passes over the store after one
warm pass, one thread): the stage's steps (:func:`specsift.verify.stage._verify`'s calls), and
its χ² scans by kind (who called :func:`specsift.verify.fit.scan`, with how many shifts, on
how many pixels, with how many templates), with rows scanned and µs per row, so that a
change can be judged by what it costs per call and per row.  Timers wrap the functions
where the stage looks them up; the answers are those of an untimed run.  ``--fits N``: the
same tables on N SDSS spec files instead (copies of the 8 real ones in ../shared/data/sdss,
one batch, as ``predict_speed.py --fits`` reads them): bright galaxies and quasars, where the
template-error refit and the STAR check weigh more than on the simulated store.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402
from predict_speed import fits_copies  # noqa: E402

STEPS = ("prepare", "solve", "full_range_candidates", "solve again (rescued rows)",
         "refit_template_limited", "_star_check", "star_subtypes")


def _timed(mod, name, acc, key):
    f = getattr(mod, name)

    def g(*a, **k):
        t = time.process_time()
        out = f(*a, **k)
        acc[key(a, k) if callable(key) else key] += time.process_time() - t
        return out
    setattr(mod, name, g)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fits", type=int, default=0, metavar="N",
                    help="profile N SDSS spec files instead of the simulated store")
    a = ap.parse_args()
    import tempfile

    import torch
    from threadpoolctl import threadpool_limits

    import specsift.verify.refine as refine
    import specsift.verify.stage as stage
    import specsift.verify.starcheck as starcheck
    import specsift.verify.windows as windows
    import specsift.verify.zfind as zfind
    from specsift import load_model
    from specsift.pipeline.units import iter_unit, plan_units
    torch.set_num_threads(1)
    threadpool_limits(1, "blas")
    model = load_model("gasnet").prepare("cpu", 1)
    items = []
    tmp = tempfile.TemporaryDirectory()
    source = (fits_copies(Path(tmp.name) / "fits", a.fits, "spec-*.fits") if a.fits
              else sim_store(a.n))
    label = f"{a.fits} SDSS spec files" if a.fits else "simulated spectra"
    for unit in plan_units([source], 1024):
        for _, batch in iter_unit(unit, 1024, model.grid):
            b = model.check_batch(batch)
            with torch.inference_mode():
                items.append((b, *model.propose(b)))
    steps, scans, rows = defaultdict(float), defaultdict(float), defaultdict(int)
    seen = {"solve": 0}

    def solve_key(args, kw):                 # the stage's first decision, or the rescue's
        seen["solve"] += 1
        return "solve" if seen["solve"] == 1 else "solve again (rescued rows)"
    for s in STEPS:
        if s != "solve again (rescued rows)":
            _timed(stage, s, steps, solve_key if s == "solve" else s)

    def kind(who, skip=0):       # skip: arguments before (prep, basis, spec, centres, offsets)
        def key(args, kw):
            prep, (basis, spec, _, offsets) = args[0], args[1 + skip:5 + skip]
            k = (who, len(offsets), prep.npix, basis.ntemplate)
            rows[k] += len(spec)
            return k
        return key
    def kind_all(who):           # fit.scan_all(prep, jobs): one Cholesky for all its jobs
        def key(args, kw):
            prep, jobs = args[0], args[1]
            k = (f"{who} (scan_all)", "/".join(sorted({str(len(j[3])) for j in jobs})),
                 prep.npix, "/".join(sorted({str(j[0].ntemplate) for j in jobs})))
            rows[k] += sum(len(j[1]) for j in jobs)
            return k
        return key
    for who, mod in (("window", refine), ("coarse windows", windows),
                     ("whole-z rescue", zfind)):
        for name, k in (("scan", kind), ("scan_all", kind_all)):
            if hasattr(mod, name):
                _timed(mod, name, scans, k(who))
    # the STAR check's scan (.polyfirst.scan_poly_first: its polynomial factor after prep;
    # fit.scan before it)
    if hasattr(starcheck, "scan_poly_first"):
        _timed(starcheck, "scan_poly_first", scans, kind("STAR check", 1))
    else:
        _timed(starcheck, "scan", scans, kind("STAR check"))
    runs = []
    for r in range(a.reps + 1):
        for d in (steps, scans, rows):
            d.clear()
        t = time.process_time()
        for b, cat, cands in items:
            seen["solve"] = 0
            stage.verify_catalog(b, cat, cands)
        total = time.process_time() - t
        if r:                                    # the first pass builds the caches
            runs.append((total, dict(steps), dict(scans), dict(rows)))
    n = sum(len(b) for b, _, _ in items)

    def med(i, k):
        return 1e6 * float(np.median([run[i].get(k, 0.0) for run in runs])) / n
    tot = 1e6 * float(np.median([run[0] for run in runs])) / n
    tmp.cleanup()
    print(f"{n} {label}, gasnet candidates, one thread; medians of {a.reps} passes\n")
    print("| verify step | µs / spectrum | share |\n|---|---|---|")
    for s in STEPS:
        print(f"| {s} | {med(1, s):.0f} | {100 * med(1, s) / tot:.0f}% |")
    print(f"| whole stage | {tot:.0f} | 100% |\n")
    print("| χ² scans: caller, shifts, pixels, templates | calls' rows | µs / spectrum | "
          "µs / row |\n|---|---|---|---|")
    for k in sorted(runs[0][2]):
        r_ = runs[0][3][k]
        print(f"| {k[0]}, {k[1]}, {k[2]}, {k[3]} | {r_} | {med(2, k):.1f} | "
              f"{med(2, k) * n / max(r_, 1):.1f} |")


if __name__ == "__main__":
    main()
