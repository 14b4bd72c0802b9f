"""Simulator speed and memory: `specsift simulate` for two --n values, one core.

    .venv/bin/python benchmarks/simulate_speed.py [--n 2000 10000] [--classes five]

Each run is a fresh process pinned to one thread (OMP/MKL/OpenBLAS = 1) so its peak RSS is
its own; a flat peak RSS across n shows the constant-memory chunked writing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _predict_common import run_child


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--classes", default="five")
    a = ap.parse_args(argv)
    print(f"{'n':>7} {'wall s':>8} {'cpu s':>8} {'spectra/s (cpu)':>16} {'spectra/s (wall)':>17} "
          f"{'peak RSS MB':>12} {'file MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.n:
            out = Path(tmp) / f"sim{n}.h5"
            r = run_child(["simulate", "--classes", a.classes, "--n", n, "--seed", 1, "-o", out,
                           "--quiet"], threads=1, one_core=True)
            wall, cpu, rss = r["seconds"], r["cpu"], r["rss_mb"]
            print(f"{n:>7} {wall:>8.1f} {cpu:>8.1f} {n / cpu:>16.0f} {n / wall:>17.0f} "
                  f"{rss:>12.0f} {out.stat().st_size / 1e6:>8.0f}")


if __name__ == "__main__":
    main()
