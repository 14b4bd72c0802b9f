"""`speccznet`: SpecCZ-Net, a 1-D CNN that classifies a spectrum and measures its redshift.

Architecture (see docs/speccznet.md)::

    input (N, 2, 4076): normalised flux, log1p(S/N per scaled-flux unit)   [training.normalise]
    Gabor bank on the flux channel (3 widths × 4 frequencies × 2 phases = 21 filters, stride 2)
      ⊕ the noise channel, average-pooled to the same length → BatchNorm
    5 × ConvSEBlock (residual conv-BN-ReLU-conv-BN + squeeze-excitation, stride 2 each)
    1×1 conv → flatten (keeps *where* features are: redshift is a shift) → dense 256
    ├─ classification head: logits over the class set
    └─ one redshift branch per class: logits over B bins of u = ln(1+z)
final p(u) = Σ_k P(k) p_k(u) (the branches gated by the class probabilities); Z from the
probability-weighted mean of u in a ±4-bin window around the peak of p(u), ZERR from the
width of that window's distribution (⊕ bin width/√12), times one factor fitted on the
validation set so that 68 % of it has |Δz| < ZERR (:meth:`SpecCZNet.calibrate_zerr`).

Why bins in ln(1+z): a shift in ln λ is exactly ln(1+z), so one bin is the same number of
pixels at every redshift; a distribution (not one number) keeps the alternatives when lines
could be misidentified, and its width gives ZERR.  Training: cross-entropy for the class
plus, for the *true* class's branch, cross-entropy against a Gaussian (σ = 1 bin) around
the true u and an L1 term on the branch's mean u (sub-bin precision).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from astropy.table import Table
from torch import nn
from torch.nn import functional as F

from ..catalog import make_catalog
from ..classes import labels
from ..flags import ZWARN
from ..metrics import classification_metrics, redshift_metrics, truth_labels
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from ..training import _to, normalise, train
from ..training_data import class_and_logz_targets
from .base import SpectralModel, register_model
from .layers import ConvSEBlock, GaborConv1d

__all__ = ["SpecCZNet", "SpecCZNetModule"]

WINDOW = 4          # bins each side of the peak used for Z and ZERR


class SpecCZNetModule(nn.Module):
    """The network; ``forward(x) -> (class_logits (N, K), z_logits (N, K, B))``."""

    def __init__(self, npix: int, n_classes: int, n_bins: int = 400,
                 widths=(24, 32, 48, 64, 96), kernels=(5, 5, 3, 3, 3), head_channels: int = 32,
                 hidden: int = 256, z_hidden: int = 128, dropout: float = 0.2,
                 gabor_learnable: bool = True):
        super().__init__()
        self.gabor = GaborConv1d(stride=2, learnable=gabor_learnable)
        self.bn_g = nn.BatchNorm1d(self.gabor.out_channels)
        c = self.gabor.out_channels + 1
        blocks = []
        for w, k in zip(widths, kernels):
            blocks.append(ConvSEBlock(c, w, k, stride=2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.reduce = nn.Sequential(nn.Conv1d(c, head_channels, 1), nn.ReLU())
        length = math.ceil(math.ceil(npix / 2) / 2)
        for _ in widths:
            length = math.ceil(length / 2)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(head_channels * length, hidden),
                                   nn.ReLU(), nn.Dropout(dropout))
        self.cls = nn.Linear(hidden, n_classes)
        self.zw1 = nn.Parameter(torch.randn(n_classes, hidden, z_hidden) / math.sqrt(hidden))
        self.zb1 = nn.Parameter(torch.zeros(n_classes, z_hidden))
        self.zw2 = nn.Parameter(torch.randn(n_classes, z_hidden, n_bins) / math.sqrt(z_hidden))
        self.zb2 = nn.Parameter(torch.zeros(n_classes, n_bins))

    def front(self, x: torch.Tensor) -> torch.Tensor:
        """Gabor responses of the flux (stride 2, then ReLU + max-pool 2: a cheap line-energy
        detector) ⊕ the average-pooled noise channel: (N, 16, ⌈P/4⌉)."""
        g = self.gabor(x[:, :1])
        g = F.max_pool1d(F.relu(self.bn_g(g)), 2, 2, ceil_mode=True)
        noise = F.avg_pool1d(x[:, 1:2], 4, 4, ceil_mode=True)
        return torch.cat([g, noise], dim=1)

    def forward(self, x: torch.Tensor):
        h = self.reduce(self.blocks(self.front(x)))
        e = self.embed(h)
        hz = F.relu(torch.einsum("nh,khz->nkz", e, self.zw1) + self.zb1)
        zlog = torch.einsum("nkz,kzb->nkb", hz, self.zw2) + self.zb2
        return self.cls(e), zlog


@register_model("speccznet")
class SpecCZNet(SpectralModel):
    """SpecCZ-Net behind the common interface (see module docstring)."""

    version = "1"
    #: defaults that `specsift train` uses when the user gives none
    fit_defaults = {"epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4}

    def __init__(self, class_set: str = "five", grid: LogGrid = DEFAULT_GRID, n_bins: int = 400,
                 z_max: float | None = None, **net_options):
        super().__init__(class_set, grid)
        labels(class_set)
        self.config = {"n_bins": int(n_bins), "z_max": z_max, "net": dict(net_options)}
        self.net: SpecCZNetModule | None = None

    # -- pieces shared by fit, predict and explain -----------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return labels(self.class_set)

    def _build(self) -> None:
        cfg = self.config
        u_max = math.log1p(cfg["z_max"]) + 0.02
        cfg["u_range"] = [-0.01, u_max]
        self.net = SpecCZNetModule(self.grid.size, len(self.names), cfg["n_bins"], **cfg["net"])

    @property
    def bin_centres(self) -> torch.Tensor:
        lo, hi = self.config["u_range"]
        w = (hi - lo) / self.config["n_bins"]
        return lo + w * (torch.arange(self.config["n_bins"], dtype=torch.float32) + 0.5)

    @property
    def bin_width(self) -> float:
        lo, hi = self.config["u_range"]
        return (hi - lo) / self.config["n_bins"]

    def make_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        return torch.from_numpy(normalise(batch.flux, batch.ivar, batch.mask))

    def make_targets(self, batch: SpectraBatch):
        y, u = class_and_logz_targets(batch.meta, self.class_set, self.names)
        return y, torch.from_numpy(u.astype(np.float32))

    def loss(self, out, target) -> torch.Tensor:
        logits, zlog = out
        y, u = target
        known = y >= 0
        loss = F.cross_entropy(logits[known], y[known]) if known.any() else logits.sum() * 0
        ok = known & torch.isfinite(u)
        if ok.any():
            centres = self.bin_centres.to(zlog.device)
            w = self.bin_width
            zl = zlog[ok, y[ok]]                                   # true class's branch
            q = torch.exp(-0.5 * ((centres[None] - u[ok, None]) / w) ** 2)
            q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-12)
            logp = F.log_softmax(zl, dim=1)
            mean_u = (logp.exp() * centres[None]).sum(dim=1)
            loss = loss + (-(q * logp).sum(dim=1)).mean() \
                + 0.05 * ((mean_u - u[ok]).abs() / w).mean()
        return loss

    def decode(self, logits: torch.Tensor, zlog: torch.Tensor):
        """Network outputs → (class probabilities, z, zerr, zwarn bits) as numpy arrays."""
        probs = torch.softmax(logits.float(), dim=1)
        pz = torch.softmax(zlog.float(), dim=2)
        mix = (probs[:, :, None] * pz).sum(dim=1)                # gated mixture p(u)
        n, b = mix.shape
        peak = mix.argmax(dim=1)
        offs = torch.arange(-WINDOW, WINDOW + 1)
        idx = (peak[:, None] + offs[None]).clamp(0, b - 1)
        valid = ((peak[:, None] + offs[None]) >= 0) & ((peak[:, None] + offs[None]) < b)
        pw = mix.gather(1, idx) * valid
        mass = pw.sum(dim=1).clamp_min(1e-12)
        uc = self.bin_centres[idx]
        u = (pw * uc).sum(dim=1) / mass
        su = torch.sqrt((pw * (uc - u[:, None]) ** 2).sum(dim=1) / mass
                        + self.bin_width ** 2 / 12)
        z = torch.expm1(u)
        zerr = torch.exp(u) * su * float(self.config.get("zerr_scale", 1.0))
        zwarn = torch.zeros(n, dtype=torch.int64)
        zwarn[(peak == 0) | (peak == b - 1)] |= int(ZWARN.Z_FITLIMIT)
        zwarn[pw.sum(dim=1) < 0.5] |= int(ZWARN.SMALL_DELTA_CHI2)   # z not unique
        return probs.numpy(), z.numpy(), zerr.numpy(), zwarn.numpy()

    def calibrate_zerr(self, data, quantile: float = 0.6827, batch_size: int = 512) -> float:
        """Scale ZERR so that a fraction ``quantile`` of ``data`` (labelled, e.g. the
        validation set) has |Δz| < ZERR.  Why: the branch distributions are trained against a
        1-bin Gaussian, so their width says little about the error of their mean; one global
        factor makes the 1σ coverage right on average (per-spectrum calibration is later work)."""
        from ..training import StoreDataset
        self.config["zerr_scale"] = 1.0
        ds = StoreDataset(data, self.make_inputs, self.make_targets, batch_size=batch_size,
                          shuffle=False)
        ratios = []
        self.net.eval()
        with torch.no_grad():
            for x, (y, u) in ds:
                _, z, zerr, _ = self.decode(*self.net(x))
                ok = (y.numpy() >= 0) & np.isfinite(u.numpy()) & (zerr > 0)
                ratios.append(np.abs(z - np.expm1(u.numpy()))[ok] / zerr[ok])
        r = np.concatenate(ratios) if ratios else np.zeros(0)
        scale = float(np.clip(np.quantile(r, quantile), 0.02, 50.0)) if r.size else 1.0
        self.config["zerr_scale"] = scale
        return scale

    # -- the interface --------------------------------------------------------
    def fit(self, train_data, val=None, *, epochs: int | None = None, batch_size: int | None = None,
            lr: float | None = None, weight_decay: float | None = None, seed: int = 0,
            device="auto", checkpoint_dir=None, resume: bool = False, patience: int | None = None,
            progress: bool = True, num_workers: int = 0, max_epochs_this_run: int | None = None,
            log=print, **train_options) -> "SpecCZNet":
        """Train on a SpectralStore / store path / SpectraBatch whose meta has CLASS_LABEL
        (or SDSS CLASS/SUBCLASS) and Z.  Unset options take :attr:`fit_defaults`."""
        opts = dict(self.fit_defaults)
        opts.update({k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                           weight_decay=weight_decay).items() if v is not None})
        meta_train = _meta_and_check(train_data, self.grid, "training data")
        y_all = truth_labels(meta_train, self.class_set)
        if not np.isin(y_all, self.names).any():
            raise ValueError(f"training data has no spectra labelled in class set "
                             f"{self.class_set!r} ({', '.join(self.names)})")
        if val is not None:
            _meta_and_check(val, self.grid, "validation data")
        if self.net is None:
            if self.config["z_max"] is None:
                z = np.asarray(meta_train["Z"], float) if "Z" in meta_train.colnames else np.zeros(1)
                z = z[np.isfinite(z)]
                self.config["z_max"] = float(max(0.5, 1.05 * z.max() if z.size else 0.5))
            torch.manual_seed(seed)
            self._build()
        t0 = time.perf_counter()

        def reduce(out, target):
            probs, z, _, _ = self.decode(*out)
            return (torch.from_numpy(probs.argmax(1)), torch.from_numpy(z)), target

        def val_metrics(out, target):
            pred, z = out
            y, u = target
            names = np.array(self.names + ("",))
            c = classification_metrics(names[y.numpy()], names[pred.numpy()], self.names)
            ok = torch.isfinite(u).numpy() & (y.numpy() >= 0)
            r = redshift_metrics(z.numpy()[ok], np.expm1(u.numpy()[ok]))
            return {"accuracy": c["accuracy"], "macro_f1": c["macro_f1"],
                    "GF_0.01": r["GF_0.01"], "NMAE": r["NMAE"], "sigma_NMAD": r["sigma_NMAD"]}

        result = train(self.net, self.loss, train_data, val, make_inputs=self.make_inputs,
                       make_targets=self.make_targets, epochs=opts["epochs"],
                       batch_size=opts["batch_size"], lr=opts["lr"],
                       weight_decay=opts["weight_decay"], seed=seed, device=device,
                       checkpoint_dir=checkpoint_dir, resume=resume, patience=patience,
                       progress=progress, val_metrics_fn=val_metrics if val is not None else None,
                       val_reduce_fn=reduce, num_workers=num_workers,
                       max_epochs_this_run=max_epochs_this_run, log=log, **train_options)
        self.net.cpu().eval()
        if val is not None:
            self.calibrate_zerr(val)
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.last)
        self.training = {"data": _describe(train_data), "val": _describe(val) if val is not None else None,
                         "n_train": int(len(meta_train)), "seed": seed, **opts,
                         "best_epoch": result.best_epoch, "epochs_run": len(result.history),
                         "stopped_early": result.stopped_early, "device": result.device,
                         "seconds": round(time.perf_counter() - t0, 1), "history": result.history}
        self.metrics = {k: v for k, v in best.items() if k not in ("epoch", "lr", "seconds")}
        return self

    def predict(self, batch: SpectraBatch, batch_size: int = 512) -> Table:
        if self.net is None:
            raise RuntimeError("speccznet: model is not trained; call fit() or load a model file")
        batch = self.check_batch(batch)
        self.net.eval()
        dev = next(self.net.parameters()).device      # where `predict --device` put the net
        parts = []
        with torch.no_grad():
            for lo in range(0, len(batch), batch_size):
                sub = batch[lo:lo + batch_size]
                out = self.net(_to(self.make_inputs(sub), dev))
                parts.append(self.decode(*(o.cpu() for o in out)))
        if parts:
            probs, z, zerr, zwarn = (np.concatenate(a) for a in zip(*parts))
        else:
            k = len(self.names)
            probs, z, zerr, zwarn = np.zeros((0, k)), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
        return make_catalog(batch.meta, self.class_set, probs, z, zerr, self.tag, zwarn=zwarn)

    def get_state(self) -> dict:
        if self.net is None:
            raise RuntimeError("speccznet: nothing to save, the model is not trained")
        return {"config": self.config,
                "weights": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}

    def set_state(self, state: dict) -> None:
        self.config = dict(state["config"])
        self._build()
        self.net.load_state_dict(state["weights"])
        self.net.eval()


def _meta_and_check(data, grid: LogGrid, what: str):
    """Metadata of a store/path/batch, after checking it is on the model's grid."""
    from ..io.store import SpectralStore
    if isinstance(data, SpectraBatch):
        loglam, meta, name = data.loglam, data.meta, "batch"
    else:
        store = data if isinstance(data, SpectralStore) else SpectralStore(data, "r")
        try:
            loglam, name = store.loglam, str(store.path)
            cols = [c for c in ("CLASS_LABEL", "CLASS", "SUBCLASS", "SPECTYPE", "SUBTYPE", "Z")
                    if c in store.meta_columns]
            meta = store.read_meta(cols)
        finally:
            if store is not data:
                store.close()
    if not grid.matches(loglam):
        try:
            theirs = str(LogGrid.from_loglam(loglam))
        except ValueError:
            theirs = f"an irregular grid of {len(loglam)} px"
        raise ValueError(f"{what} {name}: spectra are on {theirs}, the model expects {grid}; "
                         f"resample them (specsift convert)")
    return meta


def _describe(data) -> str:
    if isinstance(data, SpectraBatch):
        return f"in-memory batch of {len(data)} spectra"
    return str(getattr(data, "path", data))
