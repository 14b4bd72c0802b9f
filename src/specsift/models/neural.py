"""What the classifier+redshift networks (``gasnet``, ``speccznet``) share.

Both read the same input (:func:`.inputs.normalise`), learn the class and u = ln(1+z)
over ``n_bins`` bins of ``config["u_range"]``, train with :func:`specsift.training.train`
and predict in batches; they differ in the network, the loss, the decoding and the
calibration, which each subclass supplies.  Redshift from a binned p(u) is decoded by one
function, :func:`decode_window`, with each model's window declared on its class.
"""

from __future__ import annotations

import time
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from ..classes import labels
from ..spectra import LogGrid, SpectraBatch
from ..training_data import StoreDataset, class_and_logz_targets
from .base import Capabilities, PredictOptions, SpectralModel
from .inputs import normalise
from .precision import PRECISIONS, variant

__all__ = ["NeuralSpectralModel", "decode_window", "row_argmax", "meta_and_check", "describe_data"]


def decode_window(p: torch.Tensor, pos: torch.Tensor, window: int, var_floor: float):
    """Binned p(u) → the probability-weighted mean over ±``window`` bins around its peak.

    ``p`` (N, B) probabilities; ``pos`` the u of every bin, (B,) or per spectrum (N, B).
    Returns ``(peak, u, var, pw)``: the peak bin, the window mean, the window's variance plus
    ``var_floor`` (the bins' own resolution) and the window's probabilities (N, 2·window+1),
    zero where the window runs off the grid.  Why a window and not the whole p(u): the mean
    of a multi-peaked p(u) falls between the peaks, at a redshift nothing supports.
    """
    n, b = p.shape
    peak = row_argmax(p)
    offs = torch.arange(-window, window + 1)
    raw = peak[:, None] + offs[None]
    idx = raw.clamp(0, b - 1)
    valid = (raw >= 0) & (raw < b)
    pw = p.gather(1, idx) * valid
    mass = pw.sum(dim=1).clamp_min(1e-12)
    uw = pos.gather(1, idx) if pos.dim() == 2 else pos[idx]
    u = (pw * uw).sum(1) / mass
    var = (pw * (uw - u[:, None]) ** 2).sum(1) / mass + var_floor
    return peak, u, var, pw


def row_argmax(t: torch.Tensor) -> torch.Tensor:
    """``t.argmax(dim=1)`` of a 2-D tensor, by numpy where it can (on the CPU, no gradient):
    the same indices (the first of equal maxima, as torch), but torch's CPU argmax is a
    scalar loop, ≈ 2.3 µs a spectrum of gasnet's 940 bins against numpy's ≈ 0.3."""
    if t.device.type == "cpu" and not t.requires_grad and t.dtype in (torch.float32,
                                                                      torch.float64):
        return torch.from_numpy(t.numpy().argmax(1))
    return t.argmax(dim=1)


