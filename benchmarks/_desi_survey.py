"""DESI scoring for ``benchmarks/real_surveys.py``: every real DESI coadd against Redrock.

Why a separate module: the DESI validation of issues 17/18 compares with two references — the
DESI pipeline's own Redrock files (the two ``fastspecfit`` coadds) and Redrock run by the
benchmark on every coadd (``benchmarks/desi_redrock.py``, cached in ``desi_redrock.ecsv`` so
this benchmark never reruns Redrock, which needs its own venv and ≈ 10 CPU minutes).  Rows are
keyed by FILE (path under ``../shared/data/desi``) and ROW (index in the file), the order both
``specsift.io.read`` and the Redrock run read them in.  Scored where Redrock is confident
(ZWARN 0, DELTACHI2 > 25): same SPECTYPE and |Δz|/(1+z) < 1000 km/s / c
(:func:`specsift.metrics.redrock_agreement`).
"""

from __future__ import annotations

import warnings

import numpy as np
from _common import ROOT, SHARED
from astropy.table import Table

from specsift.metrics import redrock_agreement

DESI = SHARED / "desi"
CACHE = ROOT / "benchmarks" / "desi_redrock.ecsv"


def files() -> list:
    return [*sorted(DESI.glob("coadd-*.fits")), DESI / "quasarnp" / "test_coadd.fits",
            *sorted((DESI / "fastspecfit").glob("coadd-*.fits"))]


def read():
    """Every DESI coadd (all rows: the sky fibres too, unscored where Redrock is not
    confident) with the cached Redrock answer as RR_* and the pipeline's as CLASS/Z."""
    from specsift.io import read as read_file
    from specsift.spectra import SpectraBatch
    rr = Table.read(CACHE, format="ascii.ecsv")
    key = {(str(f), int(r)): i for i, (f, r) in enumerate(zip(rr["FILE"], rr["ROW"]))}
    batches, bad = [], []
    for p in files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b = read_file(p)
        except Exception as exc:  # noqa: BLE001 - counted, reported
            bad.append(f"{p}: {exc.__class__.__name__}")
            continue
        rel = str(p.relative_to(DESI))
        idx = np.array([key.get((rel, k), -1) for k in range(len(b))])
        m = b.meta
        m["FILE"] = [rel] * len(b)
        m["ROW"] = np.arange(len(b))
        m["SET"] = ["fastspecfit" if rel.startswith("fastspecfit") else "other"] * len(b)
        for c in ("SPECTYPE", "Z", "ZWARN", "DELTACHI2"):
            v = np.asarray(rr[c])[np.maximum(idx, 0)]
            m[f"RR_{c}"] = np.where(idx >= 0, v, "" if v.dtype.kind in "US" else -1)
        for c, fill in (("CLASS", ""), ("Z", np.nan)):
            if c not in m.colnames:
                m[c] = np.full(len(b), fill)
        keep = [c for c in ("TARGETID", "SURVEY", "INPUT_FLAGS", "FILE", "ROW", "SET", "CLASS", "Z",
                            "RR_SPECTYPE", "RR_Z", "RR_ZWARN", "RR_DELTACHI2") if c in m.colnames]
        b.meta = m[keep]
        b.meta["CLASS"] = np.asarray(b.meta["CLASS"]).astype("U8")
        batches.append(b)
    return SpectraBatch.concatenate(batches), bad


def score(meta, cat) -> dict:
    """Per reference: (n confident, agreement, misses as 'FILE:row RR → ours')."""
    st, z = np.asarray(cat["SPECTYPE"]).astype(str), np.asarray(cat["Z"], float)
    out = {}
    sets = np.asarray(meta["SET"]).astype(str)
    rr = redrock_agreement(st, z, meta["RR_SPECTYPE"], meta["RR_Z"], meta["RR_ZWARN"],
                           meta["RR_DELTACHI2"])
    has_pipe = np.asarray(meta["CLASS"]).astype(str) != ""
    pipe = redrock_agreement(st, z, meta["CLASS"], np.nan_to_num(np.asarray(meta["Z"], float)),
                             np.where(has_pipe, 0, 1), np.where(has_pipe, np.inf, 0))
    for name, res, sel in (("Redrock here, other coadds", rr, sets == "other"),
                           ("Redrock here, fastspecfit", rr, sets == "fastspecfit"),
                           ("DESI pipeline, fastspecfit", pipe, sets == "fastspecfit")):
        conf = res["confident"] & sel
        ok = res["agrees"] & sel
        ref_t = meta["RR_SPECTYPE"] if name.startswith("Redrock") else meta["CLASS"]
        ref_z = meta["RR_Z"] if name.startswith("Redrock") else meta["Z"]
        miss = [f"{meta['FILE'][i].split('/')[-1].replace('.fits', '')}:{meta['ROW'][i]} {ref_t[i]} "
                f"{float(ref_z[i]):.4f} → {st[i]} {z[i]:.4f}" for i in np.flatnonzero(conf & ~ok)]
        out[name] = (int(conf.sum()), ok.sum() / max(conf.sum(), 1), miss)
    return out


def report(rows) -> None:
    """rows: (model, verify, score(...), ms per spectrum)."""
    names = list(rows[0][2])
    print("\n### DESI: every real coadd against Redrock where Redrock is confident "
          "(ZWARN 0, DELTACHI2 > 25)\n")
    print("| model | verify | " + " | ".join(f"{n} (n = {rows[0][2][n][0]})" for n in names)
          + " | misses (reference → ours) |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for m, ver, sc, _ in rows:
        miss = "; ".join(x for n in names for x in sc[n][2]) or "–"
        print(f"| {m} | {'yes' if ver else 'no'} | "
              + " | ".join(f"{sc[n][1]:.3f}" for n in names) + f" | {miss} |")
