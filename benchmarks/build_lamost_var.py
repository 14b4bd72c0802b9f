"""Build ``src/specsift/data/templates/lamost_resid_var.npz``: the per-pixel residual variance
of real LAMOST stars about the verification's STAR fit (:mod:`specsift.verify.survey_noise`).

    nice -n 10 .venv/bin/python benchmarks/build_lamost_var.py [--out PATH]

Stars: every CLASS STAR file of ``../shared/data/lamost-real`` with S/N_g ≥ 10 in the training
split (outside :func:`_lamost_real.heldout_mask`; held-out files are never opened).  Each is
verified from a STAR proposal at z 0 alone (no model, so the file does not depend on one; the
survey-noise check off, as it reads this file); the stars verified STAR give
r = (f − STAR model)·√ivar on the pixels the fit used (the model at the whole pixel its
coefficients were fitted at, as the check draws it), and α_p = max(0, median r²/0.455 − 1)
(:func:`specsift.verify.survey_noise.var_boost_from_r2`).  The file also records the stars
(``files``, ``nread``, ``nstars``), the S/N cut (``sn_min``) and the digest of the STAR fit
(``fit_digest``: basis, polynomial terms, sky mask; the stage warns where its own differs).
Deterministic.  Prints α and the median normalised residual by wavelength range.
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


SN_MIN = 10.0


def training_stars():
    """The training-split LAMOST stars with S/N_g ≥ ``SN_MIN``, read (held-out files never
    opened), and their paths relative to ``lamost-real`` in the order of the batch."""
    import _lamost_survey as LS
    import real_surveys as RS
    from _common import SHARED
    root = SHARED / "lamost-real"
    lab = LS.labels(root)
    paths = sorted(p for p, r in lab.items() if str(r["CLASS"]).strip().upper() == "STAR"
                   and not r["HELDOUT"] and np.isfinite(r["SN"]) and r["SN"] >= SN_MIN)
    b, bad = RS._read_all(paths)
    names = [os.path.relpath(str(p), str(root)) for p in b.meta["PATH"]]
    return b, bad, names


def residuals(batch):
    """(r (N_star, P) normalised residuals f − STAR model over σ, NaN where the fit did not
    use the pixel; the mask of ``batch`` rows verified STAR): each star verified from a STAR
    proposal at z 0 alone, its model drawn at the whole pixel its coefficients were fitted at
    (:func:`specsift.verify.starcheck.catalog_models`, as the survey-noise check draws it)."""
    from astropy.table import Table

    from specsift.catalog import make_catalog
    from specsift.verify import Candidates, VerifyOptions, verify_catalog
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.stage import sky_mask
    from specsift.verify.starcheck import catalog_models
    n = len(batch)
    table = make_catalog(Table({"TARGETID": np.arange(n)}), "three",
                         np.tile([0.05, 0.05, 0.9], (n, 1)), np.zeros(n), np.full(n, 1e-4),
                         "star-only")
    cat = verify_catalog(batch, table, Candidates(np.zeros((n, 1)), np.full((n, 1), "STAR")),
                         VerifyOptions(noise_check_margin=None))
    star = np.asarray(cat["SPECTYPE"]).astype(str) == "STAR"
    sub = batch[np.flatnonzero(star)]
    w = np.where(sub.mask | sky_mask(sub.loglam), 0.0, sub.ivar).astype(np.float64)
    f = np.nan_to_num(sub.flux.astype(np.float64))
    model = catalog_models(sub.loglam, cat[star], f, w, extra_sigma_pix(batch)[star])
    with np.errstate(invalid="ignore"):
        r = np.where(w > 0, (f - model) * np.sqrt(w), np.nan)
    return r, star


def residual_alpha(batch):
    """(α (P,), the number of stars it was measured on)."""
    from specsift.verify.survey_noise import var_boost_from_r2
    r, star = residuals(batch)
    return var_boost_from_r2(r ** 2), int(star.sum())


def main(argv=None) -> None:
    import warnings

    from specsift.verify.stage import SKY_HALFWIDTH, SKY_LINES
    from specsift.verify.survey_noise import star_fit_digest, var_boost_from_r2
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    b, bad, names = training_stars()
    r, star = residuals(b)
    alpha, nstar = var_boost_from_r2(r ** 2), int(star.sum())
    np.savez_compressed(args.out, loglam0=np.float64(b.loglam[0]),
                        step=np.float64(b.loglam[1] - b.loglam[0]), alpha=alpha,
                        nstars=np.int64(nstar), nread=np.int64(len(b)),
                        files=np.array(names, dtype=str), sn_min=np.float64(SN_MIN),
                        fit_digest=np.array(star_fit_digest(SKY_LINES, SKY_HALFWIDTH)),
                        split=np.array("training split of _lamost_real.heldout_mask"))
    wave = 10 ** b.loglam
    print(f"{len(b)} training-split stars read ({len(bad)} skipped), {nstar} verified STAR; "
          f"α written to {args.out}")
    print("| Å | median α | max α | median normalised residual (all stars, pixels) |\n"
          "|---|---|---|---|")
    for lo, hi in RANGES:
        s = (wave > lo) & (wave < hi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(r[:, s])
        print(f"| {lo}–{hi} | {np.median(alpha[s]):.2f} | {alpha[s].max():.1f} | {med:+.2f} |")


if __name__ == "__main__":
    main()
