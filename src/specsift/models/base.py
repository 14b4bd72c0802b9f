"""One interface for every model, a registry of names, and model files that know
what they were trained for.

A model file (``torch.save`` of a dict) records the model name and version, the class
set, the wavelength grid, a description of the training data, validation metrics and
the model's own state.  Loading a file made for another grid or class set than the
caller asks for fails with a message that says so.

Model files hold tensors and plain data only and are read with ``weights_only=True``
(:mod:`specsift.torchfile`): loading a file never runs code from it.  Names are looked up in
a fixed order: a registered name always means the bundled model (a file called ``gasnet`` in
the working directory cannot stand in for it); anything else is a file only when it looks
like a path (has a directory separator or ends in ``.pt``).
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

import torch
from astropy.table import Table

from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from ..verify.candidates import Candidates

__all__ = ["SpectralModel", "Capabilities", "PredictOptions", "NotFittedError", "TRAIN_OPTIONS",
           "register_model", "load_model", "available_models", "model_path", "model_ref",
           "bundled_path"]

_REGISTRY: dict[str, type["SpectralModel"]] = {}
#: registered name → module that defines it (imported on first use: keeps the CLI fast)
_MODULES = {
    "speccznet": "specsift.models.speccznet",
    "gasnet": "specsift.models.gasnet.model",
    "eigen": "specsift.models.eigen.model",
    "vgg1d": "specsift.models.vgg1d",
}
FILE_FORMAT = "specsift-model-1"


def register_model(name: str):
    """Class decorator: make a model loadable by ``name``."""
    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def available_models() -> list[str]:
    return sorted(_MODULES)


def model_class(name: str) -> type["SpectralModel"]:
    if name not in _REGISTRY:
        if name not in _MODULES:
            raise ValueError(f"unknown model {name!r}; registered: {', '.join(available_models())}")
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]


#: options ``specsift train`` may pass to every model's ``fit`` (a model ignores, with a
#: warning where that matters, those it has no use for: closed-form eigen has no learning rate)
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "device",
                 "checkpoint_dir", "resume", "patience", "num_workers", "progress", "trainable")


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, declared on its class and read by pipeline/ and commands/
    (never discovered by inspecting signatures or probing attributes).

    A new capability is a new field whose default means "no", so models that do not
    declare it need no change.
    """

    chi2_curves: bool = False             #: ``PredictOptions(save_chi2=True)`` is allowed
    torch_net: bool = False               #: ``model.net`` is the torch network it predicts with
    devices: tuple[str, ...] = ("cpu",)   #: torch device types ``prepare`` accepts
    precisions: tuple[str, ...] = ("fp32",)   #: inference variants ``prepare`` accepts
    #: what :meth:`SpectralModel.propose` offers the verification stage (:mod:`specsift.verify`)
    #: beyond the catalog's own (SPECTYPE, Z): documentation, every model proposes
    candidates: str = "the catalog's own (SPECTYPE, Z)"
    #: ``predict`` gives the rows it calls STAR the fine velocity of the star head
    #: (:mod:`specsift.models.star_head`) as Z and ZERR, and the verification stage's SUBTYPE
    #: naming at that Z (``star_head.name_star_rows``) — where the bundled head is installed
    #: and fits the model's grid (``star_head.head_for``), and row by row where the head can
    #: measure the star within the network's own reach; ``propose`` (verification) does not
    star_velocity: bool = False


@dataclass(frozen=True)
class PredictOptions:
    """Per-call choices of :meth:`SpectralModel.predict` (one signature for every model)."""

    save_chi2: bool = False               #: add the χ²(z) curve columns (``chi2_curves`` models)
    batch_size: int | None = None         #: spectra per forward pass; None: the model's default

    @classmethod
    def of(cls, options: "PredictOptions | dict | None") -> "PredictOptions":
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        return cls(**dict(options))


class NotFittedError(RuntimeError):
    """A model used before ``fit`` or ``load_model`` gave it its fitted state."""


