"""Spectra and pools that several test files build the same way (and
``benchmarks/explain_line.py``, which imports this module as ``benchmarks/engines.py`` imports
``_pipeline_data``): one definition, so the tests and the benchmark measure the same thing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specsift import DEFAULT_GRID
from specsift.spectra import SpectraBatch


def one_line(lam0: float, seed: int = 0) -> SpectraBatch:
    """A spectrum whose saliency answer is known: flat continuum 5, σ 0.3 Gaussian noise and
    one strong emission line (σ = 3 Å, peak 60) at ``lam0`` Å, on the default grid."""
    rng = np.random.default_rng(seed)
    w = DEFAULT_GRID.wave
    flux = 5 + rng.normal(0, 0.3, w.size) + 60 * np.exp(-0.5 * ((w - lam0) / 3.0) ** 2)
    return SpectraBatch(DEFAULT_GRID.loglam, flux[None].astype(np.float32),
                        np.full((1, w.size), 1 / 0.09, np.float32))


def noisy_quasars(z, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar) of simulated quasars at redshifts ``z`` on the default grid: no weak-line
    or BAL objects, scaled to a median of 20, through the SDSS-like instrument at S/N 15 with
    no bad pixels — the line fits' stacking tests compare their windows' fits on these."""
    from specsift.simulate import apply_instrument
    from specsift.simulate.quasars import make_quasars
    z = np.asarray(z)
    flux, _ = make_quasars(np.random.default_rng(seed), z, DEFAULT_GRID,
                           weak=np.zeros(z.size, bool), bal_fraction=0.0)
    flux = flux * (20.0 / np.median(flux, axis=1))[:, None]
    obs, ivar, _, _ = apply_instrument(flux, DEFAULT_GRID, np.full(z.size, 15.0),
                                       np.random.default_rng(seed + 1), bad_pixel_rate=0.0)
    return obs, ivar


def emission_pool(path: Path, n: int, rare_fraction: float, seed: int) -> Path:
    """A SpectralStore at ``path`` of ``n`` simulated LAMOST-like stars, ``rare_fraction`` of
    them with Balmer emission: the pool of the active loop and the labelling page.  Torch is
    put on one thread first (the loop trains vgg1d; more threads only contend on a busy
    runner)."""
    import torch

    from specsift.io.store import SpectralStore
    from specsift.simulate.emission_stars import simulate_emission_stars
    torch.set_num_threads(1)
    with SpectralStore(path, "w") as s:
        s.append(simulate_emission_stars(n, rare_fraction=rare_fraction, seed=seed))
    return path
