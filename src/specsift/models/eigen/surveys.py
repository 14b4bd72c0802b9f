"""The survey and real-star wiring of :class:`~.model.EigenModel` (issue 18), as a mixin.

Apart from :mod:`.model` because it is a second job with state of its own: which basis applies
to which survey's spectra (a survey's own STAR basis replaces the survey-less one there), the
star velocity and its per-survey ZERR floor (:mod:`.stars`), class probabilities whose
temperature follows the fit's χ²/dof, and the per-label merge of the χ² curves.  The attributes
it reads (``bases_``, ``star_velocity_``, ``star_zerr_floor_kms_``, ``survey_var_boost_``, …)
are the model's fitted state, declared and persisted in :mod:`.model`.
"""

from __future__ import annotations

import numpy as np

from ...calibration import softmax
from ...classes import labels as class_labels
from ...classes import spectype_of
from ...flags import ZWARN
from ...spectra import survey_of
from .chi2scan import C_KMS, shift_to_z
from .stars import StarVelocity

__all__ = ["SurveyStarsMixin"]


class SurveyStarsMixin:
    """Methods of :class:`~.model.EigenModel` for survey bases and real-star velocities."""

    def _active(self, survey: np.ndarray) -> np.ndarray:
        """(C, N) which basis applies to which spectrum: a basis with ``survey`` set only to
        that survey's spectra, where it replaces the survey-less basis of its label."""
        survey = np.char.upper(np.asarray(survey).astype(str))
        act = np.ones((len(self.bases_), len(survey)), bool)
        for c, b in enumerate(self.bases_):
            if b.survey:
                act[c] = survey == b.survey
            else:
                own = [o.survey for o in self.bases_ if o.survey and o.label == b.label]
                act[c] = ~np.isin(survey, own)
        return act

    @property
    def velocity(self) -> StarVelocity | None:
        if self._velocity is None and self.star_velocity_ is not None:
            sb = next(b for b in self.bases_ if spectype_of(b.label) == "STAR")
            v = self.star_velocity_
            self._velocity = StarVelocity(v["basis"], sb.jmin, sb.jmax, self.grid.size,
                                          int(v.get("npoly", self.npoly)), int(v.get("reach", 3)))
        return self._velocity

    @property
    def _spectypes(self) -> np.ndarray:
        """(C,) the SPECTYPE (STAR, GALAXY, QSO) of each basis, for any class set; cached
        for the current bases."""
        key = tuple(b.label for b in self.bases_)
        if getattr(self, "_spectypes_key", None) != key:
            self._spectypes_cache = np.array([spectype_of(x) for x in key], dtype="U6")
            self._spectypes_key = key
        return self._spectypes_cache

    def _star_z(self, sol, flux, ivar, ngood, masked=None) -> None:
        """z and raw ZERR of the rows solved as STAR from :attr:`velocity` (in place).

        ``masked``: (rows, (rows, P) bool) pixels left out of those rows' velocity fit (the
        robust star check's misses, :mod:`.robust`)."""
        star = np.flatnonzero((self._spectypes[sol.best_class] == "STAR") & (ngood > 0))
        if self.velocity is None or not len(star):
            return
        iv = ivar[star]                                  # a copy of the star rows only
        if masked is not None and len(masked[0]):
            pos = np.searchsorted(star, masked[0])
            ok = (pos < len(star)) & (star[np.minimum(pos, len(star) - 1)] == masked[0])
            iv[pos[ok]] = np.where(masked[1][ok], 0.0, iv[pos[ok]])
        sh, sig, _, edge = self.velocity.refine(flux[star], iv, sol.shift[star])
        z = shift_to_z(sh, self.grid.step)
        sol.z[star] = z
        sol.zerr[star] = StarVelocity.zerr(z, sig, self.grid.step)
        sol.zwarn[star[edge]] |= int(ZWARN.Z_FITLIMIT)

    def _probs(self, res: dict) -> np.ndarray:
        """(N, labels) class probabilities p_c ∝ exp(−Δχ²_c / (2T·max(1, χ²/dof))).

        Why the χ²/dof: the temperature was fitted on simulated spectra, whose best fits
        reach χ²/dof ≈ 1; on a real spectrum every template misses by more than the noise
        (χ²/dof 2–10 on LAMOST stars), which inflates every χ² difference by that factor, so
        an unscaled Δχ² of a few hundred would look decisive where it is not."""
        names = class_labels(self.class_set)
        c2 = res.get("chi2_decision", res["chi2_class"])     # after the robust star check
        d = c2 - np.nanmin(np.where(np.isfinite(c2), c2, np.nan), axis=1, keepdims=True)
        temp = self.temperature_ * np.maximum(np.nan_to_num(res["rchi2"], nan=1.0), 1.0)
        pb = softmax(-np.nan_to_num(d, nan=np.inf) / (2 * temp[:, None]), dtype=np.float64)
        probs = np.zeros((len(c2), len(names)))
        for k, b in enumerate(self.bases_):           # a survey's own basis adds to its label
            probs[:, names.index(b.label)] += pb[:, k]
        return probs

    def _star_zerr(self, batch, sol, zerr) -> np.ndarray:
        """ZERR with each survey's STAR velocity floor added in quadrature."""
        if not self.star_zerr_floor_kms_:
            return zerr
        labels = self._spectypes[sol.best_class]
        survey = survey_of(batch.meta, len(batch))          # upper-case already
        kms = np.array([self.star_zerr_floor_kms_.get(s, 0.0) for s in survey])
        kms = np.where(labels == "STAR", kms, 0.0)
        return np.hypot(zerr, kms / C_KMS * (1.0 + sol.z))

    def drop_survey_bases(self):
        """Remove every survey's own basis (with its penalty, ZERR scale and model errors)
        and the survey variance boosts fitted with it, in place: the model as simulated
        training left it, which a survey basis is then added to
        (``benchmarks/eigen_real_stars.py``).  Returns self."""
        self.survey_var_boost_ = {}
        keep = [c for c, b in enumerate(self.bases_) if not b.survey]
        self.bases_ = [self.bases_[c] for c in keep]
        self.penalty_ = np.asarray(self.penalty_, float)[keep]
        self.zerr_scale_ = np.asarray(self.zerr_scale_, float)[keep]
        if self.rest_model_error_ is not None:
            self.rest_model_error_ = [self.rest_model_error_[c] for c in keep]
        for cal in self.survey_anomaly_.values():
            cal["rest_model_error"] = [cal["rest_model_error"][c] for c in keep]
        self._scanner, self._velocity = None, None
        return self

    def _label_curves(self, curves) -> list:
        """(basis, curve) per label: a survey's own basis and the survey-less one of the same
        label (same shifts) merged — each row's curve is the one of the basis that applies
        to it (the other is +inf there)."""
        out: dict = {}
        for b, cur in zip(self.bases_, curves):
            if b.label in out:
                b0, c0 = out[b.label]
                if (b0.jmin, b0.jmax) != (b.jmin, b.jmax):
                    raise ValueError(f"eigen: two {b.label} bases with different shifts")
                out[b.label] = (b0, np.minimum(c0, cur))
            else:
                out[b.label] = (b, cur)
        return list(out.values())
