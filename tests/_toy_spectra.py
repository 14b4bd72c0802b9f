"""Labelled spectra for the model tests: the simulator when it is there, else a toy.

The toy (lines at (1+z)·λ_rest on a power-law continuum, per-class line sets) exists only so
the tests run before/without :mod:`specsift.simulate`.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from specsift.classes import labels
from specsift.lines import LINES
from specsift.spectra import DEFAULT_GRID, SpectraBatch

_W = {ln.name: ln.wave for ln in LINES}


def labelled_batch(n: int, class_set: str = "five", seed: int = 0) -> SpectraBatch:
    try:
        from specsift.simulate import simulate_batch
    except ImportError:
        return toy_batch(n, seed)
    return simulate_batch(n, class_set, seed)


def toy_batch(n: int, seed: int = 0) -> SpectraBatch:
    names = labels("five")
    rng = np.random.default_rng(seed)
    wave = DEFAULT_GRID.wave
    y = rng.integers(0, 5, n)
    z = np.where(y == 0, rng.normal(0, 2e-4, n),
                 np.where(y == 4, rng.uniform(0.1, 3.0, n), rng.uniform(0.01, 0.5, n)))
    flux = np.empty((n, wave.size), np.float32)
    ivar = np.empty_like(flux)
    for i in range(n):
        rest = wave / (1 + z[i])
        f = (rest / 5000.0) ** rng.uniform(-2, 1)

        def add(name, amp, sig):
            return amp * np.exp(-0.5 * ((rest - _W[name]) / sig) ** 2)
        if y[i] == 0:
            f = f + sum(add(nm, -0.4 * rng.uniform(0.5, 1), 4) for nm in ("Ca K", "Ca H", "Hβ", "Hα", "Na D"))
        elif y[i] == 4:
            f = f + sum(add(nm, rng.uniform(1, 3), 40) for nm in ("Lyα", "C IV", "C III]", "Mg II", "Hβ", "Hα"))
        else:
            o3, ha = {1: (3.0, 1.0), 2: (0.5, 4.0), 3: (0.4, 1.5)}[int(y[i])]
            f = f + add("[O III]", o3, 2) + add("Hβ", ha / 2.8, 2) + add("Hα", ha, 2) \
                + add("[O II]", rng.uniform(0.5, 2), 3)
        sigma = np.median(np.abs(f)) / rng.uniform(3, 20)
        flux[i] = f + rng.normal(0, sigma, wave.size)
        ivar[i] = 1.0 / sigma**2
    meta = Table({"TARGETID": np.arange(n) + 10**6 * seed, "CLASS_LABEL": np.array(names)[y],
                  "Z": z})
    return SpectraBatch(DEFAULT_GRID.loglam, flux, ivar, meta=meta)
