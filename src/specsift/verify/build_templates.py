"""Build ``data/templates/verify.npz`` from the SDSS pipeline's eigen-templates (run once).

    python -m specsift.verify.build_templates [../shared/data/templates/sdss-idlspec2d]

Why the SDSS pipeline's spEigen* files rather than Redrock's templates:

* they are made from real SDSS spectra at SDSS resolution, which on our 69 km/s grid is the
  nominal resolution of SDSS and LAMOST (R ≈ 1800–2000) — no convolution needed;
* they sit on exactly our log10 λ step (1e-4) with integer offsets from the default grid, so a
  redshift is a pixel shift and no template is ever interpolated in the coarse search;
* they are in vacuum wavelengths, as SDSS, LAMOST and DESI spectra are (MILES is air; the
  20 km/s target would be eaten by the 80 km/s air/vacuum offset);
* spEigenStar-53724 holds the 40 named stellar types (A0, F5, F9, G2, K1, K3, K5 …) that the
  SDSS pipeline reports as SUBCLASS, so our star SUBTYPE is assigned the way SDSS assigns it.

What is stored (float32, rest-frame log10 λ grids with step 1e-4):

* ``GALAXY``: spEigenGal-56436, 4 eigenvectors (1183–10500 Å) — the template Redrock's
  ``templates-sdss.txt`` also uses for galaxies;
* ``QSO``: spEigenQSO-55732, 4 eigenvectors (450–10399 Å);
* ``STAR``: the 6 leading singular vectors of the 123 spEigenStar-55734 templates (each scaled
  to unit mean flux; 3049–11950 Å, trimmed to the range |v| < 3000 km/s of the default grid
  needs) — one small basis for the fit, instead of 123 separate fits; plus ``STAR_coef``: each
  of the 40 spEigenStar-53724 templates projected onto that basis (least squares on its own
  coverage, 3784–9270 Å), with ``STAR_names``, and ``STAR_named``: those 40 templates themselves
  on the STAR grid (zero outside 3784–9270 Å).  SUBTYPE is the name of the 53724 template that
  fits best (alone, with the polynomial) at the verified redshift, as in the SDSS pipeline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

STEP = 1e-4
N_STAR = 6


def _read(path: Path):
    with fits.open(path) as h:
        hd = h[0].header
        data = np.asarray(h[0].data, np.float64)
        names = [hd.get(f"NAME{i}", "") for i in range(data.shape[0])]
        return float(hd["COEFF0"]), float(hd["COEFF1"]), data, names


def _star_basis(src: Path):
    c0, c1, data, _ = _read(src / "spEigenStar-55734.fits")
    assert abs(c1 - STEP) < 1e-9
    lo, hi = 3.5563 - 0.0045, 3.9638 + 0.0045          # default grid ± 3000 km/s
    j0 = int(round((lo - c0) / STEP))
    j1 = int(round((hi - c0) / STEP)) + 1
    data = data[:, j0:j1]
    data = data / np.mean(data, axis=1, keepdims=True)
    u, s, vt = np.linalg.svd(data, full_matrices=False)
    basis = vt[:N_STAR]
    resid = data - (data @ basis.T) @ basis
    print(f"STAR basis: {N_STAR} vectors keep {np.sum(s[:N_STAR]**2) / np.sum(s**2):.5f} of the "
          f"power; worst template rms residual {np.sqrt((resid**2).mean(1)).max():.4f}")
    loglam0 = c0 + j0 * STEP
    # 53724 named types projected on the basis, on their own coverage
    d0, d1, named, names = _read(src / "spEigenStar-53724.fits")
    k0 = int(round((d0 - loglam0) / STEP))
    coef = np.zeros((len(names), N_STAR))
    full = np.zeros((len(names), basis.shape[1]))
    for i, t in enumerate(named):
        seg = basis[:, k0:k0 + t.size]
        n = min(seg.shape[1], t.size)
        coef[i] = np.linalg.lstsq(seg[:, :n].T, t[:n] / np.mean(t[:n]), rcond=None)[0]
        full[i, k0:k0 + n] = t[:n] / np.mean(t[:n])
    return loglam0, basis, coef, names, full


def build(src: Path, out: Path) -> Path:
    g0, _, gal, _ = _read(src / "spEigenGal-56436.fits")
    q0, _, qso, _ = _read(src / "spEigenQSO-55732.fits")
    s0, star, coef, names, named = _star_basis(src)
    np.savez_compressed(
        out, GALAXY=gal.astype(np.float32), GALAXY_loglam0=g0,
        QSO=qso.astype(np.float32), QSO_loglam0=q0,
        STAR=star.astype(np.float32), STAR_loglam0=s0,
        STAR_coef=coef.astype(np.float32), STAR_names=np.array(names),
        STAR_named=named.astype(np.float16),        # subtype only: 1e-3 is plenty
        step=STEP)
    return out


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/templates/sdss-idlspec2d")
    out = Path(__file__).resolve().parents[1] / "data" / "templates" / "verify.npz"
    print(build(src, out), f"{out.stat().st_size / 1e3:.0f} kB")
