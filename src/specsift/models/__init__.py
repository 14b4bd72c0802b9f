"""Models behind one interface (see :mod:`specsift.models.base`)."""

from .base import SpectralModel, available_models, load_model, register_model

__all__ = ["SpectralModel", "available_models", "load_model", "register_model"]
