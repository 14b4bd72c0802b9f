"""``eigen``: a generative eigenspectrum model with a χ² scan over redshift and class.

Each class of the class set has K eigenspectra on its own rest-frame log-λ grid (step δ
= the data's, 1e-4), wide enough for the class's redshift range (:data:`DEFAULT_CLASSES`).
A spectrum is fitted at every integer pixel shift of every class by
Σ a_k E_k(shifted) + quadratic continuum (:mod:`.chi2scan`); the global minimum gives class
and z, the curve around it ZERR, the other minima DELTACHI2 and the degeneracy ratio
(:mod:`.zsolve`); the fit's residuals give an anomaly score (:mod:`.anomalies`).
Class probabilities are p_c ∝ exp(−(χ²_c − χ²_min)/(2T)) with the temperature T fitted
on validation data (maximum likelihood of the true classes).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from astropy.table import Table

from ...anomaly import AnomalyCalibration
from ...catalog import make_catalog
from ...classes import labels as class_labels
from ...flags import ZWARN
from ...spectra import DEFAULT_GRID, LogGrid, SpectraBatch, median_snr, survey_of
from ...verify.candidates import Candidates
from ...verify.subtype import star_subtypes_at
from ..base import Capabilities, PredictOptions, SpectralModel, register_model
from .anomalies import (
    anomaly_features,
    anomaly_scores,
    survey_from_state,
    survey_state,
)
from .calibrate import CalibrationMixin
from .chi2scan import Chi2Scanner, ScanBasis, z_to_shift
from .modelerror import effective_ivar, fit_var_boost
from .robust import ROBUST_DEFAULT, RobustStarMixin, robust_settings
from .surveys import SurveyStarsMixin
from .train import labels_of, load_training_rows, train_basis
from .zsolve import second_fit, solve_redshifts

__all__ = ["EigenModel", "DEFAULT_CLASSES"]

#: per class: number of eigenspectra and the scanned redshift range.  Stars: ±1200 km/s;
#: galaxies: −1500 km/s … 1.2 (SDSS main + LRG, with margin); quasars 0 … 5 (the blue
#: end of the rest grid is then 3600/6 = 600 Å; Lyα leaves the grid red end at z ≈ 6.6).
DEFAULT_CLASSES = {
    "STAR": {"nvec": 8, "zmin": -0.004, "zmax": 0.004},
    "GALAXY": {"nvec": 5, "zmin": -0.005, "zmax": 1.2},
    "QSO": {"nvec": 5, "zmin": 0.0, "zmax": 5.0, "smooth_below": 1200.0},
}


@register_model("eigen")
class EigenModel(CalibrationMixin, SurveyStarsMixin, RobustStarMixin, SpectralModel):
    """Eigenspectra per class + χ² scan; see the module docstring.

    Hyperparameters: ``config`` (per class: nvec, zmin, zmax), ``npoly``,
    ``exclude_subtypes``; ``scan_dtype`` is a run-time choice.  Fitted state: the attributes
    ending in ``_`` (eigenspectra, temperature, class penalties, anomaly calibration, sky
    variance boost, rest-frame model error, ZERR scales).
    """

    version = "1"
    capabilities = Capabilities(chi2_curves=True,
                                candidates="the best and the second χ² minimum (another class "
                                           "or > 1000 km/s)")

    def __init__(self, class_set: str = "three", grid: LogGrid = DEFAULT_GRID,
                 classes: dict | None = None, npoly: int = 3, exclude_subtypes=()):
        super().__init__(class_set, grid)
        names = class_labels(class_set)
        cfg = classes or {k: dict(v) for k, v in DEFAULT_CLASSES.items() if k in names}
        unknown = set(cfg) - set(names)
        if unknown:
            raise ValueError(f"eigen: classes {sorted(unknown)} are not in class set {class_set!r}")
        if not cfg:
            raise ValueError(f"eigen: no class configuration for class set {class_set!r}; "
                             f"pass classes={{label: {{'nvec', 'zmin', 'zmax'}}}}")
        self.config = {k: dict(v) for k, v in cfg.items()}
        self.npoly = int(npoly)
        #: training rows with these SUBTYPEs are left out (e.g. WD, CV: kept unseen so they
        #: can test the anomaly score)
        self.exclude_subtypes = tuple(str(x) for x in exclude_subtypes)
        self.bases_: list[ScanBasis] = []
        self.temperature_ = 1.0
        self.penalty_ = np.zeros(len(self.config))
        self.anomaly_ = AnomalyCalibration()
        self.scan_dtype = "float32"
        self.var_boost_ = np.zeros(grid.size, np.float32)
        #: per class, ε² of the rest-frame model error used by the anomaly features
        #: (:mod:`.modelerror`); None: plain ivar
        self.rest_model_error_: list[np.ndarray] | None = None
        #: per survey (SURVEY column, upper case) its own normal population:
        #: {"LAMOST": {"anomaly": AnomalyCalibration, "rest_model_error": [...]}}; spectra of
        #: other surveys use anomaly_ / rest_model_error_ (:meth:`calibrate_anomaly`)
        self.survey_anomaly_: dict[str, dict] = {}
        #: per-class factor on the Δχ² = 1 ZERR (model mismatch is not in ivar), fitted by
        #: :meth:`calibrate_zerr` so that |Δz| < ZERR for 68.3 % of validation spectra
        self.zerr_scale_ = np.ones(len(self.config))
        #: the spEigenStar vectors that measure a star's z (:mod:`.stars`; None: the class
        #: basis's own minimum), as {"basis": (K, R), "npoly", "reach"}
        self.star_velocity_: dict | None = None
        #: per survey, a velocity error (km/s) added in quadrature to STAR ZERR (per-visit
        #: systematics that the χ² curvature does not see)
        self.star_zerr_floor_kms_: dict = {}
        #: per survey, its own per-pixel variance boost replacing ``var_boost_`` (fitted like
        #: it on that survey's real spectra: e.g. LAMOST's blue end, arm join, telluric bands)
        self.survey_var_boost_: dict[str, np.ndarray] = {}
        #: settings of the robust star check (:mod:`.robust`; missing keys, or {}: the
        #: defaults); None: off
        self.robust_star_ = robust_settings(None)
        self._scanner = None
        self._velocity = None

    # ------------------------------------------------------------------ geometry
    def shift_range(self, label: str) -> tuple[int, int]:
        c = self.config[label]
        step = self.grid.step
        return (int(math.floor(math.log10(1 + c["zmin"]) / step)),
                int(math.ceil(math.log10(1 + c["zmax"]) / step)))

    @property
    def scanner(self) -> Chi2Scanner:
        if self._scanner is None:
            if not self.bases_:
                raise RuntimeError("eigen model has no eigenspectra yet: fit() or load it first")
            dt = torch.float64 if self.scan_dtype == "float64" else torch.float32
            self._scanner = Chi2Scanner(self.bases_, self.grid.size, self.npoly, dtype=dt)
        return self._scanner

    # ------------------------------------------------------------------ training
    def fit(self, train, val=None, *, per_class: int = 2000, iterations: int = 25,
            ridge: float = 1e-3, clip: float | None = None, sky_rounds: int = 1,
            seed: int = 0, progress: bool = True,
            anomaly_quantile: float = 0.99, val_max: int = 600, **options) -> "EigenModel":
        """Learn the eigenspectra of every class (ALS on the χ², see :mod:`.train`),
        then fit the probability temperature and the anomaly calibration on ``val``.

        ``train``/``val``: SpectraBatch, SpectralStore or store path with Z and class truth.
        """
        # `specsift train` passes the neural loop's options: ALS iterations play the role
        # of epochs; the rest (learning rate, batch size, device, …) have no meaning here
        if options.get("epochs"):
            iterations = int(options.pop("epochs"))
        ignored = sorted(k for k, v in options.items() if v is not None and k not in
                         ("checkpoint_dir", "device", "num_workers", "resume"))
        if ignored:
            warnings.warn(f"eigen.fit ignores options {', '.join(ignored)} (closed-form ALS "
                          f"training, see specsift.models.eigen.train)", stacklevel=2)
        t0 = time.time()
        tb = self.check_batch(load_training_rows(train, per_class, self.class_set, seed,
                                    self.exclude_subtypes))
        lab = labels_of(tb, self.class_set)
        z = np.asarray(tb.meta["Z"], float)
        vb = None
        if val is not None:
            vb = self.check_batch(load_training_rows(val, max(1, val_max // len(self.config)),
                                        self.class_set, seed + 1, self.exclude_subtypes))
        self.bases_, self._scanner = [], None
        self.var_boost_ = np.zeros(self.grid.size, np.float32)
        # what real stars added to a shipped model belongs to its old bases (--init eigen.pt):
        # a new fit starts without it (benchmarks/eigen_real_stars.py adds it again)
        self.survey_var_boost_, self.star_velocity_, self.star_zerr_floor_kms_ = {}, None, {}
        self._velocity = None
        history: dict = {}
        for rnd in range(1 + int(sky_rounds)):
            # round 0: plain ivar; then ivar deflated where training residuals show extra
            # scatter at fixed observed pixels (sky lines), and the bases trained again
            init = {b.label: b.basis for b in self.bases_} if rnd else {}
            self.bases_, self._scanner = [], None
            for name, cfg in self.config.items():
                basis, hist = self._train_class(name, cfg, tb, lab, z, vb, init.get(name),
                                                iterations if rnd == 0 else max(iterations // 2, 3),
                                                ridge, clip, seed, progress)
                history[f"{name}/round{rnd}"] = hist
            if rnd < sky_rounds:
                self.var_boost_ = fit_var_boost(self.scanner, tb, lab, z, self.var_boost_,
                                                 self.grid.step)
        self.training = {"n_train": int(len(tb)), "per_class": per_class, "clip": clip,
                         "exclude_subtypes": list(self.exclude_subtypes),
                         "sky_rounds": sky_rounds,
                         "iterations": iterations, "ridge": ridge, "seed": seed,
                         "classes": self.config, "npoly": self.npoly, "history": history,
                         "train_seconds": round(time.time() - t0, 1)}
        self.calibrate(vb if vb is not None else tb[: min(len(tb), val_max)],
                       anomaly_quantile=anomaly_quantile)
        return self

    def _ivar(self, batch: SpectraBatch) -> tuple[np.ndarray, np.ndarray]:
        """(flux, effective ivar): masked pixels zeroed, ivar deflated by ``var_boost`` — or,
        for a survey with its own (:attr:`survey_var_boost_`), by that survey's."""
        flux, ivar = effective_ivar(batch, self.var_boost_)
        if self.survey_var_boost_:
            survey = survey_of(batch.meta, len(batch))          # upper-case already
            for name, vb in self.survey_var_boost_.items():
                rows = np.flatnonzero(survey == name)
                if len(rows):
                    ivar[rows] *= (1.0 + self.var_boost_) / (1.0 + vb)
        return flux, ivar

    def _train_class(self, name, cfg, tb, lab, z, vb, init, iterations, ridge, clip, seed,
                     progress):
        jmin, jmax = self.shift_range(name)
        sel = (lab == name) & np.isfinite(z) & (z >= cfg["zmin"]) & (z <= cfg["zmax"])
        if sel.sum() < cfg["nvec"] + 1:
            raise ValueError(f"eigen.fit: {int(sel.sum())} training spectra of class "
                             f"{name!r} with z in [{cfg['zmin']}, {cfg['zmax']}]")
        flux, ivar = self._ivar(tb[sel])
        shift = z_to_shift(z[sel], self.grid.step)
        vtuple = None
        if vb is not None:
            vl, vz = labels_of(vb, self.class_set), np.asarray(vb.meta["Z"], float)
            vs = (vl == name) & np.isfinite(vz) & (vz >= cfg["zmin"]) & (vz <= cfg["zmax"])
            if vs.any():
                vf, vi = self._ivar(vb[vs])
                vtuple = (vf, vi, z_to_shift(vz[vs], self.grid.step))
        basis, hist = train_basis(flux, ivar, shift, jmin, jmax, int(cfg["nvec"]), self.npoly,
                                  iterations=iterations, ridge=ridge, val=vtuple, seed=seed,
                                  progress=progress, label=name, clip=clip, init=init,
                                  smooth_below=cfg.get("smooth_below"),
                                  rest_start=self.grid.start - jmax * self.grid.step,
                                  step=self.grid.step)
        self.bases_.append(ScanBasis(name, basis, jmin, jmax))
        return basis, {"n_train": int(sel.sum()), **hist}

    # ------------------------------------------------------------------ inference
    def _run(self, batch: SpectraBatch, save_chi2: bool = False, curves=None) -> dict:
        """Scan (unless ``curves`` are given), solve, compute the anomaly features."""
        sc = self.scanner
        flux, ivar = self._ivar(batch)
        survey = survey_of(batch.meta, len(batch))
        if curves is None:
            curves = sc.scan(flux, ivar, active=self._active(survey))
        ngood = (ivar > 0).sum(1)
        sol = solve_redshifts(sc, curves, flux, ivar, self.grid.step, ngood=ngood,
                              penalty=self.penalty_)
        decision, masked = sol.chi2_class, None
        if self.robust_star_ is not None:      # {}: the default settings
            decision, *masked = self._robust_star(sol, flux, ivar, survey)
        model = sol.model
        dof = np.maximum(ngood - self._npar, 1)
        good = (ivar > 0) & np.isfinite(flux)
        rchi2 = np.where(good, (flux - model) ** 2 * ivar, 0.0).sum(1) / dof
        self._star_z(sol, flux, ivar, ngood, masked)
        out = {"sol": sol, "chi2_class": sol.chi2_class, "chi2_decision": decision,
               "model": model, "rchi2": rchi2,
               "features": self._features(flux, ivar, model, sol, survey), "flux": flux,
               "ivar": ivar, "ngood": ngood, "snr": median_snr(flux, ivar), "survey": survey}
        if save_chi2:
            out["curves"] = curves
        return out

    @property
    def _npar(self) -> int:
        return max(b.nvec for b in self.bases_) + self.npoly

    def _features(self, flux, ivar, model, sol, survey=None) -> dict:
        """Anomaly features (:func:`.anomalies.anomaly_features`) with this model's calibrations."""
        return anomaly_features(self.bases_, self._npar, self.rest_model_error_,
                                self.survey_anomaly_, flux, ivar, model, sol, survey)

    def _catalog(self, batch: SpectraBatch, res: dict) -> Table:
        sol = res["sol"]
        probs = self._probs(res)
        score, thr = anomaly_scores(self.anomaly_, self.survey_anomaly_, res)
        zwarn = sol.zwarn.copy()
        zwarn[score > thr] |= int(ZWARN.ANOMALY)
        zerr = self._star_zerr(batch, sol,
                               sol.zerr * np.asarray(self.zerr_scale_, float)[sol.best_class])
        cat = make_catalog(batch.meta, self.class_set, probs, sol.z, zerr, self.tag,
                           zwarn=zwarn, deltachi2=sol.deltachi2, anomaly_score=score)
        if self.velocity is not None:      # stars named from real templates at their z
            star = np.flatnonzero((np.asarray(cat["SPECTYPE"]) == "STAR") & (res["ngood"] > 0))
            sub = np.asarray(cat["SUBTYPE"]).astype("U20")
            sub[star] = star_subtypes_at(batch, star, np.asarray(cat["Z"], float)[star])
            cat["SUBTYPE"] = sub
        nodata = res["ngood"] == 0
        cat["CHI2_MIN"] = np.where(nodata, np.nan, sol.chi2 - self.penalty_[sol.best_class])
        cat["RCHI2"] = np.where(nodata, np.nan, res["rchi2"])
        cat["DEGENERACY"] = np.where(nodata, np.nan, sol.degeneracy)
        return cat

    def _predict(self, batch: SpectraBatch, options: PredictOptions) -> Table:
        """Catalog with DELTACHI2, ANOMALY_SCORE, CHI2_MIN, RCHI2, DEGENERACY.

        ``options.save_chi2`` adds one vector column ``CHI2_<label>`` per class (the χ² at
        every shift); its redshifts are z = 10^(j·δ) − 1 for j = ``CHI2_<label>_JMIN`` … in
        the table meta, with δ = meta['LOGLAM_STEP'].
        """
        return self._propose(batch, options)[0]

    def _propose(self, batch: SpectraBatch, options: PredictOptions):
        """Catalog and candidates: its best and its second χ² minimum."""
        res = self._run(batch, save_chi2=options.save_chi2)
        cat = self._catalog(batch, res)
        if options.save_chi2:
            cat.meta.update(self.catalog_meta(options))
            for b, cur in self._label_curves(res["curves"]):
                cat[f"CHI2_{b.label}"] = cur.astype(np.float32)
        sol = res["sol"]
        second = np.where(sol.second_class >= 0,
                          self._spectypes[np.maximum(sol.second_class, 0)], "")
        z2 = np.where(sol.second_class >= 0, sol.z_second, np.nan)
        return cat, Candidates(np.stack([np.asarray(cat["Z"], float), z2], axis=1),
                               np.stack([np.asarray(cat["SPECTYPE"], "U6"), second], axis=1))

    def is_fitted(self) -> bool:
        return bool(self.bases_)

    def catalog_meta(self, options: PredictOptions | dict | None = None) -> dict:
        """Catalog header entries: the z grid of the CHI2_<label> columns (the predict
        pipeline writes them into the FITS header / Parquet metadata)."""
        if not PredictOptions.of(options).save_chi2:
            return {}
        out = {"LOGLAM_STEP": self.grid.step}
        out.update({f"CHI2_{b.label}_JMIN": b.jmin for b in self.bases_})
        return out

    def explain(self, batch: SpectraBatch) -> dict:
        """Reconstruction, residual and χ² curves for plotting (``specsift explain``)."""
        batch = self.check_batch(batch)
        res = self._run(batch, save_chi2=True)
        cat = self._catalog(batch, res)
        sol = res["sol"]
        labels = [b.label for b in self.bases_]
        ivar = np.where(batch.mask, 0.0, batch.ivar)
        return {"catalog": cat, "loglam": batch.loglam, "flux": batch.flux,
                "ivar": ivar, "mask": batch.mask, "model": res["model"],
                "residual": (batch.flux - res["model"]) * np.sqrt(ivar),
                # raw χ²(z) per class; the decision adds the class penalty (−2 ln prior)
                "chi2": {b.label: (b.redshifts(self.grid.step), cur)
                         for b, cur in self._label_curves(res["curves"])},
                "penalty": dict(zip(labels, np.asarray(self.penalty_, float).tolist())),
                "z_second": sol.z_second,
                "class_second": np.array([labels[c] if c >= 0 else "" for c in sol.second_class]),
                # the runner-up's model and the pixels that decide between the two
                **second_fit(self.scanner, sol, res["flux"], res["ivar"], self.grid.step)}

    # ------------------------------------------------------------------ persistence
    def get_state(self) -> dict:
        return {"config": self.config, "npoly": self.npoly,
                "exclude_subtypes": list(self.exclude_subtypes), "temperature": self.temperature_,
                "anomaly": self.anomaly_.to_dict(), "scan_dtype": self.scan_dtype,
                "penalty": [float(x) for x in self.penalty_],
                "zerr_scale": [float(x) for x in self.zerr_scale_],
                "var_boost": torch.as_tensor(self.var_boost_),
                "rest_model_error": (None if self.rest_model_error_ is None else
                                     [torch.as_tensor(e) for e in self.rest_model_error_]),
                "survey_anomaly": survey_state(self.survey_anomaly_),
                "star_velocity": (None if self.star_velocity_ is None else
                                  {**{k: v for k, v in self.star_velocity_.items()
                                      if k != "basis"},
                                   "basis": torch.as_tensor(np.asarray(
                                       self.star_velocity_["basis"], np.float32))}),
                "star_zerr_floor_kms": dict(self.star_zerr_floor_kms_),
                "robust_star": (None if self.robust_star_ is None else
                                {**self.robust_star_,
                                 "surveys": list(self.robust_star_.get("surveys") or ())}),
                "survey_var_boost": {k: torch.as_tensor(np.asarray(v, np.float32))
                                     for k, v in self.survey_var_boost_.items()},
                "bases": [{"label": b.label, "jmin": b.jmin, "jmax": b.jmax,
                           "survey": b.survey,
                           "basis": torch.as_tensor(np.asarray(b.basis, np.float32))}
                          for b in self.bases_]}

    def set_state(self, state: dict) -> None:
        self.config = state["config"]
        self.npoly = int(state["npoly"])
        self.exclude_subtypes = tuple(state["exclude_subtypes"])
        self.temperature_ = float(state["temperature"])
        self.penalty_ = np.asarray(state["penalty"], float)
        self.anomaly_ = AnomalyCalibration.from_dict(state["anomaly"])
        self.scan_dtype = state["scan_dtype"]
        self.zerr_scale_ = np.asarray(state["zerr_scale"], float)
        self.var_boost_ = np.asarray(state["var_boost"], np.float32)
        rme = state["rest_model_error"]
        self.rest_model_error_ = None if rme is None else [np.asarray(e, np.float32) for e in rme]
        self.survey_anomaly_ = survey_from_state(state.get("survey_anomaly", {}))
        self.bases_ = [ScanBasis(b["label"], np.asarray(b["basis"], np.float32),
                                 int(b["jmin"]), int(b["jmax"]), str(b.get("survey", "")))
                       for b in state["bases"]]
        sv = state.get("star_velocity")
        self.star_velocity_ = (None if sv is None else
                               {**sv, "basis": np.asarray(sv["basis"], np.float32)})
        self.star_zerr_floor_kms_ = {str(k): float(v) for k, v in
                                     state.get("star_zerr_floor_kms", {}).items()}
        self.survey_var_boost_ = {str(k): np.asarray(v, np.float32) for k, v in
                                  state.get("survey_var_boost", {}).items()}
        # files saved before the check existed get it too (it needs no fitted state)
        rs = state.get("robust_star", ROBUST_DEFAULT)
        self.robust_star_ = None if rs is None else robust_settings(rs)
        self._scanner = None
        self._velocity = None
