"""The best-fit model spectrum of a verified catalog row: templates at Z times COEFF plus the
polynomial — what the lines stage takes as continuum and the labelling page overlays.

Rebuilt from the catalog columns alone (Z, SPECTYPE, COEFF), so any verified catalog row can be
drawn again without refitting.  The coefficients were fitted at the integer pixel shift nearest
the refined z of the fit; here the templates are interpolated to Z itself — at most half a pixel
apart, except for a quasar whose Z is the posterior of fit and model (verify/zfind.py
``quasar_posterior``), which may lie a few pixels from the fitted shift: its model is then drawn
that far off (small against broad lines thousands of km/s wide, but not exact).
"""

from __future__ import annotations

import numpy as np

from .fit import NPOLY, legendre
from .resolution import convolved
from .templates import bases_for

__all__ = ["model_flux"]


def model_flux(loglam: np.ndarray, catalog, sigma_pix=None) -> np.ndarray:
    """(N, P) float32 model flux on the grid ``loglam`` for the N rows of a verified catalog
    (NaN rows where the row was not verified: CHI2 NaN or no COEFF).

    ``sigma_pix`` (N,): the templates' broadening per row, as the fit used it
    (:func:`.resolution.extra_sigma_pix` of the batch); None: at the templates' own
    resolution, which is what the fit used for SDSS and DESI spectra."""
    loglam = np.asarray(loglam, np.float64)
    bases = bases_for(loglam)
    n, npix = len(catalog), loglam.size
    out = np.full((n, npix), np.nan, np.float32)
    P = legendre(npix)
    z = np.asarray(catalog["Z"], np.float64)
    st = np.asarray(catalog["SPECTYPE"], dtype=str)
    coef = np.asarray(catalog["COEFF"], np.float64)
    chi2 = np.asarray(catalog["CHI2"], np.float64)
    p = np.arange(npix, dtype=np.float64)
    sig = np.zeros(n) if sigma_pix is None else np.broadcast_to(np.asarray(sigma_pix, float), (n,))
    for i in range(n):
        if st[i] not in bases or not np.isfinite(chi2[i]):
            continue
        b = convolved(bases[st[i]], sig[i])
        q = p + b.offset - b.shift_of(z[i])
        T = b.ntemplate
        grid = np.arange(b.vectors.shape[1])
        tem = np.stack([np.interp(q, grid, v, left=0.0, right=0.0) for v in b.vectors])
        out[i] = coef[i, :T] @ tem + coef[i, T:T + NPOLY] @ P
    return out
