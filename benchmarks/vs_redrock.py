"""specsift against Redrock on the same spectra: speed per core and accuracy, one table.

    python3.11 -m venv benchmarks/.venv-redrock && benchmarks/.venv-redrock/bin/pip install redrock
    .venv/bin/python benchmarks/vs_redrock.py [--n-sim 100] [--sim-quasars N] [--model NAME|PATH]

Redrock 0.21 (PyPI) runs in its own venv (it pins other numpy/numba than ours) with
RR_TEMPLATE_DIR = ../shared/data/templates/redrock and the list ``templates-sdss.txt``
(galaxy: the SDSS pipeline's spEigenGal-56436; QSO LOZ/HIZ; stars A–WD), one process,
one thread.  Spectra are trimmed to 3600–9800 Å; resolution from ``wdisp`` where the
file has it (SDSS spec files), else a 1-pixel Gaussian.  Data: ``--n-sim`` simulated
spectra (``thirteen`` class mix of the catalogues) and the real SDSS spectra of
../shared/data/sdss (50 labelled + 10 quasars + 8 spec files); ``--sim-quasars N`` adds a row
of N simulated quasars at the catalogue S/N mix (the quasars of a balanced ``thirteen``
simulation, seed 23), where the issue's quasar target GF(0.003) ≥ 0.95 applies.  Speed = spectra per CPU
second of one core: specsift end to end (reading → catalog, torch 1 thread), Redrock
its redshift fit (template loading, ≈20 s once per run, reported apart).  GF(t): share
with |Δz|/(1+z) ≤ t over all spectra; class accuracy: GALAXY/QSO/STAR; catastrophic:
|Δz|/(1+z) > 0.01.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED, sdss_files  # noqa: E402
from _predict_common import model_for_bench, sim_store  # noqa: E402

RR_PY = ROOT / "benchmarks" / ".venv-redrock" / "bin" / "python"
RR_DIR = SHARED / "templates" / "redrock"


def real_files() -> list[Path]:
    return sdss_files("sdss-*.fits") + sdss_files("spec-*.fits")


def redrock_inputs_real(files: list[Path]) -> dict:
    """Native arrays per spectrum, in the order specsift reads them (files, then rows)."""
    from astropy.io import fits
    out = {"wave": [], "flux": [], "ivar": [], "wdisp": []}
    for f in files:
        with fits.open(f) as h:
            if "COADD" in h:
                c = h["COADD"].data
                w = 10 ** np.asarray(c["loglam"], float)
                rows = [(w, c["flux"], c["ivar"], c["wdisp"])]
            else:
                grid = 10 ** np.asarray(h[2].data["input_grid"][0] if h[2].columns is not None
                                        and "input_grid" in h[2].columns.names
                                        else h[2].data, float).ravel()
                t = h[1].data
                rows = [(grid, t["flux"][k], t["ivar"][k], np.zeros(grid.size))
                        for k in range(len(t))]
        for w, fl, iv, wd in rows:
            for key, v in zip(out, (w, fl, iv, wd)):
                out[key].append(np.asarray(v, float))
    return out


def native_arrays(b) -> dict:
    """Redrock inputs of a simulated batch: its own grid, masked pixels at ivar 0."""
    return {"wave": [10 ** b.loglam] * len(b), "flux": list(b.flux),
            "ivar": list(np.where(b.mask, 0, b.ivar)), "wdisp": [np.ones(b.npix)] * len(b)}


def quasar_store(n: int, tmp: Path):
    """The first ``n`` quasars of a balanced thirteen-class simulation, as a store."""
    from specsift.io import SpectralStore
    from specsift.simulate import simulate_batch
    b = simulate_batch(int(np.ceil(n * 13 / 2)) + 13, "thirteen", seed=23)
    q = np.nonzero(np.char.startswith(np.asarray(b.meta["CLASS_LABEL"], str), "QSO"))[0][:n]
    b = b[q]
    path = tmp / "quasars.h5"
    with SpectralStore(path, "w") as st:
        st.append(b)
    return path, b


def run_redrock(arrays: dict, tmp: Path) -> dict:
    n = len(arrays["flux"])
    payload = {"targetid": np.arange(n), "nspec": n}
    for k in range(n):
        for key in ("wave", "flux", "ivar", "wdisp"):
            payload[f"{key}_{k}"] = arrays[key][k]
    inp, out = tmp / "rr_in.npz", tmp / "rr_out.npz"
    np.savez(inp, **payload)
    env = dict(os.environ, RR_TEMPLATE_DIR=str(RR_DIR), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    p = subprocess.run([str(RR_PY), str(Path(__file__).with_name("_redrock_runner.py")),
                        str(inp), str(out)], env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"redrock failed:\n{p.stderr[-3000:]}")
    d = np.load(out)
    return {k: d[k] for k in d.files}


def run_specsift(inputs: list[Path], model: str, tmp: Path, name: str) -> tuple[dict, float, float]:
    import torch

    from specsift.io import read_catalog
    from specsift.pipeline import predict
    torch.set_num_threads(1)
    out = tmp / f"{name}.parquet"
    c0, t0 = time.process_time(), time.perf_counter()
    predict(inputs, out, model=model, batch_size=1024, threads=1, progress=False, overwrite=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    cat = read_catalog(out)
    return {c: np.asarray(cat[c]) for c in ("TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE")}, cpu, wall


def truth_of(inputs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(three-class label, z) in reading order."""
    from specsift.io import iter_read
    from specsift.metrics import truth_labels
    labels, zs = [], []
    for b in iter_read(inputs, batch_size=4096):
        labels.append(truth_labels(b.meta, "three"))
        zs.append(np.asarray(b.meta["Z"], float))
    return np.concatenate(labels), np.concatenate(zs)


