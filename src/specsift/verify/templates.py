"""Verification templates: one small basis per SPECTYPE on a rest-frame log-λ grid.

Loaded once per process from ``data/templates/verify.npz`` (built from the SDSS pipeline's
spEigen* files by :mod:`.build_templates`; why those: see its docstring).  On a batch grid with
the templates' step (1e-4 in log10 λ) and an integer pixel offset, a redshift is a pixel shift
and the templates are used as stored; on any other grid they are interpolated once onto a
rest grid aligned with it and cached.

A survey with its own star library (:data:`SURVEY_LIBRARIES`: robust means of its real
spectra per subclass, :mod:`.star_library`) has it ride along on the STAR rest grid as
``Basis.survey_named[survey]``; :mod:`.subtype` names that survey's stars from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["Basis", "bases_for", "SPECTYPES", "SURVEY_LIBRARIES"]

SPECTYPES = ("STAR", "GALAXY", "QSO")
#: highest z at which a basis is tried: GALAXY's rest coverage starts at 1183 Å, so beyond
#: z ≈ 1.9 it would cover too little of a 3600 Å-blue spectrum
Z_MAX = {"STAR": 0.02, "GALAXY": 1.9, "QSO": 6.5}
#: survey (the reader's SURVEY column) → its star library in ``data/templates/``, built by
#: ``benchmarks/build_lamost_templates.py`` from the training split of ``lamost-real``
SURVEY_LIBRARIES = {"LAMOST": "lamost_stars.npz"}


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
    #: survey → (templates (J, L) float32 on this rest grid, their names): a survey's own
    #: star library (module docstring), for its stars' SUBTYPE
    survey_named: dict = field(default_factory=dict)

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


def stored_star_basis() -> tuple[np.ndarray, float, float]:
    """(vectors, rest log λ of the first pixel, step) of the stored STAR basis (``verify.npz``)
    as the stage fits it: what a measurement of the STAR fit's residuals depends on (the
    survey-noise α, :func:`.survey_noise.star_fit_digest`)."""
    raw = _stored()
    return raw["STAR"], float(raw["STAR_loglam0"]), float(raw["step"])


@lru_cache(maxsize=1)
def _libraries() -> dict:
    """survey → (names, templates (J, L) float32 on the stored STAR grid) of every library
    in :data:`SURVEY_LIBRARIES` (interpolated from its own rest grid, exact when aligned); a
    library not built (yet) is left out: that survey's stars are named from spEigenStar."""
    raw = _stored()
    t0, n = float(raw["STAR_loglam0"]), raw["STAR"].shape[1]
    q = t0 + float(raw["step"]) * np.arange(n)
    out = {}
    for survey, name in SURVEY_LIBRARIES.items():
        path = resources.files("specsift") / "data" / "templates" / name
        if not path.is_file():
            continue
        with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
            src = float(f["loglam0"]) + float(f["step"]) * np.arange(f["flux"].shape[1])
            flux = f["flux"].astype(np.float64)
            names = tuple(str(x) for x in f["names"])
        on = np.stack([np.interp(q, src, t, left=0.0, right=0.0) for t in flux])
        out[survey] = (names, on.astype(np.float32))
    return out


@lru_cache(maxsize=8)
def _bases(loglam0: float, step: float) -> dict[str, Basis]:
    raw = _stored()
    tstep = float(raw["step"])
    out = {}
    for st in SPECTYPES:
        vec = raw[st].astype(np.float64)
        vec = vec / np.sqrt(np.mean(vec ** 2, axis=1, keepdims=True))   # unit rms: conditioning
        vec = vec.astype(np.float32)
        libs = _libraries() if st == "STAR" else {}
        if st == "STAR":                         # the named types ride along on the same grid
            vec = np.concatenate([vec, raw["STAR_named"].astype(np.float32),
                                  *(t for _, t in libs.values())])
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
        named, names, survey = None, (), {}
        if st == "STAR":
            j = nb + raw["STAR_named"].shape[0]
            named = np.ascontiguousarray(vec[nb:j])
            names = tuple(str(s) for s in raw["STAR_names"])
            for sv, (lib_names, t) in libs.items():
                survey[sv] = (np.ascontiguousarray(vec[j:j + len(t)]), lib_names)
                j += len(t)
        out[st] = Basis(st, np.ascontiguousarray(vec[:nb]), int(round(off)), step, named, names,
                        survey)
    return out


def bases_for(loglam: np.ndarray) -> dict[str, Basis]:
    """The three bases aligned with the log-λ grid ``loglam`` (cached per grid)."""
    step = float(np.round(np.median(np.diff(loglam)), 10))
    return _bases(round(float(loglam[0]), 8), step)
