"""How well each bundled model's class probabilities and ZERR are calibrated on real spectra,
per survey: the numbers behind the "Calibration" section of every model card.

    nice -n 10 .venv/bin/python benchmarks/real_calibration.py [--models gasnet speccznet eigen]

Data as in ``benchmarks/real_surveys.py``: SDSS = the 68 spectra of ``../shared/data/sdss``;
LAMOST = the stars with S/N_g ≥ 10 of the fine-tuning held-out split of ``lamost-real``
(``benchmarks/_lamost_real.heldout_mask``; never trained or calibrated on by any model).

* Class probabilities (the model's own, ``--no-verify``; the verified catalog keeps them as
  PROB_*): summed per SPECTYPE (STAR / GALAXY / QSO) so that every model is judged on the
  same three classes; mean top probability ("confidence") against three-class accuracy, and
  the expected calibration error ECE (``specsift.metrics.calibration``, 5 bins).
* ZERR: 1σ coverage over spectra of the right class that are not catastrophic
  (|Δz|/(1+z) < 0.01), |Δz| ≤ √(ZERR² + Z_ERR_ref²) with the survey's own quoted error,
  without and with the verification stage (whose ZERR is `VerifyOptions.zerr_scale` × the χ²
  curvature σ ⊕ the per-survey star floor); target 0.68.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_surveys as RS  # noqa: E402

TYPES = ("STAR", "GALAXY", "QSO")


def type_probs(cat) -> np.ndarray:
    """(N, 3) probabilities of STAR, GALAXY, QSO from a catalog's PROB_<label> columns."""
    from specsift.classes import spectype_of
    out = np.zeros((len(cat), 3))
    for c in cat.colnames:
        if c.startswith("PROB_"):
            out[:, TYPES.index(spectype_of(c[5:]))] += np.asarray(cat[c], float)
    return out


def scores(meta, cat, cat_verified, sel) -> dict:
    from specsift.metrics import calibration
    cls = RS._cls(meta)[sel]
    y = np.array([TYPES.index(c) if c in TYPES else -1 for c in cls])
    p = type_probs(cat[sel])
    ok = y >= 0
    cal = calibration(p[ok], y[ok], 5)
    out = {"n": int(ok.sum()), "confidence": float(p[ok].max(1).mean()),
           "accuracy": float(np.mean(p[ok].argmax(1) == y[ok])), "ECE": cal["ECE"]}
    zt = np.asarray(meta["Z"], float)[sel]
    zterr = np.nan_to_num(np.asarray(meta["ZERR"], float)[sel], nan=0.0).clip(0, 0.1)
    for tag, c in (("ZERR cov", cat), ("ZERR cov verified", cat_verified)):
        c = c[sel]
        st = np.asarray(c["SPECTYPE"]).astype(str)
        z, zerr = np.asarray(c["Z"], float), np.asarray(c["ZERR"], float)
        good = (st == cls) & (np.abs(z - zt) / (1 + zt) < 0.01)
        cov = np.abs(z - zt)[good] <= np.sqrt(zerr[good] ** 2 + zterr[good] ** 2)
        out[tag] = float(cov.mean()) if cov.size else np.nan
        out[tag + " n"] = int(good.sum())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gasnet", "speccznet", "eigen"])
    a = ap.parse_args(argv)
    import torch

    from specsift.models.base import load_model
    torch.set_num_threads(1)
    sd, _ = RS.sdss()
    la, _ = RS.lamost()
    m = la.meta
    held = np.asarray(m["HELDOUT"], bool) & (np.asarray(m["SN_G"], float) >= 10) \
        & (RS._cls(m) == "STAR")
    sets = {"SDSS (68)": (sd, np.arange(len(sd))),
            "LAMOST held-out stars S/N_g ≥ 10": (la, np.flatnonzero(held))}
    print("command: python benchmarks/real_calibration.py " +
          " ".join(sys.argv[1:] if argv is None else argv))
    print("\n| model | data | n | confidence | three-class accuracy | ECE (5 bins) | "
          "ZERR 1σ cov (n) | verified ZERR 1σ cov (n) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        model = load_model(name)
        for label, (b, sel) in sets.items():
            cat, _ = RS.run(model, b, False)
            catv, _ = RS.run(model, b, True)
            r = scores(b.meta, cat, catv, sel)
            print(f"| {name} | {label} | {r['n']} | {r['confidence']:.3f} | {r['accuracy']:.3f} | "
                  f"{r['ECE']:.3f} | {r['ZERR cov']:.3f} ({r['ZERR cov n']}) | "
                  f"{r['ZERR cov verified']:.3f} ({r['ZERR cov verified n']}) |")


if __name__ == "__main__":
    main()
