"""Run Redrock (in its own venv, benchmarks/.venv-redrock) on spectra from an .npz file.

    RR_TEMPLATE_DIR=../shared/data/templates/redrock \
        benchmarks/.venv-redrock/bin/python benchmarks/_redrock_runner.py IN.npz OUT.npz

IN.npz: ``targetid`` (N,), ``nspec`` and per spectrum ``wave_k``, ``flux_k``, ``ivar_k``,
``wdisp_k`` (dispersion σ in pixels; 0 → 1 px Gaussian).  The resolution matrix is built
from ``wdisp`` exactly as redrock.external.boss does.  Spectra are trimmed to 3600–9800 Å
(the QSO-LOZ template stops there).  OUT.npz: Redrock's best fit per target (TARGETID, Z,
ZERR, ZWARN, SPECTYPE, SUBTYPE, DELTACHI2) and ``seconds`` (wall) and
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


def main(inp: str, out: str) -> None:
    from redrock.targets import DistTargetsCopy, Spectrum, Target
    from redrock.templates import load_dist_templates
    from redrock.zfind import zfind

    d = np.load(inp)
    targets = []
    for k in range(int(d["nspec"])):
        w, f, iv, wd = (np.asarray(d[f"{x}_{k}"], float) for x in ("wave", "flux", "ivar", "wdisp"))
        keep = (w >= 3600) & (w <= 9800)
        w, f, iv, wd = w[keep], f[keep], iv[keep].copy(), wd[keep]
        iv[~np.isfinite(f) | ~np.isfinite(iv) | (iv < 0)] = 0
        f = np.where(np.isfinite(f), f, 0)
        R = resolution(wd)
        targets.append(Target(int(d["targetid"][k]), [Spectrum(w, f, iv, R, R.tocsr())]))
    tlist = os.path.join(os.environ["RR_TEMPLATE_DIR"], "templates-sdss.txt")
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
    main(sys.argv[1], sys.argv[2])
