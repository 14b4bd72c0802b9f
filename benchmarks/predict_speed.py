"""Spectra/s per CPU core end to end (reading → catalog) for a model, stage by stage, and
for each CPU inference variant with its accuracy.

    .venv/bin/python benchmarks/predict_speed.py [--n 4000] [--model NAME|PATH]
                                                 [--precision fp32 bf16 int8] [--fits 800]
                                                 [--fits-table 20]

One torch thread (one core).  Stages (after one untimed warm-up batch, as the end-to-end rows
are timed after the stages): reading (store → batches on the model grid), the
network forward pass, the rest of ``model.propose`` (normalisation, heads, catalog), the
verification stage (``specsift.verify``), the emission-line stage (``specsift.lines``), and
writing (the Arrow table and the part file the pipeline writes, Arrow IPC).  End to end =
``specsift.pipeline.predict`` on a simulated store (``thirteen`` class mix) to a Parquet catalog; accuracy = GF(0.003),
GF(0.01) and class accuracy against the simulation's truth, per precision, so a variant
is acceptable only where GF(0.003) stays within 0.002 of fp32.  Every end-to-end row is run
twice, with the verification stage (the default of ``specsift predict``) and with
``--no-verify``; ``--fits N`` adds the same from N SDSS spec files (copies of the 8 in
``../shared/data/sdss``), CPU time of the whole process (reader thread included) per spectrum.
Each spec file is one spectrum behind 4–22 HDUs; they are read from their bytes and many
files assembled into one batch (``specsift.io.rawfits``, ``specsift.io.assemble``: ~0.3–0.6
CPU ms a file here, ``benchmarks/read_speed.py --many 400``), so that row is the stages plus
that per-file cost — use ``--fits 400`` or more for a stable number; ``--fits-table K`` times K
copies of ``sdss-labelled-50.fits`` (50 spectra in one table file, read through astropy).
To compare two revisions on a machine shared with other jobs, ``benchmarks/predict_ab.py``
times both in one process, interleaved (separate runs of the same code differ by up to 30 %;
``benchmarks/read_speed.py --many 400 --against REV`` for the read stage).  The "read" row
of the spec-file stage table is one pass of ``iter_unit`` (the code ``read_speed.py``'s
``iter_read`` row times, best of three rounds there): timed in one process, interleaved,
the stage loop's read, ``iter_unit`` alone and ``iter_read`` agree within noise, so a gap
between the two scripts' numbers is the machine's load and best-of-three, not a cost of the
pipeline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import STAGES, machine, model_for_bench, sim_store, stage_seconds  # noqa: E402


def stages(model, store: Path, batch_size: int) -> dict:
    """CPU seconds per stage over the whole store (single thread; CPU time, not wall, so
    that other jobs on the machine do not inflate it)."""
    import torch

    from specsift.lines import add_lines
    from specsift.pipeline.parts import part_bytes, table_to_arrow
    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog

    fns = {"plan_units": plan_units, "iter_unit": iter_unit, "verify_catalog": verify_catalog,
           "add_lines": add_lines, "table_to_arrow": table_to_arrow, "part_bytes": part_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        # one untimed batch first: the per-process caches (template tables, binned and
        # multi-shift template sides, the fused network trunk) are built once per run, and
        # the end-to-end rows below are timed with them built too
        for unit in plan_units([store], batch_size)[:1]:
            _, first = next(iter_unit(unit, batch_size, model.grid))
            with torch.inference_mode():
                c, k = model.propose(model.check_batch(first[:256]))
            add_lines(first[:256], verify_catalog(model.check_batch(first[:256]), c, k))
        return stage_seconds(model, store, batch_size, fns, Path(tmp))


def print_stages(s: dict) -> None:
    n = s["n"]
    print("\n| stage | CPU seconds | µs / spectrum | share |")
    print("|---|---|---|---|")
    total = s["read"] + s["predict"] + s["verify"] + s["lines"] + s["write"]
    for k in STAGES:
        print(f"| {k} | {s[k]:.2f} | {1e6 * s[k] / n:.0f} | {100 * s[k] / total:.0f}% |")
    print(f"| total | {total:.2f} | {1e6 * total / n:.0f} | 100% |")
    print(f"\nspectra per CPU-second if the stages were the whole run: {n / total:.0f}; "
          f"without the lines stage: {n / (total - s['lines']):.0f}")


def accuracy(catalog: Path, store: Path, class_set: str) -> dict:
    from specsift.io import SpectralStore, read_catalog
    from specsift.metrics import evaluate_catalog
    with SpectralStore(store) as st:
        truth = st.read_meta()
    m = evaluate_catalog(read_catalog(catalog), truth, class_set)
    return {"GF_0.003": m["redshift"]["GF_0.003"], "GF_0.01": m["redshift"]["GF_0.01"],
            "acc": m.get("classification", {}).get("accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16", "int8"])
    ap.add_argument("--fits", type=int, default=0, metavar="N",
                    help="also time predict on N SDSS spec files (copies of the real ones)")
    ap.add_argument("--fits-table", type=int, default=0, metavar="K",
                    help="also time predict on K copies of sdss-labelled-50.fits (50 a file)")
    a = ap.parse_args()
    import torch

    from specsift import load_model
    from specsift.pipeline import predict
    torch.set_num_threads(1)
    ref, desc = model_for_bench(a.model)
    store = sim_store(a.n)
    # prepared as predict(threads=1) prepares its own (one torch thread, numpy's BLAS on one
    # thread too), so that the stage table is timed under the end-to-end rows' conditions
    model = load_model(ref).prepare("cpu", 1)
    print(f"model: {desc}; {a.n} simulated spectra; 1 torch thread; batch {a.batch_size}")
    print(f"machine: {machine()}")
    print_stages(stages(model, store, a.batch_size))

    print("\n| input | precision | verify | end-to-end spectra per CPU-second (1 thread) | "
          "spectra/s (wall) | GF(0.003) | GF(0.01) | class accuracy | CPU-s of other threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {}
    with tempfile.TemporaryDirectory() as tmp:
        for p in a.precision:
            for verify in (True, False):
                out = Path(tmp) / f"{p}-{verify}.parquet"
                c0, th0 = time.process_time(), thread_cpu()
                r = predict([store], out, model=ref, batch_size=a.batch_size, threads=1,
                            precision=p, progress=False, verify=verify)
                cpu = time.process_time() - c0
                side = other_threads(th0, thread_cpu())
                acc = accuracy(out, store, load_model(ref).class_set)
                b = base.setdefault(verify, acc)
                ok = abs(acc["GF_0.003"] - b["GF_0.003"]) <= 0.002
                print(f"| HDF5 store | {p} | {'yes' if verify else 'no'} | {r.rows / cpu:.0f} | "
                      f"{r.rate:.0f} | {acc['GF_0.003']:.4f} | {acc['GF_0.01']:.4f} | "
                      f"{acc['acc'] if acc['acc'] is None else round(acc['acc'], 4)} | {side} |"
                      + ("" if ok else " (GF(0.003) off by > 0.002: not acceptable)"))
        runs = []
        if a.fits:
            runs.append((f"{a.fits} SDSS spec files",
                         fits_copies(Path(tmp) / "fits", a.fits, "spec-*.fits")))
        if a.fits_table:
            runs.append((f"{a.fits_table} × sdss-labelled-50.fits ({50 * a.fits_table} spectra)",
                         fits_copies(Path(tmp) / "table", a.fits_table, "sdss-labelled-50.fits")))
        for k, (label, files) in enumerate(runs):
            for verify in (True, False):
                out = Path(tmp) / f"fits{k}-{verify}.parquet"
                c0 = time.process_time()
                r = predict([files], out, model=ref, batch_size=a.batch_size, threads=1,
                            progress=False, verify=verify)
                cpu = time.process_time() - c0
                print(f"| {label} | fp32 | {'yes' if verify else 'no'} | "
                      f"{r.rows / cpu:.0f} | {r.rate:.0f} | | | | |")
        if a.fits:                     # the stages on real spectra (warm: after the runs)
            print(f"\nstages on the {a.fits} SDSS spec files:")
            print_stages(stages(model, runs[0][1], a.batch_size))


def thread_cpu() -> dict:
    """CPU seconds of each live thread of this process (``/proc/self/task``; {} elsewhere)."""
    out = {}
    root = Path("/proc/self/task")
    if not root.is_dir():
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for t in root.iterdir():
        try:
            f = (t / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:                       # the thread ended meanwhile
            continue
        out[t.name] = (int(f[11]) + int(f[12])) / tick
    return out


def other_threads(before: dict, after: dict) -> str:
    """CPU seconds the run spent in threads other than this one that outlived it (a BLAS or
    OpenMP pool spinning between products shows up here; the reader thread has ended and is
    not counted), or '' where the OS does not tell."""
    if not after:
        return ""
    me = str(threading.get_native_id())
    return f"{sum(v - before.get(k, 0.0) for k, v in after.items() if k != me):.2f}"


def fits_copies(folder: Path, n: int, pattern: str) -> Path:
    """``n`` files in ``folder``: copies of the real ones matching ``pattern`` in
    ../shared/data/sdss."""
    import shutil
    src = sorted((Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sdss")
                 .glob(pattern))
    folder.mkdir(parents=True)
    for k in range(n):
        shutil.copy(src[k % len(src)], folder / f"{k:05d}-{src[k % len(src)].name}")
    return folder


if __name__ == "__main__":
    main()
