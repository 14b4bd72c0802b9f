"""Calibration of an :class:`~.model.EigenModel` on validation spectra: the temperature of its
class probabilities, the anomaly score's normal population, per-class ZERR scales.

A mixin apart from the model so that ``model.py`` holds the model (fit, scan, catalog, state)
and this file what is fitted on top of it afterwards; it reads and sets the model's fitted
state (``bases_``, ``penalty_``, ``temperature_``, ``anomaly_``, ``zerr_scale_`` …) and calls
its ``_run`` / ``_catalog``.
"""

from __future__ import annotations

import numpy as np

from ...calibration import fit_chi2_temperature
from ...spectra import SpectraBatch
from .anomalies import fit_anomaly
from .train import labels_of
from .zsolve import zerr_scales

__all__ = ["CalibrationMixin"]


class CalibrationMixin:
    """``calibrate``, ``calibrate_anomaly``, ``calibrate_zerr`` of the eigen model."""

    def calibrate(self, val: SpectraBatch, anomaly_quantile: float = 0.99) -> dict:
        """Temperature of the class probabilities and the anomaly scale/threshold."""
        from ...metrics import evaluate_catalog
        val = self.check_batch(val)
        lab = labels_of(val, self.class_set)
        self.penalty_ = np.zeros(len(self.bases_))
        res = self._run(val, save_chi2=True)
        names = [b.label for b in self.bases_]
        y = np.array([names.index(x) if x in names else -1 for x in lab])
        # the χ² the probabilities use (:meth:`_probs`): after the robust star check, which
        # changes only checked surveys' rows (LAMOST; simulated spectra carry no SURVEY)
        raw = res["chi2_decision"] - self.penalty_[None, :]
        if not np.isfinite(raw).all(axis=1).any():
            raise ValueError("eigen calibrate: no row has a finite χ² in every basis (a survey "
                             "basis leaves the other surveys' rows +inf): call "
                             "drop_survey_bases() first and add the survey bases after")
        self.temperature_, self.penalty_, nll = fit_chi2_temperature(raw, y)
        best_t = self.temperature_
        if np.any(self.penalty_ != 0):    # class choice changed: solve again
            res = self._run(val, curves=res["curves"])
        self.calibrate_anomaly(res, anomaly_quantile)
        zcal = self.calibrate_zerr(val, res=res)
        cat = self._catalog(val, res)
        ev = evaluate_catalog(cat, val.meta, self.class_set)
        self.metrics = {"n_val": int(len(val)), "temperature": best_t, "nll": nll,
                        "penalty": dict(zip(names, self.penalty_.tolist())),
                        "anomaly_threshold": self.anomaly_.threshold,
                        "zerr_calibration": zcal,
                        "accuracy": ev.get("classification", {}).get("accuracy"),
                        "redshift": ev.get("redshift"),
                        "redshift_per_class": ev.get("redshift_per_class")}
        return self.metrics

    def calibrate_anomaly(self, val, quantile: float = 0.99, survey: str | None = None,
                          min_class: int = 30) -> float:
        """Fit the anomaly calibration (S/N-conditioned) on normal spectra — a batch or the
        result of :meth:`_run` on one — and return the flagging threshold.

        ``survey`` (e.g. "LAMOST"): fit that survey's own calibration instead of the default
        one; a class with fewer than ``min_class`` of its normals (LAMOST has real stars
        only) keeps the default rest-frame model error."""
        res = val if isinstance(val, dict) else self._run(self.check_batch(val))
        fallback = None if survey is None else self.rest_model_error_
        cal, rme = fit_anomaly(self.bases_, self._npar, res, quantile, fallback, min_class)
        if survey is None:
            self.anomaly_, self.rest_model_error_ = cal, rme
        else:
            self.survey_anomaly_[survey.upper()] = {"anomaly": cal, "rest_model_error": rme}
        return cal.threshold

    def calibrate_zerr(self, val: SpectraBatch, coverage: float = 0.6827,
                       res: dict | None = None) -> dict:
        """Per-class ZERR scale so that |z − z_true| < ZERR for ``coverage`` of ``val``.

        The Δχ² = 1 error only knows the pixel noise; template mismatch (line blueshifts,
        continuum shapes the basis lacks) widens the real scatter, differently per
        class.  The scale of class c is the ``coverage`` quantile of |Δz|/ZERR_raw over
        the validation spectra *predicted* as c (how it is applied), failures included.
        Returns the 1σ coverage per class before and after (by predicted class).
        """
        val = self.check_batch(val)
        if res is None:
            res = self._run(val)
        self.zerr_scale_, out = zerr_scales(res["sol"], np.asarray(val.meta["Z"], float),
                                            res["ngood"], [b.label for b in self.bases_],
                                            coverage)
        return out
