"""Redrock run by the benchmark on every real DESI coadd in ../shared/data/desi, cached in
``benchmarks/desi_redrock.ecsv`` so that ``real_surveys.py`` compares without rerunning it.

    benchmarks/.venv-redrock/bin/pip install redrock     # once (python3.11 -m venv first)
    PYTHONPATH=src .venv/bin/python benchmarks/desi_redrock.py [--list templates-sdss.txt]

Redrock 0.21 (PyPI, its own venv: ``_redrock_runner.py``) with RR_TEMPLATE_DIR =
``../shared/data/templates/redrock`` and its list ``templates-sdss.txt`` (nothing is
downloaded).  Inputs are the files' own arms, as redrock.external.desi passes them: B, R and Z
each one Spectrum with the file's RESOLUTION matrix; MASK ≠ 0 → ivar 0; trimmed to
3600–9800 Å.  ``quasarnp/test_coadd.fits`` has no RESOLUTION: its arms get a Gaussian of
DESI's nominal σ(λ) (``specsift.simulate.instruments.desi.resolution``, measured from the
other files).  The two ``fastspecfit`` coadds are run too, as a check of this run against
the DESI pipeline's own Redrock files beside them (printed, and kept in the cache with
their DESI Z/SPECTYPE).  Keys: FILE (path under ../shared/data/desi) and ROW (index in the
file), the order ``specsift.io.read`` gives.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SHARED  # noqa: E402
from _desi_survey import CACHE, DESI  # noqa: E402 - the benchmark's file list is the cache's key
from _desi_survey import files as desi_files  # noqa: E402

RR_PY = ROOT / "benchmarks" / ".venv-redrock" / "bin" / "python"
RR_DIR = SHARED / "templates" / "redrock"
ARMS = ("B", "R", "Z")


def nominal_wdisp(wave: np.ndarray) -> np.ndarray:
    """DESI's nominal LSF σ in native pixels at ``wave`` (for files without RESOLUTION)."""
    from specsift.constants import C_KMS
    from specsift.simulate.instruments import desi
    kms = desi.resolution().sigma_kms(np.log10(wave))
    return kms / C_KMS * wave / np.gradient(wave)


def arms_of(path: Path) -> list[dict]:
    """Per spectrum: {arm: (wave, flux, ivar, rdiag or None)}."""
    from astropy.io import fits
    with fits.open(path) as h:
        n = h["B_FLUX"].data.shape[0]
        out = [dict() for _ in range(n)]
        for a in ARMS:
            w = np.asarray(h[f"{a}_WAVELENGTH"].data, float)
            f = np.asarray(h[f"{a}_FLUX"].data, float)
            iv = np.asarray(h[f"{a}_IVAR"].data, float)
            if f"{a}_MASK" in h:
                iv = np.where(np.asarray(h[f"{a}_MASK"].data) != 0, 0.0, iv)
            res = np.asarray(h[f"{a}_RESOLUTION"].data, float) if f"{a}_RESOLUTION" in h else None
            for k in range(n):
                out[k][a] = (w, f[k], iv[k], None if res is None else res[k])
    return out


def payload(specs: list[dict]) -> dict:
    d = {"targetid": np.arange(len(specs)), "nspec": len(specs)}
    for k, arms in enumerate(specs):
        d[f"narm_{k}"] = len(arms)
        for j, (w, f, iv, rd) in enumerate(arms.values()):
            d[f"wave_{k}_{j}"], d[f"flux_{k}_{j}"], d[f"ivar_{k}_{j}"] = w, f, iv
            if rd is not None:
                d[f"rdiag_{k}_{j}"] = rd
            else:
                d[f"wdisp_{k}_{j}"] = nominal_wdisp(w)
    return d


def run_redrock(specs: list[dict], tlist: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **payload(specs))
        env = dict(os.environ, RR_TEMPLATE_DIR=str(RR_DIR), OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
        p = subprocess.run([str(RR_PY), str(Path(__file__).with_name("_redrock_runner.py")),
                            str(inp), str(out), tlist], env=env, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"redrock failed:\n{p.stderr[-3000:]}")
        d = np.load(out)
        return {k: d[k] for k in d.files}


def pipeline_labels(path: Path):
    """The DESI pipeline's Redrock answer for each row of a fastspecfit coadd (CLASS, Z;
    "" / NaN where a row has none), matched by TARGETID as the package's DESI reader matches
    it for every user; None where no Redrock file lies beside the coadd."""
    from specsift import io
    from specsift.io.desi import find_redrock
    return None if find_redrock(path) is None else io.read(path).meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", default="templates-sdss.txt", help="template list in RR_TEMPLATE_DIR")
    ap.add_argument("--out", default=str(CACHE))
    a = ap.parse_args()
    if not RR_PY.exists():
        raise SystemExit(f"{RR_PY} missing: python3.11 -m venv benchmarks/.venv-redrock && "
                         f"benchmarks/.venv-redrock/bin/pip install redrock")
    from astropy.table import Table
    files = desi_files()
    specs, keys = [], []
    for f in files:
        s = arms_of(f)
        specs += s
        keys += [(str(f.relative_to(DESI)), k) for k in range(len(s))]
    rr = run_redrock(specs, a.list)
    t = Table({"FILE": [k[0] for k in keys], "ROW": np.array([k[1] for k in keys], np.int32)})
    for c in ("Z", "ZERR", "ZWARN", "SPECTYPE", "SUBTYPE", "DELTACHI2"):
        t[c] = rr[c]
    t["DESI_SPECTYPE"] = np.full(len(t), "", "U8")
    t["DESI_Z"] = np.full(len(t), np.nan)
    for f in files:
        lab = pipeline_labels(f)
        if lab is not None:
            rows = np.flatnonzero(t["FILE"] == str(f.relative_to(DESI)))
            t["DESI_SPECTYPE"][rows] = np.asarray(lab["CLASS"])[t["ROW"][rows]]
            t["DESI_Z"][rows] = np.asarray(lab["Z"], float)[t["ROW"][rows]]
    t.meta["comments"] = [
        "Redrock 0.21 on the real DESI coadds of ../shared/data/desi (see desi_redrock.py)",
        f"command: PYTHONPATH=src .venv/bin/python benchmarks/desi_redrock.py --list {a.list}",
        f"template list: {a.list}; zfind CPU seconds {float(rr['cpu_seconds']):.1f}"]
    t.write(a.out, format="ascii.ecsv", overwrite=True)
    print(t)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
