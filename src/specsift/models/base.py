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
from importlib import resources
from pathlib import Path

import torch
from astropy.table import Table

from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch

__all__ = ["SpectralModel", "register_model", "load_model", "available_models", "model_path",
           "model_ref"]

_REGISTRY: dict[str, type["SpectralModel"]] = {}
#: registered name → module that defines it (imported on first use: keeps the CLI fast)
_MODULES = {
    "speccznet": "specsift.models.speccznet",
    "gasnet": "specsift.models.gasnet",
    "eigen": "specsift.models.eigen",
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


class SpectralModel(ABC):
    """Base class: ``fit(train, val)``, ``predict(batch) -> Table``, ``save(path)``."""

    name: str = "base"
    version: str = "0"

    def __init__(self, class_set: str, grid: LogGrid = DEFAULT_GRID):
        self.class_set = class_set
        self.grid = grid
        self.training: dict = {}      # description of the training data and settings
        self.metrics: dict = {}       # validation metrics

    @abstractmethod
    def fit(self, train, val=None, **options) -> "SpectralModel":
        """Train on ``train`` (a SpectralStore or SpectraBatch), monitor on ``val``."""

    @abstractmethod
    def predict(self, batch: SpectraBatch) -> Table:
        """Return the standard catalog (see :func:`specsift.catalog.make_catalog`)."""

    @abstractmethod
    def get_state(self) -> dict:
        """Everything needed to rebuild the model (config and weights)."""

    @abstractmethod
    def set_state(self, state: dict) -> None:
        """Inverse of :meth:`get_state`."""

    @property
    def tag(self) -> str:
        return f"{self.name}-{self.version}"

    def check_batch(self, batch: SpectraBatch) -> SpectraBatch:
        """Resample a batch onto the model's grid when it is on another one."""
        if self.grid.matches(batch.loglam):
            return batch
        return batch.resample(self.grid)

    def save(self, path) -> Path:
        """Write the model file atomically (tensors and JSON-able metadata only)."""
        from .. import torchfile
        return torchfile.save({"format": FILE_FORMAT, "model": self.name, "version": self.version,
                               "class_set": self.class_set, "grid": self.grid.to_dict(),
                               "training": self.training, "metrics": self.metrics,
                               "state": self.get_state()}, path)

    @classmethod
    def load(cls, path, class_set: str | None = None, grid: LogGrid | None = None):
        return load_model(path, class_set=class_set, grid=grid)


def _bundled(name: str) -> Path | None:
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
        bundled = _bundled(ref)
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
    return model
