"""Simulated labellers: answer the loop's queries from a truth column of the pool.

Why: the benchmark needs thousands of labels per run; a truth oracle stands in for the
person, optionally with a label-noise rate to see how robust a strategy is to mistakes.
"""

from __future__ import annotations

import numpy as np

from .pool import Pool, StorePool

__all__ = ["TruthOracle"]


class TruthOracle:
    """``oracle(ids) -> labels`` from ``column`` of a store pool (read once, O(N) strings)."""

    def __init__(self, pool: Pool, column: str = "LABEL", classes=None, noise: float = 0.0,
                 seed: int = 0):
        if not isinstance(pool, StorePool):
            raise ValueError("the simulated oracle needs a store pool with a truth column")
        if column not in pool.store.meta_columns:
            raise ValueError(f"{pool.path}: no truth column {column!r} for the oracle "
                             f"(columns: {', '.join(pool.store.meta_columns)})")
        self.truth = np.asarray(pool.store.read_meta([column])[column]).astype(str)
        self.classes = list(classes) if classes is not None else sorted(set(self.truth))
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.asked = 0

    def __call__(self, ids) -> list[str]:
        ids = np.asarray(ids, np.int64)
        out = self.truth[ids].copy()
        if self.noise > 0:
            flip = self.rng.random(ids.size) < self.noise
            out[flip] = self.rng.choice(self.classes, flip.sum())
        self.asked += ids.size
        return out.tolist()
