"""Templates at the spectrum's resolution: how much broader each spectrum's line-spread
function is than the templates', and the templates convolved by that difference.

Why: the verification templates (the SDSS pipeline's spEigen* files) were built from SDSS
spectra, so their lines carry SDSS's LSF.  A spectrum of another instrument is compared with
them fairly only after the templates are broadened to its LSF: a line that is broader in the
data than in the template pulls the fit and the χ² minimum.  Gaussians add in quadrature, so
the templates are convolved by σ_extra² = σ_spectrum² − σ_SDSS² at every observed wavelength;
on a log-λ grid a velocity σ is the same number of pixels in the rest and the observed frame,
so one convolved basis serves every redshift.  Where the spectrum is *sharper* than SDSS
(DESI, σ ≈ 25–60 km/s against SDSS's 50–87) nothing can sharpen the templates: σ_extra = 0.

σ_spectrum comes from :attr:`SpectraBatch.resolution` where the reader has it (DESI's
resolution matrices), else from the survey's nominal curve (the reader's SURVEY column;
LAMOST's measured σ(λ) in ``simulate.instruments``), else SDSS's (σ_extra = 0).  Cost: one
number per spectrum (the median over its good pixels, rounded to ``SIGMA_STEP`` pixels) so
that a batch needs only a few convolved bases, each built once per process and cached.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..constants import C_KMS
from ..spectra import survey_of
from .cache import IdentityCache
from .templates import Basis

__all__ = ["SIGMA_STEP", "template_sigma_kms", "nominal_sigma_kms", "extra_sigma_pix",
           "convolved"]

#: resolution groups are this many grid pixels apart (0.25 px = 17 km/s on the default grid)
SIGMA_STEP = 0.25


def template_sigma_kms(loglam: np.ndarray) -> np.ndarray:
    """LSF σ (km/s) of the templates: SDSS's nominal σ(λ) (``instrument.npz`` wdisp)."""
    from ..simulate.instrument import Resolution
    return Resolution(None).sigma_kms(np.asarray(loglam, float))


@lru_cache(maxsize=8)
def _nominal(survey: str):
    if survey == "LAMOST":
        from ..simulate.instruments import lamost
        return lamost.resolution()
    if survey == "DESI":
        from ..simulate.instruments import desi
        return desi.resolution()
    return None


def nominal_sigma_kms(survey: str, loglam: np.ndarray) -> np.ndarray | None:
    """The survey's nominal LSF σ (km/s) on ``loglam``; None for SDSS or an unknown survey
    (taken to be at the templates' resolution)."""
    res = _nominal(str(survey).strip().upper())
    return None if res is None else res.sigma_kms(np.asarray(loglam, float))


def extra_sigma_pix(batch) -> np.ndarray:
    """(N,) σ (grid pixels, multiples of ``SIGMA_STEP``) by which to broaden the templates
    for each spectrum of ``batch``: √ of the median over its good pixels of
    max(σ_spectrum² − σ_template², 0)."""
    n = len(batch)
    loglam = batch.loglam
    step = float(np.median(np.diff(loglam)))
    pix_kms = C_KMS * np.log(10.0) * step
    surveys = survey_of(batch.meta, n)
    out = np.zeros(n)
    res = batch.resolution
    for s in np.unique(surveys):
        rows = np.flatnonzero(surveys == s)
        nom = nominal_sigma_kms(s, loglam)
        if res is None and nom is None:      # SDSS (or unknown): at the templates' resolution
            continue
        t2 = _template_sigma2(float(loglam[0]), float(loglam[-1]), loglam.size)
        sig = np.broadcast_to(nom if nom is not None else np.sqrt(t2), (len(rows), loglam.size))
        if res is not None:      # the file's own LSF (Å → km/s) where it has one
            own = np.asarray(res[rows], np.float64) / 10.0 ** loglam * C_KMS
            sig = np.where(np.isfinite(own), own, sig)
        ex2 = np.where(batch.mask[rows], np.nan, np.clip(sig ** 2 - t2, 0.0, None))
        with warnings.catch_warnings():          # a spectrum with no good pixel: σ 0
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(ex2, axis=1) if ex2.size else np.zeros(0)
        out[rows] = np.sqrt(np.nan_to_num(med)) / pix_kms
    return np.round(out / SIGMA_STEP) * SIGMA_STEP


@lru_cache(maxsize=8)
def _template_sigma2(lo: float, hi: float, n: int) -> np.ndarray:
    return template_sigma_kms(np.linspace(lo, hi, n)) ** 2


_CONVOLVED = IdentityCache()


def convolved(basis: Basis, sigma_pix: float) -> Basis:
    """``basis`` with every template (and the named stellar types) convolved by a Gaussian of
    ``sigma_pix`` pixels (the basis itself at 0); built once per (basis, σ) and cached, so
    the fit's own caches (keyed on the vectors' identity) hold across batches."""
    sigma_pix = float(sigma_pix)
    if sigma_pix <= 0:
        return basis
    def build(_):
        named = None if basis.star_named is None else _smooth(basis.star_named, sigma_pix)
        return replace(basis, vectors=_smooth(basis.vectors, sigma_pix), star_named=named)
    return _CONVOLVED.get(basis.vectors, sigma_pix, build)


def _smooth(vectors: np.ndarray, sigma_pix: float) -> np.ndarray:
    """Gaussian convolution along the pixels; a template stays zero where it had no data
    (edges are held at their last value, not blurred into the zeros beyond them)."""
    v = np.asarray(vectors, np.float64)
    out = np.zeros_like(v)
    for i, row in enumerate(v):
        has = np.flatnonzero(row != 0)
        if not len(has):
            continue
        lo, hi = has[0], has[-1] + 1
        out[i, lo:hi] = gaussian_filter1d(row[lo:hi], sigma_pix, mode="nearest", truncate=4.0)
    return np.ascontiguousarray(out, np.float32)
