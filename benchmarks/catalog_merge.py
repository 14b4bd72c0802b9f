"""Catalog merge: time and peak memory of merging a predict run's part files into each
catalog format, against the in-memory writer (`write_catalog(vstack(parts))`).

    python benchmarks/catalog_merge.py --rows 200000 --part-rows 1024

Each measurement runs in a fresh process (peak RSS is per process); the parts carry the
columns of a gasnet catalog plus a 10-element array column and the identifiers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import pyarrow.parquet as pq
from astropy.table import vstack
from specsift.io.catalog import merge_parts, write_catalog
from specsift.pipeline.parts import arrow_to_table
mode, out, parts = sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "merge":
    merge_parts(parts, out, {"MODEL": "bench"})
else:
    write_catalog(vstack([arrow_to_table(pq.read_table(p)) for p in parts]), out,
                  meta={"MODEL": "bench"})
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": dt, "peak_mb": peak / 1024, "base_mb": base / 1024,
                  "file_mb": out.stat().st_size / 1e6}))
"""


def make_parts(root: Path, rows: int, part_rows: int) -> list[Path]:
    import numpy as np
    import pyarrow.parquet as pq
    from astropy.table import Table

    from specsift.pipeline.parts import table_to_arrow
    rng = np.random.default_rng(0)
    parts = []
    for k, lo in enumerate(range(0, rows, part_rows)):
        n = min(part_rows, rows - lo)
        t = Table()
        t["TARGETID"] = np.arange(lo, lo + n, dtype=np.int64)
        t["SOURCE"] = [f"/data/survey/spec-{i:08d}.fits" for i in range(lo, lo + n)]
        for c in ("Z", "ZERR", "DELTACHI2"):
            t[c] = rng.random(n)
        t["ZWARN"] = np.zeros(n, np.int64)
        t["SPECTYPE"] = np.full(n, "GALAXY")
        t["SUBTYPE"] = np.full(n, "STARFORMING")
        t["CLASS_LABEL"] = np.full(n, "GALAXY_STARFORMING")
        for j in range(13):
            t[f"PROB_C{j}"] = rng.random(n).astype(np.float32)
        t["COEFF"] = rng.random((n, 10)).astype(np.float32)
        t["ANOMALY_SCORE"] = rng.random(n).astype(np.float32)
        t["MODEL"] = np.full(n, "gasnet-1")
        t["ROW"] = np.zeros(n, np.int64)
        t["RA"], t["DEC"] = rng.random(n) * 360, rng.random(n) * 180 - 90
        p = root / f"u{k:06d}.parquet"
        pq.write_table(table_to_arrow(t), p)
        parts.append(p)
    return parts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--part-rows", type=int, default=1024)
    ap.add_argument("--formats", nargs="+", default=[".fits", ".fits.gz", ".parquet", ".ecsv",
                                                      ".csv"])
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parts = make_parts(root, a.rows, a.part_rows)
        print(f"{a.rows} rows in {len(parts)} parts")
        print(f"{'format':<9} {'writer':<10} {'seconds':>8} {'peak RSS MB':>12} "
              f"{'above start MB':>15} {'file MB':>8}")
        for ext in a.formats:
            for mode in ("merge", "in-memory"):
                out = root / f"cat-{mode}{ext}"
                r = subprocess.run([sys.executable, "-c", CHILD, mode, str(out),
                                    *map(str, parts)], capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(r.stderr[-2000:])
                m = json.loads(r.stdout.strip().splitlines()[-1])
                print(f"{ext:<9} {mode:<10} {m['s']:>8.1f} {m['peak_mb']:>12.0f} "
                      f"{m['peak_mb'] - m['base_mb']:>15.0f} {m['file_mb']:>8.1f}")


if __name__ == "__main__":
    main()
