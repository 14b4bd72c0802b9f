"""Conv1d (+ folded BatchNorm) as a 1×H Conv2d on channels-last tensors, for CPU inference.

Why: oneDNN's channels-last kernels run the networks' small strided 1-D convolutions several
times faster on one CPU thread than PyTorch's Conv1d path (gasnet's trunk ≈ 170 → 70 µs a
spectrum; speccznet's one-channel Gabor bank ≈ 190 → 25 µs), and a BatchNorm in eval mode is
an affine map per channel that folds into the convolution's weights and bias (one pass over
the activations less).  The CPU inference trunks (:mod:`.gasnet.fast`, :mod:`.speccznet_fast`)
build their convolutions with :func:`conv2d_of` and keep every activation channels-last, so no
layout copy runs between layers.  Same arithmetic up to float32 rounding; inference only
(weights are copied when built).  :func:`conv_relu` applies the ReLU inside oneDNN's
convolution (a post-op: no separate pass over the output; gasnet's four convolutions ≈ 100 →
81 µs a spectrum, alternated in one process, outputs bit for bit those of conv + ReLU).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["conv2d_of", "as_channels_last", "conv_relu"]


def _pointwise_op():
    """oneDNN's fused convolution + elementwise op (the one PyTorch's inductor emits on CPU),
    or None where this build lacks it."""
    try:
        return torch.ops.mkldnn._convolution_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_CONV_POINTWISE = _pointwise_op()


def conv2d_of(conv: nn.Conv1d, bn: nn.BatchNorm1d | None = None) -> nn.Conv2d:
    """The 1×H Conv2d (channels-last weights) doing ``bn(conv(x))`` (eval mode) on
    (N, C, 1, L) tensors."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("conv2d_of: only zero-padded convolutions with numeric padding")
    m = fuse_conv_bn_eval(conv.eval(), bn.eval()) if bn is not None else conv
    c = nn.Conv2d(m.in_channels, m.out_channels, (1, m.kernel_size[0]), stride=(1, m.stride[0]),
                  padding=(0, m.padding[0]), dilation=(1, m.dilation[0]), groups=m.groups,
                  bias=m.bias is not None)
    with torch.no_grad():
        c.weight.copy_(m.weight.unsqueeze(2))
        if m.bias is not None:
            c.bias.copy_(m.bias)
    c.weight.data = c.weight.data.contiguous(memory_format=torch.channels_last)
    return c.eval()


def as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, L) of any strides → the (N, C, 1, L) channels-last tensor: a view where ``x`` is
    already (N, L, C) in memory (:func:`.inputs.normalise` with ``channels_last=True``), a copy
    otherwise."""
    h = x.unsqueeze(2)
    if not h.is_contiguous(memory_format=torch.channels_last):
        h = h.contiguous(memory_format=torch.channels_last)
    return h


def conv_relu(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """``relu(conv(h))`` with the ReLU fused into the convolution where it can be: float32 on
    the CPU, gradients off (inference), no autocast (the bf16 variant keeps its own convs);
    otherwise the two steps."""
    if (_CONV_POINTWISE is not None and h.device.type == "cpu" and h.dtype == torch.float32
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")):
        return _CONV_POINTWISE(h, conv.weight, conv.bias, list(conv.padding), list(conv.stride),
                               list(conv.dilation), conv.groups, "relu", [], "")
    return torch.relu_(conv(h))
