"""Speed of this checkout against another revision, both timed in one process, interleaved.

    .venv/bin/python benchmarks/predict_ab.py --base a4ddc09 [--n 2000] [--reps 3]
                                              [--verify-only | --propose-only]
    .venv/bin/python benchmarks/predict_ab.py --base a4ddc09 --propose-only [--model speccznet]
                                              [--fits 400]

Why: on a machine shared with other jobs, two runs of the same code in separate processes
differ by up to 30 % in CPU time (what the other jobs do to caches, memory bandwidth and the
sibling hyperthread), far more than most speed changes; timed in one process, batch by batch
and run by run in alternation, both see the same conditions.  The base revision's ``src`` is
extracted with ``git archive`` into a temporary folder and imported as a second package,
``specsift_base`` (its model registry pointed at its own modules); the bundled model files and
templates are those of this checkout (``importlib.resources`` finds them under ``specsift``),
which is right as long as the two revisions share them.  What is process-wide cannot be
compared this way: ``prepare(threads=1)`` also holds numpy's BLAS to one thread
for the whole process, so both revisions run with it here (compare such a change with
``benchmarks/predict_speed.py`` run on each checkout).

Prints the stage table of ``benchmarks/predict_speed.py`` (median over ``--reps`` passes over
the simulated store, one torch thread, gasnet, batches of 1024) for both, then end-to-end
``specsift.pipeline.predict`` spectra per CPU-second with and without verification (median
and best of ``--reps`` alternated runs).  ``--verify-only``: the verify stage alone, the two
revisions alternating batch by batch on the same proposals, ``--reps`` paired passes and the
median of their ratios (for changes of a few per cent, which the end-to-end rows cannot
resolve on a shared machine); it also says whether both revisions' verified catalogs are the
same, bit for bit.  ``--propose-only``: ``model.propose`` alone the same way, each revision's
own model (its forward pass and predict_rest), split into the two as the stage table splits
them (hooks on ``model.net``), after comparing both revisions' proposed, predicted and verified
catalogs on the 68 real SDSS spectra of ../shared/data/sdss (:func:`real_answers`); ``--model``
another bundled model, ``--fits N`` the same also on N SDSS spec files (copies of the 8 in
../shared/data/sdss, one batch as ``predict`` reads them).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import ROOT, STAGES, sim_store, stage_seconds  # noqa: E402


def extract(rev: str, into: Path) -> None:
    """``rev``'s src/specsift as the package ``specsift_base`` under ``into``."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src/specsift"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    (into / "src" / "specsift").rename(into / "specsift_base")
    base = into / "specsift_base" / "models" / "base.py"
    base.write_text(base.read_text().replace('"specsift.models.', '"specsift_base.models.'))


class Version:
    """One package's pieces for the stage table and the end-to-end run."""

    def __init__(self, pkg: str, model: str = "gasnet"):
        def m(x):
            return importlib.import_module(f"{pkg}.{x}")
        self.name = model
        self.model = m("models.base").load_model(model).prepare("cpu", 1)
        self.fns = {"plan_units": m("pipeline.units").plan_units,
                    "iter_unit": m("pipeline.units").iter_unit,
                    "verify_catalog": m("verify").verify_catalog,
                    "add_lines": m("lines").add_lines,
                    "table_to_arrow": m("pipeline.parts").table_to_arrow,
                    "part_bytes": getattr(m("pipeline.parts"), "part_bytes", None)}
        self.predict = m("pipeline").predict

    def stages(self, store: Path, tmp: Path) -> dict:
        """µs a spectrum per stage over the whole store (as ``predict_speed.stages``)."""
        t = stage_seconds(self.model, store, 1024, self.fns, tmp)
        return {k: 1e6 * t[k] / t["n"] for k in STAGES}

    def end_to_end(self, store: Path, out: Path, verify: bool) -> float:
        c0 = time.process_time()
        r = self.predict([store], out, model=self.name, batch_size=1024, threads=1,
                         progress=False, verify=verify)
        return r.rows / (time.process_time() - c0)


