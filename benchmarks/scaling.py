"""Scaling curve of `specsift predict`: time linear in N, peak memory flat.

    .venv/bin/python benchmarks/scaling.py [--n 1000 10000 100000] [--model NAME|PATH]
                                           [--threads 1] [--workers 1]

One simulated store of 10⁴ spectra (cached in out/bench/) is linked K times under
different names so that 10⁵ or 10⁶ spectra need no extra disk; every N runs in a fresh
process (`specsift predict … -o catalog.parquet`), whose wall time, CPU time and peak RSS
are printed.  The links are read from the page cache after the first pass, so the times
are those of a warm disk; the point is the shape: seconds/N constant, RSS flat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import model_for_bench, run_child, sim_store  # noqa: E402

BASE = 10_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    a = ap.parse_args()
    model, desc = model_for_bench(a.model)
    print(f"model: {desc}; torch threads {a.threads}; workers {a.workers}; "
          f"batch {a.batch_size}")
    base = sim_store(BASE)
    small = sim_store(1000) if min(a.n) < BASE else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in a.n:
            if n < BASE:
                if n != 1000:
                    raise SystemExit("N below 10⁴ must be 1000")
                inputs = [small]
            else:
                if n % BASE:
                    raise SystemExit(f"N ≥ 10⁴ must be a multiple of {BASE}")
                d = tmp / f"n{n}"
                d.mkdir()
                for k in range(n // BASE):
                    (d / f"part{k:04d}.h5").symlink_to(base)
                inputs = [d]
            r = run_child(["predict", *inputs, "-o", tmp / f"cat{n}.parquet", "--model", model,
                           "--threads", str(a.threads), "--workers", str(a.workers),
                           "--batch-size", str(a.batch_size), "--no-progress"],
                          threads=a.threads)
            rows.append((n, r))
            print(f"N={n}: {r['seconds']:.1f} s, {r['rss_mb']:.0f} MB", flush=True)
    print("\n| N spectra | predict wall (s) | µs / spectrum (wall) | CPU (s) | spectra per "
          "CPU-second | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for n, r in rows:
        print(f"| {n:,} | {r['seconds']:.1f} | {1e6 * r['seconds'] / n:.0f} | {r['cpu']:.1f} | "
              f"{n / r['cpu']:.0f} | {r['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
