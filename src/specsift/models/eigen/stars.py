"""Stars with real-star templates: a survey's own STAR basis, the velocity and the SUBTYPE.

Why: the STAR eigenspectra learned from the simulator do not fit real LAMOST stars (median
χ²/pixel 6; 17 % of them fitted better by the GALAXY or QSO basis, i.e. called non-stars,
with a median χ² gap of 24 %).  Three physical remedies, all with real-star templates that
specsift already ships (``data/templates/verify.npz``: spEigenStar, the SDSS pipeline's;
``data/templates/lamost_stars.npz``: LAMOST's own star library, built from the training
split of ``lamost-real`` only, :mod:`specsift.verify.star_library`):

* **class decision** — for spectra of a survey with its own star library (SURVEY column,
  e.g. LAMOST), the STAR basis of the scan is the 6 spEigenStar vectors of the verification
  stage plus the leading principal components of that survey's library, which carry its
  resolution, flux calibration and telluric bands (:func:`survey_star_basis`; a separate
  :class:`~.chi2scan.ScanBasis` with ``survey`` set, scanned only on that survey's rows with
  the same shifts and the same 3 polynomial terms as every class, so χ² compare fairly);
  other surveys keep the simulated STAR basis (on simulated SDSS stars it is the better one);
* **velocity** — the library components can mimic a small shift (their lines sit where
  each star's catalogue z put them), so a star's z is then measured with the spEigenStar
  vectors alone (:class:`StarVelocity`): every pixel shift of the STAR range within
  ``reach`` pixels of the class solution, a parabola through the integer minimum and its
  neighbours, ZERR from its curvature;
* **SUBTYPE** — the name of the best-fitting named template at that z, from the
  verification stage's own function (:func:`specsift.verify.subtype.star_subtypes`:
  spEigenStar names for SDSS and other surveys, LAMOST's library for LAMOST), so that the
  letter eigen gives without verification is the one the verified catalogue gives.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .chi2scan import Chi2Scanner, ScanBasis
from .zsolve import parabola

__all__ = ["StarVelocity", "survey_star_basis", "velocity_basis", "star_subtypes_at"]


def _on_rest_grid(vectors, offset: int, rest_start_pix: int, npix_rest: int) -> np.ndarray:
    """Vectors of a verification :class:`~specsift.verify.templates.Basis` (rest pixel q at
    data pixel q − offset) on an eigen rest grid whose pixel r is data pixel r + start."""
    q = np.arange(npix_rest) + rest_start_pix + offset
    v = np.asarray(vectors, np.float64)
    out = np.zeros((v.shape[0], npix_rest))
    ok = (q >= 0) & (q < v.shape[1])
    out[:, ok] = v[:, q[ok]]
    return out / np.sqrt(np.mean(out ** 2, axis=1, keepdims=True)).clip(1e-30)


def velocity_basis(loglam, jmin: int, jmax: int) -> np.ndarray:
    """(6, P + jmax − jmin) the verification stage's STAR basis (leading singular vectors
    of SDSS's spEigenStar templates) on the eigen STAR rest grid of ``loglam``."""
    from ...verify.templates import bases_for
    b = bases_for(np.asarray(loglam))["STAR"]
    return _on_rest_grid(b.vectors, b.offset, -jmax, len(loglam) + jmax - jmin)


def survey_star_basis(loglam, jmin: int, jmax: int, survey: str = "LAMOST",
                      ncomp: int = 10) -> ScanBasis:
    """STAR basis for one survey's spectra: :func:`velocity_basis` then the ``ncomp``
    leading right singular vectors of that survey's star library (unit-rms templates)."""
    from ...verify.templates import bases_for
    b = bases_for(np.asarray(loglam))["STAR"]
    temps, _ = b.survey_named[survey]
    lib = _on_rest_grid(temps, b.offset, -jmax, len(loglam) + jmax - jmin)
    _, _, vt = np.linalg.svd(lib, full_matrices=False)
    pcs = vt[:ncomp] / np.sqrt(np.mean(vt[:ncomp] ** 2, axis=1, keepdims=True))
    vec = np.concatenate([velocity_basis(loglam, jmin, jmax), pcs]).astype(np.float32)
    return ScanBasis("STAR", vec, jmin, jmax, survey.upper())


class StarVelocity:
    """The z of a star from the spEigenStar vectors alone (module docstring)."""

    def __init__(self, basis: np.ndarray, jmin: int, jmax: int, npix: int, npoly: int = 3,
                 reach: int = 3):
        self.basis = np.asarray(basis, np.float32)
        self.jmin, self.jmax, self.npoly, self.reach = int(jmin), int(jmax), int(npoly), int(reach)
        self.scanner = Chi2Scanner([ScanBasis("STAR", self.basis, self.jmin, self.jmax)],
                                   npix, self.npoly, dtype=torch.float32)

    def refine(self, flux, ivar, shift0, step: float):
        """(shift, σ in pixels, χ² at the minimum, edge) of every row: the scan's minimum
        within ``reach`` pixels of ``shift0`` (the class solution), refined by a parabola."""
        n = len(flux)
        if n == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool)
        cur = self.scanner.scan(flux, ivar)[0]                      # (n, U)
        j = self.jmin + np.arange(cur.shape[1])
        far = np.abs(j[None, :] - np.asarray(shift0, float)[:, None]) > self.reach
        c = np.where(far, np.inf, cur)
        i = c.argmin(axis=1)
        rows = np.arange(n)
        edge = (i == 0) | (i == cur.shape[1] - 1)
        ii = np.clip(i, 1, cur.shape[1] - 2)
        x, val, a = parabola(cur[rows, ii - 1], cur[rows, ii], cur[rows, ii + 1])
        x = np.where(edge, 0.0, x)
        sig = np.where(np.isfinite(a) & (a > 0), 1.0 / np.sqrt(np.where(a > 0, a, 1.0)), 1.0)
        return (self.jmin + np.where(edge, i, ii) + x, sig,
                np.where(edge, cur[rows, i], val), edge)

    @staticmethod
    def zerr(z, sig_px, step: float) -> np.ndarray:
        """Δχ² = 1 error of z from the curvature σ (pixels) on a log grid."""
        return math.log(10.0) * step * (1.0 + np.asarray(z)) * np.asarray(sig_px)


def star_subtypes_at(batch, rows, z) -> np.ndarray:
    """SUBTYPE of ``rows`` of ``batch`` at redshifts ``z``: the verification stage's
    naming (best single named template; the survey's own library where it has one)."""
    from ...verify.fit import prepare
    from ...verify.stage import sky_mask
    from ...verify.subtype import star_subtypes
    from ...verify.templates import bases_for
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, "U20")
    sub = batch[rows]
    basis = bases_for(sub.loglam)["STAR"]
    prep = prepare(sub.flux, sub.ivar, sub.mask | sky_mask(sub.loglam))
    return star_subtypes(sub, basis, np.arange(len(rows)), basis.shift_of(z), prep)
