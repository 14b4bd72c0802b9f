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

__all__ = ["PRECISIONS", "variant", "channels_last_convs"]

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


class _ChannelsLast2d(nn.Module):
    """A run of Conv1d (+ ReLU) layers evaluated as 1×H convolutions on channels-last 4-D
    tensors: the same arithmetic, but oneDNN's channels-last kernels run these small strided
    1-D convolutions 2–6× faster on one CPU thread than PyTorch's Conv1d path (gasnet's trunk:
    ≈ 170 → 70 µs a spectrum).  Input and output are ordinary (N, C, L) tensors."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        mods = []
        for m in layers:
            if isinstance(m, nn.Conv1d):
                c = nn.Conv2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]),
                              stride=(1, m.stride[0]), padding=(0, m.padding[0]),
                              dilation=(1, m.dilation[0]), groups=m.groups,
                              bias=m.bias is not None)
                with torch.no_grad():
                    c.weight.copy_(m.weight.unsqueeze(2))
                    if m.bias is not None:
                        c.bias.copy_(m.bias)
                c.weight.data = c.weight.data.contiguous(memory_format=torch.channels_last)
                mods.append(c)
            else:
                mods.append(m)
        self.body = nn.Sequential(*mods).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return self.body(x).squeeze(2).contiguous()


def channels_last_convs(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` (an eval-mode CPU trunk) with its leading run of Conv1d / ReLU layers as one
    :class:`_ChannelsLast2d` block; the rest (squeeze-excitation, 1×1 conv, flatten) as it
    was.  Same outputs to float rounding; inference only (weights are copied)."""
    mods = list(seq)
    k = 0
    while k < len(mods) and (isinstance(mods[k], nn.Conv1d) and mods[k].padding_mode == "zeros"
                             or isinstance(mods[k], nn.ReLU)):
        k += 1
    if not any(isinstance(m, nn.Conv1d) for m in mods[:k]):
        return seq
    return nn.Sequential(_ChannelsLast2d(mods[:k]), *mods[k:]).eval()
