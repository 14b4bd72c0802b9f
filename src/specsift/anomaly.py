"""Anomaly score from a generative fit: global goodness of fit plus residual structure.

Features (per spectrum, from data f, weights w and the best-fit model m):

* ``rchi2`` — χ²/(n_good − n_par) at the best solution;
* ``excursion_W`` for a few window widths W — the largest |running mean| of the
  normalised residual r = (f − m)·√w over W consecutive good pixels, times √W, i.e. in
  σ units of a mean of W independent N(0,1), divided by the spectrum's robust residual
  scale √max(1, median r²/0.455) (local structure against the spectrum's typical misfit).  Narrow windows catch sky-line residuals
  and bad columns, wide ones calibration jumps, troughs and a second object's lines.

Each feature is put on a common scale with the normal population of validation data:
(x − median)/(q99 − median), and the score is the largest of them, so 1 ≈ "as odd as the
1 % oddest normal spectrum in its most telling feature".  ZWARN bit 16 (ANOMALY) is set
above a threshold chosen on validation normals (default their 99th percentile).

Injection functions for benchmarks and tests (kinds the model never saw in training)
are in :mod:`specsift.anomaly_inject`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["residual_features", "AnomalyCalibration", "WINDOWS"]

WINDOWS = (3, 15, 75, 375)


def _max_running_mean(r: np.ndarray, good: np.ndarray, width: int) -> np.ndarray:
    """max over windows of |Σ r| / √W over ``width`` consecutive *good* pixels, per row."""
    n, p = r.shape
    out = np.zeros(n)
    # compress good pixels to the front of each row (order kept) so windows skip masks
    order = np.argsort(~good, axis=1, kind="stable")
    rc = np.take_along_axis(np.where(good, r, 0.0), order, axis=1)
    ng = good.sum(1)
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(rc, axis=1)], axis=1)
    if p < width:
        return out
    s = cs[:, width:] - cs[:, :-width]                        # window sums starting at i
    valid = np.arange(p - width + 1)[None, :] <= (ng - width)[:, None]
    s = np.where(valid, np.abs(s), 0.0)
    return s.max(axis=1) / np.sqrt(width)


def residual_features(flux, ivar, model, npar: int, windows=WINDOWS) -> dict:
    """Feature dict of (N,) arrays (see the module docstring)."""
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    good = (ivar > 0) & np.isfinite(flux)
    r = np.where(good, (flux - model) * np.sqrt(np.where(good, ivar, 0.0)), 0.0)
    ng = good.sum(1)
    dof = np.maximum(ng - npar, 1)
    feats = {"rchi2": (r * r).sum(1) / dof}
    # robust residual scale (median r² of N(0, s²) is 0.455 s²): local excursions are
    # measured against the spectrum's own typical misfit, so a bad column stands out
    # even where a bright spectrum's overall fit is imperfect
    with np.errstate(all="ignore"):
        r2 = np.where(good, r * r, np.nan)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            s2 = np.nan_to_num(np.nanmedian(r2, axis=1) / 0.455, nan=1.0)
    norm = np.sqrt(np.maximum(s2, 1.0))
    for wdt in windows:
        feats[f"excursion_{wdt}"] = _max_running_mean(r, good, wdt) / norm
    return feats


class AnomalyCalibration:
    """Per-feature normal-population scale and the flagging threshold (from validation)."""

    def __init__(self, names=None, median=None, q99=None, threshold: float = 1.0):
        self.names = list(names or [])
        self.median = np.asarray(median if median is not None else [], float)
        self.q99 = np.asarray(q99 if q99 is not None else [], float)
        self.threshold = float(threshold)

    @classmethod
    def fit(cls, feats: dict, quantile: float = 0.99) -> "AnomalyCalibration":
        names = sorted(feats)
        x = np.stack([np.asarray(feats[k], float) for k in names], axis=1)
        x = x[np.all(np.isfinite(x), axis=1)]
        if len(x) < 10:
            raise ValueError(f"anomaly calibration needs ≥ 10 normal spectra, got {len(x)}")
        med = np.median(x, axis=0)
        q = np.quantile(x, 0.99, axis=0)
        q = np.where(q - med > 1e-9, q, med + 1e-9)
        cal = cls(names, med, q)
        cal.threshold = float(np.quantile(cal.score(feats), quantile))
        return cal

    def score(self, feats: dict) -> np.ndarray:
        if not self.names:
            return np.full(len(next(iter(feats.values()))), np.nan)
        x = np.stack([np.asarray(feats[k], float) for k in self.names], axis=1)
        z = (x - self.median) / (self.q99 - self.median)
        return np.nan_to_num(z, nan=0.0).max(axis=1)

    def to_dict(self) -> dict:
        return {"names": self.names, "median": self.median.tolist(), "q99": self.q99.tolist(),
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyCalibration":
        return cls(d.get("names"), d.get("median"), d.get("q99"), d.get("threshold", 1.0))
