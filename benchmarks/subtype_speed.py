"""Time of the star SUBTYPE fit (``verify.subtype``) per star, one spectrum a batch (as
``predict`` reads SDSS and LAMOST spec files), and of its setup (``_restricted``: the fit
products on the named templates' pixels) alone.

    PYTHONPATH=src .venv/bin/python benchmarks/subtype_speed.py [--reps 5] [--files 8]

The first ``--files`` spec files of ``../shared/data/sdss`` and of ``../shared/data/lamost``
(SDSS: spEigenStar with 4 terms; LAMOST: its own library with 6), each at shift 0 whatever it
is (only time is measured).  One thread; the fastest of ``--reps`` (the machine is shared: the
fastest is the least disturbed).  Run it with another checkout's ``src`` on PYTHONPATH to
compare the two.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from specsift.io import read
from specsift.verify import subtype as S
from specsift.verify.fit import prepare
from specsift.verify.stage import sky_mask
from specsift.verify.templates import bases_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED  # noqa: E402


def _time(f, reps: int, number: int = 20) -> float:
    return min(timeit.repeat(f, number=number, repeat=reps)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--files", type=int, default=8)
    a = ap.parse_args()
    print("| survey | files | star_subtypes µs/star | _restricted µs/star |")
    print("|---|---:|---:|---:|")
    for survey in ("sdss", "lamost"):
        files = sorted((SHARED / survey).glob("spec-*.fits"))[:a.files]
        full, setup = [], []
        for f in files:
            b = read(f)
            prep = prepare(b.flux, b.ivar, b.mask | sky_mask(b.loglam))
            basis = bases_for(b.loglam)["STAR"]
            rows, shift = np.array([0]), np.array([0.0])
            lib = survey == "lamost"
            temps = basis.survey_named["LAMOST"][0] if lib else basis.star_named
            inside = S._inside(basis, temps, b.flux.shape[1], 0 if lib else 20)
            npoly = S.LIBRARY_NPOLY if lib else S.STAR_NPOLY
            full.append(_time(lambda: S.star_subtypes(b, basis, rows, shift, prep=prep), a.reps))
            setup.append(_time(lambda: S._restricted(prep, rows, inside, npoly), a.reps))
        print(f"| {survey.upper()} | {len(files)} | {np.median(full):.0f} | {np.median(setup):.0f} |")


if __name__ == "__main__":
    with threadpool_limits(1):
        main()
