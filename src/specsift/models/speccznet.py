"""`speccznet`: SpecCZ-Net, a 1-D CNN that classifies a spectrum and measures its redshift.

Architecture (see docs/speccznet.md)::

    input (N, 2, 4076): normalised flux, log1p(S/N per scaled-flux unit)   [models.inputs.normalise]
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

import dataclasses
import math

import numpy as np
import torch
from astropy.table import Table
from torch import nn
from torch.nn import functional as F

from ..catalog import make_catalog
from ..classes import spectype_of
from ..constants import C_KMS
from ..flags import ZWARN
from ..metrics import classification_metrics, redshift_metrics
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from ..training_data import StoreDataset
from ..verify.candidates import Candidates
from .base import PredictOptions, register_model
from .inputs import normalise
from .layers import ConvSEBlock, GaborConv1d
from .neural import NeuralSpectralModel, decode_window
from .speccznet_fast import SpecCZTrunk
from .star_head import head_for, refine_star_rows

__all__ = ["SpecCZNet", "SpecCZNetModule"]


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

    def forward(self, x: torch.Tensor, trunk: nn.Module | None = None):
        """``trunk``: a module standing in for ``reduce ∘ blocks ∘ front`` (the CPU inference
        one of :mod:`.speccznet_fast`), the heads after it as ever."""
        h = trunk(x) if trunk is not None else self.reduce(self.blocks(self.front(x)))
        e = self.embed(h)
        hz = F.relu(torch.einsum("nh,khz->nkz", e, self.zw1) + self.zb1)
        zlog = torch.einsum("nkz,kzb->nkb", hz, self.zw2) + self.zb2
        return self.cls(e), zlog


@register_model("speccznet")
class SpecCZNet(NeuralSpectralModel):
    """SpecCZ-Net behind the common interface (see module docstring)."""

    version = "1"
    capabilities = dataclasses.replace(NeuralSpectralModel.capabilities,
                                       candidates="the z of each of the two most probable "
                                                  "classes' own p(z), each reaching "
                                                  "±4.5 bins (its own z window)",
                                       star_velocity=True)
    module_class = SpecCZNetModule
    z_window = 4
    fit_defaults = {"epochs": 30, "batch_size": 128, "lr": 2e-3, "weight_decay": 1e-4}
    #: one global factor on the window's σ (:meth:`calibrate_zerr`)
    fitted_defaults = {"zerr_scale": 1.0}

    def __init__(self, class_set: str = "five", grid: LogGrid = DEFAULT_GRID, n_bins: int = 400,
                 z_max: float | None = None, **net_options):
        super().__init__(class_set, grid, {"n_bins": int(n_bins), "z_max": z_max,
                                           "net": dict(net_options)})

    # -- pieces shared by fit, predict and explain -----------------------------
    def _build(self) -> None:
        self.config["u_range"] = [-0.01, math.log1p(self.config["z_max"]) + 0.02]
        super()._build()

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
        peak, u, var, pw = decode_window(mix, self.bin_centres, self.z_window,
                                         self.bin_width ** 2 / 12)
        z = torch.expm1(u)
        zerr = torch.exp(u) * torch.sqrt(var) * float(self.zerr_scale_)
        zwarn = torch.zeros(n, dtype=torch.int64)
        zwarn[(peak == 0) | (peak == b - 1)] |= int(ZWARN.Z_FITLIMIT)
        zwarn[pw.sum(dim=1) < 0.5] |= int(ZWARN.SMALL_DELTA_CHI2)   # z not unique
        return probs.numpy(), z.numpy(), zerr.numpy(), zwarn.numpy()

    def calibrate_zerr(self, data, quantile: float = 0.6827, batch_size: int = 512) -> float:
        """Scale ZERR so that a fraction ``quantile`` of ``data`` (labelled, e.g. the
        validation set) has |Δz| < ZERR.  Why: the branch distributions are trained against a
        1-bin Gaussian, so their width says little about the error of their mean; one global
        factor makes the 1σ coverage right on average (per-spectrum calibration is later work).
        Rows it calls STAR are left out where the star head gives their ZERR in ``predict``
        (:func:`.star_head.head_for`, the test predict itself uses)."""
        self.zerr_scale_ = 1.0
        ds = StoreDataset(data, self.make_inputs, self.make_targets, batch_size=batch_size,
                          shuffle=False)
        ratios = []
        # rows predict will call STAR take their ZERR from the star head, not from this factor
        star = np.array([spectype_of(c) == "STAR" for c in self.names]) \
            if head_for(self) is not None \
            else np.zeros(len(self.names), bool)
        self.net.eval()
        with torch.no_grad():
            for x, (y, u) in ds:
                probs, z, zerr, _ = self.decode(*self.net(x))
                ok = (y.numpy() >= 0) & np.isfinite(u.numpy()) & (zerr > 0) \
                    & ~star[probs.argmax(1)]
                ratios.append(np.abs(z - np.expm1(u.numpy()))[ok] / zerr[ok])
        r = np.concatenate(ratios) if ratios else np.zeros(0)
        scale = float(np.clip(np.quantile(r, quantile), 0.02, 50.0)) if r.size else 1.0
        self.zerr_scale_ = scale
        return scale

    # -- the interface --------------------------------------------------------
    def _before_fit(self, meta_train, val, seed: int) -> None:
        if self.net is None and self.config["z_max"] is None:
            z = np.asarray(meta_train["Z"], float) if "Z" in meta_train.colnames else np.zeros(1)
            z = z[np.isfinite(z)]
            self.config["z_max"] = float(max(0.5, 1.05 * z.max() if z.size else 0.5))

    def _val_reduce(self, out, target):
        probs, z, _, _ = self.decode(*out)
        return (torch.from_numpy(probs.argmax(1)), torch.from_numpy(z)), target

    def _val_metrics(self, out, target) -> dict:
        pred, z = out
        y, u = target
        names = np.array(self.names + ("",))
        c = classification_metrics(names[y.numpy()], names[pred.numpy()], self.names)
        ok = torch.isfinite(u).numpy() & (y.numpy() >= 0)
        r = redshift_metrics(z.numpy()[ok], np.expm1(u.numpy()[ok]))
        return {"accuracy": c["accuracy"], "macro_f1": c["macro_f1"],
                "GF_0.01": r["GF_0.01"], "NMAE": r["NMAE"], "sigma_NMAD": r["sigma_NMAD"]}

    def _calibrate(self, val, log) -> dict:
        self.calibrate_zerr(val)
        return {}

    def _inference_trunk(self, device: torch.device) -> nn.Module | None:
        """On the CPU the channels-last trunk of :mod:`.speccznet_fast`; elsewhere none."""
        return SpecCZTrunk(self.net) if device.type == "cpu" else None

    def _predict(self, batch: SpectraBatch, options: PredictOptions) -> Table:
        """:meth:`_propose`'s catalog, its STAR rows with the star head's velocity (its p(z)
        bins are 1390 km/s wide; verification proposes without it, answers as before)."""
        cat = self._propose(batch, options)[0]
        refine_star_rows(self, batch, cat, self.z_reach * C_KMS)
        return cat

    def _propose(self, batch: SpectraBatch, options: PredictOptions):
        """Catalog and candidates: the z of the two most probable classes' own branches."""
        def decode(out):
            per_class = torch.expm1(self.bin_centres[out[1].argmax(dim=2)]).numpy()
            return self.decode(*out) + (per_class,)
        cpu = next(self.net.parameters()).device.type == "cpu"

        def inputs(lo, hi):             # channels-last in memory on the CPU: the trunk's layout
            return torch.from_numpy(normalise(batch.flux[lo:hi], batch.ivar[lo:hi],
                                              batch.mask[lo:hi], channels_last=cpu))
        parts = self._forward_batches(batch, options, decode, inputs)
        k = len(self.names)
        if parts:
            probs, z, zerr, zwarn, zc = (np.concatenate(a) for a in zip(*parts))
        else:
            probs, z, zerr, zwarn = np.zeros((0, k)), np.zeros(0), np.zeros(0), np.zeros(0, np.int64)
            zc = np.zeros((0, k))
        cat = make_catalog(batch.meta, self.class_set, probs, z, zerr, self.tag, zwarn=zwarn)
        top = np.argsort(-probs, axis=1)[:, :2]
        types = np.array([spectype_of(c) for c in self.names], dtype="U6")
        # each candidate is a bin centre, and the model's z the mean of p(z) over ±z_window
        # bins around its peak: the verification window covers that span (bins 1390 km/s wide)
        return cat, Candidates(np.take_along_axis(zc, top, axis=1), types[top], self.z_reach)
