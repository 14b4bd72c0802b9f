"""Milliseconds to read one file of each real format in ../shared/data (open, parse, labels,
resample onto the default grid), CPU time, one thread; best of three rounds of ``--repeats``
reads.

    python benchmarks/read_speed.py [--repeats 10] [--many 400]

Per-file cost is what bounds a survey of one-spectrum files (SDSS DR17: ≈ 5 M spec files).
``--many N`` adds the case that matters for them: N copies of the 8 SDSS spec files (SDSS-I,
with per-exposure HDUs, BOSS) streamed by ``iter_read`` in batches of 1024, as ``predict``
reads them — CPU ms per file, best of three rounds.  One file read alone pays for a batch of
its own; many files share one (``specsift.io.assemble``)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED as DATA  # noqa: E402
from _common import sdss_files  # noqa: E402

FILES = ["sdss/spec-0266-51602-0013.fits", "sdss/spec-0332-52367-0639.fits",
         "sdss/spec-6717-56397-0534.fits", "sdss/sdss-labelled-50.fits",
         "lamost/spec-55916-B5591606_sp01-001.fits", "desi/coadd-sv3-dark-26065.fits"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--many", type=int, default=0, metavar="N")
    args = ap.parse_args()
    from specsift import io
    warnings.simplefilter("ignore", UserWarning)     # the DESI file's flagged spectra
    print("| file | spectra | CPU ms per file | CPU ms per spectrum |\n|---|---|---|---|")
    for name in FILES:
        path = DATA / name
        if not path.exists():
            continue
        n = len(io.read(path))                       # warm-up (imports, caches)
        best = min(_timed(io.read, path, args.repeats) for _ in range(3))
        print(f"| {name} | {n} | {best * 1e3:.1f} | {best * 1e3 / n:.2f} |")
    if args.many:
        _many(io, args.many)


def _many(io, n: int) -> None:
    import shutil
    import tempfile
    src = sdss_files("spec-*.fits")
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for k in range(n):
            files.append(Path(tmp) / f"{k:06d}-{src[k % len(src)].name}")
            shutil.copy(src[k % len(src)], files[-1])
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            rows = sum(len(b) for b in io.iter_read(files, batch_size=1024))
            best = min(best, time.process_time() - t)
    print(f"| {n} SDSS spec files (copies of {len(src)}), iter_read | {rows} | "
          f"{best * 1e3 / n:.2f} | {best * 1e3 / rows:.2f} |")


def _timed(read, path, repeats) -> float:
    """CPU seconds per read (process time: other jobs on a shared machine do not count)."""
    t = time.process_time()
    for _ in range(repeats):
        read(path)
    return (time.process_time() - t) / repeats


if __name__ == "__main__":
    main()