def proposals(v: dict, store: Path) -> list:
    """(batch, catalog, candidates) of every batch of 1024 of ``store``, proposed by this
    checkout's model: what both revisions' verify stages are timed on."""
    import torch
    m = v["this"].model
    items = []
    for unit in v["this"].fns["plan_units"]([store], 1024):
        for _, batch in v["this"].fns["iter_unit"](unit, 1024, m.grid):
            b = m.check_batch(batch)
            with torch.inference_mode():
                items.append((b, *m.propose(b)))
    return items


def paired_verify(v: dict, items: list, reps: int) -> dict:
    """{revision: µs a spectrum of each of ``reps`` passes} of the verify stage on ``items``,
    the two revisions alternating item by item (the order flipped every other item), after
    one untimed pass that builds the caches."""
    n = sum(len(b) for b, _, _ in items)
    us = {k: [] for k in v}
    for i in range(reps + 1):
        tot = dict.fromkeys(v, 0.0)
        for j, (b, cat, cands) in enumerate(items):
            for k in (("base", "this") if (i + j) % 2 else ("this", "base")):
                t0 = time.process_time()
                v[k].fns["verify_catalog"](b, cat, cands)
                tot[k] += time.process_time() - t0
        if i:
            for k in v:
                us[k].append(1e6 * tot[k] / n)
    return us


def verify_pairs(v: dict, store: Path, reps: int, base: str) -> None:
    """The verify stage alone, both revisions on the same proposals (this checkout's model),
    alternating batch by batch so that each pass of one has a pass of the other beside it:
    the median of the per-pass ratios is what the machine's drifting load disturbs least."""
    import numpy as np
    items = proposals(v, store)
    n = sum(len(b) for b, _, _ in items)
    print(_same_answers([v["base"].fns["verify_catalog"](*it) for it in items],
                        [v["this"].fns["verify_catalog"](*it) for it in items],
                        "verified catalogs"))
    us = paired_verify(v, items, reps)
    r = np.array(us["this"]) / np.array(us["base"])
    print(f"verify stage alone, {n} simulated spectra, {reps} paired passes, base = {base}: "
          f"µs a spectrum median {np.median(us['base']):.0f} (base) / {np.median(us['this']):.0f} "
          f"(this); ratio this/base median {np.median(r):.3f}, quartiles "
          f"{np.percentile(r, 25):.3f}–{np.percentile(r, 75):.3f}")


def propose_pairs(v: dict, store: Path, reps: int, base: str, label: str = "simulated") -> None:
    """``model.propose`` alone (the forward pass and predict_rest), both revisions' models on
    the same batches, alternating batch by batch as :func:`verify_pairs` does, the CPU time
    inside each network's forward timed apart (:func:`_forward_clock`): forward and
    predict_rest of both, under the same conditions."""
    import numpy as np
    import torch
    m = v["this"].model
    batches = [b for unit in v["this"].fns["plan_units"]([store], 1024)
               for _, b in v["this"].fns["iter_unit"](unit, 1024, m.grid)]
    n = sum(len(b) for b in batches)
    out = {}
    for k in v:
        with torch.inference_mode():
            out[k] = [v[k].model.propose(v[k].model.check_batch(b)) for b in batches]
    same = all(np.array_equal(x[1].z, y[1].z, equal_nan=True)
               and np.array_equal(x[1].spectype, y[1].spectype)
               for x, y in zip(out["base"], out["this"]))
    print(_same_answers([x[0] for x in out["base"]], [y[0] for y in out["this"]],
                        "proposed catalogs")
          + f"; candidates {'identical' if same else 'differ'}")
    us = {k: [] for k in v}
    fwd_us = {k: [] for k in v}
    clock = {k: _forward_clock(v[k].model) for k in v}
    try:
        for i in range(reps + 1):
            tot = dict.fromkeys(v, 0.0)
            for k in v:
                clock[k]["t"] = 0.0
            for j, b in enumerate(batches):
                for k in (("base", "this") if (i + j) % 2 else ("this", "base")):
                    t0 = time.process_time()
                    with torch.inference_mode():
                        v[k].model.propose(v[k].model.check_batch(b))
                    tot[k] += time.process_time() - t0
            if i:
                for k in v:
                    us[k].append(1e6 * tot[k] / n)
                    fwd_us[k].append(1e6 * clock[k]["t"] / n)
    finally:
        for k in v:
            for h in clock[k]["hooks"]:
                h.remove()
    d = np.array(us["this"]) - np.array(us["base"])
    print(f"{v['this'].name} propose alone, {n} {label} spectra, {reps} paired passes, base = {base}: "
          f"µs a spectrum median {np.median(us['base']):.1f} (base) / "
          f"{np.median(us['this']):.1f} (this); difference this − base median {np.median(d):.1f}, "
          f"quartiles {np.percentile(d, 25):.1f} to {np.percentile(d, 75):.1f}")
    rest = {k: np.array(us[k]) - np.array(fwd_us[k]) for k in v}
    print(f"of which forward (hooks on model.net, as the stage table) median "
          f"{np.median(fwd_us['base']):.1f} (base) / {np.median(fwd_us['this']):.1f} (this), "
          f"predict_rest {np.median(rest['base']):.1f} / {np.median(rest['this']):.1f}")