class SpectralModel(ABC):
    """The contract every model keeps (scikit-learn's, for spectra).

    * hyperparameters: the constructor's arguments (kept in ``config`` and plain
      attributes), never changed by ``fit``;
    * fitted state: attributes whose names end in ``_`` (and a network's weights), set by
      ``fit`` or by ``set_state`` when a model file is loaded; :meth:`check_is_fitted`;
    * what the model can do: the class attribute :attr:`capabilities`;
    * ``fit(train, val, **options)`` takes every name in :data:`TRAIN_OPTIONS`;
    * ``predict(batch, *, options)`` validates at the boundary (options against the
      capabilities, the batch's grid) and hands the model's own :meth:`_predict` a batch
      on its grid;
    * ``prepare(device, threads, precision)`` puts it in inference shape.
    """

    name: str = "base"
    version: str = "0"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, class_set: str, grid: LogGrid = DEFAULT_GRID):
        self.class_set = class_set
        self.grid = grid
        self.training: dict = {}      # description of the training data and settings
        self.metrics: dict = {}       # validation metrics
        self.device = torch.device("cpu")   # where prepare() put the model (runtime, not saved)

    @abstractmethod
    def fit(self, train, val=None, **options) -> "SpectralModel":
        """Train on ``train`` (a SpectralStore or SpectraBatch), monitor on ``val``."""

    def predict(self, batch: SpectraBatch, *, options: PredictOptions | dict | None = None) -> Table:
        """Return the standard catalog (see :func:`specsift.catalog.make_catalog`)."""
        opts = self.check_options(options)
        self.check_is_fitted()
        return self._predict(self.check_batch(batch), opts)

    def check_options(self, options: PredictOptions | dict | None) -> PredictOptions:
        """``options`` as PredictOptions, refused where they ask for what the model's
        :attr:`capabilities` do not declare (the pipeline calls this before any work)."""
        opts = PredictOptions.of(options)
        if opts.save_chi2 and not self.capabilities.chi2_curves:
            raise ValueError(f"model {self.tag} computes no χ² curves; --save-chi2 needs a "
                             f"χ² model such as 'eigen'")
        return opts

    @abstractmethod
    def _predict(self, batch: SpectraBatch, options: PredictOptions) -> Table:
        """The model's own prediction, on a batch already on :attr:`grid`."""

    def propose(self, batch: SpectraBatch, *, options: PredictOptions | dict | None = None
                ) -> tuple[Table, Candidates]:
        """:meth:`predict`'s catalog and candidate (SPECTYPE, z) solutions for the
        verification stage (:mod:`specsift.verify`), from one pass of the model."""
        opts = self.check_options(options)
        self.check_is_fitted()
        return self._propose(self.check_batch(batch), opts)

    def _propose(self, batch: SpectraBatch, options: PredictOptions) -> tuple[Table, Candidates]:
        """Default: the catalog's answer is the one candidate.  Models that know more (p(z)
        peaks, χ² minima) override this and compute both in one pass."""
        table = self._predict(batch, options)
        return table, Candidates.from_catalog(table)

    @abstractmethod
    def is_fitted(self) -> bool:
        """Whether the fitted state is there (``fit`` ran or a model file was loaded)."""

    def check_is_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{self.name}: model is not trained; call fit() or load a "
                                 f"model file")

    @abstractmethod
    def get_state(self) -> dict:
        """Everything needed to rebuild the model (config and weights)."""

    @abstractmethod
    def set_state(self, state: dict) -> None:
        """Inverse of :meth:`get_state`."""

    def catalog_meta(self, options: PredictOptions | dict | None = None) -> dict:
        """Catalog header entries describing what ``predict(options=...)`` added (e.g. the
        z grid of χ² curves); the predict pipeline writes them into the file's header."""
        return {}

    def prepare(self, device="cpu", threads: int | None = None, precision: str = "fp32"):
        """Put the model in inference shape: torch thread count, device, precision variant.

        ``threads`` holds torch *and numpy's BLAS* to that many threads for the rest of the
        process (torch's setting is process-wide too; an idle BLAS pool spinning between
        products costs CPU time for no work): a library caller who wants BLAS back wraps the
        call in ``threadpoolctl.threadpool_limits``.  Devices and precisions are checked
        against :attr:`capabilities`; returns ``self``.
        """
        if threads:
            torch.set_num_threads(int(threads))
            _limit_blas(int(threads))
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but torch sees no CUDA device")
        if dev.type not in self.capabilities.devices:
            raise ValueError(f"model {self.tag} cannot run on {device}")
        if precision not in self.capabilities.precisions:
            raise ValueError(f"model {self.tag} has no {precision!r} variant (it has "
                             f"{', '.join(self.capabilities.precisions)})")
        self._prepare(dev, precision)
        self.device = dev
        return self

    def _prepare(self, device: torch.device, precision: str) -> None:
        """Model-specific part of :meth:`prepare` (models with a network move it)."""

    @property
    def tag(self) -> str:
        """``gasnet-3`` for a bundled model; a model file trained by a user adds its own
        name and hash (``gasnet-3:my@1a2b3c4d5e6f``), so its catalogs never pass for the
        bundled model's."""
        own = getattr(self, "file_label", None)
        return f"{self.name}-{self.version}" + (f":{own}" if own else "")

    def check_batch(self, batch: SpectraBatch) -> SpectraBatch:
        """Resample a batch onto the model's grid when it is on another one; a specutils
        Spectrum (or list of them) is converted onto that grid first."""
        if not isinstance(batch, SpectraBatch):
            from ..specutils_io import is_specutils
            if is_specutils(batch):
                return SpectraBatch.from_specutils(batch, grid=self.grid)
        if self.grid.matches(batch.loglam):
            return batch
        return batch.resample(self.grid)

    def save(self, path) -> Path:
        """Write the model file atomically (tensors and JSON-able metadata only); ``name``
        (the file's stem) is the user's name for it, part of its tag once loaded."""
        from .. import torchfile
        return torchfile.save({"format": FILE_FORMAT, "model": self.name, "version": self.version,
                               "class_set": self.class_set, "grid": self.grid.to_dict(),
                               "training": self.training, "metrics": self.metrics,
                               "name": Path(path).stem, "state": self.get_state()}, path)

    @classmethod
    def load(cls, path, class_set: str | None = None, grid: LogGrid | None = None):
        return load_model(path, class_set=class_set, grid=grid)


