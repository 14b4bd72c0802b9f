"""Nested batches — a tensor, or a tuple, list or dict of them — moved, called, measured,
detached and concatenated, whatever shape a model's inputs, targets and outputs take.

Apart from :mod:`specsift.training` because it knows nothing of training: the loop hands
these functions whatever ``make_inputs``/``make_targets`` and the module produce (GaSNet's
dict of heads, the (class, ln(1+z)) target pair of the neural models, SpecCZ-Net's (logits,
z) outputs), so the loop itself never branches on their structure.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["to_device", "call", "concat", "detach_cpu", "batch_len"]


def to_device(obj, device):
    """``obj`` on ``device`` (numpy arrays become tensors); None and other leaves as they are."""
    if obj is None:
        return None
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj).to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def call(module, x):
    """``module(*x)`` for a tuple or list of inputs, else ``module(x)``."""
    return module(*x) if isinstance(x, (tuple, list)) else module(x)


def concat(items: list):
    """Concatenate a list of per-batch outputs (tensors, tuples or dicts of tensors)."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items)
    if isinstance(first, (tuple, list)):
        return type(first)(concat([it[i] for it in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: concat([it[k] for it in items]) for k in first}
    return items


def detach_cpu(obj):
    """A detached CPU copy of every tensor in ``obj`` (kept outputs must not hold the graph)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (tuple, list)):
        return type(obj)(detach_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return {k: detach_cpu(v) for k, v in obj.items()}
    return obj


def batch_len(x) -> int:
    """Rows in a nested batch: the length of its first tensor."""
    while isinstance(x, (tuple, list)):
        x = x[0]
    if isinstance(x, dict):
        return batch_len(next(iter(x.values())))
    return len(x)
