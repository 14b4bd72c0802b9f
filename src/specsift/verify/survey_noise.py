"""A survey's residual variance: how much more real stars of a survey scatter about the
verification's STAR fit than their pipeline ivar says, per observed pixel.

Why (issue 18, docs/verify.md "Survey-noise STAR check"): on real LAMOST stars the 3-term
STAR fit misses the same observed wavelengths star after star — the last ≈ 100 Å of the red arm
most (median normalised residual +1.8 at 9000–9075 Å and −4.3 at 9075–9100 Å over the 1050
training-split stars; −0.05 at 6000–8000 Å), then the blue end, the arm join near 5800 Å and
the telluric bands.  A galaxy or quasar candidate that puts one line there ([O II] of a galaxy
at z 1.438, Hα of a quasar at z 0.384, both at ≈ 9085 Å) beats STAR by thousands in χ² on the
pipeline's ivar.  Eigen met the same attractors in its own fit with a per-pixel variance boost
fitted on those stars (docs/eigen.md "LAMOST's variance boost"); the verification's STAR check
compares STAR with such a winner once more with the variance σ²·(1 + α_p), α measured the same
way for the verification's own STAR fit (:func:`var_boost_from_r2`).

The per-survey α ships as ``data/templates/<survey>_resid_var.npz`` (``loglam0``, ``step``,
``alpha``; built by ``benchmarks/build_lamost_var.py`` from the training split of
``lamost-real`` only: derived medians, no spectrum).  A survey without a file has none.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["VAR_FILES", "var_boost_from_r2", "survey_var_boost"]

#: the surveys (the reader's SURVEY, upper case) with a measured residual variance, and its file
VAR_FILES = {"LAMOST": "lamost_resid_var.npz"}


def var_boost_from_r2(r2: np.ndarray) -> np.ndarray:
    """(P,) α_p = max(0, median_n r²_np / 0.455 − 1) from squared normalised residuals
    ``r2`` (N, P), NaN where a pixel does not count: for r ~ N(0, 1 + α) the median of r² is
    0.455·(1 + α).  A median, so a few stars with their own defects do not set it.  Pixels no
    spectrum covers get 0; capped at 10⁴."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # pixels no spectrum covers
        med = np.nanmedian(r2, axis=0)
    return np.clip(np.nan_to_num(med / 0.455 - 1.0, nan=0.0), 0.0, 1e4).astype(np.float32)


@lru_cache(maxsize=8)
def _load(name: str):
    with (resources.files("specsift") / "data" / "templates" / name).open("rb") as fh:
        d = np.load(fh)
        return float(d["loglam0"]), float(d["step"]), np.asarray(d["alpha"], np.float64)


def survey_var_boost(survey: str, loglam: np.ndarray) -> np.ndarray | None:
    """(P,) the residual variance boost α of ``survey`` on the grid ``loglam`` (0 outside the
    range it was measured on), or None where the survey has none."""
    name = VAR_FILES.get(str(survey).strip().upper())
    if name is None:
        return None
    lo, step, alpha = _load(name)
    grid = lo + step * np.arange(alpha.size)
    return np.interp(np.asarray(loglam, np.float64), grid, alpha, left=0.0, right=0.0)
