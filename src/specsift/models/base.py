"""One interface for every model, a registry of names, and model files that know
what they were trained for.

A model file (``torch.save`` of a dict) records the model name and version, the class
set, the wavelength grid, a description of the training data, validation metrics and
the model's own state.  Loading a file made for another grid or class set than the
caller asks for fails with a message that says so.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path

import torch
from astropy.table import Table

from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch

__all__ = ["SpectralModel", "register_model", "load_model", "available_models"]

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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FILE_FORMAT, "model": self.name, "version": self.version,
                    "class_set": self.class_set, "grid": self.grid.to_dict(),
                    "training": self.training, "metrics": self.metrics,
                    "state": self.get_state()}, path)
        return path

    @classmethod
    def load(cls, path, class_set: str | None = None, grid: LogGrid | None = None):
        return load_model(path, class_set=class_set, grid=grid)


def _bundled(name: str) -> Path | None:
    p = resources.files("specsift") / "data" / "models" / f"{name}.pt"
    return Path(str(p)) if p.is_file() else None


def load_model(name_or_path, class_set: str | None = None,
               grid: LogGrid | None = None) -> SpectralModel:
    """Load a model file, or the pretrained model shipped under a registered name.

    ``class_set`` / ``grid``, when given, must match what the file was made for.
    """
    path = Path(name_or_path)
    if not path.exists():
        bundled = _bundled(str(name_or_path))
        if bundled is None:
            if str(name_or_path) in _MODULES:
                raise FileNotFoundError(f"no pretrained weights are bundled for model "
                                        f"{name_or_path!r}; train one with `specsift train`")
            raise FileNotFoundError(f"{name_or_path}: no such model file or registered model")
        path = bundled
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise ValueError(f"{path}: not a specsift model file ({exc.__class__.__name__}: {exc})") from None
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