class NeuralSpectralModel(SpectralModel):
    """Base of the networks over binned ln(1+z).

    A subclass declares :attr:`module_class` (its ``nn.Module``, built as
    ``module_class(npix, n_classes, n_bins, **config["net"])``), :attr:`z_window`,
    :attr:`fit_defaults`, :attr:`fitted_defaults` (its fitted state: each key becomes the
    attribute ``<key>_``) and implements ``loss``, ``decode_outputs``, ``_predict``,
    ``_val_reduce``/``_val_metrics`` and ``_calibrate``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(torch_net=True, devices=("cpu", "cuda"),
                                                        precisions=PRECISIONS)
    module_class: ClassVar[type[nn.Module]]
    #: bins each side of the peak used for Z and ZERR (:func:`decode_window`)
    z_window: ClassVar[int]
    #: defaults that `specsift train` uses when the user gives none
    fit_defaults: ClassVar[dict] = {}
    #: fitted state (calibration) and its value before fitting
    fitted_defaults: ClassVar[dict] = {}
    #: spectra per forward pass in predict (on an accelerator)
    predict_batch_size: ClassVar[int] = 512
    #: spectra per forward pass on the CPU.  Why smaller: a forward pass of 1024 spectra
    #: streams every intermediate activation through main memory (gasnet's first conv alone
    #: writes 67 MB), 128 keep them in the core's caches — gasnet's ``propose`` ≈ 410 → 305,
    #: speccznet's ≈ 1640 → 680 µs a spectrum on one thread, with outputs bit for bit the
    #: same (each spectrum's arithmetic does not depend on its neighbours in eval mode;
    #: tests/test_forward_batches.py)
    cpu_batch_size: ClassVar[int] = 128
    #: dtype of floating-point weights on disk (None: as trained)
    weights_dtype: ClassVar[torch.dtype | None] = None

    def __init__(self, class_set: str, grid: LogGrid, config: dict):
        super().__init__(class_set, grid)
        labels(class_set)
        self.config = config
        self.net: nn.Module | None = None
        self._trunk: tuple | None = None          # (device, trunk) of :meth:`_forward`
        self._reset_fitted()

    def _reset_fitted(self, values: dict | None = None) -> None:
        values = values or {}
        for key, default in self.fitted_defaults.items():
            v = values.get(key, default)
            setattr(self, key + "_", dict(v) if isinstance(v, dict) else v)

    # -- pieces shared by fit, predict and explain -----------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return labels(self.class_set)

    def _build(self) -> None:
        self.net = self.module_class(self.grid.size, len(self.names), self.config["n_bins"],
                                     **self.config["net"])

    @property
    def bin_width(self) -> float:
        lo, hi = self.config["u_range"]
        return (hi - lo) / self.config["n_bins"]

    @property
    def z_reach(self) -> float:
        """How far in u = ln(1+z) the network's z may lie from the truth: the ±``z_window``
        bins its z is averaged over, half a bin beyond — the reach of its candidates and of
        the star head's velocity check (:func:`.star_head.refine_star_rows`)."""
        return (self.z_window + 0.5) * self.bin_width

    @property
    def bin_centres(self) -> torch.Tensor:
        lo = self.config["u_range"][0]
        return lo + self.bin_width * (torch.arange(self.config["n_bins"], dtype=torch.float32) + 0.5)

    def make_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        return self._array_inputs(batch.flux, batch.ivar, batch.mask)

    @staticmethod
    def _array_inputs(flux, ivar, mask) -> torch.Tensor:
        """The default network input from the pixel arrays alone (no batch, no meta): what
        :meth:`make_inputs` and :meth:`_inputs_of` both give."""
        return torch.from_numpy(normalise(flux, ivar, mask))

    def train_inputs(self, batch: SpectraBatch) -> torch.Tensor:
        """Training inputs (a model with augmentations overrides this)."""
        return self.make_inputs(batch)

    def make_targets(self, batch: SpectraBatch):
        y, u = class_and_logz_targets(batch.meta, self.class_set, self.names)
        return y, torch.from_numpy(self._u_targets(u).astype(np.float32))

    def _u_targets(self, u: np.ndarray) -> np.ndarray:
        """u = ln(1+z) targets as trained on (NaN: redshift not learnt from this spectrum)."""
        return u

    def is_fitted(self) -> bool:
        return self.net is not None

    def _prepare(self, device: torch.device, precision: str) -> None:
        if device.type != "cpu":
            self.net.to(device)
        self.net.eval()
        self.net = variant(self.net, precision)
        self._trunk = None

    # -- fit ---------------------------------------------------------------------
    def fit(self, train_data, val=None, *, seed: int = 0, log: Callable | None = print,
            **options) -> "NeuralSpectralModel":
        """Train on a SpectralStore / store path / SpectraBatch whose meta has CLASS_LABEL
        (or SDSS CLASS/SUBCLASS) and Z, then calibrate on ``val``.  ``epochs``,
        ``batch_size``, ``lr`` and ``weight_decay`` left unset take :attr:`fit_defaults`;
        the other options go to :func:`specsift.training.train`."""
        from ..metrics import truth_labels
        from ..training import train, trainable_prefixes

        given = {k: options.pop(k, None) for k in ("epochs", "batch_size", "lr", "weight_decay")}
        opts = {**self.fit_defaults, **{k: v for k, v in given.items() if v is not None}}
        meta_train = meta_and_check(train_data, self.grid, "training data")
        if not np.isin(truth_labels(meta_train, self.class_set), self.names).any():
            raise ValueError(f"training data has no spectra labelled in class set "
                             f"{self.class_set!r} ({', '.join(self.names)})")
        if val is not None:
            meta_and_check(val, self.grid, "validation data")
        self._before_fit(meta_train, val, seed)
        self._trainable = trainable_prefixes(options.get("trainable"))
        if self._trainable is not None and self.net is None:
            raise ValueError(f"trainable={self._trainable!r} freezes the rest of an untrained "
                             f"network: start from a trained model (--init MODEL.pt)")
        if self.net is None:
            torch.manual_seed(seed)
            self._build()
        t0 = time.perf_counter()
        val_ds = None
        if val is not None:       # validation always sees plain (not augmented) inputs
            val_ds = StoreDataset(val, self.make_inputs, self.make_targets,
                                  batch_size=opts["batch_size"], shuffle=False,
                                  chunk_size=options.get("chunk_size", 512),
                                  buffer_chunks=options.get("buffer_chunks", 4),
                                  indices=options.pop("val_indices", None))
        result = train(self.net, self.loss, train_data, val_ds, make_inputs=self.train_inputs,
                       make_targets=self.make_targets, epochs=opts["epochs"],
                       batch_size=opts["batch_size"], lr=opts["lr"],
                       weight_decay=opts["weight_decay"], seed=seed,
                       val_metrics_fn=self._val_metrics if val is not None else None,
                       val_reduce_fn=self._val_reduce, log=log, **options)
        self.net.cpu().eval()
        self._trunk = None                        # made from the weights before training
        extra = self._calibrate(val, log) if val is not None else {}
        best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.last)
        self.training = {"data": describe_data(train_data),
                         "val": describe_data(val) if val is not None else None,
                         "n_train": int(len(meta_train)), "seed": seed, **opts,
                         **self._training_extra(), "best_epoch": result.best_epoch,
                         "epochs_run": len(result.history),
                         "stopped_early": result.stopped_early, "device": result.device,
                         "seconds": round(time.perf_counter() - t0, 1), "history": result.history}
        self.metrics = {**{k: v for k, v in best.items() if k not in ("epoch", "lr", "seconds")},
                        **extra}
        return self

    def _before_fit(self, meta_train, val, seed: int) -> None:
        """Checks and settings that depend on the training data (before the net is built)."""

    def _training_extra(self) -> dict:
        """Model-specific entries of :attr:`training`."""
        return {}

    def _calibrate(self, val, log) -> dict:
        """Fit the calibration (fitted state) on ``val``; returns entries for :attr:`metrics`."""
        return {}

    # -- predict -----------------------------------------------------------------
    def _forward(self, x: torch.Tensor):
        """The network on ``x``, with :meth:`_inference_trunk`'s module for ``x``'s device
        standing in for its trunk where the model has one: made on first use and kept
        until the weights or the device change (:meth:`_prepare`, :meth:`set_state`,
        :meth:`fit` drop it)."""
        dev = x.device
        if self._trunk is None or self._trunk[0] != dev:
            self._trunk = (dev, self._inference_trunk(dev))
        trunk = self._trunk[1]
        return self.net(x) if trunk is None else self.net(x, trunk=trunk)

    def _inference_trunk(self, device: torch.device) -> nn.Module | None:
        """A module the network's ``forward(x, trunk=...)`` runs in place of its own trunk
        at inference on ``device`` (its weights copied from the network's: BatchNorm
        folded, another memory layout); None: the network as it is."""
        return None

    def _forward_batches(self, batch: SpectraBatch, options: PredictOptions,
                         decode: Callable, inputs: Callable | None = None) -> list:
        """``decode(outputs on the CPU)`` of every mini-batch of ``batch``, in order;
        ``inputs(lo, hi)``: the network input of spectra ``lo:hi`` where the model makes it
        otherwise than :meth:`_inputs_of` (from arrays it computed for the whole batch)."""
        self.net.eval()
        dev = next(self.net.parameters()).device      # where `predict --device` put the net
        size = options.batch_size or (self.cpu_batch_size if dev.type == "cpu"
                                      else self.predict_batch_size)
        parts = []
        with torch.no_grad():
            for lo in range(0, len(batch), size):
                x = (inputs(lo, lo + size) if inputs is not None
                     else self._inputs_of(batch, lo, lo + size)).to(dev)
                parts.append(decode(_to_cpu(self._forward(x))))
        return parts

    def _inputs_of(self, batch: SpectraBatch, lo: int, hi: int) -> torch.Tensor:
        """:meth:`make_inputs` of the spectra ``lo:hi`` of ``batch``.  Why not
        ``make_inputs(batch[lo:hi])``: slicing a batch slices its astropy meta table too, on
        every mini-batch of every prediction (eight a batch of 1024), which the default input
        (:func:`.inputs.normalise`: flux, ivar and mask only) never reads.
        A model with its own :meth:`make_inputs` still gets the sliced batch."""
        if type(self).make_inputs is NeuralSpectralModel.make_inputs:
            return self._array_inputs(batch.flux[lo:hi], batch.ivar[lo:hi], batch.mask[lo:hi])
        return self.make_inputs(batch[lo:hi])

    # -- state ---------------------------------------------------------------------
    def get_state(self) -> dict:
        self.check_is_fitted()
        dt = self.weights_dtype
        return {"config": self.config,
                "fitted": {k: getattr(self, k + "_") for k in self.fitted_defaults},
                "weights": {k: (v.detach().cpu().to(dt) if dt is not None and v.is_floating_point()
                                else v.detach().cpu())
                            for k, v in self.net.state_dict().items()}}

    def set_state(self, state: dict) -> None:
        config = dict(state["config"])
        # files written before fitted state had its own entry keep it in "config" (the
        # bundled ones do)
        fitted = dict(state.get("fitted") or {k: config.pop(k) for k in self.fitted_defaults
                                               if k in config})
        for k in self.fitted_defaults:
            config.pop(k, None)
        self.config = config
        self._reset_fitted(fitted)
        self._trunk = None
        self._build()
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v
                                  for k, v in state["weights"].items()})
        self.net.eval()


def _to_cpu(out):
    if isinstance(out, dict):
        return {k: v.cpu() for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(o.cpu() for o in out)
    return out.cpu()


def meta_and_check(data, grid: LogGrid, what: str):
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


def describe_data(data) -> str:
    if isinstance(data, SpectraBatch):
        return f"in-memory batch of {len(data)} spectra"
    return str(getattr(data, "path", data))

