"""`gasnet`: GaSNet-style classifier over `thirteen` with redshift as a calibrated distribution.

Outputs per spectrum: class probabilities P_i (temperature-scaled), Z (the refined mode of
p(z)), ZERR (σ of p(z) near its mode, the spread of its other peaks and the spectrum's S/N,
mapped by an error model fitted on validation data so that 68 %/95 % of |Δz| fall within 1σ/2σ) and ANOMALY_SCORE (Mahalanobis distance of the embedding, 1 = the 99th
percentile of simulated spectra).  Network and heads: :mod:`.gasnet_net`; calibration:
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

import math
import time

import numpy as np
import torch

from ..calibration import MahalanobisOOD, SigmaCalibration, SigmaRegression, fit_temperature
from ..catalog import make_catalog
from ..classes import condition_on_redshift, labels, spectype_of
from ..flags import ZWARN
from ..metrics import calibration, classification_metrics, redshift_metrics, truth_labels, zerr_coverage
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch, median_snr
from ..training import StoreDataset, normalise, train
from ..training_data import class_and_logz_targets
from .base import SpectralModel, register_model
from .gasnet_net import GaSNetModule, augment, decode_bins, decode_mdn, gasnet_loss
from .speccznet import _describe, _meta_and_check

__all__ = ["GaSNet"]

#: median S/N (POORDATA flag and ZERR model, fitted and applied alike) from every 4th pixel
SNR_STEP = 4


@register_model("gasnet")
class GaSNet(SpectralModel):
    """See the module docstring; ``z_head`` ('bins' or 'mdn') is chosen on validation data."""

    version = "1"
    fit_defaults = {"epochs": 10, "batch_size": 256, "lr": 3e-3, "weight_decay": 1e-4}

    def __init__(self, class_set: str = "thirteen", grid: LogGrid = DEFAULT_GRID,
                 n_bins: int = 940, z_max: float = 5.4, augment: bool = True,
                 poor_snr: float = 1.0, anomaly_threshold: float = 3.0, **net_options):
        super().__init__(class_set, grid)
        labels(class_set)
        self.config = {"n_bins": int(n_bins), "u_range": [-0.006, math.log1p(z_max)],
                       "augment": bool(augment), "poor_snr": float(poor_snr),
                       "anomaly_threshold": float(anomaly_threshold), "net": dict(net_options),
                       "z_head": "bins", "temperature": 1.0, "sigma_cal": {}, "sigma_reg": {},
                       "ood": None}
        self.net: GaSNetModule | None = None
        self._aug_calls, self._seed, self._fused = 0, 0, None

    # -- pieces ----------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return labels(self.class_set)

    def _build(self) -> None:
        self.net = GaSNetModule(self.grid.size, len(self.names), self.config["n_bins"],
                                **self.config["net"])

    @property
    def bin_width(self) -> float:
        lo, hi = self.config["u_range"]
        return (hi - lo) / self.config["n_bins"]

    @property
    def bin_centres(self) -> torch.Tensor:
        lo = self.config["u_range"][0]
        return lo + self.bin_width * (torch.arange(self.config["n_bins"], dtype=torch.float32) + 0.5)

    def make_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        return torch.from_numpy(normalise(batch.flux, batch.ivar, batch.mask))

    def train_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        """Inputs with the physics augmentations of :func:`~.gasnet_net.augment`."""
        if not self.config["augment"]:
            return self.make_inputs(batch)
        self._aug_calls += 1
        tid = int(np.asarray(batch.meta["TARGETID"])[0]) if "TARGETID" in batch.meta.colnames else 0
        rng = np.random.default_rng([self._seed, tid % 2**31, self._aug_calls])
        f, iv, m = augment(batch.flux, batch.ivar, batch.mask, batch.loglam, rng)
        return torch.from_numpy(normalise(f, iv, m))

    def make_targets(self, batch: SpectraBatch):
        y, u = class_and_logz_targets(batch.meta, self.class_set, self.names)
        lo, hi = self.config["u_range"]
        u = np.where((u >= lo) & (u <= hi), u, np.nan)        # outside the bins: class only
        return y, torch.from_numpy(u.astype(np.float32))

    def loss(self, out, target) -> torch.Tensor:
        return gasnet_loss(out, target, self.bin_centres, self.bin_width, self.config["u_range"])

    def heads(self, out: dict) -> dict:
        """Raw network outputs → numpy: logits, embedding, and per head the tuple
        (u, σ_loc, σ_full, p_near, at_edge) of :func:`~.gasnet_net.decode_bins`."""
        bins = decode_bins(out["zlog"], out["zoff"], self.bin_centres, self.bin_width)
        peak = out["zlog"].argmax(1)
        mdn = decode_mdn(out["mdn"], self.config["u_range"])
        edge = ((peak == 0) | (peak == self.config["n_bins"] - 1)).numpy()
        return {"logits": out["cls"].float().numpy(), "emb": out["emb"].float().numpy(),
                "bins": tuple(t.numpy() for t in bins) + (edge,),
                "mdn": tuple(t.numpy() for t in mdn) + (np.zeros_like(edge),)}

    def raw(self, data, batch_size: int = 1024) -> dict:
        """:meth:`heads` over a whole store/batch (in order), concatenated, and each
        spectrum's median S/N."""
        snr = []

        def inputs(b):
            snr.append(median_snr(b.flux, b.ivar, (b.ivar > 0) & ~b.mask & np.isfinite(b.flux),
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
        return np.array([spectype_of(self.names[k]) for k in probs.argmax(1)])

    # -- calibration -------------------------------------------------------------
    def calibrate(self, val, log=print) -> dict:
        """Fit temperature, the ZERR model of both heads, the OOD model, and pick the z head."""
        meta = _meta_and_check(val, self.grid, "calibration data")
        y = np.array([self.names.index(s) if s in self.names else -1
                      for s in truth_labels(meta, self.class_set)])
        zt = np.asarray(meta["Z"], float)
        out = self.raw(val)
        t = fit_temperature(out["logits"], y)
        self.config["temperature"] = t
        probs = _softmax(out["logits"] / t)
        st = self._spectypes(probs)
        report = {"temperature": t,
                  "ECE_before": calibration(_softmax(out["logits"]), y)["ECE"],
                  "ECE_after": calibration(probs, y)["ECE"], "heads": {}}
        ut = np.log1p(zt)
        best, best_key = None, None
        self.config.setdefault("sigma_reg", {})
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
            self.config["sigma_reg"][h], self.config["sigma_cal"][h] = reg.params, cal.params
            key = (round(row["GF_0.003"], 3), -row["sigma_NMAD"])
            if best_key is None or key > best_key:
                best, best_key = h, key
        self.config["z_head"] = best
        report["z_head"] = best
        n = len(y) // 2
        ood = MahalanobisOOD().fit(out["emb"][:n], y[:n], len(self.names), out["emb"][n:])
        self.config["ood"] = ood.state
        if log:
            log(f"calibration: T={t:.3f}, ECE {report['ECE_before']:.4f} → "
                f"{report['ECE_after']:.4f}; heads {report['heads']}; keeping {best!r}")
        return report

    # -- the interface --------------------------------------------------------
    def fit(self, train_data, val=None, *, epochs: int | None = None, batch_size: int | None = None,
            lr: float | None = None, weight_decay: float | None = None, seed: int = 0,
            device="auto", checkpoint_dir=None, resume: bool = False, patience: int | None = None,
            progress: bool = True, num_workers: int = 0, log=print, **train_options) -> "GaSNet":
        """Train on a store/path/batch with CLASS_LABEL (or SDSS CLASS/SUBCLASS) and Z, then
        calibrate on ``val`` (required: calibration is part of the model)."""
        if val is None:
            raise ValueError("gasnet needs validation data (--val): its σ and class "
                             "probabilities are calibrated on it")
        opts = dict(self.fit_defaults)
        opts.update({k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                           weight_decay=weight_decay).items() if v is not None})
        meta_train = _meta_and_check(train_data, self.grid, "training data")
        if not np.isin(truth_labels(meta_train, self.class_set), self.names).any():
            raise ValueError(f"training data has no spectra labelled in class set "
                             f"{self.class_set!r} ({', '.join(self.names)})")
        _meta_and_check(val, self.grid, "validation data")
        self._seed = int(seed)
        if self.net is None:
            torch.manual_seed(seed)
            self._build()
        t0 = time.perf_counter()
        names = np.array(self.names + ("",))

        def reduce(out, target):
            h = self.heads(out)
            return (torch.from_numpy(h["logits"].argmax(1)), torch.from_numpy(h["bins"][0]),
                    torch.from_numpy(h["mdn"][0])), target

        def val_metrics(out, target):
            pred, ub, um = out
            y, u = target
            c = classification_metrics(names[y.numpy()], names[pred.numpy()], self.names)
            ok = torch.isfinite(u).numpy()
            zt = np.expm1(u.numpy()[ok])
            rb = redshift_metrics(np.expm1(ub.numpy()[ok]), zt)
            rm = redshift_metrics(np.expm1(um.numpy()[ok]), zt)
            return {"accuracy": c["accuracy"], "GF_0.003_bins": rb["GF_0.003"],
                    "GF_0.003_mdn": rm["GF_0.003"], "sigma_NMAD_bins": rb["sigma_NMAD"]}

        val_ds = StoreDataset(val, self.make_inputs, self.make_targets,
                              batch_size=opts["batch_size"], shuffle=False)
        result = train(self.net, self.loss, train_data, val_ds, make_inputs=self.train_inputs,
                       make_targets=self.make_targets, epochs=opts["epochs"],
                       batch_size=opts["batch_size"], lr=opts["lr"],
                       weight_decay=opts["weight_decay"], seed=seed, device=device,
                       checkpoint_dir=checkpoint_dir, resume=resume, patience=patience,
                       progress=progress, val_metrics_fn=val_metrics, val_reduce_fn=reduce,
                       num_workers=num_workers, log=log, **train_options)
        self.net.cpu().eval()
        self._fused = None
        cal = self.calibrate(val, log=log)
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.last)
        self.training = {"data": _describe(train_data), "val": _describe(val),
                         "n_train": int(len(meta_train)), "seed": seed, **opts,
                         "augment": self.config["augment"], "best_epoch": result.best_epoch,
                         "epochs_run": len(result.history), "device": result.device,
                         "seconds": round(time.perf_counter() - t0, 1), "history": result.history}
        self.metrics = {**{k: v for k, v in best.items() if k not in ("epoch", "lr", "seconds")},
                        "calibration": cal}
        return self

    def predict(self, batch: SpectraBatch, batch_size: int = 1024):
        if self.net is None:
            raise RuntimeError("gasnet: model is not trained; call fit() or load a model file")
        batch = self.check_batch(batch)
        self.net.eval()
        k = len(self.names)
        if len(batch) == 0:
            return make_catalog(batch.meta, self.class_set, np.zeros((0, k)), np.zeros(0),
                                np.zeros(0), self.tag, zwarn=np.zeros(0, np.int64),
                                anomaly_score=np.zeros(0))
        dev = next(self.net.parameters()).device      # where `predict --device` put the net
        if getattr(self, "_fused", None) is None or self._fused_device != dev:
            self._fused, self._fused_device = self.net.fused_trunk(), dev
        parts = []
        with torch.no_grad():
            for lo in range(0, len(batch), batch_size):
                x = self.make_inputs(batch[lo:lo + batch_size]).to(dev)
                out = self.net(x, trunk=self._fused)
                parts.append(self.heads({k: v.cpu() for k, v in out.items()}))
        logits = np.concatenate([p["logits"] for p in parts])
        emb = np.concatenate([p["emb"] for p in parts])
        h = self.config["z_head"]
        u, s, sf, p_near, edge = (np.concatenate([p[h][i] for p in parts]) for i in range(5))
        good = (batch.ivar > 0) & ~batch.mask & np.isfinite(batch.flux)
        snr = median_snr(batch.flux, batch.ivar, good, step=SNR_STEP)
        z = np.expm1(u)
        probs, changed = condition_on_redshift(_softmax(logits / self.config["temperature"]),
                                               self.names, z)
        zerr = self.zerr(h, u, s, sf, p_near, snr, self._spectypes(probs))
        zwarn = np.zeros(len(batch), np.int64)
        zwarn[changed] |= int(ZWARN.LOW_CLASS_CONFIDENCE)
        zwarn[edge] |= int(ZWARN.Z_FITLIMIT)
        zwarn[p_near < 1 - self.config.get("max_p_catastrophic", 0.3)] |= int(ZWARN.SMALL_DELTA_CHI2)
        ngood = good.sum(1)
        zwarn[ngood == 0] |= int(ZWARN.NODATA)
        zwarn[(ngood > 0) & (snr < self.config["poor_snr"])] |= int(ZWARN.POORDATA)
        score = (MahalanobisOOD(self.config["ood"]).score(emb) if self.config["ood"]
                 else np.full(len(batch), np.nan, np.float32))
        zwarn[score > self.config["anomaly_threshold"]] |= int(ZWARN.ANOMALY)
        return make_catalog(batch.meta, self.class_set, probs, z, zerr, self.tag, zwarn=zwarn,
                            anomaly_score=score)

    def zerr(self, head, u, s, sf, p_near, snr, spectype) -> np.ndarray:
        """Calibrated ZERR of one z head's outputs; files from before the σ regression
        (no ``sigma_reg``) keep their per-type scaling with the other-peaks term."""
        reg = self.config.get("sigma_reg", {}).get(head)
        cal = SigmaCalibration(self.config["sigma_cal"].get(head))
        if reg:
            sigma = cal.apply(SigmaRegression(reg).apply(s, spectype, _excess(s, sf), snr, p_near),
                              spectype)
        else:
            sigma = cal.apply(s, spectype, _excess(s, sf))
        return sigma * np.exp(u)

    def get_state(self) -> dict:
        if self.net is None:
            raise RuntimeError("gasnet: nothing to save, the model is not trained")
        # float16 on disk halves the shipped file; inference runs in float32 (set_state)
        return {"config": self.config,
                "weights": {k: (v.detach().cpu().half() if v.is_floating_point() else v.cpu())
                            for k, v in self.net.state_dict().items()}}

    def set_state(self, state: dict) -> None:
        self.config = dict(state["config"])
        self._aug_calls, self._seed, self._fused = 0, 0, None
        self._build()
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v
                                  for k, v in state["weights"].items()})
        self.net.eval()


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _fit_zerr(du, s, spectype, extra, snr, p_near):
    """σ regression, then the per-type 1σ/2σ scaling of its output (calibration module)."""
    reg = SigmaRegression().fit(du, s, spectype, extra, snr, p_near)
    return reg, SigmaCalibration().fit(du, reg.apply(s, spectype, extra, snr, p_near), spectype)


def _excess(s_loc, s_full) -> np.ndarray:
    """√(σ_full² − σ_loc²): the part of p(z)'s spread that comes from its other peaks."""
    return np.sqrt(np.maximum(np.asarray(s_full, float) ** 2 - np.asarray(s_loc, float) ** 2, 0))
