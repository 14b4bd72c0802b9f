"""Many one-spectrum files → one :class:`SpectraBatch`, paying the per-batch costs once.

Why: reading an SDSS spec file used to cost, besides opening it, an astropy Table for its
meta (~0.3 ms), a SpectraBatch with its checks, a rebinning matrix onto the model grid
(~2 ms) and, per batch of 1024 files, an astropy ``vstack`` of 1024 one-row tables
(~0.45 ms a file).  A reader that can give its file as a :class:`Native` — arrays on the
file's own grid and a dict of meta values — lets :func:`assemble` sanitise each spectrum
with the rule every batch uses (:func:`specsift.spectra.sanitise`), place it on the grid (a
shift when the file's pixels are the grid's own, :func:`specsift.spectra.grid_offset`;
flux-conserving rebinning otherwise) and build one meta table for the whole batch.

The result is the one :func:`~._common.finalize` gives file by file, concatenated:
:func:`specsift.io.sdss.read` goes through here too, so one file read alone and the same file
in a batch of thousands give the same pixels and meta.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..flags import InputFlag
from ..grid import lattice_offset
from ..spectra import (
    LogGrid,
    SpectraBatch,
    grid_offset,
    meta_kind,
    sanitise,
    sanitise_message,
    stack_meta,
)
from ._common import coverage_fraction, finalize, standard_meta

__all__ = ["Native", "assemble", "prepared"]


@dataclass
class Native:
    """One spectrum as its file holds it: ``loglam`` (P,) float64, ``flux``/``ivar`` (P,)
    float32, ``mask`` (P,) bool or None, and ``meta`` {column: scalar} in catalog order.

    ``bounds``: set by :func:`prepared` for a clean spectrum (finite, ivar ≥ 0: nearly all)
    — (all pixels masked?, first and last good pixel); its ``mask`` then
    holds every masked pixel (ivar ≤ 0 included) and its ``ivar`` is 0 there, which is what
    :func:`~specsift.spectra.sanitise` makes of it, so every path reads it alike."""

    path: Path
    loglam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray | None
    meta: dict = field(default_factory=dict)
    bounds: tuple[bool, int, int] | None = None
    #: (k, step) when ``loglam`` is exactly ``k·step + step·arange(P)`` (an SDSS file's
    #: snapped grid): its offset on a grid then follows from k alone
    #: (:func:`specsift.grid.lattice_offset`)
    lattice: tuple[int, float] | None = None


def prepared(nat: Native) -> Native:
    """``nat`` with the per-spectrum part of :func:`assemble` done (:attr:`Native.bounds`)
    when it is clean; as it was otherwise (assemble then takes the long way).  Why here:
    a reader calls it just after decoding the file, while its pixels are in the CPU cache;
    done at assembly, a batch later, the same steps read every spectrum back from memory
    (~65 of ~100 µs a file in ``assemble``, on 400 distinct files)."""
    f, iv = nat.flux, nat.ivar
    # ivar: its least value ≥ 0 (NaN fails that too) and its largest finite; no pixels:
    # assemble's long way (min/max of nothing would raise)
    if not (f.size and np.isfinite(f).all() and iv.min() >= 0 and iv.max() < np.inf):
        return nat
    m = iv <= 0 if nat.mask is None else nat.mask | (iv <= 0)
    empty, first, last = _good_bounds(m)
    ivar = iv.copy()
    np.copyto(ivar, 0, where=m)                   # np.where(m, 0, iv) without its temporary
    nat.mask, nat.ivar = m, ivar
    nat.bounds = (empty, first, last)
    return nat


def _good_bounds(mask: np.ndarray) -> tuple[bool, int, int]:
    """(every pixel masked?, first and last unmasked pixel; 0, 0 when none)."""
    if mask.all():
        return True, 0, 0
    return False, int(mask.argmin()), mask.size - 1 - int(mask[::-1].argmin())


def assemble(natives: list[Native], grid: LogGrid | None) -> SpectraBatch:
    """One batch of ``natives`` on ``grid`` (None: their shared native grid); row k is
    ``natives[k]``, as :func:`~._common.finalize` would make it."""
    offsets = _offsets(natives, grid)
    if any(k is None for k in offsets):
        parts = [finalize(n.path, n.loglam, n.flux[None], n.ivar[None],
                          None if n.mask is None else n.mask[None],
                          {c: [v] for c, v in n.meta.items()}, grid) for n in natives]
        return parts[0] if len(parts) == 1 else SpectraBatch.concatenate(parts)
    size = grid.size
    n = len(natives)
    flux = np.zeros((n, size), np.float32)
    ivar = np.zeros((n, size), np.float32)
    mask = np.ones((n, size), bool)
    flags = np.zeros(n, np.int32)
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    for row, (nat, k) in enumerate(zip(natives, offsets)):
        if nat.bounds is None:
            nat = prepared(Native(nat.path, nat.loglam, nat.flux, nat.ivar, nat.mask))
        if nat.bounds is None:
            f, iv, m = _sanitised(nat, flags[row:row + 1])
            empty, first, last = _good_bounds(m)
            if not empty:
                lo[row], hi[row] = 10.0 ** nat.loglam[[first, last]]
        else:
            f, iv, m = nat.flux, nat.ivar, nat.mask
            empty, first, last = nat.bounds
            if empty:
                _no_good_pixels(nat, flags[row:row + 1])
            else:
                lo[row], hi[row] = 10.0 ** nat.loglam[[first, last]]
        a, b = max(k, 0), min(k + f.size, size)          # grid pixels the file covers
        if a < b:
            src = slice(a - k, b - k)
            m_row = m[src]
            mask[row, a:b] = m_row
            flux[row, a:b] = f[src]
            np.copyto(flux[row, a:b], 0, where=m_row)
            ivar[row, a:b] = iv[src]
    flags[mask.all(axis=1)] |= InputFlag.NO_GOOD_PIXELS
    flags[coverage_fraction(lo, hi, grid) < 0.5] |= InputFlag.LITTLE_COVERAGE
    meta = _meta(natives)
    meta["INPUT_FLAGS"] = flags
    return SpectraBatch._unchecked(grid.loglam, flux, ivar, mask, meta)


def _offsets(natives: list[Native], grid: LogGrid | None) -> list[int | None]:
    """:func:`~specsift.spectra.grid_offset` of each file: from its first pixel for a snapped
    SDSS grid (:attr:`Native.lattice`, :func:`specsift.grid.lattice_offset`: every file of
    its own first pixel and length cost ~10 µs here), else once per distinct ``loglam``
    array (the natives keep those objects alive meanwhile, so an ``id`` names one here)."""
    if grid is None:
        return [None] * len(natives)
    seen: dict[int, int | None] = {}
    out = []
    for nat in natives:
        if nat.lattice is not None:
            out.append(lattice_offset(*nat.lattice, nat.loglam.size, grid))
            continue
        key = id(nat.loglam)
        if key not in seen:
            seen[key] = grid_offset(nat.loglam, grid)
        out.append(seen[key])
    return out


def _no_good_pixels(nat: Native, flags: np.ndarray) -> None:
    """A clean spectrum with every pixel masked: flagged and named in a warning, as
    :func:`~specsift.spectra.sanitise` has it."""
    flags |= InputFlag.NO_GOOD_PIXELS
    warnings.warn(sanitise_message(str(nat.path), 1), stacklevel=3)


def _sanitised(nat: Native, flags: np.ndarray):
    """(flux, ivar, mask) of a spectrum that is not clean (NaN/inf flux,
    negative or non-finite ivar: :func:`prepared` left it) after
    :func:`~specsift.spectra.sanitise` (its flags into ``flags`` (1,), its warning naming
    the file)."""
    f, iv = nat.flux, nat.ivar
    m = np.zeros(f.size, bool) if nat.mask is None else nat.mask
    f2, iv2, m2, bad = sanitise(f[None], iv[None], m[None], flags)
    if bad:
        warnings.warn(sanitise_message(str(nat.path), bad), stacklevel=3)
    return f2[0], iv2[0], m2[0]


def _meta(natives: list[Native]):
    """The batch's meta table: one column per key when every file has the same keys of one
    kind (the survey's files), else the files' own tables stacked as batches are."""
    keys = list(natives[0].meta)
    cols: dict[str, np.ndarray] = {}
    if all(list(n.meta) == keys for n in natives):
        for key in keys:
            values = [n.meta[key] for n in natives]
            try:
                col = np.array(values)
            except ValueError:                     # vectors of different lengths
                break
            if col.dtype.kind == "O" or (len({type(v) for v in values}) > 1 and len(
                    {meta_kind(v) for v in values}) > 1):
                break
            cols[key] = col
        else:
            cols["SOURCE"] = np.array([str(n.path) for n in natives])
            return standard_meta(cols, natives[0].path, len(natives))
    return stack_meta([standard_meta({c: [v] for c, v in n.meta.items()}, n.path, 1)
                      for n in natives])
