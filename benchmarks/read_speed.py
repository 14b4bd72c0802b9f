"""Milliseconds to read one file of each real format in ../shared/data (open, parse, labels,
resample onto the default grid), one thread; best of three rounds of ``--repeats`` reads.

    python benchmarks/read_speed.py [--repeats 10]

Per-file cost is what bounds a survey of one-spectrum files (SDSS DR17: ≈ 5 M spec files)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED as DATA  # noqa: E402

FILES = ["sdss/spec-0266-51602-0013.fits", "sdss/spec-0332-52367-0639.fits",
         "sdss/spec-6717-56397-0534.fits", "sdss/sdss-labelled-50.fits",
         "lamost/spec-55916-B5591606_sp01-001.fits", "desi/coadd-sv3-dark-26065.fits"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    from specsift import io
    warnings.simplefilter("ignore", UserWarning)     # the DESI file's flagged spectra
    print("| file | spectra | ms per file | ms per spectrum |\n|---|---|---|---|")
    for name in FILES:
        path = DATA / name
        if not path.exists():
            continue
        n = len(io.read(path))                       # warm-up (imports, caches)
        best = min(_timed(io.read, path, args.repeats) for _ in range(3))
        print(f"| {name} | {n} | {best * 1e3:.1f} | {best * 1e3 / n:.2f} |")


def _timed(read, path, repeats) -> float:
    t = time.perf_counter()
    for _ in range(repeats):
        read(path)
    return (time.perf_counter() - t) / repeats


if __name__ == "__main__":
    main()
