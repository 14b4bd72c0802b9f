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
  ``reach`` pixels of the class solution, then χ² at −½, 0 and +½ pixel about the integer
  minimum with the vectors moved by a cubic spline (precomputed phases), a parabola through
  those three, ZERR from its curvature;
* **SUBTYPE** — the name of the best-fitting named template at that z, from the
  verification stage's own function (:func:`specsift.verify.subtype.star_subtypes_at`:
  spEigenStar names for SDSS and other surveys, LAMOST's library for LAMOST), so that the
  letter eigen gives without verification is the one the verified catalogue gives.
"""

from __future__ import annotations

import numpy as np
import torch

from .chi2scan import Chi2Scanner, ScanBasis
from .zsolve import parabola, pixel_zerr

__all__ = ["StarVelocity", "survey_star_basis", "velocity_basis"]


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
    """The z of a star from the spEigenStar vectors alone (module docstring).

    Two steps: the integer χ² minimum over the STAR shifts within ``reach`` pixels of the
    class solution (one scan), then χ² at sub-pixel shifts around it with the basis moved by
    a cubic spline (``PHASES`` phases per pixel, precomputed once) and a least-squares
    parabola through them.  Why not the parabola through the integer minimum and its two
    neighbours alone: over ±1 pixel (±69 km/s) a star's χ² curve is not a parabola (its
    lines are 2–3 pixels wide), and the vertex is pulled toward the integer shift by up to
    ~20 km/s; over ±0.5 pixel the bias is a few km/s.
    """

    PHASES = 16
    #: sub-pixel offsets (pixels) of the refinement fits around the first vertex (5 offsets,
    #: −0.5 … 0.5 by 0.25, gave the same velocities on the LAMOST training stars and on
    #: shifted templates at 5/3 of the cost)
    OFFSETS = (-0.5, 0.0, 0.5)

    def __init__(self, basis: np.ndarray, jmin: int, jmax: int, npix: int, npoly: int = 3,
                 reach: int = 3):
        from scipy.ndimage import shift as spline_shift

        from .chi2scan import legendre
        self.basis = np.asarray(basis, np.float32)
        self.jmin, self.jmax, self.npoly, self.reach = int(jmin), int(jmax), int(npoly), int(reach)
        self.npix = int(npix)
        self.scanner = Chi2Scanner([ScanBasis("STAR", self.basis, self.jmin, self.jmax)],
                                   npix, self.npoly, dtype=torch.float32)
        b64 = np.asarray(basis, np.float64)
        # phase k: the rest vectors sampled k/PHASES of a pixel further (T(q + k/PHASES))
        self._phased = np.stack([b64] + [
            np.stack([spline_shift(v, -k / self.PHASES, order=3, mode="nearest") for v in b64])
            for k in range(1, self.PHASES)])                        # (PHASES, K, R)
        self._poly = legendre(self.npix, self.npoly)

    #: rows a block in :meth:`_chi2_at`: its (rows, K + npoly, P) float64 design and weighted
    #: copy are ≈ 300 MB each for a 1024-star batch, ≈ 19 MB at 64
    CHUNK = 64

    def _chi2_at(self, flux, ivar, shift) -> np.ndarray:
        """χ² of each row at fractional ``shift`` (rounded to 1/PHASES pixel), in blocks of
        :attr:`CHUNK` rows (memory flat in the batch size)."""
        shift = np.asarray(shift, np.float64)
        if len(flux) > self.CHUNK:
            return np.concatenate([self._chi2_at(flux[a:a + self.CHUNK], ivar[a:a + self.CHUNK],
                                                 shift[a:a + self.CHUNK])
                                   for a in range(0, len(flux), self.CHUNK)])
        u = self.jmax - shift                                       # rest offset
        q = np.round(u * self.PHASES).astype(np.int64)
        u0, ph = q // self.PHASES, q % self.PHASES
        n, k = len(flux), self.basis.shape[0]
        x = np.empty((n, k + self.npoly, self.npix))
        for i in range(n):
            lo = int(np.clip(u0[i], 0, self._phased.shape[2] - self.npix))
            x[i, :k] = self._phased[ph[i], :, lo:lo + self.npix]
        x[:, k:] = self._poly[None]
        w = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
        f = np.where(w > 0, flux, 0.0)
        xw = x * w[:, None, :]
        ata = xw @ x.transpose(0, 2, 1)
        atb = (xw @ f[:, :, None])[..., 0]
        ridge = 1e-10 * np.diagonal(ata, axis1=1, axis2=2).max(1)[:, None] + 1e-30
        coef = np.linalg.solve(ata + ridge[:, :, None] * np.eye(k + self.npoly)[None],
                               atb[..., None])[..., 0]
        return (w * f * f).sum(1) - (coef * atb).sum(1)

    def refine(self, flux, ivar, shift0):
        """(shift, σ in pixels, χ² at the minimum, edge) of every row: the scan's minimum
        within ``reach`` pixels of ``shift0`` (the class solution), refined at sub-pixel
        shifts (class docstring)."""
        n = len(flux)
        if n == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool)
        flux, ivar = np.asarray(flux, np.float64), np.asarray(ivar, np.float64)
        cur = self.scanner.scan(flux, ivar)[0]                      # (n, U)
        j = self.jmin + np.arange(cur.shape[1])
        far = np.abs(j[None, :] - np.asarray(shift0, float)[:, None]) > self.reach
        i = np.where(far, np.inf, cur).argmin(axis=1)
        rows = np.arange(n)
        edge = (i == 0) | (i == cur.shape[1] - 1)
        ii = np.clip(i, 1, cur.shape[1] - 2)
        x, _, _ = parabola(cur[rows, ii - 1], cur[rows, ii], cur[rows, ii + 1])
        s0 = np.clip(self.jmin + ii + np.where(edge, 0.0, x), self.jmin + 0.5, self.jmax - 0.5)
        off = np.asarray(self.OFFSETS)
        c = np.stack([self._chi2_at(flux, ivar, s0 + o) for o in off], axis=1)    # (n, len(off))
        # least-squares parabola c ≈ c0 + b·o + a·o² over the offsets
        A = np.stack([np.ones_like(off), off, off ** 2], axis=1)
        c0, b, a = np.linalg.lstsq(A, (c - c.min(1, keepdims=True)).T, rcond=None)[0]
        good = a > 0
        xv = np.where(good, np.clip(-b / (2 * np.where(good, a, 1.0)), off[0], off[-1]), 0.0)
        sig = np.where(good, 1.0 / np.sqrt(np.where(good, a, 1.0)), 1.0)
        chi2 = c.min(1) + c0 + b * xv + a * xv ** 2
        return s0 + xv, sig, chi2, edge

    @staticmethod
    def zerr(z, sig_px, step: float) -> np.ndarray:
        """Δχ² = 1 error of z from the curvature σ (pixels) on a log grid."""
        return pixel_zerr(sig_px, z, step)
