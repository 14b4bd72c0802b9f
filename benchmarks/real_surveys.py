"""Every bundled model on real labelled spectra, with and without verification: one table per
survey (SDSS, LAMOST, DESI).

    nice -n 10 .venv/bin/python benchmarks/real_surveys.py [--models gasnet speccznet eigen]
                                                           [--calibrate]

Data (all from ``../shared/data``, read with ``specsift.io.read``, one file at a time so that an
unreadable file is counted and skipped — once the readers read more LAMOST layouts the extra
files are picked up with no change here):

* SDSS: the 68 spectra of ``sdss/`` (50 labelled + 10 quasars + 8 spec files); targets
  three-class ≥ 0.99, GF(0.003) galaxies 1.00 and quasars ≥ 0.95, star SUBTYPE = SDSS SUBCLASS
  (first two characters, e.g. K3) ≥ 0.9, ZERR 1σ coverage 0.68 ± 0.07 (|Δz| ≤ √(ZERR² + Z_ERR²)
  over the spectra of the right class that are not catastrophic, |Δz|/(1+z) < 0.01).
* LAMOST (``benchmarks/_lamost_survey.py``): ``lamost-real/*`` and ``lamost/`` stars with
  S/N_g ≥ 10 (labels.csv; our own median S/N at 4000–5500 Å where a folder has none), all and
  the fine-tuning held-out split only (the honest row for gasnet, which was fine-tuned on the
  rest); targets STAR ≥ 99.5 %, A/F/G/K/M letter of SUBTYPE = LAMOST SUBCLASS ≥ 90 %,
  |Δv| ≤ 20 km/s against LAMOST's Z ≥ 95 %, no wrong class with ZWARN 0. The 10 galaxies
  (class, GF(0.003)); the dr8-ccf repeat visits (same class in every pair ≥ 99 %, pull width
  of (v1 − v2)/√(ZERR1² + ZERR2²) 0.8–1.25, robust 1.4826·MAD and std).
* DESI (``benchmarks/_desi_survey.py``): every real coadd of ``desi/`` (the two coadds, the
  25 QuasarNP spectra, the two fastspecfit coadds) against Redrock where it is confident
  (ZWARN 0, DELTACHI2 > 25): Redrock run by the benchmark (``benchmarks/desi_redrock.py``,
  cached in ``benchmarks/desi_redrock.ecsv``) and, for the fastspecfit coadds, the DESI
  pipeline's own Redrock files; agree = same SPECTYPE and |Δz|/(1+z) < 1000 km/s / c.

``--calibrate`` prints the ZERR scale per SPECTYPE that puts the 68th percentile of
|Δz|/ZERR at 1 (SDSS galaxies and quasars, LAMOST stars; gasnet candidates, verified), the
numbers in ``specsift.verify.stage.VerifyOptions.zerr_scale``.  CPU time is for one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
from _common import SHARED  # noqa: E402


def _read_all(paths):
    from specsift.io import read
    from specsift.spectra import SpectraBatch
    batches, bad = [], []
    for p in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = read(p)
            if "INPUT_FLAGS" in b.meta.colnames and (np.asarray(b.meta["INPUT_FLAGS"]) & 16).any():
                bad.append(str(p))
                continue
            b.meta["PATH"] = [str(p)] * len(b)
            batches.append(b)
        except Exception as exc:  # noqa: BLE001 - counted, reported
            bad.append(f"{p}: {exc.__class__.__name__}")
    return SpectraBatch.concatenate(batches), bad


def sdss():
    s = SHARED / "sdss"
    files = [s / "sdss-labelled-50.fits", s / "sdss-qso-10.fits", *sorted(s.glob("spec-*.fits"))]
    return _read_all(files)


def lamost():
    """Every lamost-real file (labels, S/N_g and the held-out split from labels.csv) and the
    16 spectra of ``lamost/`` (labels from their headers; not in the split, never trained on)."""
    import _lamost_survey as LS
    root = SHARED / "lamost-real"
    lab = LS.labels(root)
    paths = list(lab) + sorted(str(p) for p in (SHARED / "lamost").glob("spec-*.fits"))
    b, bad = _read_all(paths)
    own = _snr_g(b)
    rows = [lab.get(p) for p in b.meta["PATH"]]
    m = b.meta

    def col(key, fallback):
        return [r[key] if r is not None else f for r, f in zip(rows, fallback)]
    m["CLASS"] = np.array(col("CLASS", np.asarray(m["CLASS"]).astype(str))).astype(str)
    m["SUBCLASS"] = np.array(col("SUBCLASS", np.asarray(m["SUBCLASS"]).astype(str))).astype(str)
    m["Z"] = np.array(col("Z", np.asarray(m["Z"], float)), float)
    m["Z_ERR"] = np.array(col("Z_ERR", np.asarray(m["ZERR"], float)), float)
    m["ZERR"] = m["Z_ERR"]
    sn = np.array(col("SN", [np.nan] * len(b)), float)
    m["SN_G"] = np.where(np.isfinite(sn), sn, own)
    m["folder"] = np.array(col("folder", ["lamost"] * len(b))).astype(str)
    m["HELDOUT"] = np.array(col("HELDOUT", [False] * len(b)), bool)
    return b, bad


def _snr_g(b):
    sel = (b.wave > 4000) & (b.wave < 5500)
    x = np.where(b.mask[:, sel], np.nan, b.flux[:, sel] * np.sqrt(b.ivar[:, sel]))
    return np.nan_to_num(np.nanmedian(x, axis=1))


def desi():
    import _desi_survey as DS
    return DS.read()


def run(model, batch, verify: bool):
    import torch

    from specsift.verify import verify_batch
    t0 = time.process_time()
    with torch.inference_mode():
        cat = verify_batch(model, batch) if verify else model.predict(batch)
    return cat, time.process_time() - t0


def _cls(meta):
    return np.array([str(c).strip().upper() for c in meta["CLASS"]])


def sdss_scores(meta, cat):
    from specsift.constants import C_KMS
    cls, zt = _cls(meta), np.asarray(meta["Z"], float)
    zterr = np.nan_to_num(np.asarray(meta["ZERR"], float), nan=0.0).clip(0, 0.1)
    st, z = np.asarray(cat["SPECTYPE"]).astype(str), np.asarray(cat["Z"], float)
    zerr = np.asarray(cat["ZERR"], float)
    dz = np.abs(z - zt) / (1 + zt)
    right = st == cls
    good = right & (dz < 0.01)
    cover = np.abs(z - zt)[good] <= np.sqrt(zerr[good] ** 2 + zterr[good] ** 2)
    star = cls == "STAR"
    sub = np.array([str(s)[:2].upper() for s in cat["SUBTYPE"]])
    sub_t = np.array([str(s).strip()[:2].upper() for s in meta["SUBCLASS"]])
    return {"n": len(cls), "three-class": right.mean(),
            "GF gal": (dz[cls == "GALAXY"] < 0.003).mean(),
            "GF qso": (dz[cls == "QSO"] < 0.003).mean(),
            "star SUBTYPE": (sub[star] == sub_t[star]).mean(),
            # stars' velocities against the SDSS pipeline's (the star head of --no-verify)
            "star \\|Δv\\| ≤ 20 km/s": (np.abs(z - zt)[star] * C_KMS <= 20).mean(),
            "star median \\|Δv\\| (km/s)": float(np.median(np.abs(z - zt)[star]) * C_KMS),
            "ZERR cov": cover.mean() if cover.size else np.nan,
            "wrong & ZWARN 0": int((~right & (np.asarray(cat["ZWARN"]) == 0)).sum())}


def table(title, rows):
    keys = [k for k in rows[0][2] if k != "n"]
    print(f"\n### {title} (n = {rows[0][2]['n']})\n")
    print("| model | verify | " + " | ".join(keys) + " | CPU ms/spectrum |")
    print("|---|---|" + "---|" * (len(keys) + 1))
    for name, ver, sc, ms in rows:
        vals = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in (sc[k] for k in keys)]
        print(f"| {name} | {'yes' if ver else 'no'} | " + " | ".join(vals) + f" | {ms:.2f} |")


def calibrate(model, surveys):
    from specsift.verify import verify_batch
    from specsift.verify.stage import VerifyOptions
    opt = VerifyOptions(zerr_scale={"STAR": 1.0, "GALAXY": 1.0, "QSO": 1.0})
    out = {}
    for name, (b, _) in surveys.items():
        cat = verify_batch(model, b, opt)
        cls, zt = _cls(b.meta), np.asarray(b.meta["Z"], float)
        zterr = np.nan_to_num(np.asarray(b.meta["ZERR"], float), nan=0.0).clip(0, 0.1)
        st = np.asarray(cat["SPECTYPE"]).astype(str)
        z, zerr = np.asarray(cat["Z"], float), np.asarray(cat["ZERR"], float)
        for t in ("STAR", "GALAXY", "QSO"):
            if name == "SDSS" and t == "STAR" or name == "LAMOST" and t != "STAR":
                continue
            g = (st == t) & (cls == t) & (np.abs(z - zt) / (1 + zt) < 0.01) & (zerr > 0)
            if g.sum() < 5:
                continue
            # the scale s with 68 % of |Δz| ≤ √((s·ZERR)² + Z_ERR²)
            grid = np.exp(np.linspace(np.log(0.2), np.log(20), 400))
            cov = [(np.abs(z - zt)[g] <= np.sqrt((s * zerr[g]) ** 2 + zterr[g] ** 2)).mean()
                   for s in grid]
            out[(name, t)] = (float(grid[np.searchsorted(cov, 0.6827)]), int(g.sum()))
    for (name, t), (s, n) in out.items():
        print(f"ZERR scale {t:6s} from {name}: {s:.2f} (n = {n})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gasnet", "speccznet", "eigen"])
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--surveys", nargs="+", default=["SDSS", "LAMOST", "DESI"],
                    help="a subset of SDSS LAMOST DESI")
    args = ap.parse_args()
    import torch

    from specsift import load_model
    from specsift.pipeline.local import prepare_model
    torch.set_num_threads(1)
    readers = {"SDSS": sdss, "LAMOST": lamost, "DESI": desi}
    surveys = {k: readers[k]() for k in args.surveys}
    for name, (b, bad) in surveys.items():
        print(f"{name}: {len(b)} spectra read, {len(bad)} unreadable", file=sys.stderr)
    models = {m: prepare_model(load_model(m), "cpu", 1) for m in args.models}
    if args.calibrate:
        calibrate(models[args.models[0]], {k: surveys[k] for k in ("SDSS", "LAMOST") if k in surveys})
        return
    import _desi_survey as DS
    scorers = {"SDSS": sdss_scores, "DESI": DS.score}
    for name, (b, bad) in surveys.items():
        rows, runs = [], []
        for m, model in models.items():
            for ver in (False, True):
                cat, sec = run(model, b, ver)
                runs.append((m, ver, cat, sec))
                if name in scorers:
                    rows.append((m, ver, scorers[name](b.meta, cat), 1e3 * sec / max(len(b), 1)))
        if name == "LAMOST":
            import _lamost_survey as LS
            LS.report(b.meta, runs, SHARED / "lamost-real", len(b), len(bad))
            continue
        if name == "DESI":
            DS.report(rows)
            continue
        table(f"{name}: {len(b)} spectra read ({len(bad)} files unreadable)", rows)


if __name__ == "__main__":
    main()
