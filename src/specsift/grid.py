"""The log-λ grid every spectrum is put on, and flux-conserving rebinning between grids.

Apart from :mod:`specsift.spectra` (the batch that holds spectra on such a grid) because it
is geometry with no spectra in it: readers, the simulator, stores and models ask only
"is this the grid?", "where does it start on mine?" or "what matrix rebins one onto the
other?".  :mod:`specsift.spectra` re-exports every name, the import path most code uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

from .constants import GRID_MATCH_PIXELS, RESAMPLE_IDENTITY_ATOL, SAME_GRID_ATOL

__all__ = ["LogGrid", "DEFAULT_GRID", "same_grid", "pixel_edges", "rebin_matrix", "grid_offset",
           "step_products", "lattice_offset"]


def same_grid(a: np.ndarray, b: np.ndarray, atol: float = SAME_GRID_ATOL) -> bool:
    """Whether two log10-λ arrays are one grid (same length, every value within ``atol``)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=atol))


@dataclass(frozen=True)
class LogGrid:
    """A regular grid in log10(wavelength / Å), defined by start, step and size."""

    start: float
    step: float
    size: int

    @classmethod
    def from_range(cls, start: float, stop: float, step: float) -> "LogGrid":
        """Grid from ``start`` to ``stop`` inclusive (both log10 Å)."""
        size = int(round((stop - start) / step)) + 1
        return cls(float(start), float(step), size)

    @classmethod
    def from_loglam(cls, loglam: np.ndarray, rtol: float = 1e-3) -> "LogGrid":
        """Recognise a regular log grid; raise ValueError if the steps are not uniform."""
        loglam = np.asarray(loglam, dtype=np.float64)
        if loglam.ndim != 1 or loglam.size < 2:
            raise ValueError("a log-lambda grid needs at least two points in a 1-D array")
        steps = np.diff(loglam)
        step = float(np.median(steps))
        if step <= 0 or np.any(np.abs(steps - step) > rtol * step):
            raise ValueError("wavelength grid is not a regular increasing log10 grid")
        return cls(float(loglam[0]), step, loglam.size)

    @property
    def loglam(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    @property
    def wave(self) -> np.ndarray:
        return 10.0 ** self.loglam

    def matches(self, loglam: np.ndarray, atol: float | None = None) -> bool:
        """True when ``loglam`` is this grid (to a small fraction of a pixel)."""
        loglam = np.asarray(loglam)
        if loglam.shape != (self.size,):
            return False
        atol = GRID_MATCH_PIXELS * self.step if atol is None else atol
        return bool(np.allclose(loglam, self.loglam, rtol=0, atol=atol))

    def to_dict(self) -> dict:
        return {"start": self.start, "step": self.step, "size": self.size}

    def __str__(self) -> str:
        w = self.wave
        return (f"log10 λ {self.start:.4f}…{self.loglam[-1]:.4f} step {self.step:g} "
                f"({self.size} px, {w[0]:.0f}–{w[-1]:.0f} Å)")


#: SDSS / GaSNet grid: log10 λ 3.5563 → 3.9638, step 1e-4 (4076 px, 3600–9200 Å).
DEFAULT_GRID = LogGrid.from_range(3.5563, 3.9638, 1e-4)


def pixel_edges(loglam: np.ndarray) -> np.ndarray:
    """Pixel boundaries (log10 Å) half-way between centres, extrapolated at the ends."""
    loglam = np.asarray(loglam, dtype=np.float64)
    mid = 0.5 * (loglam[1:] + loglam[:-1])
    first = loglam[0] - (mid[0] - loglam[0])
    last = loglam[-1] + (loglam[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def rebin_matrix(loglam_in: np.ndarray, loglam_out: np.ndarray) -> sp.csr_matrix:
    """Sparse (P_out, P_in) matrix of overlap fractions for flux-conserving rebinning.

    Entry (j, i) is the length in wavelength of the overlap of input pixel i with output
    pixel j, divided by the width of output pixel j.  Applying it to a flux density
    gives the mean flux density over each output pixel, so ∫f dλ is conserved over
    every output pixel that lies inside the input coverage.

    scipy.sparse is imported here, not with the module: every command imports this module
    and most never rebin (SDSS spec files on the default grid are shifted, a store's rows
    are on it already), and the import was ~0.13 s of each ``specsift`` process.
    """
    import scipy.sparse as sp

    e_in = 10.0 ** pixel_edges(loglam_in)
    e_out = 10.0 ** pixel_edges(loglam_out)
    if np.any(np.diff(e_in) <= 0):
        raise ValueError("input wavelength grid is not strictly increasing")
    # Every boundary of either grid cuts the wavelength axis into segments that each
    # lie in exactly one input and one output pixel (or outside one of the grids).
    cuts = np.union1d(e_in, e_out)
    lo, hi = cuts[:-1], cuts[1:]
    centre = 0.5 * (lo + hi)
    i = np.searchsorted(e_in, centre) - 1
    j = np.searchsorted(e_out, centre) - 1
    inside = (i >= 0) & (i < e_in.size - 1) & (j >= 0) & (j < e_out.size - 1)
    i, j, length = i[inside], j[inside], (hi - lo)[inside]
    width_out = np.diff(e_out)
    weights = length / width_out[j]
    return sp.csr_matrix((weights, (j, i)), shape=(e_out.size - 1, e_in.size - 1))


#: step → (first integer i0, ``step * np.arange(i0, i0 + len)``), see :func:`step_products`
_PRODUCTS: dict[float, tuple[int, np.ndarray]] = {}
#: most products kept per step (8 MB): far more than any survey's pixel indices need
_MAX_PRODUCTS = 1 << 20
#: most steps kept (a few grids are in use: the SDSS lattice, the model grids): ≤ 64 MB
_MAX_STEPS = 8


def step_products(step: float, k: int, n: int) -> np.ndarray:
    """``step * np.arange(k, k + n, dtype=float64)``, read-only, as a slice of one cached
    array per step: each element is the same product (an integer times ``step``, one
    rounding), so the grids built from it are the ones ``arange`` gave, bit for bit.  Why:
    every SDSS spec file has its own first pixel and length, and building its exact grid
    (:func:`specsift.io.sdss.snap_loglam`) and testing it against the model's
    (:func:`grid_offset`) paid an ``arange`` and a product each, per file."""
    lo, arr = _PRODUCTS.get(step, (0, None))
    if arr is None or k < lo or k + n > lo + arr.size:
        lo2 = min(k, lo) if arr is not None else k
        hi2 = max(k + n, lo + arr.size) if arr is not None else k + n
        lo2, hi2 = lo2 - 256, hi2 + 4096                 # room for the next files' pixels
        if hi2 - lo2 > _MAX_PRODUCTS:                  # too wide to keep: this call's only
            out = step * np.arange(k, k + n, dtype=np.float64)
            out.flags.writeable = False                # read-only, as the cached slices
            return out
        arr = step * np.arange(lo2, hi2, dtype=np.float64)
        arr.flags.writeable = False
        lo = lo2
        if len(_PRODUCTS) >= _MAX_STEPS:
            _PRODUCTS.clear()
        _PRODUCTS[step] = (lo, arr)
    return arr[k - lo:k - lo + n]


#: (k, step, grid start, grid step) → (offset, first pixel off the grid's, pixels tested)
_LATTICES: dict[tuple, tuple[int, int, int]] = {}


def lattice_offset(k: int, step: float, n: int, grid: "LogGrid") -> int | None:
    """:func:`grid_offset` of ``k * step + step_products(step, 0, n)`` (an SDSS file's
    snapped grid, :func:`specsift.io.sdss.snap_loglam`), from ``k`` alone.  Why: its
    pixels, the grid's pixels they are compared with and their deviations do not depend on
    ``n`` (a longer grid only adds pixels at the end), so the answer for every ``n`` follows
    from the first pixel whose deviation is too large, found once per first pixel: distinct
    spec files (one first pixel among a few, a length of their own) then cost a look-up,
    not the ~10 µs test of :func:`grid_offset`.  Same answer, same arithmetic."""
    if n < 2:
        return None
    key = (k, step, grid.start, grid.step)
    hit = _LATTICES.get(key)
    if hit is None or (hit[1] >= hit[2] and n > hit[2]):   # none off yet, not tested so far
        m = max(n, 8192)
        ll = k * step + step_products(step, 0, m)
        off = int(round((ll[0] - grid.start) / grid.step))
        off_grid = np.flatnonzero(np.abs(ll - (grid.start + step_products(grid.step, off, m)))
                                  > RESAMPLE_IDENTITY_ATOL)
        hit = (off, int(off_grid[0]) if off_grid.size else m, m)
        if len(_LATTICES) >= 4096:
            _LATTICES.clear()
        _LATTICES[key] = hit
    off, first_off, _ = hit
    return off if n <= first_off else None


def grid_offset(loglam: np.ndarray, grid: "LogGrid") -> int | None:
    """``k`` when ``loglam`` is ``grid``'s own pixels from pixel ``k`` on (same step, a
    whole-pixel offset, each centre within RESAMPLE_IDENTITY_ATOL; ``k`` may be negative
    or past the end), else None.  Flux-conserving rebinning between such grids moves each
    pixel unchanged, so it is a shift (SDSS and BOSS spec files on the default grid)."""
    loglam = np.asarray(loglam, np.float64)
    if loglam.ndim != 1 or loglam.size < 2:
        return None
    k = int(round((loglam[0] - grid.start) / grid.step))
    exact = grid.start + step_products(grid.step, k, loglam.size)
    return k if np.abs(loglam - exact).max() <= RESAMPLE_IDENTITY_ATOL else None
