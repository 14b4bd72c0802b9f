"""Anomaly score on real LAMOST stars: normal held-out stars should not be flagged, the same
stars with injected artefacts should.

    # before/after: ANOMALY (ZWARN bit 16) rate on held-out normal LAMOST stars, and the
    # recall / ROC AUC of artefacts injected into those stars
    python benchmarks/lamost_anomaly.py --model eigen [--model gasnet]
    # give eigen a LAMOST normal population: its own calibration for SURVEY == LAMOST,
    # fitted on the real LAMOST stars of the training split; SDSS (and simulated) spectra
    # keep the default one (simulated SDSS validation normals)
    python benchmarks/lamost_anomaly.py --recalibrate PATH [--model PATH]
    # the alternative measured against it: one pooled population (simulated SDSS validation
    # normals, seed 22 as benchmarks/anomalies.py --recalibrate, + the LAMOST training stars)
    python benchmarks/lamost_anomaly.py --recalibrate PATH --pooled

The split is :func:`_lamost_real.heldout_mask` (the one the fine-tunes use): calibration
sees only training-split stars; the rates below are on held-out stars only. Injected
kinds (``specsift.anomaly_inject``), applied to copies of the held-out stars: bad columns
(1–3 runs of 3–15 px at 5–15 σ), a flux-calibration jump (15–40 % red of a break at
4500–8000 Å) and a superposition (a simulated galaxy or quasar at z 0.05–2.5 scaled to
0.5–1 × the star's median flux).  Sky-line residuals are left out here: the injector adds
the SDSS sky in SDSS flux units, meaningless on LAMOST's relative flux scale.  Only the
derived statistics (the fitted calibration) go into the model file, never the spectra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lamost_finetune import _real_batch, real_split  # noqa: E402

from specsift.metrics import roc_auc  # noqa: E402

BIT = 1 << 16


def stars(lab, held: bool, snr_min: float = 0.0) -> np.ndarray:
    sel = (np.asarray(lab["CLASS"]) == "STAR") & (np.asarray(lab["HELDOUT"]) == held)
    return np.nonzero(sel & (np.asarray(lab["SNR_G"], float) >= snr_min))[0]


def lamost_normals(flux, ivar, lab, idx, tid0=0):
    """Real LAMOST stars as a batch with the meta columns a simulated batch has."""
    b = _real_batch(flux, ivar, lab, idx, tid0)
    b.meta.keep_columns(["TARGETID", "Z", "SNR"])
    b.meta["SURVEY"] = np.full(len(idx), "LAMOST", "U8")      # as the package readers say
    return b


def recalibrate_lamost(model, flux, ivar, lab, quantile=0.99):
    """Fit eigen's LAMOST calibration (rest-frame model error where LAMOST has ≥ 30 normals
    of a class, S/N regression, threshold) on the training-split stars; returns provenance."""
    train = stars(lab, held=False)
    thr = model.calibrate_anomaly(lamost_normals(flux, ivar, lab, train, 10 ** 9),
                                  quantile=quantile, survey="LAMOST")
    prov = {"survey": "LAMOST",
            "normals": f"{len(train)} real LAMOST stars of ../shared/data/lamost-real, the "
                       "training split of benchmarks/_lamost_real.heldout_mask",
            "command": "python benchmarks/lamost_anomaly.py --recalibrate PATH",
            "threshold": thr}
    model.metrics["anomaly_calibration_LAMOST"] = prov
    return prov


def recalibrate(model, flux, ivar, lab, val_seed=22, val_n=1536, quantile=0.99):
    """The pooled alternative: refit eigen's default rest-frame model error and anomaly
    calibration on simulated SDSS normals + the real LAMOST training-split stars."""
    from specsift.simulate import simulate_batch
    from specsift.spectra import SpectraBatch
    val = simulate_batch(val_n, class_set="three", seed=val_seed, bal_fraction=0.0)
    sub = np.char.upper(np.asarray(val.meta["SUBTYPE"], str))
    val = val[np.nonzero(~np.isin(sub, ["WD", "CV"]))[0]]
    val.meta.keep_columns(["TARGETID", "Z", "SNR"])
    train = stars(lab, held=False)
    real = lamost_normals(flux, ivar, lab, train, 10 ** 9)
    real.meta.remove_column("SURVEY")
    thr = model.calibrate_anomaly(SpectraBatch.concatenate([val, real]), quantile=quantile)
    prov = {"normals": f"{len(val)} simulated SDSS `three` normals (seed {val_seed}, no BAL, "
                       f"no WD/CV) + {len(train)} real LAMOST stars (training split of "
                       "benchmarks/_lamost_real.heldout_mask)",
            "command": "python benchmarks/lamost_anomaly.py --recalibrate PATH --pooled",
            "threshold": thr}
    model.metrics["anomaly_threshold"] = thr
    model.metrics["anomaly_calibration"] = prov
    return prov


def injected(batch, rng):
    from specsift.anomaly_inject import bad_columns, flux_jump, superpose
    from specsift.simulate import simulate_batch
    n = len(batch)
    other = simulate_batch(3 * n, "three", 77, z=(0.05, 2.5), bal_fraction=0.0)
    o = other[np.nonzero(np.asarray(other.meta["CLASS_LABEL"]) != "STAR")[0][:n]]
    return {"bad_columns": bad_columns(batch, rng), "flux_jump": flux_jump(batch, rng),
            "superposition": superpose(batch[np.arange(len(o))], o, rng)}


def report(model, name, flux, ivar, lab, seed=31):
    held = lamost_normals(flux, ivar, lab, stars(lab, held=True))
    snr = np.asarray(held.meta["SNR"], float)
    cat = model.predict(held)
    ns = np.asarray(cat["ANOMALY_SCORE"], float)
    flag = (np.asarray(cat["ZWARN"]) & BIT) != 0
    hi = np.asarray(lab["SNR_G"], float)[stars(lab, held=True)] >= 10
    print(f"\n{name} ({model.tag}): held-out normal LAMOST stars n={len(held)}: flagged "
          f"{flag.mean():.3f} (S/N_g ≥ 10: {flag[hi].mean():.3f}, n={hi.sum()}); median score "
          f"{np.nanmedian(ns):.2f}; median S/N {np.median(snr):.0f}")
    print("| kind | n | recall (bit 16) | ROC AUC vs held-out normals | median score |")
    print("|---|---|---|---|---|")
    for kind, b in injected(held, np.random.default_rng(seed)).items():
        c = model.predict(b)
        s = np.asarray(c["ANOMALY_SCORE"], float)
        rec = np.mean((np.asarray(c["ZWARN"]) & BIT) != 0)
        print(f"| {kind} | {len(b)} | {rec:.3f} | {roc_auc(s, ns):.3f} | {np.nanmedian(s):.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model names or files (default eigen)")
    ap.add_argument("--recalibrate", metavar="PATH",
                    help="refit the first --model's anomaly calibration, save here, report both")
    ap.add_argument("--pooled", action="store_true",
                    help="with --recalibrate: one pooled normal population instead")
    ap.add_argument("--seed", type=int, default=31)
    a = ap.parse_args(argv)
    import specsift
    torch.set_num_threads(1)
    flux, ivar, lab, _ = real_split()
    print("command: python benchmarks/lamost_anomaly.py " +
          " ".join(sys.argv[1:] if argv is None else argv))
    models = a.model or ["eigen"]
    for m in models:
        report(specsift.load_model(m), m, flux, ivar, lab, a.seed)
    if a.recalibrate:
        model = specsift.load_model(models[0])
        prov = (recalibrate if a.pooled else recalibrate_lamost)(model, flux, ivar, lab)
        print(f"\nrecalibrated: {prov['normals']}; threshold {prov['threshold']:.2f}; "
              f"saved {model.save(a.recalibrate)}")
        report(specsift.load_model(a.recalibrate), a.recalibrate, flux, ivar, lab, a.seed)


if __name__ == "__main__":
    main()
