"""`gasnet`: GaSNet-style classifier over `thirteen` with redshift as a calibrated distribution.

Outputs per spectrum: class probabilities P_i (temperature-scaled), Z (the refined mode of
p(z)), ZERR (σ of p(z) near its mode, the spread of its other peaks and the spectrum's S/N,
mapped by an error model fitted on validation data so that 68 %/95 % of |Δz| fall within
1σ/2σ) and ANOMALY_SCORE (Mahalanobis distance of the embedding, 1 = the 99th percentile of
simulated spectra).  Network and heads: :mod:`.net`; calibration:
:mod:`specsift.calibration`; docs: docs/gasnet.md.

ZWARN bits set here (on top of the input flags make_catalog adds): NODATA (no good pixel),
POORDATA (median per-pixel S/N below ``poor_snr``), Z_FITLIMIT (peak in the first/last bin),
SMALL_DELTA_CHI2 (p(z) gives > 30 % probability to |Δz|/(1+z) > 0.01: z not unique), ANOMALY
(score above ``anomaly_threshold``), LOW_CLASS_CONFIDENCE where the top class could not
have the reported z and the probabilities were conditioned on it
(:func:`~specsift.classes.condition_on_redshift`); make_catalog adds LOW_CLASS_CONFIDENCE
also where max P < 0.6.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ...calibration import (
    MahalanobisOOD,
    SigmaCalibration,
    SigmaRegression,
    fit_temperature,
    softmax,
)
from ...catalog import make_catalog
from ...classes import condition_on_redshift, spectype_of
from ...constants import C_KMS
from ...flags import ZWARN
from ...metrics import (
    calibration,
    classification_metrics,
    redshift_metrics,
    truth_labels,
    zerr_coverage,
)
from ...spectra import DEFAULT_GRID, LogGrid, SpectraBatch, median_snr
from ...training_data import StoreDataset
from ...verify.candidates import Candidates, pz_peaks
from ..base import PredictOptions, register_model
from ..inputs import good_pixels, normalise
from ..neural import NeuralSpectralModel, meta_and_check, row_argmax
from ..star_head import refine_star_rows
from .fast import ChannelsLastTrunk
from .net import GaSNetModule, augment, decode_bins, decode_mdn, gasnet_loss

__all__ = ["GaSNet"]

#: median S/N (POORDATA flag and ZERR model, fitted and applied alike) from every 4th pixel
SNR_STEP = 4
#: SMALL_DELTA_CHI2 where p(z) gives more than this to |Δu| > NEAR (z not unique)
P_CATASTROPHIC_MAX = 0.3


@register_model("gasnet")
class GaSNet(NeuralSpectralModel):
    """See the module docstring; ``z_head`` ('bins' or 'mdn') is chosen on validation data."""

    version = "1"
    capabilities = dataclasses.replace(NeuralSpectralModel.capabilities,
                                       candidates="the two highest peaks of p(z), each as "
                                                  "GALAXY and as QSO", star_velocity=True)
    module_class = GaSNetModule
    z_window = 3
    predict_batch_size = 1024
    #: on the CPU: 256 (not the networks' 128): with the channels-last trunk (:mod:`.fast`)
    #: the activations of 256 spectra still fit the caches and the per-pass overheads halve,
    #: propose ≈ 4 % faster (alternated in one process, 281 → 269 and 239 → 228 µs a spectrum
    #: on a loaded machine); the same outputs bit for bit (tests/test_forward_batches.py)
    cpu_batch_size = 256
    weights_dtype = torch.float16      # halves the shipped file; inference runs in float32
    fit_defaults = {"epochs": 10, "batch_size": 256, "lr": 3e-3, "weight_decay": 1e-4}
    fitted_defaults = {"z_head": "bins", "temperature": 1.0, "sigma_cal": {}, "sigma_reg": {},
                       "ood": None}

    def __init__(self, class_set: str = "thirteen", grid: LogGrid = DEFAULT_GRID,
                 n_bins: int = 940, z_max: float = 5.4, augment: bool = True,
                 poor_snr: float = 1.0, anomaly_threshold: float = 3.0, **net_options):
        super().__init__(class_set, grid, {
            "n_bins": int(n_bins), "u_range": [-0.006, math.log1p(z_max)],
            "augment": bool(augment), "poor_snr": float(poor_snr),
            "anomaly_threshold": float(anomaly_threshold), "net": dict(net_options)})
        self._aug_calls, self._seed = 0, 0

    # -- pieces ----------------------------------------------------------------
    def train_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        """Inputs with the physics augmentations of :func:`~.net.augment`."""
        if not self.config["augment"]:
            return self.make_inputs(batch)
        self._aug_calls += 1
        tid = int(np.asarray(batch.meta["TARGETID"])[0]) if "TARGETID" in batch.meta.colnames else 0
        rng = np.random.default_rng([self._seed, tid % 2**31, self._aug_calls])
        f, iv, m = augment(batch.flux, batch.ivar, batch.mask, batch.loglam, rng)
        return torch.from_numpy(normalise(f, iv, m))

    def _u_targets(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self.config["u_range"]
        return np.where((u >= lo) & (u <= hi), u, np.nan)        # outside the bins: class only

    def loss(self, out, target) -> torch.Tensor:
        return gasnet_loss(out, target, self.bin_centres, self.bin_width, self.config["u_range"])

    def heads(self, out: dict, only: str | None = None) -> dict:
        """Raw network outputs → numpy: logits, embedding, and per head the tuple
        (u, σ_loc, σ_full, p_near, at_edge) of :func:`~.net.decode_bins`.  ``only``: decode
        just that head ("bins" or "mdn") — prediction reads only :attr:`z_head_`, and the
        other head's decode was ~5–15 µs a spectrum of the inference path."""
        peak = row_argmax(out["zlog"]).numpy()
        edge = (peak == 0) | (peak == self.config["n_bins"] - 1)
        h = {"logits": out["cls"].float().numpy(), "emb": out["emb"].float().numpy()}
        if only in (None, "bins"):
            bins = decode_bins(out["zlog"], out["zoff"], self.bin_centres, self.bin_width,
                               window=self.z_window)
            h["bins"] = tuple(t.numpy() for t in bins) + (edge,)
        if only in (None, "mdn"):
            mdn = decode_mdn(out["mdn"], self.config["u_range"])
            h["mdn"] = tuple(t.numpy() for t in mdn) + (np.zeros_like(edge),)
        return h

    def raw(self, data, batch_size: int = 1024) -> dict:
        """:meth:`heads` over a whole store/batch (in order), concatenated, and each
        spectrum's median S/N."""
        snr = []

        def inputs(b):
            snr.append(median_snr(b.flux, b.ivar, good_pixels(b.flux, b.ivar, b.mask),
                                  step=SNR_STEP))
            return self.make_inputs(b)
        self.net.eval()
        ds = StoreDataset(data, inputs, None, batch_size=batch_size, shuffle=False)
        parts = []
        with torch.no_grad():
            for x, _ in ds:
                parts.append(self.heads(self.net(x)))
        out = {k: np.concatenate([p[k] for p in parts]) for k in ("logits", "emb")}
        out["snr"] = np.concatenate(snr)
        for h in ("bins", "mdn"):
            out[h] = tuple(np.concatenate([p[h][i] for p in parts]) for i in range(5))
        return out

    def _spectypes(self, probs: np.ndarray) -> np.ndarray:
        """SPECTYPE of each row's top class: a lookup in the classes' types (one call per
        class, not per row as a list comprehension over rows)."""
        return np.array([spectype_of(n) for n in self.names])[probs.argmax(1)]

    # -- calibration -------------------------------------------------------------
    def calibrate(self, val, log=print) -> dict:
        """Fit temperature, the ZERR model of both heads, the OOD model, and pick the z head."""
        meta = meta_and_check(val, self.grid, "calibration data")
        zt = np.asarray(meta["Z"], float)
        out = self.raw(val)
        y, report = self._fit_temperature(meta, out["logits"])
        probs = softmax(out["logits"] / self.temperature_)
        st = self._spectypes(probs)
        report["heads"] = {}
        ut = np.log1p(zt)
        best, best_key = None, None
        half = len(zt) // 2                       # fit on one half, check on the other
        for h in ("bins", "mdn"):
            u, s, sf, p_near, _ = out[h]
            feats = (st, _excess(s, sf), out["snr"], p_near)
            first, second = (tuple(f[sl] for f in feats) for sl in (slice(None, half), slice(half, None)))
            reg, cal = _fit_zerr((u - ut)[:half], s[:half], *first)
            z = np.expm1(u)
            zerr = cal.apply(reg.apply(s[half:], *second), st[half:]) * np.exp(u[half:])
            r = redshift_metrics(z[half:], zt[half:])
            cov = zerr_coverage(z[half:], zt[half:], zerr)
            row = {"GF_0.003": r["GF_0.003"], "GF_0.01": r["GF_0.01"],
                   "sigma_NMAD": r["sigma_NMAD"], "coverage_1sigma": cov["coverage_1sigma"],
                   "coverage_2sigma": cov["coverage_2sigma"]}
            report["heads"][h] = row
            reg, cal = _fit_zerr(u - ut, s, *feats)
            self.sigma_reg_[h], self.sigma_cal_[h] = reg.params, cal.params
            key = (round(row["GF_0.003"], 3), -row["sigma_NMAD"])
            if best_key is None or key > best_key:
                best, best_key = h, key
        self.z_head_ = best
        report["z_head"] = best
        n = len(y) // 2
        ood = MahalanobisOOD().fit(out["emb"][:n], y[:n], len(self.names), out["emb"][n:])
        self.ood_ = ood.state
        if log:
            log(f"calibration: T={self.temperature_:.3f}, ECE {report['ECE_before']:.4f} → "
                f"{report['ECE_after']:.4f}; heads {report['heads']}; keeping {best!r}")
        return report

    # -- the interface --------------------------------------------------------
    def fit(self, train_data, val=None, **options) -> "GaSNet":
        """:meth:`NeuralSpectralModel.fit`, with ``val`` required: calibration is part of
        the model."""
        if val is None:
            raise ValueError("gasnet needs validation data (--val): its σ and class "
                             "probabilities are calibrated on it")
        return super().fit(train_data, val, **options)

    def _before_fit(self, meta_train, val, seed: int) -> None:
        self._seed = int(seed)

    def _training_extra(self) -> dict:
        return {"augment": self.config["augment"]}

    def _val_reduce(self, out, target):
        h = self.heads(out)
        return (torch.from_numpy(h["logits"].argmax(1)), torch.from_numpy(h["bins"][0]),
                torch.from_numpy(h["mdn"][0])), target

    def _val_metrics(self, out, target) -> dict:
        pred, ub, um = out
        y, u = target
        names = np.array(self.names + ("",))
        c = classification_metrics(names[y.numpy()], names[pred.numpy()], self.names)
        ok = torch.isfinite(u).numpy()
        zt = np.expm1(u.numpy()[ok])
        rb = redshift_metrics(np.expm1(ub.numpy()[ok]), zt)
        rm = redshift_metrics(np.expm1(um.numpy()[ok]), zt)
        return {"accuracy": c["accuracy"], "GF_0.003_bins": rb["GF_0.003"],
                "GF_0.003_mdn": rm["GF_0.003"], "sigma_NMAD_bins": rb["sigma_NMAD"]}

    def _calibrate(self, val, log) -> dict:
        """All of :meth:`calibrate`, or only the temperature when the class head alone was
        trained (``trainable=("cls",)``): the embedding and both z heads are unchanged, so
        their ZERR and OOD models stay as fitted and Z/ZERR stay identical."""
        if getattr(self, "_trainable", None) == ("cls",):
            return {"calibration": self.calibrate_temperature(val, log=log)}
        return {"calibration": self.calibrate(val, log=log)}

    def calibrate_temperature(self, val, log=print) -> dict:
        """Refit only the class-probability temperature on ``val``."""
        meta = meta_and_check(val, self.grid, "calibration data")
        _, report = self._fit_temperature(meta, self.raw(val)["logits"])
        if log:
            log(f"calibration (temperature only): T={report['temperature']:.3f}, "
                f"ECE {report['ECE_before']:.4f} → {report['ECE_after']:.4f}")
        return report

    def _fit_temperature(self, meta, logits) -> tuple[np.ndarray, dict]:
        """Class indices of ``meta``'s truth (−1 outside the set) and the report of the
        temperature fitted to ``logits`` on them, which is set as ``temperature_``: the one
        temperature fit of :meth:`calibrate` and :meth:`calibrate_temperature`."""
        y = np.array([self.names.index(s) if s in self.names else -1
                      for s in truth_labels(meta, self.class_set)])
        t = fit_temperature(logits, y)
        self.temperature_ = t
        return y, {"temperature": t, "ECE_before": calibration(softmax(logits), y)["ECE"],
                   "ECE_after": calibration(softmax(logits / t), y)["ECE"]}

    def _inference_trunk(self, device: torch.device) -> torch.nn.Module:
        """On the CPU the channels-last trunk of :mod:`.fast` (BatchNorm folded, no layout
        copies), elsewhere the BN-folded copy."""
        return (ChannelsLastTrunk(self.net.trunk) if device.type == "cpu"
                else self.net.fused_trunk())

    def _predict(self, batch: SpectraBatch, options: PredictOptions):
        """:meth:`_propose`'s catalog, its STAR rows with the star head's velocity (module
        :mod:`..star_head`; verification proposes without it, so verified answers are as before)."""
        cat = self._propose(batch, options)[0]
        refine_star_rows(self, batch, cat, self.z_reach * C_KMS)
        return cat

    def _propose(self, batch: SpectraBatch, options: PredictOptions):
        """Catalog and candidates: the two highest p(z) peaks, each as GALAXY and as QSO."""
        k = len(self.names)
        if len(batch) == 0:
            return make_catalog(batch.meta, self.class_set, np.zeros((0, k)), np.zeros(0),
                                np.zeros(0), self.tag, zwarn=np.zeros(0, np.int64),
                                anomaly_score=np.zeros(0)), Candidates(np.zeros((0, 4)),
                                                                       np.zeros((0, 4), "U6"))
        centres = self.bin_centres.numpy()

        def decode(out):
            h = self.heads(out, only=self.z_head_)
            h["peaks"] = pz_peaks(out["zlog"].float().numpy(), centres)
            return h
        good = good_pixels(batch.flux, batch.ivar, batch.mask)
        ngood = np.add.reduce(good.view(np.uint8), axis=1, dtype=np.int64)   # faster than a bool sum
        cpu = next(self.net.parameters()).device.type == "cpu"

        def inputs(lo, hi):     # the good mask and its counts once a batch, for input, S/N, flags
            return torch.from_numpy(normalise(batch.flux[lo:hi], batch.ivar[lo:hi],
                                              good=good[lo:hi], n_good=ngood[lo:hi],
                                              channels_last=cpu))
        parts = self._forward_batches(batch, options, decode, inputs)
        logits = np.concatenate([p["logits"] for p in parts])
        emb = np.concatenate([p["emb"] for p in parts])
        h = self.z_head_
        u, s, sf, p_near, edge = (np.concatenate([p[h][i] for p in parts]) for i in range(5))
        snr = median_snr(batch.flux, batch.ivar, good, step=SNR_STEP)
        z = np.expm1(u)
        probs, changed = condition_on_redshift(softmax(logits / self.temperature_), self.names, z)
        zerr = self.zerr(h, u, s, sf, p_near, snr, self._spectypes(probs))
        zwarn = np.zeros(len(batch), np.int64)
        zwarn[changed] |= int(ZWARN.LOW_CLASS_CONFIDENCE)
        zwarn[edge] |= int(ZWARN.Z_FITLIMIT)
        zwarn[p_near < 1 - P_CATASTROPHIC_MAX] |= int(ZWARN.SMALL_DELTA_CHI2)
        zwarn[ngood == 0] |= int(ZWARN.NODATA)
        zwarn[(ngood > 0) & (snr < self.config["poor_snr"])] |= int(ZWARN.POORDATA)
        score = (MahalanobisOOD(self.ood_).score(emb) if self.ood_
                 else np.full(len(batch), np.nan, np.float32))
        zwarn[score > self.config["anomaly_threshold"]] |= int(ZWARN.ANOMALY)
        cat = make_catalog(batch.meta, self.class_set, probs, z, zerr, self.tag, zwarn=zwarn,
                           anomaly_score=score)
        zc = np.concatenate([p["peaks"] for p in parts])
        zc = np.concatenate([zc, zc], axis=1)
        types = np.repeat(np.array([["GALAXY", "QSO"]]), 2, axis=1)
        return cat, Candidates(zc, np.broadcast_to(types, zc.shape))

    def zerr(self, head, u, s, sf, p_near, snr, spectype) -> np.ndarray:
        """Calibrated ZERR of one z head's outputs: σ regression, then per-type scaling."""
        cal = SigmaCalibration(self.sigma_cal_.get(head))
        reg = SigmaRegression(self.sigma_reg_[head])
        return cal.apply(reg.apply(s, spectype, _excess(s, sf), snr, p_near), spectype) * np.exp(u)

    def set_state(self, state: dict) -> None:
        self._aug_calls, self._seed = 0, 0
        super().set_state(state)


def _fit_zerr(du, s, spectype, extra, snr, p_near):
    """σ regression, then the per-type 1σ/2σ scaling of its output (calibration module)."""
    reg = SigmaRegression().fit(du, s, spectype, extra, snr, p_near)
    return reg, SigmaCalibration().fit(du, reg.apply(s, spectype, extra, snr, p_near), spectype)


def _excess(s_loc, s_full) -> np.ndarray:
    """√(σ_full² − σ_loc²): the part of p(z)'s spread that comes from its other peaks."""
    return np.sqrt(np.maximum(np.asarray(s_full, float) ** 2 - np.asarray(s_loc, float) ** 2, 0))
