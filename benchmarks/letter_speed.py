"""CPU time of the star SUBTYPE naming an unverified model's STAR rows get
(``specsift.verify.subtype.star_subtypes_at``: the stage's cleaning of just those rows, the
library or spEigenStar fit and, for LAMOST, the letter trees), one thread, fastest of 5.

    PYTHONPATH=src .venv/bin/python benchmarks/letter_speed.py [--lamost 100]

Rows: one spectrum a batch (8 LAMOST dr10-afg files, 8 SDSS files: as ``predict`` reads spec
files) and the first ``--lamost`` dr10-afg files as one batch, each at z = 0 (only time is
measured).  ``--no-trees`` times the LAMOST rows with the letter vote instead of the trees.
"""

from __future__ import annotations

import argparse
import sys
import timeit
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, sdss_files  # noqa: E402

from specsift.io import read  # noqa: E402
from specsift.spectra import SpectraBatch  # noqa: E402
from specsift.verify import subtype as ST  # noqa: E402


def _read(paths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [read(p) for p in paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lamost", type=int, default=100)
    ap.add_argument("--no-trees", action="store_true")
    args = ap.parse_args()
    if args.no_trees:
        ST._trees = lambda survey, names: None          # the vote, as before the trees
    lam = _read(sorted((SHARED / "lamost-real" / "dr10-afg" / "spectra").glob("*.fits*"))
                [:args.lamost])
    sdss = _read(sdss_files()[:8])
    print("| rows | µs per star |\n|---|---|")
    with threadpool_limits(1):
        for name, bs in (("LAMOST, one spectrum a batch", lam[:8]),
                         ("SDSS, one spectrum a batch", sdss)):
            t = min(timeit.repeat(lambda: [ST.star_subtypes_at(b, [0], [0.0]) for b in bs],
                                  number=5, repeat=5)) / 5 / len(bs)
            print(f"| {name} | {t * 1e6:.0f} |")
        big = SpectraBatch.concatenate(lam)
        rows, z = np.arange(len(big)), np.zeros(len(big))
        t = min(timeit.repeat(lambda: ST.star_subtypes_at(big, rows, z), number=3,
                              repeat=5)) / 3 / len(big)
        print(f"| LAMOST, one batch of {len(big)} | {t * 1e6:.0f} |")


if __name__ == "__main__":
    main()
