"""Local vs Dask: start-up overhead and throughput of `specsift predict`.

    .venv/bin/python benchmarks/engines.py [--n 4000] [--workers 2] [--model NAME|PATH]

Each engine runs in a fresh process (``specsift predict --engine E --workers W``) on the
same simulated store; overhead = the time for a 1-batch input (cluster start, model load
in every worker), throughput = spectra / (time − overhead) on ``--n`` spectra.  Outputs
are checked to be the local catalog row for row.  Needs `pip install dask[distributed]`
(the Ray Data engine was removed: docs/scaling.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import model_for_bench, run_child, sim_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--engines", nargs="+", default=["local", "dask"])
    a = ap.parse_args()
    model, desc = model_for_bench(a.model)
    small, big = sim_store(256), sim_store(a.n)
    print(f"model: {desc}; {a.n} simulated spectra; {a.workers} workers")
    rows, ref = [], None
    with tempfile.TemporaryDirectory() as tmp:
        configs = [("local", 1)] + [(e, a.workers) for e in a.engines]
        for engine, w in configs:
            common = ["--model", model, "--batch-size", "256", "--no-progress",
                      "--engine", engine, "--workers", str(w)]
            o = run_child(["predict", small, "-o", Path(tmp) / f"o-{engine}{w}.parquet", *common])
            out = Path(tmp) / f"{engine}{w}.parquet"
            r = run_child(["predict", big, "-o", out, *common])
            same = "reference"
            if ref is None:
                ref = out
            else:
                from specsift.io import read_catalog
                sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
                from _pipeline_data import assert_same_catalog
                try:
                    assert_same_catalog(read_catalog(out), read_catalog(ref))
                    same = "yes"
                except AssertionError as exc:
                    same = f"NO ({str(exc).splitlines()[0][:40]})"
            rate = a.n / max(r["seconds"] - o["seconds"], 1e-9)
            rows.append((f"{engine} ×{w}", o["process_seconds"], o["seconds"], r["seconds"],
                         rate, r["rss_mb"], same))
    print(f"\n| engine | process start→exit, 256 spectra (s) | predict() on 256 (s) | "
          f"predict() on {a.n} (s) | throughput (spectra/s) | driver peak RSS (MB) | same rows |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.0f} | {r[5]:.0f} | {r[6]} |")


if __name__ == "__main__":
    main()