def real_answers(v: dict) -> None:
    """Both revisions' answers on the 68 real SDSS spectra of ../shared/data/sdss
    (sdss-labelled-50.fits, sdss-qso-10.fits and the 8 spec files): the proposed catalogs and
    candidates, ``predict``'s catalogs (star-head velocities) and the verified catalogs,
    compared column by column (:func:`_same_answers`)."""
    import numpy as np
    import torch
    sd = ROOT.parent / "shared" / "data" / "sdss"
    files = [sd / "sdss-labelled-50.fits", sd / "sdss-qso-10.fits", *sorted(sd.glob("spec-*.fits"))]
    m = v["this"].model
    batches = [b for unit in v["this"].fns["plan_units"](files, 1024)
               for _, b in v["this"].fns["iter_unit"](unit, 1024, m.grid)]
    got = {}
    for k in v:
        mk = v[k].model
        with torch.inference_mode():
            props = [mk.propose(mk.check_batch(b)) for b in batches]
            preds = [mk.predict(mk.check_batch(b)) for b in batches]
        ver = [v[k].fns["verify_catalog"](mk.check_batch(b), c, cd)
               for b, (c, cd) in zip(batches, props)]
        got[k] = (props, preds, ver)
    same = all(np.array_equal(x[1].z, y[1].z, equal_nan=True)
               and np.array_equal(x[1].spectype, y[1].spectype)
               for x, y in zip(got["base"][0], got["this"][0]))
    n = sum(len(b) for b in batches)
    print(f"{n} real SDSS spectra: "
          + _same_answers([x[0] for x in got["base"][0]], [y[0] for y in got["this"][0]],
                          "proposed catalogs")
          + f"; candidates {'identical' if same else 'differ'}")
    print(f"{n} real SDSS spectra: " + _same_answers(got["base"][1], got["this"][1],
                                                     "predict() catalogs"))
    print(f"{n} real SDSS spectra: " + _same_answers(got["base"][2], got["this"][2],
                                                     "verified catalogs"))


def _forward_clock(model) -> dict:
    """CPU seconds inside ``model.net``'s forward, summed in ``["t"]`` by hooks (removed by
    the caller): the stage table's split of propose into forward and predict_rest."""
    clock = {"t": 0.0, "hooks": []}
    net = getattr(model, "net", None)
    if net is not None:
        clock["hooks"] = [
            net.register_forward_pre_hook(lambda *a: clock.__setitem__("t0", time.process_time())),
            net.register_forward_hook(lambda *a: clock.__setitem__(
                "t", clock["t"] + time.process_time() - clock["t0"]))]
    return clock


