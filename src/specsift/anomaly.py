"""Anomaly score from a generative fit: global goodness of fit plus residual structure.

Features (per spectrum, from data f, weights w and the best-fit model m; the eigen model
passes weights that include its rest-frame model error, :mod:`.models.eigen.modelerror`):

* ``rchi2`` — χ²/(n_good − n_par) at the best solution;
* ``excursion_W`` for a few window widths W — the largest |running mean| of the
  normalised residual r = (f − m)·√w over W consecutive good pixels, times √W, i.e. in
  σ units of a mean of W independent N(0,1), divided by the spectrum's robust residual
  scale √max(1, median r²/0.455) (local structure against the spectrum's typical misfit).
  Narrow windows catch sky-line residuals and bad columns, wide ones calibration jumps,
  troughs and a second object's lines;
* ``degenerate`` (added by the eigen model from its χ² scan) — 1/(R + 0.001) with
  GaSNet-III's degeneracy ratio R = (χ²₂ − χ²₁)/χ²₁ between the best and the next-best
  solution: an object unlike every class (a white dwarf, two objects in one fibre) is
  fitted about equally badly by several, so R is small where a normal spectrum of the
  same S/N has a clear winner.

Each feature's normal level depends on S/N (a bright spectrum shows its model mismatch, a
faint one hides it in noise), so log x is regressed on (1, ℓ, ℓ²) with ℓ = ln(median S/N)
over the validation normals, and each feature's residual is divided by its 99th
percentile: a faint spectrum is judged against faint normals. The score is the mean of the
two largest of these (``combine="top2"``), so 1 ≈ "as odd as the 1 % oddest normal
spectrum in its two most telling features". Two rather than one: with ``degenerate``
among the features, the single largest lets every normal spectrum's noisiest feature
through, while the mean of two needs a second symptom (docs/eigen.md has the AUCs).
Older model files keep what they were fitted with: ``combine="max"``, and without S/N
the unconditioned (x − median)/(q99 − median). ZWARN bit 16 (ANOMALY) is set above a
threshold chosen on validation normals (default their 99th percentile).

One normal population does not fit every survey: real LAMOST stars, fitted by eigenspectra
learned on simulated SDSS spectra, leave residuals (telluric bands, the arm join, relative
flux calibration) that 72 % of them would be flagged for. A model may therefore carry one
calibration per survey, chosen per spectrum by the reader's ``SURVEY`` column
(:func:`specsift.spectra.survey_of`); spectra of other surveys (and simulated ones, which have no SURVEY)
use the default one.

Injection functions for benchmarks and tests (kinds the model never saw in training)
are in :mod:`specsift.anomaly_inject`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["residual_features", "degeneracy_feature", "AnomalyCalibration", "WINDOWS"]

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


def degeneracy_feature(degeneracy, has_second) -> np.ndarray:
    """1/(R + 0.001): large when the next-best solution fits almost as well (module
    docstring); a spectrum with no second solution counts as not degenerate."""
    r = np.asarray(degeneracy, float)
    return np.where(np.asarray(has_second, bool), 1.0 / (np.maximum(r, 0.0) + 1e-3), 1e-3)


def _design(snr) -> np.ndarray:
    ell = np.log(np.maximum(np.asarray(snr, float), 0.1))
    return np.column_stack([np.ones_like(ell), ell, ell * ell])


class AnomalyCalibration:
    """Per-feature normal-population scale and the flagging threshold (from validation);
    S/N-conditioned when fitted with ``snr`` (see the module docstring)."""

    def __init__(self, names=None, median=None, q99=None, threshold: float = 1.0,
                 snr_coef=None, combine: str = "max"):
        self.names = list(names or [])
        self.median = np.asarray(median if median is not None else [], float)
        self.q99 = np.asarray(q99 if q99 is not None else [], float)
        self.threshold = float(threshold)
        #: (3, n_features) coefficients of log x on (1, ℓ, ℓ²); None: unconditioned
        self.snr_coef = None if snr_coef is None else np.asarray(snr_coef, float)
        if combine not in ("max", "top2"):
            raise ValueError(f"anomaly combine rule must be 'max' or 'top2', not {combine!r}")
        self.combine = combine

    @classmethod
    def fit(cls, feats: dict, quantile: float = 0.99, snr=None,
            combine: str = "top2") -> "AnomalyCalibration":
        names = sorted(feats)
        x = np.stack([np.asarray(feats[k], float) for k in names], axis=1)
        ok = np.all(np.isfinite(x), axis=1)
        if snr is not None:
            ok &= np.isfinite(np.asarray(snr, float))
        if ok.sum() < 10:
            raise ValueError(f"anomaly calibration needs ≥ 10 normal spectra, got {ok.sum()}")
        if snr is None:
            med = np.median(x[ok], axis=0)
            q = np.quantile(x[ok], 0.99, axis=0)
            cal = cls(names, med, q, combine=combine)
        else:
            a = _design(np.asarray(snr, float)[ok])
            lx = np.log(np.maximum(x[ok], 1e-6))
            coef = np.linalg.lstsq(a, lx, rcond=None)[0]
            res = lx - a @ coef
            cal = cls(names, np.zeros(len(names)), np.quantile(res, 0.99, axis=0), snr_coef=coef,
                      combine=combine)
        cal.q99 = np.where(cal.q99 - cal.median > 1e-9, cal.q99, cal.median + 1e-9)
        cal.threshold = float(np.quantile(cal.score(feats, snr)[ok], quantile))
        return cal

    def score(self, feats: dict, snr=None) -> np.ndarray:
        if not self.names:
            return np.full(len(next(iter(feats.values()))), np.nan)
        x = np.stack([np.asarray(feats[k], float) for k in self.names], axis=1)
        if self.snr_coef is None:
            z = (x - self.median) / (self.q99 - self.median)
        else:
            if snr is None:
                raise ValueError("this anomaly calibration is S/N-conditioned: pass snr")
            res = np.log(np.maximum(x, 1e-6)) - _design(snr) @ self.snr_coef
            z = res / self.q99
        z = np.nan_to_num(z, nan=0.0)
        if self.combine == "top2" and z.shape[1] > 1:
            return np.partition(z, -2, axis=1)[:, -2:].mean(axis=1)
        return z.max(axis=1)

    def to_dict(self) -> dict:
        return {"names": self.names, "median": self.median.tolist(), "q99": self.q99.tolist(),
                "threshold": self.threshold,
                "snr_coef": None if self.snr_coef is None else self.snr_coef.tolist(),
                "combine": self.combine}

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyCalibration":
        return cls(d.get("names"), d.get("median"), d.get("q99"), d.get("threshold", 1.0),
                   d.get("snr_coef"), d.get("combine", "max"))
