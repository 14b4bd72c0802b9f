"""Why the DESI pipeline's "GALAXY z = 0.0073" (fastspecfit coadd-special-dark-27247) is not
a nearby galaxy: its one emission line has none of the companions [O III] 5007 must have.

    PYTHONPATH=src .venv/bin/python benchmarks/desi_lae.py

Line fluxes (1e-17 erg/s/cm², continuum-subtracted sums over ±12 Å for the line itself, ±6 Å
for the others; continuum the median of 30–60 Å sidebands) at the wavelengths a z = 0.00727
galaxy would put them.  [O III] 4959 is fixed by atomic physics at 1/2.98 of 5007; Hβ and Hα
accompany [O III] in every H II region.  Lyα at z = 3.150 falls on the same pixel (5045 Å);
Redrock run by the benchmark (``desi_redrock.py``) fits QSO z = 3.1475 there.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED  # noqa: E402

FILE = SHARED / "desi" / "fastspecfit" / "coadd-special-dark-27247.fits"
Z_DESI = 0.007270
LINES = (("[OIII]5007", 5008.24, 12.0), ("[OIII]4959", 4960.30, 6.0), ("Hbeta", 4862.68, 6.0),
         ("Halpha", 6564.61, 6.0), ("[NII]6585", 6585.27, 6.0), ("[SII]6718", 6718.29, 6.0))


def line_flux(wave, flux, ivar, centre, half):
    """(flux, 1σ) of the continuum-subtracted pixels within ±half Å of centre."""
    s = np.abs(wave - centre) < half
    side = (np.abs(wave - centre) > 30) & (np.abs(wave - centre) < 60) & (ivar > 0)
    dl = np.gradient(wave)[s]
    f = np.sum((flux[s] - np.median(flux[side])) * dl)
    e = np.sqrt(np.sum(dl ** 2 / np.where(ivar[s] > 0, ivar[s], np.inf)))
    return f, e


def main() -> None:
    from specsift.io import read
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = read(FILE)
    w, f, iv = 10 ** b.loglam, b.flux[0].astype(float), b.ivar[0].astype(float)
    print("| line (if z = 0.00727) | λ obs (Å) | flux | 1σ | expected from [O III] 5007 |")
    print("|---|---|---|---|---|")
    f5007 = None
    for name, rest, half in LINES:
        lam = rest * (1 + Z_DESI)
        fl, er = line_flux(w, f, iv, lam, half)
        f5007 = fl if f5007 is None else f5007
        exp = {"[OIII]4959": f"{f5007 / 2.98:.2f} (1/2.98)"}.get(name, "> 0" if name != "[OIII]5007" else "–")
        print(f"| {name} | {lam:.1f} | {fl:.2f} | {er:.2f} | {exp} |")
    print(f"\nLyα 1215.67 Å at z = 3.150 → {1215.67 * 4.150:.1f} Å")


if __name__ == "__main__":
    main()
