"""Anomaly detection of the `eigen` model on injected anomalies it never saw in training.

    python benchmarks/anomalies.py [--model eigen] [--n 96] [--seed 31]
    python benchmarks/anomalies.py --recalibrate PATH      # refit the anomaly calibration first

Normals: a simulated 'three' test set (no BAL, no WD/CV — the shipped model is trained
without them).  Anomalies, ``--n`` of each kind:
* white dwarfs and cataclysmic variables: Redrock STAR-WD (archetype coefficients) and
  STAR-CV basis spectra from ../shared/data/templates/redrock, observed with the
  simulator's SDSS instrument model;
* BAL quasars: simulated quasars at z 1.6–4 with ``bal_fraction=1``;
* superpositions: a galaxy plus a quasar (or galaxy) at another redshift, 0.5–1 × its flux;
* sky-line residuals (10–30 % of the sky line structure), bad columns (1–3 runs of
  3–15 px at 5–15 σ), flux-calibration jumps (15–40 % red of a break at 4500–8000 Å)
  applied to normal test spectra.
Reports ROC AUC (anomalies vs the normal test set), precision at 50 % and 80 % recall
(with as many normals as anomalies of each kind ×10, i.e. 1:10 prevalence), and the fraction
flagged by ZWARN bit 16 at the model's threshold.  Target: AUC ≥ 0.95.

``--recalibrate PATH`` refits the model's (S/N-conditioned) anomaly calibration on the
normals of a fresh validation set (``--val-seed`` 22, ``--val-n`` 1536 simulated `three`,
no BAL, WD/CV removed — the training validation set), saves the model to PATH and then
benchmarks it.  The benchmark normals (seed 31) are never used for calibration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from specsift.metrics import roc_auc as auc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED  # noqa: E402


def precision_at_recall(pos, neg, recall, prevalence=0.1):
    """Precision at the threshold that keeps ``recall`` of anomalies, for a population
    with ``prevalence`` anomalies (normal false-positive rate rescaled)."""
    thr = np.quantile(pos, 1 - recall)
    fpr = np.mean(np.asarray(neg) >= thr)
    tp = recall * prevalence
    return float(tp / (tp + fpr * (1 - prevalence))) if tp + fpr > 0 else float("nan")


def redrock_spectra(name, n, rng):
    from astropy.io import fits
    path = SHARED / "templates" / "redrock" / f"rrtemplate-STAR-{name}-v0.1.fits"
    with fits.open(path) as h:
        bv = h["BASIS_VECTORS"]
        hd = bv.header
        wave = hd["CRVAL1"] + hd["CDELT1"] * np.arange(hd["NAXIS1"])
        basis = np.asarray(bv.data, float)
        coeff = (np.asarray(h["ARCHETYPE_COEFF"].data, float)
                 if "ARCHETYPE_COEFF" in [x.name for x in h] else None)
    if coeff is not None:
        c = coeff[rng.choice(len(coeff), n)]
    else:   # CV: basis only — positive mixtures around the first vector
        c = np.zeros((n, basis.shape[0]))
        c[:, 0] = 1.0
        c[:, 1:] = rng.normal(0, 0.3, (n, basis.shape[0] - 1)) * np.abs(basis[0]).mean() \
            / np.abs(basis[1:]).mean(axis=1)
    return wave, c @ basis


def build(n, seed):
    from specsift.anomaly_inject import (
        bad_columns,
        flux_jump,
        from_rest_templates,
        sky_residuals,
        superpose,
    )
    from specsift.simulate import simulate_batch
    rng = np.random.default_rng(seed)
    normal = simulate_batch(10 * n, class_set="three", seed=seed, bal_fraction=0.0)
    sub = np.char.upper(np.asarray(normal.meta["SUBTYPE"], str))
    normal = normal[np.nonzero(~np.isin(sub, ["WD", "CV"]))[0]]
    base = normal[rng.choice(len(normal), n, replace=False)]
    kinds = {"sky_residuals": sky_residuals(base, rng), "bad_columns": bad_columns(base, rng),
             "flux_jump": flux_jump(base, rng)}
    gal = simulate_batch(2 * n, "three", seed + 1, z=(0.05, 0.5), bal_fraction=0.0)
    g = gal[np.nonzero(np.asarray(gal.meta["CLASS_LABEL"]) == "GALAXY")[0][:n]]
    other = simulate_batch(3 * n, "three", seed + 2, z=(0.6, 2.5), bal_fraction=0.0)
    o = other[np.nonzero(np.asarray(other.meta["CLASS_LABEL"]) != "STAR")[0][:len(g)]]
    kinds["superposition"] = superpose(g[:len(o)], o, rng)
    bal = simulate_batch(4 * n, "three", seed + 3, z=(1.6, 4.0), snr=(5.0, 40.0),
                         bal_fraction=1.0)
    kinds["bal_qso"] = bal[np.nonzero(np.asarray(bal.meta["BAL"]) == 1)[0][:n]]
    for name, kind in (("WD", "white_dwarf"), ("CV", "cataclysmic_variable")):
        path = SHARED / "templates" / "redrock" / f"rrtemplate-STAR-{name}-v0.1.fits"
        if path.exists():
            wave, spec = redrock_spectra(name, n, rng)
            kinds[kind] = from_rest_templates(wave, spec, rng, kind)
    return normal, kinds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="eigen")
    ap.add_argument("--n", type=int, default=96, help="anomalies per kind (normals: 10×)")
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--recalibrate", default=None, metavar="PATH",
                    help="refit the anomaly calibration on a validation set, save the model here")
    ap.add_argument("--val-seed", type=int, default=22)
    ap.add_argument("--val-n", type=int, default=1536)
    args = ap.parse_args(argv)
    import specsift
    torch.set_num_threads(1)
    model = specsift.load_model(args.model)
    if args.recalibrate:
        from specsift.simulate import simulate_batch
        val = simulate_batch(args.val_n, class_set="three", seed=args.val_seed, bal_fraction=0.0)
        sub = np.char.upper(np.asarray(val.meta["SUBTYPE"], str))
        val = val[np.nonzero(~np.isin(sub, ["WD", "CV"]))[0]]
        thr = model.calibrate_anomaly(val)
        model.metrics["anomaly_threshold"] = thr
        print(f"recalibrated on {len(val)} validation normals (seed {args.val_seed}); "
              f"threshold {thr:.2f}; saved {model.save(args.recalibrate)}")
    normal, kinds = build(args.n, args.seed)
    ncat = model.predict(normal)
    ns = np.asarray(ncat["ANOMALY_SCORE"], float)
    flag = lambda c: np.mean((np.asarray(c["ZWARN"]) & (1 << 16)) != 0)  # noqa: E731
    print("command: python benchmarks/anomalies.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"model: {args.model} ({model.tag}); threshold {model.anomaly_.threshold:.2f}; "
          f"normals n={len(normal)}, flagged {flag(ncat):.3f}\n")
    print("| kind | n | ROC AUC | precision @ 50 % recall | precision @ 80 % recall | "
          "flagged (bit 16) | median score |")
    print("|---|---|---|---|---|---|---|")
    aucs = []
    for kind, batch in kinds.items():
        cat = model.predict(batch)
        s = np.asarray(cat["ANOMALY_SCORE"], float)
        a = auc(s, ns)
        aucs.append(a)
        print(f"| {kind} | {len(batch)} | {a:.3f} | {precision_at_recall(s, ns, 0.5):.3f} | "
              f"{precision_at_recall(s, ns, 0.8):.3f} | {flag(cat):.2f} | {np.median(s):.2f} |")
    print(f"| **mean** | | {np.mean(aucs):.3f} | | | | |")
    print("\nPrecision assumes 1 anomaly per 10 normal spectra.")


if __name__ == "__main__":
    main()
