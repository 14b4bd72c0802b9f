"""``gasnet``: the model (``model``: fit, calibration, predict, state) and its network,
redshift heads, loss and augmentations (``net``)."""

from .model import GaSNet

__all__ = ["GaSNet"]
