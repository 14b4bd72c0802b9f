"""A survey's residual variance: how much more real stars of a survey scatter about the
verification's STAR fit than their pipeline ivar says, per observed pixel.

Why (issue 18, docs/verify.md "Survey-noise STAR check"): on real LAMOST stars the 3-term
STAR fit misses the same observed wavelengths star after star — the last ≈ 100 Å of the red arm
most (the median normalised residual there is several σ, against ≈ 0 at 6000–8000 Å:
``benchmarks/build_lamost_var.py`` prints it by range), then the blue end, the arm join near
5800 Å and the telluric bands.  A galaxy or quasar candidate that puts one line there ([O II] of a galaxy
at z 1.438, Hα of a quasar at z 0.384, both at ≈ 9085 Å) beats STAR by thousands in χ² on the
pipeline's ivar.  Eigen met the same attractors in its own fit with a per-pixel variance boost
fitted on those stars (docs/eigen.md "LAMOST's variance boost"); the verification's STAR check
compares STAR with such a winner once more with the variance σ²·(1 + α_p), α measured the same
way for the verification's own STAR fit (:func:`var_boost_from_r2`).

The per-survey α ships as ``data/templates/<survey>_resid_var.npz`` (``loglam0``, ``step``,
``alpha``, and its provenance: ``files``, ``nstars``, ``sn_min``, ``fit_digest``; built by
``benchmarks/build_lamost_var.py`` from the training split of ``lamost-real`` only: derived
medians, no spectrum).  A survey without a file has none.
"""

from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["VAR_FILES", "var_boost_from_r2", "survey_var_boost", "star_fit_digest"]

#: the surveys (the reader's SURVEY, upper case) with a measured residual variance, and its file
VAR_FILES = {"LAMOST": "lamost_resid_var.npz"}


def var_boost_from_r2(r2: np.ndarray) -> np.ndarray:
    """(P,) α_p = max(0, median_n r²_np / 0.455 − 1) from squared normalised residuals
    ``r2`` (N, P), NaN where a pixel does not count: for r ~ N(0, 1 + α) the median of r² is
    0.455·(1 + α).  A median, so a few stars with their own defects do not set it.  Pixels no
    spectrum covers take α interpolated between the covered ones (beyond the ends: the end's — the
    red end is where LAMOST stars are missed most, so 0 there would trust those pixels most;
    all 0 where none is covered); capped at 10⁴."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # pixels no spectrum covers
        med = np.nanmedian(r2, axis=0)
    a = np.clip(med / 0.455 - 1.0, 0.0, 1e4)
    has = np.flatnonzero(np.isfinite(a))
    if not len(has):
        return np.zeros(a.shape, np.float32)
    a = np.interp(np.arange(a.size), has, a[has])      # holds the end values beyond the ends
    return a.astype(np.float32)


def star_fit_digest(sky_lines, sky_halfwidth) -> str:
    """SHA-256 of what the STAR fit whose residuals α measures depends on: the stored STAR
    basis (``verify.npz``: vectors, rest grid), the polynomial terms (:data:`.fit.NPOLY`) and
    the sky mask (the stage's ``SKY_LINES``, ``SKY_HALFWIDTH``, passed in: the stage imports
    this module).  Stored in the α file; :func:`survey_var_boost` warns where the running
    stage's differs."""
    from .fit import NPOLY
    from .templates import stored_star_basis
    vectors, loglam0, step = stored_star_basis()
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(vectors, np.float32).tobytes())
    h.update(np.float64([loglam0, step]).tobytes())
    h.update(repr((int(NPOLY), tuple(float(x) for x in sky_lines), float(sky_halfwidth)))
             .encode())
    return h.hexdigest()


@lru_cache(maxsize=8)
def _load(name: str):
    with (resources.files("specsift") / "data" / "templates" / name).open("rb") as fh:
        d = np.load(fh)
        digest = str(d["fit_digest"]) if "fit_digest" in d.files else ""
        return (float(d["loglam0"]), float(d["step"]), np.asarray(d["alpha"], np.float64),
                digest)


@lru_cache(maxsize=8)
def _warn_digest(name: str, stored: str, running: str) -> None:
    """Once per (file, digests): α was measured for another STAR fit than the stage's."""
    warnings.warn(f"{name}: its residual variance was measured for another STAR fit "
                  f"(basis, polynomial terms or sky mask: digest {stored[:12] or 'none'}, "
                  f"the stage's {running[:12]}); rebuild it with "
                  "benchmarks/build_lamost_var.py", RuntimeWarning, stacklevel=3)


def survey_var_boost(survey: str, loglam: np.ndarray,
                     fit_digest: str | None = None) -> np.ndarray | None:
    """(P,) the residual variance boost α of ``survey`` on the grid ``loglam`` (beyond the
    range it was measured on: its end values), or None where the survey has none.
    ``fit_digest``: the running stage's :func:`star_fit_digest`, warned about (once) where
    the file's differs."""
    name = VAR_FILES.get(str(survey).strip().upper())
    if name is None:
        return None
    lo, step, alpha, digest = _load(name)
    if fit_digest is not None and digest != fit_digest:
        _warn_digest(name, digest, fit_digest)
    grid = lo + step * np.arange(alpha.size)
    return np.interp(np.asarray(loglam, np.float64), grid, alpha)
