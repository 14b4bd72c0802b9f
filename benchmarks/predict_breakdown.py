"""Where one ``specsift.pipeline.predict`` call's CPU time goes outside the stages: a warm
process (one torch thread, one call made before), the next call profiled with cProfile on
CPU time, the cumulative milliseconds of the pieces of its fixed cost printed as a table.

    .venv/bin/python benchmarks/predict_breakdown.py [--n 1] [--fits 0] [--reps 3]

Why: docs/speed.md's runfix breakdown (merge, prototype, YAML, model load, checks, …) was
first measured with ad-hoc wrappers; this prints such a breakdown from a command.  cProfile
profiles the calling thread only (not the reader thread) and adds its own overhead to every
Python call, so the figures are larger than without it and are for the pieces' shares, not
for absolute costs (``benchmarks/predict_fixed_cost.py`` gives those).  Each row is the
median over ``--reps`` profiled calls; a row's time includes the rows it calls.
``--n``: spectra of the simulated store; ``--fits N``: N copies of the SDSS spec files of
../shared/data/sdss instead (the checks and planning of a folder of files).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sdss_files  # noqa: E402
from _predict_common import sim_store  # noqa: E402

#: (row label, (module path ending, function name)) — the pieces of a predict call
PIECES = (
    ("whole predict call", ("pipeline/run.py", "predict")),
    ("checks and planning: input_files", ("pipeline/preflight.py", "input_files")),
    ("  directory listing (_expand_dir)", ("io/__init__.py", "_expand_dir")),
    ("load_model", ("models/base.py", "load_model")),
    ("  torch.load", ("torch/serialization.py", "load")),
    ("  file sha256 (_sha256)", ("models/base.py", "_sha256")),
    ("prepare_model", ("pipeline/local.py", "prepare_model")),
    ("merge_parts", ("io/catalog.py", "merge_parts")),
    ("  schema prototype", ("io/catalog_sources.py", "schema_prototype")),
    ("  YAML header (_table_yaml)", ("io/catalog_parquet.py", "_table_yaml")),
    ("  Parquet schema", ("io/catalog_parquet.py", "parquet_schema")),
    ("write_part", ("pipeline/parts.py", "write_part")),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--fits", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from specsift.pipeline import predict
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if a.fits:
            src, inputs = sdss_files("spec-*.fits"), tmp / "fits"
            inputs.mkdir()
            for k in range(a.fits):
                shutil.copy(src[k % len(src)], inputs / f"{k:06d}-{src[k % len(src)].name}")
            what = f"{a.fits} SDSS spec files (copies of {len(src)})"
        else:
            inputs, what = sim_store(max(a.n, 1)), f"simulated store of {a.n}"

        def call(k):
            return predict([inputs], tmp / f"c{k}.parquet", model="gasnet", batch_size=1024,
                           threads=1, progress=False)

        call("warm")                                 # imports and per-process caches
        ms = {label: [] for label, _ in PIECES}
        for r in range(a.reps):
            prof = cProfile.Profile(time.process_time)
            prof.runcall(call, r)
            stats = pstats.Stats(prof).stats
            for label, (file_end, fn) in PIECES:
                cum = sum(v[3] for (f, _, name), v in stats.items()
                          if name == fn and f.replace("\\", "/").endswith(file_end))
                ms[label].append(1e3 * cum)
    print(f"one predict call of a warm process, {what}, gasnet, one thread; cProfile on "
          f"CPU time (main thread only, with its overhead), median of {a.reps} calls\n")
    print("| piece | CPU ms |\n|---|---|")
    for label, _ in PIECES:
        print(f"| {label} | {np.median(ms[label]):.1f} |")


if __name__ == "__main__":
    main()
