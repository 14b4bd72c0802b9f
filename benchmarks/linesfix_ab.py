"""The line stage of this tree against another checkout's, batch by batch: every column
of ``add_lines``' output compared bit for bit, and the CPU time of each batch size
alternated in one process (the per-batch fixed cost: time = a + b·B).

    PYTHONPATH=src .venv/bin/python benchmarks/linesfix_ab.py --against ../main
                                                              [--sizes 256 1024] [--rounds 5]

Batches: the simulated store of ``benchmarks/predict_speed.py`` (2000 spectra, cached) cut
into batches of each ``--sizes``, and ``--fits`` copies of the SDSS spec files of
``../shared/data/sdss`` (one batch), each after the model and the verification stage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import model_for_bench, sim_store  # noqa: E402
from lines_speed import other_add_lines  # noqa: E402
from predict_speed import fits_copies  # noqa: E402


def batches(model, src, size):
    """Every batch of ``src`` with its catalog after the model and verification."""
    import torch

    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    out = []
    for unit in plan_units([src], size):
        for _, b in iter_unit(unit, size, model.grid):
            with torch.inference_mode():
                cat, cands = model.propose(model.check_batch(b))
                out.append((b, verify_catalog(model.check_batch(b), cat, cands)))
    return out


def differing(a, b) -> list[str]:
    """Columns of two catalogs that are not equal bit for bit (NaN equal to NaN)."""
    bad = [c for c in set(a.colnames) ^ set(b.colnames)]
    for c in a.colnames:
        if c not in b.colnames:
            continue
        x, y = np.asarray(a[c]), np.asarray(b[c])
        if x.dtype.kind == "f":
            same = x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8))
        else:
            same = np.array_equal(x, y)
        if not same:
            bad.append(c)
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", required=True, metavar="CHECKOUT")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--fits", type=int, default=400, help="0: no spec-file batch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--files", nargs="*", default=[], help="more spectra files, each compared "
                    "as batches of 1024 (e.g. ../shared/data/sdss/sdss-qso-10.fits)")
    a = ap.parse_args()
    import importlib

    import torch

    from specsift import load_model
    from specsift.lines import add_lines
    torch.set_num_threads(1)
    other = importlib.import_module(other_add_lines(a.against) + ".stage").add_lines
    model = load_model(model_for_bench(None)[0])
    store = sim_store(2000)
    sets = {f"store, batches of {s}": batches(model, store, s) for s in a.sizes}
    for f in a.files:
        sets[Path(f).name] = batches(model, Path(f), 1024)
    if a.fits:
        with tempfile.TemporaryDirectory() as tmp:
            sets[f"{a.fits} SDSS spec files"] = batches(
                model, fits_copies(Path(tmp) / "fits", a.fits, "spec-*.fits"), 1024)
    print("| batches | spectra | columns differing | other ms / batch (median) | "
          "this tree | ratio |\n|---|---|---|---|---|---|")
    for label, bs in sets.items():
        bad = set()
        for b, c in bs:
            bad |= set(differing(other(b, c), add_lines(b, c)))
        mine, theirs = [], []
        for _ in range(a.rounds):
            for f, acc in ((other, theirs), (add_lines, mine)):
                t0 = time.process_time()
                for b, c in bs:
                    f(b, c)
                acc.append(1e3 * (time.process_time() - t0) / len(bs))
        mo, mt = float(np.median(theirs)), float(np.median(mine))
        print(f"| {label} | {sum(len(b) for b, _ in bs)} | "
              f"{', '.join(sorted(bad)) if bad else 'none (bit for bit)'} | {mo:.1f} | "
              f"{mt:.1f} | {mo / mt:.3f} |", flush=True)


if __name__ == "__main__":
    main()