def bundled_path(name: str) -> Path | None:
    """The model file shipped in the package for ``name``, or None where this install has none
    (a source checkout may lack the trained weights; callers fall back or say so)."""
    p = resources.files("specsift") / "data" / "models" / f"{name}.pt"
    return Path(str(p)) if p.is_file() else None


def _looks_like_path(ref: str) -> bool:
    seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(c in ref for c in seps) or ref.lower().endswith(".pt")


def model_path(name_or_path) -> Path:
    """The file behind ``name_or_path``: a registered name's bundled weights first; a
    ``Path`` object or a string that looks like a path (separator, or ``.pt``) as a file."""
    if isinstance(name_or_path, os.PathLike):
        ref, is_path = os.fspath(name_or_path), True
    else:
        ref = str(name_or_path)
        is_path = ref not in _MODULES and _looks_like_path(ref)
    if not is_path:
        if ref not in _MODULES:
            hint = (f"; to load the file {ref!r} in this directory, pass ./{ref}"
                    if Path(ref).is_file() else "")
            raise ValueError(f"unknown model {ref!r}; registered: "
                             f"{', '.join(available_models())}, or give a model file path{hint}")
        bundled = bundled_path(ref)
        if bundled is None:
            raise FileNotFoundError(f"no pretrained weights are bundled for model {ref!r}; "
                                    f"train one with `specsift train`")
        return bundled
    path = Path(ref).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{ref}: no such model file"
                                + (" (it is a directory)" if path.is_dir() else ""))
    return path


def model_ref(name_or_path) -> str:
    """A reference another process loads to the same model: the registered name, or the
    absolute path of the file (so a worker started elsewhere finds the same file)."""
    path = model_path(name_or_path)
    if not isinstance(name_or_path, os.PathLike) and str(name_or_path) in _MODULES:
        return str(name_or_path)
    return str(path.resolve())


def load_model(name_or_path, class_set: str | None = None,
               grid: LogGrid | None = None) -> SpectralModel:
    """Load a model file, or the pretrained model shipped under a registered name.

    ``class_set`` / ``grid``, when given, must match what the file was made for.
    """
    from .. import torchfile
    path = model_path(name_or_path)
    blob = torchfile.load(path)
    if not isinstance(blob, dict) or blob.get("format") != FILE_FORMAT:
        raise ValueError(f"{path}: not a specsift model file (format {FILE_FORMAT!r} expected)")
    file_grid = LogGrid(**blob["grid"])
    if class_set is not None and class_set != blob["class_set"]:
        raise ValueError(f"{path}: model was trained for class set {blob['class_set']!r}, "
                         f"not {class_set!r}")
    if grid is not None and grid != file_grid:
        raise ValueError(f"{path}: model was trained on grid {file_grid}, not {grid}")
    cls = model_class(blob["model"])
    model = cls.__new__(cls)
    SpectralModel.__init__(model, blob["class_set"], file_grid)
    model.version = blob["version"]
    model.training, model.metrics = blob["training"], blob["metrics"]
    model.set_state(blob["state"])
    _record_file(model, path, blob.get("name"))
    return model


def _sha256(path: Path) -> str:
    """The file's sha256, read anew on every load: a memo keyed by the file's stat could give
    a stale hash for a same-size file rewritten within one timestamp tick (MODELSHA and the
    model's label would then name weights that are not the ones loaded), and a CLI run loads
    its model once.  The bundled file's hash is remembered (``_BUNDLED_SHA``): it is the
    package's own file."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_BUNDLED_SHA: dict[str, str | None] = {}


def _record_file(model: SpectralModel, path: Path, name: str | None) -> None:
    """Which file the weights came from and its sha256 (catalog provenance).  A file that is
    not the bundled one (by content: a copy of it, e.g. on a Dask worker, still is) gets
    a label, its saved name (else the file name) and hash, that goes into its tag."""
    model.file_path, model.file_sha256 = str(path), _sha256(path)
    if model.name not in _BUNDLED_SHA:
        bundled = bundled_path(model.name)
        _BUNDLED_SHA[model.name] = None if bundled is None else _sha256(bundled)
    if model.file_sha256 != _BUNDLED_SHA[model.name]:
        model.file_label = f"{name or Path(path).stem}@{model.file_sha256[:12]}"


def _limit_blas(threads: int) -> None:
    """numpy's BLAS on at most ``threads`` threads too, for the rest of the process, as torch.

    Why: a run asked for one thread (``--threads 1``, the speed benchmarks) still had
    OpenBLAS's worker thread, which after every large enough numpy product outside the
    verification stage (the line fits, the calibration heads) spins for a while waiting for
    more work: 0.25-0.37 CPU-s of a 2000-spectrum predict run (``benchmarks/predict_speed.py``)
    were that thread, counted as the process's CPU time for no gain in wall time."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=threads, user_api="blas")
