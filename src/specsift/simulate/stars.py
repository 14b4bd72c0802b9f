"""Stars from the Redrock STAR basis × real ``ARCHETYPE_COEFF`` rows.

Each coefficient row reproduces one real (DESI/Redrock training) star.  At bundling time every
row was given the SDSS stellar SUBCLASS of its best-fitting SDSS spEigenStar-53724 template
(A0, F5, F9, G2, K1, K3, K5, M2 …), so a simulated ``STAR_K3`` is a star SDSS would call K3.
For the named thirteen-set subtypes the row is blended (40–80 %) with SDSS's template of that
subtype (which is already at SDSS resolution, so those stars end up ~√2 × the LSF in the
features it contributes).  Radial velocities are N(0, 150 km/s) clipped at ±500 km/s; small extra reddening and ±2 %
coefficient jitter add diversity.  Coverage: 3467–9550 Å (zero, and ``coverage`` False, outside).
"""

from __future__ import annotations

import numpy as np

from ..spectra import LogGrid
from .instrument import calzetti_klambda
from .lines import C_KMS
from .templates import gather, star_templates

__all__ = ["make_stars", "star_spectrum", "STAR_TYPE_WEIGHTS", "subtype_rows"]

#: Redrock type mix for a generic STAR (roughly SDSS's spectroscopic star mix)
STAR_TYPE_WEIGHTS = {"A": .12, "B": .03, "F": .25, "G": .2, "K": .22, "M": .15, "WD": .03}


def subtype_rows(subtype: str) -> np.ndarray:
    """Coefficient rows that SDSS would label ``subtype`` (e.g. 'K3')."""
    t = star_templates()
    rows = np.nonzero(t["subtype"] == subtype)[0]
    if not rows.size:
        raise ValueError(f"no bundled star has SDSS subtype {subtype!r}; available: "
                         f"{sorted(set(t['subtype']))}")
    return rows


def star_spectrum(rows, grid: LogGrid, rv_kms, ebv=0.0, jitter=None):
    """True f_λ (arbitrary units, ~1 at 5500 Å) of coefficient rows ``rows`` at ``rv_kms``."""
    t = star_templates()
    rows = np.atleast_1d(rows)
    n = rows.size
    rv = np.broadcast_to(np.asarray(rv_kms, float), (n,))
    z = rv / C_KMS
    ll = grid.loglam[None, :] - np.log10(1 + z)[:, None]
    out = np.zeros((n, grid.size), np.float32)
    coeff = t["coeff"][rows].astype(np.float64)
    if jitter is not None:
        coeff = coeff * (1 + jitter)
    for typ in np.unique(t["type"][rows]):
        sel = np.nonzero(t["type"][rows] == typ)[0]
        spec = (coeff[sel] @ t[f"basis_{typ}"]).astype(np.float32)
        out[sel] = gather(spec, t["grid"], ll[sel])
    lam = grid.wave
    out *= 10 ** (-0.4 * np.broadcast_to(np.asarray(ebv, float), (n,))[:, None]
                  * calzetti_klambda(lam)[None, :]).astype(np.float32)
    band = (lam > 5400) & (lam < 5600)
    norm = np.median(out[:, band], axis=1) if band.any() else np.median(out, axis=1)
    norm = np.where(np.abs(norm) > 0, norm, 1.0)
    return out / norm[:, None]


def make_stars(rng: np.random.Generator, subtype, grid: LogGrid):
    """``subtype``: per object an SDSS subtype ('K3' …) or '' for any star (type mix)."""
    t = star_templates()
    subtype = np.asarray(subtype).astype("U12")
    n = subtype.size
    rows = np.empty(n, np.int64)
    types = np.array(list(STAR_TYPE_WEIGHTS))
    p = np.array(list(STAR_TYPE_WEIGHTS.values()))
    for s in np.unique(subtype):
        sel = np.nonzero(subtype == s)[0]
        if s:
            rows[sel] = rng.choice(subtype_rows(s), sel.size)
        else:
            ty = rng.choice(types, sel.size, p=p / p.sum())
            for tt in np.unique(ty):
                cand = np.nonzero(t["type"] == tt)[0]
                k = sel[ty == tt]
                rows[k] = rng.choice(cand, k.size)
    rv = np.clip(rng.normal(0, 150, n), -500, 500)
    ebv = rng.uniform(0, 0.1, n)
    jit = rng.normal(0, 0.02, (n, t["coeff"].shape[1]))
    flux = star_spectrum(rows, grid, rv, ebv, jit)
    named = np.isin(subtype, t["sub13"])
    if named.any():
        # Blend with SDSS's own spEigenStar template of that subtype (real SDSS stars at SDSS
        # resolution; defined from 3785 Å, the Redrock row alone below): keeps the absorption
        # features SDSS keys its SUBCLASS on, which some Redrock rows show only weakly.
        k = np.nonzero(named)[0]
        ti = np.array([list(t["sub13"]).index(x) for x in subtype[k]])
        ll = grid.loglam[None, :] - np.log10(1 + rv[k] / C_KMS)[:, None]
        tpl = np.stack(
            [gather(t["sdss13"][j], t["grid"], ll[i:i + 1])[0] for i, j in enumerate(ti)])
        lam = grid.wave
        tpl *= 10 ** (-0.4 * ebv[k, None] * calzetti_klambda(lam)[None, :]).astype(np.float32)
        band = (lam > 5400) & (lam < 5600)
        tpl /= np.median(tpl[:, band], axis=1)[:, None] if band.any() else 1.0
        lo_t = float(t["sdss13_range"][0]) * 1.003
        alpha = rng.uniform(0.4, 0.8, k.size)[:, None] * (lam[None, :] > lo_t)
        flux[k] = (alpha * tpl + (1 - alpha) * flux[k]).astype(np.float32)
    lo, hi = 10 ** t["grid"].start, 10 ** t["grid"].loglam[-1]
    params = {"TEMPLATE": np.char.add(np.char.add(np.where(named, "SDSS+RR-STAR-", "RR-STAR-"),
                                                  t["type"][rows]),
                                      np.char.add("-", rows.astype(str))),
              "SUBTYPE": t["subtype"][rows], "RV": rv, "Z": rv / C_KMS, "EBV": ebv,
              "coverage": (grid.wave >= lo) & (grid.wave <= hi)}
    return flux, params