def scores(spectype, z, true_label, true_z) -> dict:
    spectype = np.char.strip(np.asarray(spectype).astype(str))
    dz = np.abs(np.asarray(z, float) - true_z) / (1 + true_z)
    dz = np.where(np.isfinite(dz) & (np.asarray(z, float) >= -0.01), dz, np.inf)
    has = true_label != ""
    return {"GF_0.003": float(np.mean(dz <= 0.003)), "GF_0.01": float(np.mean(dz <= 0.01)),
            "acc": float(np.mean(spectype[has] == true_label[has])),
            "cat": float(np.mean(dz > 0.01))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sim", type=int, default=100)
    ap.add_argument("--sim-quasars", type=int, default=0,
                    help="also score N simulated quasars (catalogue S/N mix)")
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    if not RR_PY.exists():
        raise SystemExit(f"{RR_PY} missing: python3.11 -m venv benchmarks/.venv-redrock && "
                         f"benchmarks/.venv-redrock/bin/pip install redrock")
    model, desc = model_for_bench(a.model)
    from specsift.io import SpectralStore
    rows, q = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # simulated: a store of exactly n spectra (reading order = store order)
        store = sim_store(a.n_sim, seed=23)
        with SpectralStore(store) as st:
            b = st.read(slice(0, a.n_sim))
        sim_arrays = native_arrays(b)
        files = real_files()
        sets = [("simulated", [store], sim_arrays)]
        if a.sim_quasars:
            qstore, q = quasar_store(a.sim_quasars, tmp)
            sets.append(("simulated quasars", [qstore], native_arrays(q)))
        sets.append(("SDSS real", files, redrock_inputs_real(files)))
        for name, inputs, arrays in sets:
            true_label, true_z = truth_of(inputs)
            n = len(true_z)
            ss, cpu, wall = run_specsift(inputs, model, tmp, name.replace(" ", "_"))
            rr = run_redrock(arrays, tmp)
            assert len(ss["Z"]) == n == len(rr["Z"]), (len(ss["Z"]), n, len(rr["Z"]))
            rows.append((name, "specsift", n, n / cpu, n / wall,
                         scores(ss["SPECTYPE"], ss["Z"], true_label, true_z)))
            rows.append((name, "Redrock 0.21", n, n / float(rr["cpu_seconds"]),
                         n / float(rr["seconds"]),
                         scores(rr["SPECTYPE"], rr["Z"], true_label, true_z)))
            print(f"{name}: done ({n} spectra; Redrock template loading "
                  f"{float(rr['template_seconds']):.0f} s)", flush=True)
    print(f"\nspecsift model: {desc}\n")
    print("| data | tool | N | spectra/s per core (CPU) | spectra/s (wall) | GF(0.003) | "
          "GF(0.01) | class accuracy (3) | catastrophic (>0.01) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, tool, n, rate, wrate, s in rows:
        print(f"| {name} | {tool} | {n} | {rate:.2f} | {wrate:.2f} | {s['GF_0.003']:.3f} | "
              f"{s['GF_0.01']:.3f} | {s['acc']:.3f} | {s['cat']:.3f} |")
    if q is not None:
        bundled_on_quasars(q)


def bundled_on_quasars(batch) -> None:
    """Every bundled model on the same simulated quasars (in-process, no speed)."""
    from specsift import load_model
    from specsift.metrics import truth_labels
    true_label, true_z = truth_labels(batch.meta, "three"), np.asarray(batch.meta["Z"], float)
    print(f"\nBundled models on the same {len(batch)} simulated quasars:\n")
    print("| model | GF(0.003) | GF(0.01) |\n|---|---|---|")
    for name in ("gasnet", "speccznet", "eigen"):
        cat = load_model(name).predict(batch)
        s = scores(cat["SPECTYPE"], cat["Z"], true_label, true_z)
        print(f"| {name} | {s['GF_0.003']:.3f} | {s['GF_0.01']:.3f} |")


if __name__ == "__main__":
    main()
