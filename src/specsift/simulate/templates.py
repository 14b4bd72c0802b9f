"""Bundled template arrays (see ``specsift/data/templates/PROVENANCE.md``), loaded once, lazily.

Every template sits on a regular log10-λ grid with step 1e-4 (the SDSS pixel) so that shifting
to a redshift is a fractional-pixel gather rather than a general resampling.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..spectra import LogGrid

__all__ = ["template_dir", "galaxy_templates", "star_templates", "instrument_curves",
           "survey_priors", "gather", "gather_many"]


def template_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "templates"


def _load(name: str) -> dict:
    path = template_dir() / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled simulator template file missing; "
                                f"rebuild with tools/bundle_templates.py")
    with np.load(path, allow_pickle=False) as d:
        out = {k: d[k] for k in d.files}
    out["grid"] = LogGrid(float(out["loglam_start"]), float(out["loglam_step"]), int(out["size"]))
    return out


@lru_cache(maxsize=None)
def galaxy_templates() -> dict:
    """BC03 SSPs (``ssp``, ``ssp_names``), KC96 (``kc``, ``kc_names``), Fe II (``feii_uv``,
    ``feii_opt``) on the rest-frame grid ``grid`` (589–12589 Å), normalised at 5500 Å."""
    return _load("galaxies")


@lru_cache(maxsize=None)
def star_templates() -> dict:
    """Redrock STAR basis (``basis_<T>``), coefficient rows (``coeff``, ``type``, ``subtype``)."""
    return _load("stars")


@lru_cache(maxsize=None)
def instrument_curves() -> dict:
    """SDSS sky (1e-17 erg/s/cm²/Å per fibre), relative noise gain, LSF σ in 1e-4-dex pixels."""
    return _load("instrument")


@lru_cache(maxsize=None)
def survey_priors() -> dict:
    """Rows (CLASS, SUBCLASS, Z, SN_MEDIAN_ALL, r-band SPECTROFLUX) of real SDSS spectra."""
    with np.load(template_dir() / "priors.npz", allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def _bracket(grid: LogGrid, loglam: np.ndarray):
    """(left pixel, float32 fraction towards the next, inside the grid) of each position: the
    interpolation weights :func:`gather` and :func:`gather_many` share."""
    x = (loglam - grid.start) / grid.step
    i = np.floor(x).astype(np.int64)
    f = (x - i).astype(np.float32)
    ok = (i >= 0) & (i < grid.size - 1)
    return np.clip(i, 0, grid.size - 2), f, ok


def gather(table: np.ndarray, grid: LogGrid, loglam: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``table`` (on ``grid``) at positions ``loglam`` (n, P).

    ``table`` is one spectrum (P_t,) shared by all rows, or one per row (n, P_t); values
    outside the grid are 0.  Vectorised: one fancy-index per call.
    """
    i, f, ok = _bracket(grid, loglam)
    if table.ndim == 1:
        out = table[i] * (1 - f) + table[i + 1] * f
    else:
        r = np.arange(table.shape[0])[:, None]
        out = table[r, i] * (1 - f) + table[r, i + 1] * f
    return np.where(ok, out, 0.0).astype(np.float32)


def gather_many(tables, grid: LogGrid, loglam: np.ndarray) -> list[np.ndarray]:
    """:func:`gather` of several 1-D tables at the same positions (indices computed once)."""
    i, f, ok = _bracket(grid, loglam)
    return [np.where(ok, t[i] * (1 - f) + t[i + 1] * f, 0.0).astype(np.float32) for t in tables]
