"""``eigen``: the eigenspectrum model and its parts.

``model`` (EigenModel: fit, predict, calibration, state), ``train`` (eigenspectra by
alternating least squares), ``modelerror`` (rest-frame model error for the anomaly
features, observed-frame sky variance boost for the fit), ``anomalies`` (anomaly features
and their default and per-survey calibrations), ``chi2scan`` (χ² at every pixel shift,
vectorised) and ``zsolve`` (minima → z, ZERR, DELTACHI2, ZWARN; the ZERR scale per class).
"""

from .model import DEFAULT_CLASSES, EigenModel

__all__ = ["EigenModel", "DEFAULT_CLASSES"]
