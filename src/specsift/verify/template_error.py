"""Template error: where a quasar's fit is limited by the templates, not by the noise.

The four spEigenQSO vectors reproduce a real quasar to a few per cent of its flux (line-shape
diversity: C IV blueshifts, associated and broad absorbers, a proximate damped Lyα system).  At
high S/N that mismatch, not the photon noise, sets the χ², and the χ² is then decided by the
few brightest, worst-modelled pixels (Lyα and C IV, where the absorbers sit) instead of by every
line at once: a DESI quasar at S/N 27 with an associated absorber at z ≈ z_em in Lyα, N V,
Si IV and C IV fitted z 2.916 with χ²/pixel 27 while its C III] and the absorber put it at
2.886 (Redrock 2.8855).

The remedy is the one photometric-redshift template fitting uses (Brammer, van Dokkum & Coppi
2008, EAZY's "template error function"): add the template's own error, a fraction ε of the
flux, to each pixel's variance, σ² = σ²_noise + (ε F)².  F is the data smoothed over 15 pixels
(≈ 1000 km/s; a median, so narrow absorbers do not set it): the same weights for every candidate
of a spectrum, so that all its χ² are compared on the same pixels and weights.  It is applied
only where the fit says the template limits it (a QSO winner with χ² > ``chi2_ratio`` × N):
elsewhere the noise dominates and nothing changes.  ε = 0.068: the median excess fractional
scatter of the 17 real SDSS quasars with S/N > 5 about their verified fits
(``benchmarks/qso_template_error.py``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

__all__ = ["QSO_TEMPLATE_ERROR", "with_template_error", "needs_template_error"]

#: ε, the quasar templates' fractional error (benchmarks/qso_template_error.py)
QSO_TEMPLATE_ERROR = 0.068
#: F is the data's running median over this many pixels (≈ 1000 km/s on the default grid)
SMOOTH_PIX = 15


def with_template_error(flux: np.ndarray, ivar: np.ndarray, eps: float,
                        smooth: int = SMOOTH_PIX) -> np.ndarray:
    """(N, P) float32 inverse variance with the template error added:
    1 / (1/ivar + (ε·F)²) = ivar / (1 + ivar·(ε·F)²), F = |running median of the flux|
    (0 where ivar is 0 or not finite)."""
    f = np.nan_to_num(np.asarray(flux, np.float64))
    iv = np.nan_to_num(np.asarray(ivar, np.float64)).clip(0, None)
    F = np.abs(median_filter(f, size=(1, smooth), mode="nearest"))
    return (iv / (1.0 + iv * (eps * F) ** 2)).astype(np.float32)


def needs_template_error(spectype: np.ndarray, chi2: np.ndarray, ngood: np.ndarray,
                         chi2_ratio: float) -> np.ndarray:
    """True where a QSO winner's χ² exceeds ``chi2_ratio`` × its good pixels: the template's
    mismatch is at least as large as the noise there."""
    return (np.asarray(spectype) == "QSO") & (np.asarray(chi2) > chi2_ratio * np.asarray(ngood))
