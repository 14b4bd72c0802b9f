"""Verification templates: one small basis per SPECTYPE on a rest-frame log-λ grid.

Loaded once per process from ``data/templates/verify.npz`` (built from the SDSS pipeline's
spEigen* files by :mod:`.build_templates`; why those: see its docstring).  On a batch grid with
the templates' step (1e-4 in log10 λ) and an integer pixel offset, a redshift is a pixel shift
and the templates are used as stored; on any other grid they are interpolated once onto a
rest grid aligned with it and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["Basis", "bases_for", "SPECTYPES"]

SPECTYPES = ("STAR", "GALAXY", "QSO")
#: highest z at which a basis is tried: GALAXY's rest coverage starts at 1183 Å, so beyond
#: z ≈ 1.9 it would cover too little of a 3600 Å-blue spectrum
Z_MAX = {"STAR": 0.02, "GALAXY": 1.9, "QSO": 6.5}


@dataclass(frozen=True)
class Basis:
    """Templates of one SPECTYPE on a rest grid aligned with a batch grid.

    ``vectors`` (T, L) float32; rest pixel q has log10 λ = batch loglam[0] − offset·step + q·step,
    so at integer shift s (log10(1+z) = s·step) data pixel p meets template pixel p + offset − s.
    """

    spectype: str
    vectors: np.ndarray
    offset: int
    step: float
    star_named: np.ndarray | None = None    # (n_named, L) the named stellar types themselves
    star_names: tuple = ()

    @property
    def ntemplate(self) -> int:
        return self.vectors.shape[0]

    def shift_of(self, z) -> np.ndarray:
        """Fractional pixel shift of redshift z."""
        return np.log10(1.0 + np.asarray(z, np.float64)) / self.step

    def z_of(self, shift) -> np.ndarray:
        return 10.0 ** (np.asarray(shift, np.float64) * self.step) - 1.0


@lru_cache(maxsize=1)
def _stored() -> dict:
    path = resources.files("specsift") / "data" / "templates" / "verify.npz"
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@lru_cache(maxsize=8)
def _bases(loglam0: float, step: float) -> dict[str, Basis]:
    raw = _stored()
    tstep = float(raw["step"])
    out = {}
    for st in SPECTYPES:
        vec = raw[st].astype(np.float64)
        vec = vec / np.sqrt(np.mean(vec ** 2, axis=1, keepdims=True))   # unit rms: conditioning
        vec = vec.astype(np.float32)
        if st == "STAR":                         # the named types ride along on the same grid
            vec = np.concatenate([vec, raw["STAR_named"].astype(np.float32)])
        t0 = float(raw[f"{st}_loglam0"])
        off = (loglam0 - t0) / step
        if abs(step - tstep) > 1e-9 or abs(off - round(off)) > 1e-3:
            # another grid: interpolate onto a rest grid aligned with it (same span)
            n = int(np.ceil(vec.shape[1] * tstep / step))
            off = int(np.ceil((loglam0 - t0) / step))
            q = loglam0 - off * step + step * np.arange(n)
            src = t0 + tstep * np.arange(vec.shape[1])
            vec = np.stack([np.interp(q, src, v, left=0.0, right=0.0) for v in vec])
            vec = vec.astype(np.float32)
        nb = raw[st].shape[0]
        named = np.ascontiguousarray(vec[nb:]) if st == "STAR" else None
        names = tuple(str(s) for s in raw["STAR_names"]) if st == "STAR" else ()
        out[st] = Basis(st, np.ascontiguousarray(vec[:nb]), int(round(off)), step, named, names)
    return out


def bases_for(loglam: np.ndarray) -> dict[str, Basis]:
    """The three bases aligned with the log-λ grid ``loglam`` (cached per grid)."""
    step = float(np.round(np.median(np.diff(loglam)), 10))
    return _bases(round(float(loglam[0]), 8), step)
