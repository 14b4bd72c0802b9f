"""specsift: classify, redshift and find anomalies in millions of astronomical spectra."""

from .spectra import DEFAULT_GRID, LogGrid, SpectraBatch

__version__ = "0.1.0"
__all__ = ["SpectraBatch", "LogGrid", "DEFAULT_GRID", "load_model", "read", "__version__"]


def load_model(name_or_path, **kwargs):
    """Load a model file or a bundled pretrained model by name (imports torch lazily)."""
    from .models.base import load_model as _load
    return _load(name_or_path, **kwargs)


def read(paths, **kwargs):
    """Read spectra files into one SpectraBatch (see :func:`specsift.io.read`)."""
    from .io import read as _read
    return _read(paths, **kwargs)