def _same_answers(base: list, this: list, label: str) -> str:
    """Whether the two revisions' ``label`` (batch by batch) are the same in every column, bit
    for bit, and where not, by how much (for Z also the largest move in km/s, c·|ΔZ|/(1+Z)):
    a speed change that regroups the χ² fits moves them by float32 rounding (docs/speed.md),
    which has to be seen."""
    import numpy as np
    diff = []
    for c in base[0].colnames:
        x = np.concatenate([np.asarray(t[c]) for t in base])
        y = np.concatenate([np.asarray(t[c]) for t in this])
        if x.dtype.kind in "fc" and np.array_equal(x, y, equal_nan=True):
            continue
        if x.dtype.kind not in "fc" and np.array_equal(x, y):
            continue
        rows = np.flatnonzero((x != y).reshape(len(x), -1).any(1)) if x.dtype.kind not in "fc" \
            else np.flatnonzero(~((x == y) | (np.isnan(x) & np.isnan(y))).reshape(len(x), -1).all(1))
        if x.dtype.kind in "fc":
            with np.errstate(all="ignore"):
                rel = np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-300))
            kms = ""
            if c == "Z":
                with np.errstate(all="ignore"):
                    kms = (f", max {np.nanmax(2.99792458e5 * np.abs(x - y) / (1 + x)):.2f} "
                           f"km/s")
            diff.append(f"{c} ({len(rows)} rows, max relative {rel:.1e}{kms})")
        else:
            diff.append(f"{c} ({len(rows)} rows)")
    return (f"{label} of both revisions: identical in every column" if not diff else
            f"{label} differ: " + ", ".join(diff))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--verify-only", action="store_true",
                    help="time only the verify stage, alternating the two revisions batch by "
                         "batch on the same proposals, and print the paired ratios")
    only.add_argument("--propose-only", action="store_true",
                    help="time only model.propose (forward + predict_rest), alternating the "
                         "two revisions batch by batch")
    ap.add_argument("--model", default="gasnet",
                    help="with --propose-only: the bundled model to time (gasnet, speccznet, …)")
    ap.add_argument("--fits", type=int, default=0, metavar="N",
                    help="with --propose-only: also on N SDSS spec files (copies of the 8 real "
                         "ones, one batch as predict reads them)")
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)
    store = sim_store(a.n)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extract(a.base, tmp)
        sys.path.insert(0, str(tmp))
        model = a.model if a.propose_only else "gasnet"
        v = {"base": Version("specsift_base", model), "this": Version("specsift", model)}
        order = [("base", "this"), ("this", "base")]
        if a.verify_only:
            verify_pairs(v, store, a.reps, a.base)
            return
        if a.propose_only:
            real_answers(v)
            propose_pairs(v, store, a.reps, a.base)
            if a.fits:
                from predict_speed import fits_copies
                files = fits_copies(tmp / "fits", a.fits, "spec-*.fits")
                propose_pairs(v, files, a.reps, a.base, "SDSS spec-file")
            return
        for x in v.values():                          # warm: per-process caches built
            x.stages(store, tmp)
        st = {k: [] for k in v}
        for i in range(a.reps):
            for k in order[i % 2]:
                st[k].append(v[k].stages(store, tmp))
        print(f"{a.n} simulated spectra, gasnet, one thread; medians of {a.reps} "
              f"interleaved passes; base = {a.base}\n")
        print(f"| stage (µs / spectrum) | {a.base} | this checkout |")
        print("|---|---|---|")
        tot = dict.fromkeys(v, 0.0)
        for s in STAGES:
            med = {k: float(np.median([r[s] for r in st[k]])) for k in v}
            for k in v:
                tot[k] += med[k]
            print(f"| {s} | {med['base']:.0f} | {med['this']:.0f} |")
        print(f"| total | {tot['base']:.0f} | {tot['this']:.0f} |")
        print(f"| spectra per CPU-second of the stages | {1e6 / tot['base']:.0f} | "
              f"{1e6 / tot['this']:.0f} |")
        e2e = {}
        for i in range(a.reps):
            for verify in (True, False):
                for k in order[i % 2]:
                    e2e.setdefault((k, verify), []).append(
                        v[k].end_to_end(store, tmp / f"{k}-{i}-{verify}.parquet", verify))
        print(f"\n| predict end to end, spectra per CPU-second | {a.base} median (best) | "
              f"this checkout median (best) |")
        print("|---|---|---|")
        for verify in (True, False):
            cell = {k: f"{np.median(e2e[(k, verify)]):.0f} ({max(e2e[(k, verify)]):.0f})"
                    for k in v}
            print(f"| {'verify (default)' if verify else '--no-verify'} | {cell['base']} | "
                  f"{cell['this']} |")


if __name__ == "__main__":
    main()
