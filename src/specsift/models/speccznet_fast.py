"""speccznet's feature trunk for CPU inference: channels-last from the input to the last block.

Why: on one CPU thread the eager network spent most of its ~870 µs a spectrum outside
arithmetic: its one-channel Gabor bank ran through PyTorch's Conv1d path (≈ 190 µs for
0.8 M multiply-adds; oneDNN's channels-last kernel: ≈ 25 µs), and eleven BatchNorms and the
ReLUs each made one more pass over large activations.  Here every convolution is a 1×H
Conv2d on channels-last tensors with its BatchNorm folded in (:mod:`.channels_last`), the
Gabor filters are computed once (they are fixed at inference), and pooling, the residual
sums and the squeeze-excitations run on the same layout; only the small output of the 1×1
``reduce`` convolution (32 channels × 32 positions) is laid out as (N, C, L) again for the
flatten.  :meth:`.speccznet.SpecCZNetModule.forward` takes it in place of its own front,
blocks and reduce, so its heads are unchanged.

Same outputs as the eval-mode network up to float32 rounding (tests/test_nfast_fast_trunk.py);
inference only: weights are copied when it is built and the squeeze-excitations'
``last_weights`` (for explanations) are not kept.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .channels_last import as_channels_last, conv2d_of, conv_relu

__all__ = ["SpecCZTrunk"]


class SpecCZTrunk(nn.Module):
    """``front → blocks → reduce`` of a :class:`.speccznet.SpecCZNetModule`, channels-last
    (module docstring): (N, 2, P) of any strides → (N, C, L) as the module's own."""

    def __init__(self, net: nn.Module):
        super().__init__()
        net = net.eval()
        g = net.gabor
        bank = nn.Conv1d(1, g.out_channels, g.kernel_size, stride=g.stride,
                         padding=g.kernel_size // 2, bias=False)
        with torch.no_grad():
            bank.weight.copy_(g.kernels()[:, None, :])
        self.gabor = conv2d_of(bank, net.bn_g)
        self.blocks = nn.ModuleList(_Block(b) for b in net.blocks)
        reduce = [m for m in net.reduce if isinstance(m, nn.Conv1d)]
        if len(reduce) != 1 or len(net.reduce) != 2 or not isinstance(net.reduce[1], nn.ReLU):
            raise ValueError("SpecCZTrunk: reduce must be one 1×1 Conv1d and a ReLU")
        self.reduce = conv2d_of(reduce[0])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = as_channels_last(x)                                   # (N, 2, 1, P)
        g = conv_relu(self.gabor, h[:, :1])
        n, c, _, length = g.shape
        # Gabor responses ⊕ noise written into one channels-last tensor (no cat + copy)
        h = torch.empty((n, c + 1, 1, (length + 1) // 2), dtype=g.dtype,
                        memory_format=torch.channels_last)
        _max_pool2(g, h[:, :c])
        h[:, c, 0] = _avg_pool(x[:, 1], 4)
        for block in self.blocks:
            h = block(h)
        return conv_relu(self.reduce, h).squeeze(2).contiguous()


class _Block(nn.Module):
    """One :class:`.layers.ConvSEBlock` on channels-last (N, C, 1, L) tensors, BN folded."""

    def __init__(self, b: nn.Module):
        super().__init__()
        self.conv1 = conv2d_of(b.conv1, b.bn1)
        self.conv2 = conv2d_of(b.conv2, b.bn2)
        self.se_fc1, self.se_fc2 = copy.deepcopy(b.se.fc1), copy.deepcopy(b.se.fc2)
        if isinstance(b.short, nn.Identity):
            self.short = None
        else:
            conv, bn = b.short
            self.short = conv2d_of(conv, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(conv_relu(self.conv1, x))
        w = torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(y.mean(dim=(2, 3))))))
        y = y * w[:, :, None, None]
        y += x if self.short is None else self.short(x)
        return F.relu_(y)


def _max_pool2(g: torch.Tensor, out: torch.Tensor) -> None:
    """``max_pool(2, 2, ceil_mode=True)`` along the last axis into ``out``, as the maximum of
    the even and odd positions: the same values (a maximum is exact; NaN propagates in both),
    at ~1/8 of the CPU of max_pool2d on channels-last tensors, which also computes indices."""
    half = g.shape[-1] // 2
    torch.maximum(g[..., 0:2 * half:2], g[..., 1:2 * half:2], out=out[..., :half])
    if g.shape[-1] % 2:
        out[..., half:] = g[..., 2 * half:]


def _avg_pool(v: torch.Tensor, k: int) -> torch.Tensor:
    """``avg_pool1d(k, k, ceil_mode=True)`` of (N, L) rows (the last, partial window averages
    what it holds, as that call does) as a mean over a (N, L/k, k) view of the strided noise
    channel: no copy of it first."""
    n, length = v.shape
    full = length // k
    out = v[:, :full * k].reshape(n, full, k).mean(-1)
    if length % k:
        out = torch.cat([out, v[:, full * k:].mean(-1, keepdim=True)], dim=1)
    return out
