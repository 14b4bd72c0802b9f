"""CPU inference variants of a network: bf16 autocast and int8 dynamic quantisation.

Why opt-in (``specsift predict --precision``): each variant must keep the accuracy of the
unoptimised model (GF(0.003) on the simulated test within 0.002); ``benchmarks/
predict_speed.py`` measures speed and that accuracy for each, per model, and
docs/scaling.md says which one holds for the default model.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["PRECISIONS", "variant"]

PRECISIONS = ("fp32", "bf16", "int8")


def _to_float32(x):
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _to_float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float32(v) for v in x)
    return x


class _Autocast(nn.Module):
    """Runs the wrapped network under CPU bf16 autocast; outputs back in float32 so the
    model's post-processing (numpy) is unchanged."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.inner = net

    def forward(self, *args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.inner(*args, **kwargs)
        return _to_float32(out)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


def variant(net: nn.Module, precision: str = "fp32") -> nn.Module:
    """``net`` (eval mode) for inference at ``precision``: itself, a bf16-autocast wrapper or
    an int8 dynamically quantised copy (Linear layers)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    net.eval()
    if precision == "fp32":
        return net
    if precision == "bf16":
        return _Autocast(net)
    with warnings.catch_warnings():           # the eager-mode API is deprecated, still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)

