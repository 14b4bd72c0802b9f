"""Cost of drawing the survey-noise STAR check's two models per checked row
(:func:`specsift.verify.starcheck.whole_pixel_models`) against drawing them row by row with
``np.interp`` (:func:`specsift.verify.model_flux.model_flux`, as the check did first), and
that both give the same model at the whole pixel.

    nice -n 10 .venv/bin/python benchmarks/starcheck_cost.py [--n 400] [--reps 3] [--stage | --only-stage]

Rows on the default grid: half GALAXY winners at z 0.3–1.4, half QSO at z 0.4–2, each with
its STAR fit at z ≈ 0, random coefficients, the templates broadened by one of 4 σ (pixels),
as LAMOST batches have a few distinct LSFs.  Prints ms per checked row (best of ``--reps``).
``--stage``: also the whole stage (:func:`specsift.verify.verify_catalog`, gasnet's candidates)
on the 48 SDSS galaxies and quasars given SURVEY = LAMOST (a GALAXY-heavy batch the check looks
at: 26 rows), survey-noise check off and on, CPU ms per spectrum (best of ``--reps``, the two
interleaved); run it with ``PYTHONPATH`` at another checkout's ``src`` to compare revisions.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from specsift.spectra import DEFAULT_GRID  # noqa: E402
from specsift.verify.model_flux import model_flux  # noqa: E402
from specsift.verify.templates import bases_for  # noqa: E402
from specsift.verify.windows import NCOEFF_MAX  # noqa: E402


def rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    step = bases_for(DEFAULT_GRID.loglam)["STAR"].step
    types = np.where(np.arange(n) % 2, "QSO", "GALAXY")
    z = np.where(types == "QSO", rng.uniform(0.4, 2.0, n), rng.uniform(0.3, 1.4, n))
    ishift = np.rint(np.log10(1 + z) / step).astype(np.int64)
    sig = rng.choice([0.0, 0.8, 1.3, 2.1], n)
    return types, ishift, rng.normal(size=(n, NCOEFF_MAX)), sig, step


def by_interp(loglam, types, ishift, coef, sig, step):
    z = 10.0 ** (ishift * step) - 1.0
    t = Table({"Z": z, "SPECTYPE": types, "COEFF": coef, "CHI2": np.zeros(len(z))})
    return model_flux(loglam, t, sig).astype(np.float64)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--stage", action="store_true", help="also the whole stage (docstring)")
    ap.add_argument("--only-stage", action="store_true",
                    help="the stage table alone (runs on revisions without whole_pixel_models)")
    args = ap.parse_args(argv)
    if args.only_stage:
        return stage(args.reps)
    from specsift.verify.starcheck import whole_pixel_models
    loglam = DEFAULT_GRID.loglam
    types, ishift, coef, sig, step = rows(args.n)
    star = np.full(args.n, "STAR")
    sshift = np.zeros(args.n, np.int64)
    a = whole_pixel_models(loglam, types, ishift, coef, sig)       # warms the σ caches too
    b = by_interp(loglam, types, ishift, coef, sig, step)
    scale = np.nanmax(np.abs(b))
    print(f"max |difference| / max |model|: {np.nanmax(np.abs(a - b)) / scale:.1e}")
    print("| drawing (STAR + winner) | ms per checked row |\n|---|---|")
    for name, fn in (("row by row, np.interp (model_flux)", by_interp),
                     ("whole pixel, template slices (whole_pixel_models)", None)):
        best = np.inf
        for _ in range(args.reps):
            t0 = time.process_time()
            if fn is None:
                whole_pixel_models(loglam, star, sshift, coef, sig)
                whole_pixel_models(loglam, types, ishift, coef, sig)
            else:
                fn(loglam, star, sshift, coef, sig, step)
                fn(loglam, types, ishift, coef, sig, step)
            best = min(best, time.process_time() - t0)
        print(f"| {name} | {best / args.n * 1e3:.2f} |")
    if args.stage:
        stage(args.reps)


def stage(reps: int) -> None:
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_surveys as RS
    import verify_proposers as VP

    from specsift.verify import VerifyOptions, verify_catalog
    b, _ = RS.sdss()
    b = b[np.flatnonzero(np.char.upper(np.asarray(b.meta["CLASS"]).astype(str)) != "STAR")]
    b.meta["SURVEY"] = ["LAMOST"] * len(b)
    tab, cands = VP._proposals(b, None, "")["gasnet"]
    opts = {"off": VerifyOptions(noise_check_margin=None), "on": VerifyOptions()}
    best = {k: np.inf for k in opts}
    for _ in range(reps + 1):                     # the first: caches
        for k, o in opts.items():
            t0 = time.process_time()
            verify_catalog(b, tab, cands, o)
            best[k] = min(best[k], time.process_time() - t0)
    print(f"\n| stage, {len(b)} SDSS galaxies/quasars as LAMOST | CPU ms per spectrum |\n|---|---|")
    for k, v in best.items():
        print(f"| survey-noise check {k} | {v / len(b) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
