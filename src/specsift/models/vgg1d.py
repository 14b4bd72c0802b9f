"""`vgg1d`: the 12-layer VGG-like 1-D CNN of the LAMOST emission-line-star active-learning work
(Škoda, Podsztavek et al. 2020): conv 64-64, pool, 128-128, pool, 256-256, pool, dense 512,
dropout, dense 512, dropout, softmax.

The network looks at a *window* of the spectrum, not the survey's whole grid: each input is
resampled (flux-conserving, from the spectrum's own wavelengths) onto the window grid and
min-max scaled to [−1, 1], so a LAMOST, SDSS or Ondřejov spectrum all give the same input.
Their setup — and the default — is 140 log-λ pixels (step 1e-4, the LAMOST pixel) from
6519 Å to ≈6732 Å around Hα.  ``window=None`` uses the whole of ``full_grid`` instead.
``width`` scales every layer's channel count (1.0 = the paper's net; the CPU benchmark uses
smaller widths and says so).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..catalog import make_catalog
from ..classes import CLASS_SETS, labels
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from .base import Capabilities, PredictOptions, SpectralModel, register_model
from .precision import PRECISIONS, variant

__all__ = ["VGG1D", "VGG1DNet", "window_grid", "minmax_scale", "HALPHA_WINDOW"]

#: (first wavelength Å, number of pixels, log10 step) of the Hα window of the paper.
HALPHA_WINDOW = (6519.0, 140, 1e-4)


def window_grid(start: float = HALPHA_WINDOW[0], npix: int = HALPHA_WINDOW[1],
                step: float = HALPHA_WINDOW[2]) -> LogGrid:
    """Log-λ grid of ``npix`` pixels starting at ``start`` Å (default: Hα window 6519–6732 Å)."""
    return LogGrid(math.log10(start), step, int(npix))


def minmax_scale(flux: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-spectrum min-max scaling to [−1, 1] over good pixels; bad pixels set to 0.

    Why: the paper feeds shapes, not fluxes — scaling removes brightness and units so a
    faint Be star and a bright one look alike.  A flat or empty spectrum maps to zeros.
    """
    f = np.atleast_2d(np.asarray(flux, np.float32))
    good = np.isfinite(f) if mask is None else (~np.atleast_2d(mask) & np.isfinite(f))
    lo = np.where(good, f, np.inf).min(axis=1, keepdims=True)
    hi = np.where(good, f, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    scaled = np.where(ok, 2.0 * (f - np.where(ok, lo, 0)) / np.where(ok, span, 1) - 1.0, 0.0)
    return np.where(good, scaled, 0.0).astype(np.float32)


class VGG1DNet(nn.Module):
    """The network: three double-conv blocks (kernel 3, ReLU) with max-pool, two dense layers."""

    def __init__(self, npix: int, n_classes: int, width: float = 1.0, dense: int = 512,
                 dropout: float = 0.5):
        super().__init__()
        ch = [max(4, int(round(c * width))) for c in (64, 128, 256)]
        dense = max(8, int(round(dense * width)))
        layers, c_in, n = [], 1, npix
        for c in ch:
            layers += [nn.Conv1d(c_in, c, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv1d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool1d(2)]
            c_in, n = c, n // 2
        if n < 1:
            raise ValueError(f"vgg1d window of {npix} px is too short for three pooling steps")
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(c_in * n, dense), nn.ReLU(inplace=True),
                                   nn.Dropout(dropout), nn.Linear(dense, dense),
                                   nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.head = nn.Linear(dense, n_classes)

    def forward(self, x: torch.Tensor, return_embedding: bool = False):
        if x.dim() == 2:
            x = x[:, None, :]
        e = self.embed(self.features(x))
        logits = self.head(e)
        return (logits, e) if return_embedding else logits


@register_model("vgg1d")
class VGG1D(SpectralModel):
    """Classifier over a configurable class set (default ``ondrejov``) on an Hα window.

    ``fit(train, val)`` takes SpectraBatch/SpectralStore whose ``meta[label_column]`` holds
    class names (or integer indices); unlabelled rows ('' or −1) are ignored.
    """

    version = "1"
    #: predicts on the CPU (inputs are built there); precision variants of its network
    capabilities = Capabilities(torch_net=True, precisions=PRECISIONS)

    def __init__(self, class_set: str = "ondrejov", window: tuple | None = HALPHA_WINDOW,
                 full_grid: LogGrid = DEFAULT_GRID, width: float = 1.0, dropout: float = 0.5,
                 class_labels: tuple[str, ...] | None = None, seed: int = 0):
        if class_labels is not None:           # a custom scheme: register it under its name
            CLASS_SETS.setdefault(class_set, tuple(class_labels))
        self.labels = labels(class_set)
        grid = window_grid(*window) if window is not None else full_grid
        super().__init__(class_set, grid)
        self.config = {"window": list(window) if window is not None else None,
                       "width": float(width), "dropout": float(dropout),
                       "labels": list(self.labels)}
        torch.manual_seed(seed)
        self.net = VGG1DNet(grid.size, len(self.labels), width=width, dropout=dropout)

    # -- inputs ----------------------------------------------------------------
    def to_window(self, batch: SpectraBatch) -> SpectraBatch:
        """Resample from the spectrum's own wavelengths onto the window grid (once per batch)."""
        return self.check_batch(batch)

    def make_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        b = self.to_window(batch)
        return torch.from_numpy(minmax_scale(b.flux, b.mask))

    def targets_of(self, meta, label_column: str) -> np.ndarray:
        """Class indices from a label column (names or ints); −1 where unlabelled/unknown."""
        col = np.asarray(meta[label_column])
        if col.dtype.kind in "iu":
            y = col.astype(np.int64)
            y[(y < 0) | (y >= len(self.labels))] = -1
            return y
        lookup = {name.upper(): k for k, name in enumerate(self.labels)}
        return np.array([lookup.get(str(v).strip().upper(), -1) for v in col], np.int64)

    # -- training --------------------------------------------------------------
    def fit(self, train, val=None, label_column: str = "LABEL", epochs: int = 20,
            batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
            class_weight: str | None = "balanced", progress: bool = False, device="auto",
            checkpoint_dir=None, resume: bool = False, log=None, **options) -> "VGG1D":
        """Train with :func:`specsift.training.train`; rare classes weighted up by default.

        Why balanced weights: with 1 % emission stars an unweighted net learns to say
        'absorption' always; inverse-frequency weights keep the rare classes visible.
        """
        from ..training import train as run_training

        train_b = self._labelled_window(train, label_column)
        val_b = self._labelled_window(val, label_column) if val is not None else None
        y = np.asarray(train_b.meta["_Y"])
        counts = np.bincount(y, minlength=len(self.labels)).astype(np.float64)
        if class_weight == "balanced":
            w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
        else:
            w = np.ones(len(self.labels))
        weight = torch.tensor(w, dtype=torch.float32)

        def loss_fn(out, target):
            return nn.functional.cross_entropy(out, target, weight=weight.to(out.device))

        def make_inputs(b):
            return torch.from_numpy(minmax_scale(b.flux, b.mask))

        def make_targets(b):
            return torch.from_numpy(np.asarray(b.meta["_Y"], np.int64))

        def val_metrics(out, target):
            return {"val_acc": float((out.argmax(1) == target).float().mean())}

        result = run_training(self.net, loss_fn, train_b, val_b, make_inputs=make_inputs,
                              make_targets=make_targets, epochs=epochs, batch_size=batch_size,
                              lr=lr, weight_decay=weight_decay, seed=seed, device=device,
                              progress=progress, checkpoint_dir=checkpoint_dir, resume=resume,
                              val_metrics_fn=val_metrics if val_b is not None else None,
                              log=log, **options)
        self.net.cpu()
        self.training = {"n_train": len(train_b), "class_counts": counts.astype(int).tolist(),
                         "epochs": epochs, "label_column": label_column, "seed": seed}
        if result.history:
            self.metrics = {k: v for k, v in result.history[-1].items() if k != "seconds"}
        return self

    def _labelled_window(self, data, label_column: str) -> SpectraBatch:
        if not isinstance(data, SpectraBatch):       # a store: labelled sets are small
            data = data.read(slice(0, len(data)))
        if label_column not in data.meta.colnames:
            raise ValueError(f"training data has no {label_column!r} column with class labels")
        y = self.targets_of(data.meta, label_column)
        keep = np.flatnonzero(y >= 0)
        if keep.size == 0:
            raise ValueError(f"no spectra with a label of class set {self.class_set!r} "
                             f"({', '.join(self.labels)}) in column {label_column!r}")
        w = self.to_window(data[keep])
        w.meta = w.meta.copy()
        w.meta["_Y"] = y[keep]
        return w

    # -- inference -------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, batch: SpectraBatch, return_embedding: bool = False,
                      batch_size: int = 1024):
        """Class probabilities (N, K) float32, optionally with the penultimate embedding."""
        self.net.eval()
        x = self.make_inputs(batch)
        probs, embs = [], []
        for lo in range(0, len(x), batch_size):
            logits, e = self.net(x[lo:lo + batch_size], return_embedding=True)
            probs.append(torch.softmax(logits, 1).numpy())
            if return_embedding:
                embs.append(e.numpy())
        p = np.concatenate(probs) if probs else np.zeros((0, len(self.labels)), np.float32)
        if return_embedding:
            e = np.concatenate(embs) if embs else np.zeros((0, self.net.head.in_features), np.float32)
            return p.astype(np.float32), e.astype(np.float32)
        return p.astype(np.float32)

    def _predict(self, batch: SpectraBatch, options: PredictOptions):
        p = self.predict_proba(batch, batch_size=options.batch_size or 1024)
        n = len(batch)
        return make_catalog(batch.meta, self.class_set, p, np.zeros(n), np.full(n, -1.0), self.tag)

    def is_fitted(self) -> bool:
        # the seeded initial network already predicts (the active loop's cold start)
        return self.net is not None

    def _prepare(self, device, precision: str) -> None:
        self.net.eval()
        self.net = variant(self.net, precision)

    # -- persistence -----------------------------------------------------------
    def get_state(self) -> dict:
        return {"config": self.config, "weights": {k: v.cpu() for k, v in self.net.state_dict().items()}}

    def set_state(self, state: dict) -> None:
        cfg = state["config"]
        CLASS_SETS.setdefault(self.class_set, tuple(cfg["labels"]))
        self.labels = tuple(cfg["labels"])
        self.config = cfg
        self.net = VGG1DNet(self.grid.size, len(self.labels), width=cfg["width"],
                            dropout=cfg["dropout"])
        self.net.load_state_dict(state["weights"])
        self.net.eval()
