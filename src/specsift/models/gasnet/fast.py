"""gasnet's trunk for CPU inference: one channels-last (N, L, C) layout from input to flatten.

Why: on one CPU thread the trunk's four strided convolutions are compute-bound in oneDNN's
channels-last kernels (~100 GFLOP/s), but the eager trunk paid for layout changes around them:
a transposing copy of the (N, 2, P) input into channels-last (~10-19 µs a spectrum), one of the
last conv's output back to (N, C, L) for the squeeze-excitation and the 1×1 conv (~13 µs), and
a separate pass for the excitation's scaling.  Here the input may already be channels-last in
memory (:func:`..inputs.normalise` with ``channels_last=True`` writes it so: no copy at all),
the convolutions run as 1×H Conv2d on it with every BatchNorm folded in, and the
squeeze-excitation and the 1×1 conv work on the (N, L, C) view of the last conv's output, the
excitation's per-spectrum channel weights folded into the 1×1 conv's weights (one batched
product instead of a scaling pass and a product).  Only the (N, 16, L) flattened output is
transposed (992 values a spectrum), so :meth:`.net.GaSNetModule.forward` takes this trunk in
place of its own and everything after it is unchanged.

Same outputs as the eval-mode trunk up to float32 rounding (the sums run in another order;
tests/test_nfast_fast_trunk.py).  Inference only: weights are copied when it is built, and
:attr:`~specsift.models.layers.SqueezeExcite.last_weights` (for explanations) is not kept.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ..channels_last import as_channels_last, conv2d_of, conv_relu
from ..layers import SqueezeExcite

__all__ = ["ChannelsLastTrunk"]


class ChannelsLastTrunk(nn.Module):
    """The trunk conv(+BN)+ReLU × k → SqueezeExcite → 1×1 conv → ReLU → flatten of
    :class:`.net.GaSNetModule`, evaluated channels-last (module docstring).  Built from the
    module's ``trunk`` (an ``nn.Sequential``); ``forward`` takes (N, C, P) of any strides and
    returns what that trunk returns, (N, C_out·L)."""

    def __init__(self, trunk: nn.Sequential):
        super().__init__()
        mods = list(trunk.eval())
        convs, i = [], 0
        while i + 2 < len(mods) and isinstance(mods[i], nn.Conv1d) \
                and isinstance(mods[i + 1], nn.BatchNorm1d) and isinstance(mods[i + 2], nn.ReLU):
            convs.append(conv2d_of(mods[i], mods[i + 1]))
            i += 3
        rest = mods[i:]
        if not (convs and len(rest) == 4 and isinstance(rest[0], SqueezeExcite)
                and isinstance(rest[1], nn.Conv1d) and rest[1].kernel_size == (1,)
                and rest[1].groups == 1 and isinstance(rest[2], nn.ReLU)
                and isinstance(rest[3], nn.Flatten)):
            raise ValueError("ChannelsLastTrunk: not a gasnet trunk (conv+BN+ReLU blocks, "
                             "SqueezeExcite, 1×1 conv, ReLU, flatten)")
        self.convs = nn.ModuleList(convs)
        se, head = rest[0], rest[1]
        # copies of the excitation's layers as they are (an int8 variant's are quantised)
        self.se_fc1, self.se_fc2 = copy.deepcopy(se.fc1), copy.deepcopy(se.fc2)
        with torch.no_grad():
            # (C_in, C_out): rows scaled by the excitation weights per spectrum in forward
            self.register_buffer("head_w", head.weight[:, :, 0].t().contiguous().clone())
            self.register_buffer("head_b", (head.bias if head.bias is not None
                                            else torch.zeros(head.out_channels)).clone())
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = as_channels_last(x)                  # (N, C, 1, P): a view of normalise's layout
        for conv in self.convs:
            h = conv_relu(conv, h)
        n, c, _, length = h.shape
        h = h.permute(0, 2, 3, 1).reshape(n, length, c)      # (N, L, C): a view (channels-last)
        w = torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(h.mean(dim=1)))))       # (N, C)
        y = torch.baddbmm(self.head_b, h, w[:, :, None] * self.head_w)           # (N, L, C_out)
        return F.relu_(y).transpose(1, 2).reshape(n, -1)     # flattened as (N, C_out, L)

