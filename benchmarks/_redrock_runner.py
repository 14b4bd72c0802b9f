"""Run Redrock (in its own venv, benchmarks/.venv-redrock) on spectra from an .npz file.

    RR_TEMPLATE_DIR=../shared/data/templates/redrock \
        benchmarks/.venv-redrock/bin/python benchmarks/_redrock_runner.py IN.npz OUT.npz [LIST]

IN.npz: ``targetid`` (N,), ``nspec`` and per spectrum either one spectrum ``wave_k``,
``flux_k``, ``ivar_k``, ``wdisp_k`` (dispersion σ in pixels; 0 → 1 px Gaussian; the
resolution matrix is built from ``wdisp`` exactly as redrock.external.boss does), or
``narm_k`` arms (DESI B/R/Z) ``wave_k_j``, ``flux_k_j``, ``ivar_k_j`` with either the
arm's band-diagonal resolution matrix ``rdiag_k_j`` (ndiag, P; DESI's storage: row d is
offset ndiag//2 − d, as desispec.resolution.Resolution reads it) or ``wdisp_k_j``.  Each
arm is one Redrock Spectrum of the target, as redrock.external.desi passes them.
Spectra are trimmed to 3600–9800 Å (the QSO-LOZ template stops there).  LIST: the template
list in RR_TEMPLATE_DIR (default ``templates-sdss.txt``).  OUT.npz: Redrock's best fit per
target (TARGETID, Z, ZERR, ZWARN, SPECTYPE, SUBTYPE, DELTACHI2) and ``seconds`` (wall) and
``cpu_seconds`` of zfind on one process.
"""

import os
import sys
import time

import numpy as np
from scipy import sparse


def resolution(wdisp: np.ndarray) -> sparse.dia_matrix:
    wd = np.where(wdisp < 1e-5, 1.0, wdisp).astype(float)
    n = wd.size
    ndiag = int(4 * np.ceil(wd.max()) + 1)
    ii = np.arange(n)
    di2 = (ii - ii[:, None]) ** 2
    reso = np.zeros((ndiag, n))
    for idiag in range(ndiag):
        offset = ndiag // 2 - idiag
        d = np.diagonal(di2, offset=offset)
        if offset < 0:
            reso[idiag, :len(d)] = np.exp(-d / 2 / wd[:len(d)] ** 2)
        else:
            reso[idiag, n - len(d):n] = np.exp(-d / 2 / wd[n - len(d):n] ** 2)
    reso /= np.sum(reso, axis=0)
    return sparse.dia_matrix((reso, ndiag // 2 - np.arange(ndiag)), (n, n))


def diagonal_resolution(rdiag: np.ndarray) -> sparse.dia_matrix:
    """DESI band-diagonal storage → sparse matrix (desispec.resolution.Resolution's layout)."""
    nd, n = rdiag.shape
    return sparse.dia_matrix((rdiag, nd // 2 - np.arange(nd)), (n, n))


def spectrum(w, f, iv, res_of):
    """A Redrock Spectrum trimmed to 3600–9800 Å (``res_of(keep)`` gives its matrix)."""
    from redrock.targets import Spectrum
    keep = (w >= 3600) & (w <= 9800)
    w, f, iv = w[keep], f[keep], iv[keep].copy()
    iv[~np.isfinite(f) | ~np.isfinite(iv) | (iv < 0)] = 0
    f = np.where(np.isfinite(f), f, 0)
    R = res_of(keep)
    return Spectrum(w, f, iv, R, R.tocsr())


def targets_of(d):
    from redrock.targets import Target
    out = []
    for k in range(int(d["nspec"])):
        if f"narm_{k}" in d:
            keys = [f"{k}_{j}" for j in range(int(d[f"narm_{k}"]))]
        else:
            keys = [f"{k}"]
        specs = []
        for key in keys:
            w, f, iv = (np.asarray(d[f"{x}_{key}"], float) for x in ("wave", "flux", "ivar"))
            if f"rdiag_{key}" in d:
                rd = np.asarray(d[f"rdiag_{key}"], float)
                specs.append(spectrum(w, f, iv, lambda keep, rd=rd: diagonal_resolution(rd[:, keep])))
            else:
                wd = np.asarray(d[f"wdisp_{key}"], float)
                specs.append(spectrum(w, f, iv, lambda keep, wd=wd: resolution(wd[keep])))
        out.append(Target(int(d["targetid"][k]), [s for s in specs if s.wave.size]))
    return out


def main(inp: str, out: str, tlist_name: str = "templates-sdss.txt") -> None:
    from redrock.targets import DistTargetsCopy
    from redrock.templates import load_dist_templates
    from redrock.zfind import zfind

    d = np.load(inp)
    targets = targets_of(d)
    tlist = os.path.join(os.environ["RR_TEMPLATE_DIR"], tlist_name)
    dt = DistTargetsCopy(targets)
    t0 = time.perf_counter()
    templates = load_dist_templates(dt.wavegrids(), templates=tlist, mp_procs=1)
    t1, c1 = time.perf_counter(), time.process_time()
    _, zfit = zfind(dt, templates, 1)
    t2, c2 = time.perf_counter(), time.process_time()
    z = zfit[zfit["znum"] == 0]
    order = {t: i for i, t in enumerate(z["targetid"])}
    idx = [order[int(t)] for t in d["targetid"]]
    z = z[idx]
    np.savez(out, TARGETID=np.asarray(z["targetid"], np.int64), Z=np.asarray(z["z"], float),
             ZERR=np.asarray(z["zerr"], float), ZWARN=np.asarray(z["zwarn"], np.int64),
             SPECTYPE=np.asarray(z["spectype"]).astype(str),
             SUBTYPE=np.asarray(z["subtype"]).astype(str),
             DELTACHI2=np.asarray(z["deltachi2"], float),
             seconds=t2 - t1, cpu_seconds=c2 - c1, template_seconds=t1 - t0)


if __name__ == "__main__":
    main(*sys.argv[1:4])
