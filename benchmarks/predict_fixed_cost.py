"""The fixed CPU cost of one ``specsift.pipeline.predict`` call, this checkout against a git
revision, each in fresh processes alternated.

    .venv/bin/python benchmarks/predict_fixed_cost.py --base 5bddfd9 [--reps 3] [--fits 400]

Why fresh processes: ``benchmarks/predict_speed.py`` times its first end-to-end row (the
HDF5 store, verified: the one the target is about) as the first ``predict`` of its
process, after the stage table has warmed the stages but not the orchestration (planning,
model loading, writing and merging the catalog); what that first call pays once — an import,
a cache — is part of its number, and ``benchmarks/predict_ab.py`` cannot show it (both
revisions share one process, so the first of them pays for both).  Each child process here
does what predict_speed does before its end-to-end rows (one torch thread, the stage loop
over a 200-spectrum simulated store to warm the stages), then times ``predict`` calls, CPU
time of the process (reader thread included):

* ``1 spectrum, first call``: the first predict of the process, on a one-spectrum store:
  the fixed cost of a call (and of one batch through every stage) as a ``specsift predict``
  process pays it;
* ``1 spectrum, again``: the same call once more (what a warm process pays per call);
* ``2000 store, first call`` / ``N spec files``: predict_speed's end-to-end rows (the
  store row as its first call, the spec-file row after it), µs a spectrum.

Medians over ``--reps`` children per revision, alternated (base, this, this, base, …).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import ROOT, sim_store  # noqa: E402

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {bench!r})
pkg = {pkg!r}
if pkg != "specsift":
    sys.path.insert(0, {base_dir!r})
import importlib
import torch
torch.set_num_threads(1)
load_model = importlib.import_module(pkg + ".models.base").load_model
predict = importlib.import_module(pkg + ".pipeline").predict
units = importlib.import_module(pkg + ".pipeline.units")
from _predict_common import stage_seconds
fns = {{"plan_units": units.plan_units, "iter_unit": units.iter_unit,
        "verify_catalog": importlib.import_module(pkg + ".verify").verify_catalog,
        "add_lines": importlib.import_module(pkg + ".lines").add_lines,
        "table_to_arrow": importlib.import_module(pkg + ".pipeline.parts").table_to_arrow}}
model = load_model("gasnet").prepare("cpu", 1)
tmp = Path(tempfile.mkdtemp())
stage_seconds(model, Path({warm!r}), 1024, fns, tmp)         # as predict_speed's stage table
out = {{}}
def timed(label, src, n):
    c = time.process_time()
    r = predict([Path(src)], tmp / (label.replace(" ", "_") + ".parquet"), model="gasnet",
                batch_size=1024, threads=1, progress=False)
    out[label] = (time.process_time() - c) / (n or r.rows)
timed({first!r}, {first_src!r}, 1 if {first!r}.startswith("1 ") else 0)
timed({second!r}, {second_src!r}, 1 if {second!r}.startswith("1 ") else 0)
if {fits!r}:
    timed("spec files", {fits!r}, 0)
print("RESULT " + json.dumps(out))
"""


def child(pkg: str, base_dir: str, first: tuple, second: tuple, warm: Path,
          fits: str) -> dict:
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), pkg=pkg,
                        base_dir=base_dir, warm=str(warm), first=first[0],
                        first_src=str(first[1]), second=second[0], second_src=str(second[1]),
                        fits=fits)
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(ROOT))
    line = next((s for s in p.stdout.splitlines() if s.startswith("RESULT ")), None)
    if p.returncode or line is None:
        raise RuntimeError(f"child {pkg} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[7:])


def one_spectrum_store(path: Path) -> Path:
    from specsift.io import SpectralStore
    if not path.exists():
        with SpectralStore(sim_store(200)) as st:
            b = st.read(slice(0, 1))
        with SpectralStore(path, "w") as st:
            st.append(b)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fits", type=int, default=400, metavar="N",
                    help="also time N SDSS spec files (copies of the 8 real ones); 0: not")
    a = ap.parse_args()
    import numpy as np
    from predict_ab import extract
    from predict_speed import fits_copies
    warm, big = sim_store(200), sim_store(2000)
    one = one_spectrum_store(big.parent / "sim-thirteen-1-s11-raw.h5")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extract(a.base, tmp)
        fits = str(fits_copies(tmp / "fits", a.fits, "spec-*.fits")) if a.fits else ""
        runs = {"base": [], "this": []}
        plans = [(("1 spectrum, first call", one), ("1 spectrum, again", one), ""),
                 (("2000 store, first call", big), ("1 spectrum, after", one), fits)]
        for i in range(a.reps):
            for k in (("base", "this") if i % 2 == 0 else ("this", "base")):
                pkg = "specsift_base" if k == "base" else "specsift"
                r = {}
                for first, second, f in plans:
                    r.update(child(pkg, str(tmp), first, second, warm, f))
                runs[k].append(r)
        shutil.rmtree(tmp / "fits", ignore_errors=True)
    keys = ["1 spectrum, first call", "1 spectrum, again", "2000 store, first call"] + \
        (["spec files"] if a.fits else [])
    print(f"predict CPU time, fresh processes after predict_speed's warm-up, medians of "
          f"{a.reps} alternated children; base = {a.base}\n")
    print(f"| call | {a.base} | this checkout |")
    print("|---|---|---|")
    for key in keys:
        unit, scale = ("ms", 1e3) if key.startswith("1 ") else ("µs a spectrum", 1e6)
        med = {k: float(np.median([r[key] for r in runs[k]])) * scale for k in runs}
        label = key if key != "spec files" else f"{a.fits} spec files (after the store)"
        print(f"| {label} ({unit}) | {med['base']:.0f} | {med['this']:.0f} |")


if __name__ == "__main__":
    main()
