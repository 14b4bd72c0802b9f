"""Benchmark: iterate SpectralStores of 10⁴ and 10⁵ spectra on the default grid and report
spectra/s and peak RSS — memory must stay flat however many spectra the store holds.

Each size runs in a fresh subprocess so its peak RSS is its own.  Writing uses random
float32 flux/ivar (seed 0); the store files go to a temporary directory and are deleted.

Run:  nice -n 10 .venv/bin/python benchmarks/store_read.py [--sizes 10000 100000] [--batch-size 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _write(path: str, n: int) -> dict:
    import numpy as np
    from astropy.table import Table

    from specsift.io import SpectralStore
    from specsift.spectra import DEFAULT_GRID, SpectraBatch

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with SpectralStore(path, "w") as st:
        for lo in range(0, n, 2000):
            k = min(2000, n - lo)
            st.append(SpectraBatch(DEFAULT_GRID.loglam,
                                   rng.normal(10, 1, (k, DEFAULT_GRID.size)).astype(np.float32),
                                   np.full((k, DEFAULT_GRID.size), 1.0, np.float32),
                                   meta=Table({"TARGETID": np.arange(lo, lo + k)})))
    return {"write_s": time.perf_counter() - t0, "size_mb": Path(path).stat().st_size / 1e6}


def _read(path: str, how: str, batch_size: int) -> dict:
    from specsift.io import SpectralStore, iter_read

    t0 = time.perf_counter()
    count = 0
    if how == "store":
        with SpectralStore(path) as st:
            for b in st.iter_batches(batch_size):
                count += len(b)
    else:
        for b in iter_read(path, batch_size=batch_size):
            count += len(b)
    return {"read_s": time.perf_counter() - t0, "count": count,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(mode: str, path: str, n: int, batch_size: int) -> None:
    out = _write(path, n) if mode == "write" else _read(path, mode, batch_size)
    print(json.dumps(out))


def _run(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child[0], a.child[1], int(a.child[2]), int(a.child[3]))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            path = str(Path(tmp) / f"store-{n}.h5")
            w = _run("write", path, n, a.batch_size)
            rs = _run("store", path, n, a.batch_size)
            ri = _run("io", path, n, a.batch_size)
            assert rs["count"] == ri["count"] == n
            rows.append((n, w, rs, ri))
            Path(path).unlink()
    print(f"iterating a SpectralStore on the default grid (4076 px), batch {a.batch_size}; "
          f"each read in a fresh process, so peak RSS is that of the read alone")
    print(f"{'spectra':>8} {'file MB':>8} {'write spec/s':>13} {'store.iter_batches':>19} "
          f"{'peak RSS':>9} {'io.iter_read':>13} {'peak RSS':>9}")
    for n, w, rs, ri in rows:
        print(f"{n:>8} {w['size_mb']:>8.0f} {n / w['write_s']:>13.0f} "
              f"{n / rs['read_s']:>13.0f} sp/s {rs['peak_rss_mb']:>6.0f} MB "
              f"{n / ri['read_s']:>8.0f} sp/s {ri['peak_rss_mb']:>6.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
