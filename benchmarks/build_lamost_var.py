"""Build ``src/specsift/data/templates/lamost_resid_var.npz``: the per-pixel residual variance
of real LAMOST stars about the verification's STAR fit (:mod:`specsift.verify.survey_noise`).

    nice -n 10 .venv/bin/python benchmarks/build_lamost_var.py [--out PATH]

Stars: every CLASS STAR file of ``../shared/data/lamost-real`` with S/N_g ≥ 10 in the training
split (outside :func:`_lamost_real.heldout_mask`; held-out files are never opened).  Each is
verified from a STAR proposal at z 0 alone (no model, so the file does not depend on one; the
survey-noise check off, as it reads this file); the stars verified STAR give
r = (f − STAR model)·√ivar on the pixels the fit used, and α_p = max(0, median r²/0.455 − 1)
(:func:`specsift.verify.survey_noise.var_boost_from_r2`).  Deterministic.  Prints α by
wavelength range.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE.parent / "src" / "specsift" / "data" / "templates" / "lamost_resid_var.npz"
RANGES = ((3700, 4000), (4000, 5700), (5700, 5950), (6000, 8000), (8000, 9000), (9000, 9075),
          (9075, 9100))


def training_stars():
    """The training-split LAMOST stars with S/N_g ≥ 10, read (held-out files never opened)."""
    import _lamost_survey as LS
    import real_surveys as RS
    from _common import SHARED
    lab = LS.labels(SHARED / "lamost-real")
    paths = [p for p, r in lab.items() if str(r["CLASS"]).strip().upper() == "STAR"
             and not r["HELDOUT"] and np.isfinite(r["SN"]) and r["SN"] >= 10]
    b, bad = RS._read_all(sorted(paths))
    return b, bad


def residual_alpha(batch):
    """(α (P,), the number of stars it was measured on)."""
    from astropy.table import Table

    from specsift.catalog import make_catalog
    from specsift.verify import Candidates, VerifyOptions, verify_catalog
    from specsift.verify.model_flux import model_flux
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.stage import sky_mask
    from specsift.verify.survey_noise import var_boost_from_r2
    n = len(batch)
    table = make_catalog(Table({"TARGETID": np.arange(n)}), "three",
                         np.tile([0.05, 0.05, 0.9], (n, 1)), np.zeros(n), np.full(n, 1e-4),
                         "star-only")
    cat = verify_catalog(batch, table, Candidates(np.zeros((n, 1)), np.full((n, 1), "STAR")),
                         VerifyOptions(noise_check_margin=None))
    star = np.asarray(cat["SPECTYPE"]).astype(str) == "STAR"
    model = model_flux(batch.loglam, cat[star], extra_sigma_pix(batch)[star]).astype(np.float64)
    sub = batch[np.flatnonzero(star)]
    w = np.where(sub.mask | sky_mask(sub.loglam), 0.0, sub.ivar).astype(np.float64)
    r2 = np.where(w > 0, (np.nan_to_num(sub.flux.astype(np.float64)) - model) ** 2 * w, np.nan)
    return var_boost_from_r2(r2), int(star.sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    b, bad = training_stars()
    alpha, nstar = residual_alpha(b)
    np.savez_compressed(args.out, loglam0=np.float64(b.loglam[0]),
                        step=np.float64(b.loglam[1] - b.loglam[0]), alpha=alpha,
                        nstars=np.int64(nstar), split=np.array("training split of "
                                                               "_lamost_real.heldout_mask"))
    wave = 10 ** b.loglam
    print(f"{len(b)} training-split stars read ({len(bad)} skipped), {nstar} verified STAR; "
          f"α written to {args.out}")
    print("| Å | median α | max α |\n|---|---|---|")
    for lo, hi in RANGES:
        s = (wave > lo) & (wave < hi)
        print(f"| {lo}–{hi} | {np.median(alpha[s]):.2f} | {alpha[s].max():.1f} |")


if __name__ == "__main__":
    main()
