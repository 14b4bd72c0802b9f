"""Anomaly features of an eigen fit and their calibrations: the default one and one per survey.

Apart from :mod:`.model` because it is a second job done on the fit's result, with state of
its own: the model finds class and z; this turns the same fit into an anomaly score —
residual features with weights deflated by a per-class rest-frame model error
(:mod:`.modelerror`), scored against a normal population
(:class:`specsift.anomaly.AnomalyCalibration`): the default one or, for the spectra of a
survey that has its own normals (SURVEY column, e.g. LAMOST, whose real stars the
simulated-SDSS eigenspectra fit worse), that survey's.  The functions take the bases and
the calibration state as arguments, so the model keeps only the wiring.

A per-survey calibration is a dict ``{"anomaly": AnomalyCalibration, "rest_model_error":
[ε² per class]}``, keyed by the upper-case SURVEY value.
"""

from __future__ import annotations

import numpy as np
import torch

from ...anomaly import AnomalyCalibration, degeneracy_feature, residual_features
from .modelerror import deflate_ivar, fit_rest_model_error

__all__ = ["anomaly_features", "features_rows", "fit_anomaly", "anomaly_scores", "survey_state",
           "survey_from_state"]


def features_rows(bases, npar: int, rme, flux, ivar, model, sol, rows) -> dict:
    """The anomaly features of ``rows`` with the model error ``rme`` (None: plain ivar)."""
    rows = np.asarray(rows, np.int64)
    w = deflate_ivar(bases, rme, ivar[rows], model[rows], sol.best_class[rows], sol.shift[rows])
    feats = residual_features(flux[rows], w, model[rows], npar)
    feats["degenerate"] = degeneracy_feature(sol.degeneracy[rows], sol.second_class[rows] >= 0)
    return feats


def anomaly_features(bases, npar: int, rme, per_survey: dict, flux, ivar, model, sol,
             survey=None) -> dict:
    """Anomaly features of every row: those of a survey with its own calibration against
    that survey's model error, the others against ``rme``."""
    n = len(flux)
    key = np.full(n, "", "U1") if survey is None else np.asarray(survey)
    own = [k for k in per_survey if np.any(key == k)]
    groups = [(rme, np.flatnonzero(~np.isin(key, own)))]
    groups += [(per_survey[k]["rest_model_error"], np.flatnonzero(key == k)) for k in own]
    feats: dict = {}
    for err, rows in groups:
        if rows.size:
            for name, v in features_rows(bases, npar, err, flux, ivar, model, sol, rows).items():
                feats.setdefault(name, np.zeros(n))[rows] = v
    return feats or features_rows(bases, npar, rme, flux, ivar, model, sol, [])


def fit_anomaly(bases, npar: int, res: dict, quantile: float, fallback=None,
                    min_class: int = 30) -> tuple[AnomalyCalibration, list[np.ndarray]]:
    """(calibration, rest-frame model error) fitted on the normal spectra of ``res`` (the
    model's run on them).

    ``fallback`` (a survey's calibration: the default model error): a class with fewer than
    ``min_class`` spectra among these normals keeps the fallback's error — LAMOST has real
    stars only, so its galaxies and quasars would otherwise get an error fitted on nothing.
    """
    sol = res["sol"]
    rme = fit_rest_model_error(bases, res["flux"], res["ivar"], res["model"], sol.best_class,
                               sol.shift)
    if fallback is not None:
        n = np.bincount(sol.best_class, minlength=len(bases))
        rme = [own if n[c] >= min_class else dflt
               for c, (own, dflt) in enumerate(zip(rme, fallback))]
    feats = features_rows(bases, npar, rme, res["flux"], res["ivar"], res["model"], sol,
                          np.arange(len(res["flux"])))
    return AnomalyCalibration.fit(feats, quantile=quantile, snr=res["snr"]), rme


def anomaly_scores(default: AnomalyCalibration, per_survey: dict, res: dict):
    """(score, threshold) per spectrum: the default calibration, or its survey's own."""
    score = default.score(res["features"], res["snr"])
    thr = np.full(score.shape, default.threshold)
    survey = res.get("survey")
    for name, own in per_survey.items():
        rows = np.flatnonzero(survey == name) if survey is not None else []
        if len(rows):
            sub = {k: v[rows] for k, v in res["features"].items()}
            score[rows] = own["anomaly"].score(sub, res["snr"][rows])
            thr[rows] = own["anomaly"].threshold
    return score, thr


def survey_state(per_survey: dict) -> dict:
    """The per-survey calibrations as a model file holds them (tensors and JSON)."""
    return {k: {"anomaly": v["anomaly"].to_dict(),
                "rest_model_error": [torch.as_tensor(e) for e in v["rest_model_error"]]}
            for k, v in per_survey.items()}


def survey_from_state(state: dict) -> dict:
    """Inverse of :func:`survey_state`."""
    return {k: {"anomaly": AnomalyCalibration.from_dict(v["anomaly"]),
                "rest_model_error": [np.asarray(e, np.float32) for e in v["rest_model_error"]]}
            for k, v in state.items()}
