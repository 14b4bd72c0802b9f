"""What a predict call pays to turn its batches into a catalog — ``table_to_arrow``, writing
the parts, merging them — this checkout against a git revision, alternated in one process.

    .venv/bin/python benchmarks/callfix_ab.py --base REV [--reps 15] [--n 2000]

Why: ``benchmarks/predict_fixed_cost.py`` times whole calls in fresh processes, where the
stages' own noise (±15 % of a 100 ms one-spectrum call on the shared machine) hides a few
milliseconds; here the same catalog tables (one verified predict batch of this checkout:
the first row alone, and the ``--n``-spectrum store's batches of 1024) go through both
revisions' ``table_to_arrow``, ``RunDir.write_part`` and ``merge_parts`` (Parquet, the parts
held as in a run), alternated, thread CPU time, medians (min) of ``--reps``.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import ROOT, sim_store  # noqa: E402
from predict_ab import extract  # noqa: E402


def batches(n: int) -> list:
    """This checkout's verified catalog tables of the first ``n`` spectra (batches of 1024)."""
    import torch

    from specsift.models.base import load_model
    from specsift.pipeline.local import StageOptions, predict_batch
    from specsift.pipeline.units import iter_unit, plan_units
    torch.set_num_threads(1)
    model = load_model("gasnet").prepare("cpu", 1)
    cache = sorted((ROOT / "out" / "bench").glob(f"sim-thirteen-{n}-s11-raw-*.h5"))
    out = []
    for unit in plan_units([cache[0] if cache else sim_store(n)], 1024):
        for _, batch in iter_unit(unit, 1024, model.grid):
            out.append(predict_batch(model, batch, StageOptions()))
    return out


def call(pkg: str, tables: list, tmp: Path, k: int) -> dict[str, float]:
    """Thread CPU seconds of one call's catalog work on ``tables`` with package ``pkg``."""
    parts_mod = importlib.import_module(pkg + ".pipeline.parts")
    merge = importlib.import_module(pkg + ".io.catalog").merge_parts
    out = {}
    c = time.thread_time()
    ats = [parts_mod.table_to_arrow(t) for t in tables]
    out["table_to_arrow"] = time.thread_time() - c
    rd = parts_mod.RunDir(tmp / f"{pkg}-{k}.parquet")
    rd.path.mkdir(parents=True)
    c = time.thread_time()
    for b, at in enumerate(ats):
        rd.write_part(0, b, at)
    out["write parts"] = time.thread_time() - c
    parts = [rd.part_path(0, b) for b in range(len(ats))]
    c = time.thread_time()
    merge(parts, rd.catalog, {"MODEL": "gasnet", "NINPUT": sum(len(t) for t in tables)},
          tables=rd.held_parts())
    out["merge"] = time.thread_time() - c
    out["all"] = sum(out.values())
    shutil.rmtree(rd.path)
    rd.catalog.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    big = batches(a.n)
    cases = {"1 row": [big[0][:1]], f"{a.n} rows": big}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extract(a.base, tmp)
        sys.path.insert(0, str(tmp))
        res: dict = {}
        for case, tables in cases.items():
            for pkg in ("specsift_base", "specsift"):
                call(pkg, tables, tmp, -1)                       # imports, first-call caches
            for r in range(a.reps):
                for pkg in (("specsift_base", "specsift") if r % 2 else
                            ("specsift", "specsift_base")):
                    for key, v in call(pkg, tables, tmp, r).items():
                        res.setdefault((case, key, pkg), []).append(v)
    print(f"catalog work of a predict call, CPU ms (thread), median (min) of {a.reps} "
          f"alternated; base = {a.base}\n")
    print(f"| case | piece | {a.base} | this checkout |\n|---|---|---|---|")
    for case in cases:
        for key in ("table_to_arrow", "write parts", "merge", "all"):
            cells = []
            for pkg in ("specsift_base", "specsift"):
                v = res[(case, key, pkg)]
                cells.append(f"{1e3 * statistics.median(v):.2f} ({1e3 * min(v):.2f})")
            print(f"| {case} | {key} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
