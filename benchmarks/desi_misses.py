"""Why the DESI spectra missed against Redrock are missed: the χ² facts docs/verify.md quotes.

    nice -n 10 PYTHONPATH=src .venv/bin/python benchmarks/desi_misses.py [--sim]

* ``quasarnp/test_coadd.fits`` row 23 (Redrock QSO 2.8855): the lowest χ² minima near z 2.9 of
  spEigenQSO (ours) and of Redrock's QSO-HIZ v1.1 / v1.0 templates fitted by our code, with 1 or
  3 polynomial terms, on 3600–9200 Å (our grid) and 3600–9824 Å (the file's range), with and
  without the template error (``specsift.verify.template_error``).
* row 24 (Redrock QSO-LOZ 0.9622): best χ² near z 0.962 of each galaxy and quasar template, 1
  or 3 polynomial terms, both wavelength ranges (every template on the same pixels).
* ``--sim``: simulated GF(0.003) of gasnet and speccznet verified with and without this round's
  two changes (template-error refit; speccznet's reach), 2000 spectra of the ``thirteen`` store
  of ``predict_speed.py``, and the rows that change.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED  # noqa: E402

COADD = SHARED / "desi" / "quasarnp" / "test_coadd.fits"
RR = SHARED / "templates" / "redrock"


def _basis(name: str, spectype: str, loglam):
    """Our basis (name 'ours') or a Redrock template file on the batch grid."""
    from astropy.io import fits

    from specsift.verify.templates import Basis, bases_for
    if name == "ours":
        return bases_for(loglam)[spectype]
    with fits.open(RR / name) as h:
        v, t0 = h[0].data.astype(np.float64), float(h[0].header["CRVAL1"])
    v = (v / np.sqrt(np.mean(v ** 2, 1, keepdims=True))).astype(np.float32)
    return Basis(spectype, np.ascontiguousarray(v), int(round((loglam[0] - t0) / 1e-4)), 1e-4)


def _minima(batch, basis, z0, npoly, hi, te: bool, half: int = 60, k: int = 3):
    """The ``k`` lowest local χ² minima (χ², z) within ±``half`` pixels of ``z0``."""
    from specsift.verify.fit import prepare, scan
    from specsift.verify.stage import sky_mask
    from specsift.verify.template_error import QSO_TEMPLATE_ERROR, with_template_error
    m = batch.mask | sky_mask(batch.loglam) | (10 ** batch.loglam > hi)[None]
    iv = with_template_error(batch.flux, batch.ivar, QSO_TEMPLATE_ERROR) if te else batch.ivar
    prep = prepare(batch.flux, iv, m, npoly=npoly)
    c = int(round(basis.shift_of(z0)))
    chi = scan(prep, basis, np.array([0]), np.array([c]), np.arange(-half, half + 1))[0]
    mins = [j for j in range(1, len(chi) - 1) if chi[j] < chi[j - 1] and chi[j] < chi[j + 1]]
    return sorted((round(float(chi[j]), 1), round(float(basis.z_of(c - half + j)), 4))
                  for j in mins)[:k]


def desi_rows() -> None:
    from specsift.io import read
    from specsift.spectra import LogGrid
    wide = read(COADD, grid=LogGrid.from_range(3.5563, 3.9923, 1e-4))
    print("### test_coadd:23 (Redrock QSO 2.8855): lowest χ² minima (χ², z) near z 2.90\n")
    print("| template | poly terms | to Å | template error | minima |\n|---|---|---|---|---|")
    for tf in ("ours", "rrtemplate-QSO-HIZ-v1.1.fits", "rrtemplate-QSO-HIZ-v1.0.fits"):
        b = _basis(tf, "QSO", wide.loglam)
        for npoly in (1, 3):
            for hi in (9200, 9824):
                for te in ((False, True) if tf == "ours" and npoly == 3 else (False,)):
                    print(f"| {tf} | {npoly} | {hi} | {'yes' if te else 'no'} | "
                          f"{_minima(wide[23:24], b, 2.90, npoly, hi, te)} |")
    print("\n### test_coadd:24 (Redrock QSO-LOZ 0.9622): best χ² near z 0.962\n")
    print("| template | poly terms | to Å | best (χ², z) |\n|---|---|---|---|")
    for tf, st in (("ours", "GALAXY"), ("ours", "QSO"), ("rrtemplate-GALAXY-SDSS-v56436.fits",
                                                          "GALAXY"),
                   ("rrtemplate-QSO-LOZ-v1.1.fits", "QSO")):
        b = _basis(tf, st, wide.loglam)
        for npoly in (1, 3):
            for hi in (9200, 9824):
                best = _minima(wide[24:25], b, 0.9622, npoly, hi, False, half=30, k=1)
                print(f"| {tf} {st} | {npoly} | {hi} | {best} |")


def sim() -> None:
    import torch
    from _predict_common import sim_store

    from specsift import load_model
    from specsift.classes import spectype_of
    from specsift.io import SpectralStore
    from specsift.verify import Candidates, VerifyOptions, verify_catalog
    torch.set_num_threads(1)
    with SpectralStore(sim_store(2000, seed=11)) as st:
        b = st.read(slice(0, 2000))
    zt = np.asarray(b.meta["Z"], float)
    tt = np.array([spectype_of(x) for x in np.asarray(b.meta["CLASS_LABEL"]).astype(str)])
    print("\n### simulated (2000, thirteen store): verified GF(0.003)\n")
    for name in ("gasnet", "speccznet"):
        m = load_model(name)
        bb = m.check_batch(b)
        with torch.inference_mode():
            t, c = m.propose(bb)
        before = verify_catalog(bb, t, Candidates(c.z, c.spectype),
                                VerifyOptions(qso_template_error=None))
        after = verify_catalog(bb, t, c)
        g0, g1 = (np.abs(np.asarray(v["Z"]) - zt) / (1 + zt) < 0.003 for v in (before, after))
        print(f"{name}: model {np.mean(np.abs(np.asarray(t['Z']) - zt) / (1 + zt) < 0.003):.4f}, "
              f"verified before {g0.mean():.4f}, after {g1.mean():.4f}")
        for i in np.flatnonzero(g0 != g1):
            print(f"  row {i} {tt[i]} z {zt[i]:.4f}: {before['SPECTYPE'][i]} {before['Z'][i]:.4f}"
                  f" → {after['SPECTYPE'][i]} {after['Z'][i]:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", action="store_true")
    a = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        desi_rows()
        if a.sim:
            sim()


if __name__ == "__main__":
    main()
