"""Candidate (SPECTYPE, z) solutions a model hands to the verification stage.

Every model proposes through :meth:`specsift.models.base.SpectralModel.propose` (declared on the
base class; the networks and eigen override it): the networks the highest peaks of p(z), eigen
its χ² minima.  The stage adds STAR at z = 0 itself, for every spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Candidates", "pz_peaks"]


@dataclass
class Candidates:
    """``z`` (N, K) float64 and ``spectype`` (N, K) str ('' where a slot is unused).

    ``reach`` (N, K) float64, optional: how far in ln(1+z) the model says a candidate may be
    from the truth — the span of its own z estimate (speccznet: the ±4 bins of 1390 km/s over
    which it averages p(z)).  The stage widens its fit window to cover it; NaN (or no
    ``reach``): the stage's default window."""

    z: np.ndarray
    spectype: np.ndarray
    reach: np.ndarray | None = None

    def __post_init__(self):
        self.z = np.atleast_2d(np.asarray(self.z, np.float64))
        self.spectype = np.atleast_2d(np.asarray(self.spectype, dtype="U6"))
        if self.z.shape != self.spectype.shape:
            raise ValueError(f"candidate z {self.z.shape} and spectype {self.spectype.shape} "
                             f"shapes differ")
        if self.reach is not None:
            self.reach = np.broadcast_to(np.asarray(self.reach, np.float64), self.z.shape).copy()

    def reach_or_nan(self) -> np.ndarray:
        """``reach`` with NaN where none was given."""
        return np.full(self.z.shape, np.nan) if self.reach is None else self.reach

    def take(self, rows) -> "Candidates":
        """The candidates of spectra ``rows`` only."""
        return Candidates(self.z[rows], self.spectype[rows],
                          None if self.reach is None else self.reach[rows])

    def __len__(self) -> int:
        return self.z.shape[0]

    @classmethod
    def from_catalog(cls, table) -> "Candidates":
        """The catalog's own answer as the one candidate (models with nothing more to say)."""
        n = len(table)
        return cls(np.asarray(table["Z"], np.float64).reshape(n, 1),
                   np.asarray(table["SPECTYPE"], dtype="U6").reshape(n, 1))

    @classmethod
    def concat(cls, parts: list["Candidates"]) -> "Candidates":
        """Join candidate sets column-wise (same spectra, more slots)."""
        reach = None if all(p.reach is None for p in parts) else \
            np.concatenate([p.reach_or_nan() for p in parts], axis=1)
        return cls(np.concatenate([p.z for p in parts], axis=1),
                   np.concatenate([p.spectype for p in parts], axis=1), reach)

    @classmethod
    def rows(cls, parts: list["Candidates"]) -> "Candidates":
        """Join candidate sets row-wise (batches of spectra), padding slots with ''."""
        k = max((p.z.shape[1] for p in parts), default=1)

        def pad(a, fill):
            return np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=fill)
        z = [pad(p.z, np.nan) for p in parts]
        s = [pad(p.spectype, "") for p in parts]
        reach = None
        if any(p.reach is not None for p in parts):
            reach = np.concatenate([pad(p.reach_or_nan(), np.nan) for p in parts])
        return cls(np.concatenate(z) if z else np.zeros((0, k)),
                   np.concatenate(s) if s else np.zeros((0, k), "U6"), reach)


def pz_peaks(logits: np.ndarray, u_centres: np.ndarray, k: int = 2,
             min_ratio: float = 0.05) -> np.ndarray:
    """The ``k`` highest local maxima of p(u = ln(1+z)) from binned logits (N, B) → z (N, k),
    NaN where a spectrum has fewer peaks above ``min_ratio`` × its highest.

    Found on the logits themselves, in their own dtype: p = exp(x − max x) is increasing in
    x, so p's local maxima and their order are x's, and only the ``k`` chosen ones need p
    (float64, as before) for the ``min_ratio`` test — instead of exp and comparisons of the
    whole (N, B) array in float64 and a partition of it (≈ 12 → 3 µs a spectrum of gasnet's
    940 bins; the same peaks, ties of equal logits aside, which no trained net produces).
    The k best by k row-wise argmaxes (each ~0.3 µs a spectrum), not a partition."""
    x = np.asarray(logits)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    n, b = x.shape
    k = min(k, b)
    # a local maximum: ≥ its left neighbour, > its right one (none beyond the ends)
    peak = np.ones(x.shape, bool)
    np.greater_equal(x[:, 1:], x[:, :-1], out=peak[:, 1:])
    peak[:, :-1] &= x[:, :-1] > x[:, 1:]
    score = np.where(peak, x, -np.inf)
    rows = np.arange(n)
    idx = np.empty((n, k), np.int64)
    for j in range(k):
        idx[:, j] = score.argmax(1)
        score[rows, idx[:, j]] = -np.inf         # taken (or no peak left: -inf already)
    top = np.take_along_axis(x, idx, axis=1).astype(np.float64)
    ratio = np.exp(top - x.max(1, keepdims=True).astype(np.float64))
    ok = np.take_along_axis(peak, idx, axis=1) & (ratio >= min_ratio)
    z = np.expm1(np.asarray(u_centres, np.float64)[idx])
    return np.where(ok, z, np.nan)
