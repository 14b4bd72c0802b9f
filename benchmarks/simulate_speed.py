"""Simulator speed and memory: `specsift simulate` for two --n values, one core.

    .venv/bin/python benchmarks/simulate_speed.py [--n 2000 10000] [--classes five]

Each run is a fresh process pinned to one thread (OMP/MKL/OpenBLAS = 1) so its peak RSS is
its own; a flat peak RSS across n shows the constant-memory chunked writing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, time
from specsift.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(f"RESULT {dt:.3f} {cpu.ru_utime + cpu.ru_stime:.3f} {cpu.ru_maxrss}")
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--classes", default="five")
    a = ap.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    print(f"{'n':>7} {'wall s':>8} {'cpu s':>8} {'spectra/s (cpu)':>16} {'spectra/s (wall)':>17} "
          f"{'peak RSS MB':>12} {'file MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.n:
            out = Path(tmp) / f"sim{n}.h5"
            cmd = [sys.executable, "-c", CHILD, "simulate", "--classes", a.classes, "--n",
                   str(n), "--seed", "1", "-o", str(out), "--quiet"]
            if hasattr(os, "sched_setaffinity"):
                pre = lambda: os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # noqa
            else:                                                   # pragma: no cover
                pre = None
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=pre)
            line = [l for l in res.stdout.splitlines() if l.startswith("RESULT")]
            if res.returncode or not line:
                print(res.stdout, res.stderr, file=sys.stderr)
                raise SystemExit(f"simulate --n {n} failed")
            wall, cpu, rss = map(float, line[0].split()[1:])
            print(f"{n:>7} {wall:>8.1f} {cpu:>8.1f} {n / cpu:>16.0f} {n / wall:>17.0f} "
                  f"{rss / 1024:>12.0f} {out.stat().st_size / 1e6:>8.0f}")


if __name__ == "__main__":
    main()
