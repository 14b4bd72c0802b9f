"""The quasar templates' fractional error ε (``specsift.verify.template_error``), measured on
the real SDSS quasars of ``../shared/data/sdss``.

    nice -n 10 .venv/bin/python benchmarks/qso_template_error.py [--model gasnet]

Every SDSS spectrum is verified with the template-error pass off; for each quasar (and, for
comparison, galaxy) verified as its SDSS class within |Δz|/(1+z) < 0.003 and with median S/N
> 5 (where the noise does not swamp the measurement), ε² = (Σ r² − Σ σ²) / Σ m² over its fitted
pixels (r: data − model, σ² = 1/ivar, m: the best-fit model).  The median over quasars is the
ε the stage ships.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def excess(batch, cat, rows, model):
    """(S/N, χ²/N, ε) of each row."""
    from specsift.verify.stage import sky_mask
    sky = sky_mask(batch.loglam)
    out = []
    for i in rows:
        f, iv, m = batch.flux[i], batch.ivar[i], model[i]
        ok = (iv > 0) & ~batch.mask[i] & ~sky & np.isfinite(m) & np.isfinite(f)
        r, v, mm = (f - m)[ok], 1.0 / iv[ok], m[ok]
        e2 = (np.sum(r ** 2) - np.sum(v)) / np.sum(mm ** 2)
        out.append((np.median(np.abs(mm) * np.sqrt(iv[ok])), np.sum(r ** 2 / v) / ok.sum(),
                    np.sqrt(max(e2, 0.0))))
    return np.array(out).reshape(-1, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gasnet")
    a = ap.parse_args()
    import real_surveys as RS
    import torch

    from specsift import load_model
    from specsift.pipeline.local import prepare_model
    from specsift.verify import VerifyOptions, model_flux, verify_batch
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b, _ = RS.sdss()
    model = prepare_model(load_model(a.model), "cpu", 1)
    with torch.inference_mode():
        cat = verify_batch(model, b, VerifyOptions(qso_template_error=None))
    mf = model_flux(b.loglam, cat)
    cls, zt = RS._cls(b.meta), np.asarray(b.meta["Z"], float)
    st, z = np.asarray(cat["SPECTYPE"]).astype(str), np.asarray(cat["Z"], float)
    print("| class | right, GF(0.003) | S/N > 5 | median χ²/N | ε per spectrum (sorted) | median ε |")
    print("|---|---|---|---|---|---|")
    for t in ("QSO", "GALAXY"):
        rows = np.flatnonzero((cls == t) & (st == t) & (np.abs(z - zt) / (1 + zt) < 0.003))
        e = excess(b, cat, rows, mf)
        hi = e[:, 0] > 5
        print(f"| {t} | {len(rows)} | {hi.sum()} | {np.median(e[:, 1]):.2f} | "
              f"{' '.join(f'{x:.3f}' for x in np.sort(e[hi, 2]))} | {np.median(e[hi, 2]):.3f} |")


if __name__ == "__main__":
    main()
