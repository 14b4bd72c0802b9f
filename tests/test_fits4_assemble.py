"""io/assemble.py: the grid offset computed once per distinct grid array gives every file its
own offset (files sharing the SDSS reader's cached grid object, files with equal-looking but
different grids, a file off the grid), and a batch of files equals the files one by one."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np

from specsift.io.assemble import Native, assemble
from specsift.io.sdss import snap_loglam
from specsift.spectra import DEFAULT_GRID, SpectraBatch, grid_offset

asm = importlib.import_module("specsift.io.assemble")   # the module (specsift.io.assemble
#                                                        is also the name of its function)


def _native(loglam, k=0):
    rng = np.random.default_rng(k)
    flux = rng.normal(1, 0.3, loglam.size).astype(np.float32)
    ivar = rng.uniform(0.5, 2, loglam.size).astype(np.float32)
    return Native(Path(f"/x/spec-{k}.fits"), loglam, flux, ivar, None,
                  {"TARGETID": np.int64(k + 1)})


def test_offsets_once_per_grid_array_are_each_files_own():
    g = DEFAULT_GRID
    shared = snap_loglam((g.start + g.step * np.arange(40, 3840)).astype(np.float32))
    again = snap_loglam((g.start + g.step * np.arange(40, 3840)).astype(np.float32))
    assert again is shared                           # the reader's cached grid object
    copy = shared + 0.0                              # equal values, another array
    moved = shared + g.step * 3                      # same length and step, shifted
    off = shared + g.step * 0.5                      # half a pixel: not a shift
    natives = [_native(a, k) for k, a in enumerate([shared, again, copy, moved, off, shared])]
    got = asm._offsets(natives, g)
    assert got == [grid_offset(n.loglam, g) for n in natives]
    assert got == [40, 40, 40, 43, None, 40]


def test_a_batch_equals_its_files_one_by_one():
    g = DEFAULT_GRID
    grids = [g.start + g.step * np.arange(k, k + 3000) for k in (-200, 0, 500, 2000)]
    natives = [_native(grids[k % 4], k) for k in range(12)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = SpectraBatch.concatenate([assemble([n], g) for n in natives])
        got = assemble(natives, g)
    assert np.array_equal(got.flux, one.flux) and np.array_equal(got.ivar, one.ivar)
    assert np.array_equal(got.mask, one.mask)
    assert got.meta["INPUT_FLAGS"].tolist() == one.meta["INPUT_FLAGS"].tolist()
    assert got.meta["TARGETID"].tolist() == list(range(1, 13))
