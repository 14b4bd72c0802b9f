"""Reusable 1-D layers: a Gabor filter bank and squeeze-and-excitation conv blocks.

Why Gabor: an emission or absorption line is a localised bump of a few pixels; a bank of
Gaussian-windowed cosines/sines at several widths and frequencies is a matched filter for
lines of different widths (narrow [O III], broad quasar Hβ) and for continuum breaks
(the sine phase), so the first layer starts as a line detector instead of noise.
Why SE: squeeze-and-excitation rescales channels from a global summary of the spectrum
(which features are present anywhere), a cheap form of attention that also gives a
per-channel weight that :mod:`specsift.explain` can show.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GaborConv1d", "SqueezeExcite", "ConvSEBlock"]


class GaborConv1d(nn.Module):
    """Bank of 1-D Gabor filters g(t) = exp(−t²/2σ²)·cos(2πft + φ), normalised to unit L2.

    One filter per (σ, f, phase) with phases 0 (even: line profile) and π/2 (odd: edge),
    the odd one dropped at f = 0 (it would be zero).  Filters with f > 0 have zero mean, so
    they ignore the continuum level.  σ, f and φ are learnable unless ``learnable=False``.
    Applied to one input channel; output (N, n_filters, ⌈L/stride⌉) with 'same' padding.
    """

    def __init__(self, sigmas=(1.5, 3.0, 6.0), freqs=(0.0, 0.07, 0.15),
                 kernel_size: int = 25, stride: int = 1, learnable: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("Gabor kernel_size must be odd")
        s, f, p = [], [], []
        for sig in sigmas:
            for fr in freqs:
                for ph in ((0.0,) if fr == 0 else (0.0, math.pi / 2)):
                    s.append(math.log(sig)), f.append(fr), p.append(ph)
        t = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
        self.register_buffer("t", t, persistent=False)
        self.kernel_size, self.stride = kernel_size, stride
        for name, v in (("log_sigma", s), ("freq", f), ("phase", p)):
            if learnable:
                setattr(self, name, nn.Parameter(torch.tensor(v)))
            else:
                self.register_buffer(name, torch.tensor(v))

    @property
    def out_channels(self) -> int:
        return int(self.log_sigma.numel())

    def kernels(self) -> torch.Tensor:
        """(n_filters, kernel_size) current filter shapes."""
        sigma = self.log_sigma.exp().clamp(0.5, self.kernel_size / 3)[:, None]
        t = self.t[None, :]
        g = torch.exp(-0.5 * (t / sigma) ** 2) * torch.cos(2 * math.pi * self.freq[:, None] * t
                                                           + self.phase[:, None])
        band = (self.freq.abs() > 1e-3)[:, None]
        g = torch.where(band, g - g.mean(dim=1, keepdim=True), g)
        return g / g.norm(dim=1, keepdim=True).clamp_min(1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x[:, None]
        return F.conv1d(x, self.kernels()[:, None, :], stride=self.stride,
                        padding=self.kernel_size // 2)


class SqueezeExcite(nn.Module):
    """Channel attention: w = σ(W₂ ReLU(W₁ mean_λ(x))), output x·w (Hu et al. 2018).

    The last weights are kept in ``self.last_weights`` for explanations.
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=2)))))
        self.last_weights = w.detach()
        return x * w[:, :, None]


class ConvSEBlock(nn.Module):
    """conv(k, stride) → BatchNorm → ReLU → conv(k) → BatchNorm → SE, plus a strided
    1×1 shortcut (a small residual block: stable to train, cheap on CPU)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5, stride: int = 2,
                 reduction: int = 4):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.se = SqueezeExcite(c_out, reduction)
        self.short = (nn.Identity() if c_in == c_out and stride == 1 else
                      nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False),
                                    nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return F.relu(y + self.short(x))
