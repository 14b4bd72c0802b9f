"""A survey's own star template library: robust means of its real spectra, one per subclass.

Why: a survey's SUBCLASS is whatever its own template library says, not a temperature scale.
The LAMOST 1D pipeline types a star by the best χ² match among templates built from LAMOST
spectra themselves — about a million DR1 spectra grouped by LAMOST subclass and pseudo g − r
colour, outliers dropped, averaged: 183 templates of 61 MK classes (Wei et al. 2014, "On the
construction of a new stellar classification template library for the LAMOST spectral
analysis pipeline"; Luo et al. 2015, RAA 15, 1095, the DR1 paper, for the pipeline) — and
that library types stars earlier than their temperature (docs/verify.md).  Physical templates
(spEigenStar, MILES) cannot follow it; a library made the same way from the survey's spectra
can.  This module is the numerical part (pure numpy, deterministic); reading the spectra and
choosing which may be used (the training split only) is the builder script's,
``benchmarks/build_lamost_templates.py``.

Per star: shifted to the rest frame by its catalogue z (linear interpolation on the log-λ
grid: a star's |z| ≤ 10⁻³ is a few pixels), divided by its median flux at 4000–8000 Å.  Per
group: the median of those normalised spectra at each pixel that at least half of the group's
stars cover (no one star's calibration tilt, bad pixel or wrong label decides a pixel; a
3σ-clipped mean does as well within the cross-validation's noise), gaps inside the coverage
interpolated, zero outside it.  Groups: :func:`subclass_key` (luminosity class dropped; LAMOST's
dM/gM/sdM are M); a subclass with fewer than ``min_stars`` stars joins the nearest populated
subclass of its letter, so that every letter seen keeps a template (:func:`merge_rare`).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["subclass_key", "merge_rare", "build_library", "rest_normalised", "NORM_RANGE",
           "MIN_STARS"]

#: rest-frame range (Å) over which each star's median flux is divided out
NORM_RANGE = (4000.0, 8000.0)
#: fewest stars a subclass needs for a template of its own
MIN_STARS = 8


def subclass_key(subclass: str) -> str:
    """'F5' for 'F5', 'F5V', 'A7III'; 'M1' for 'dM1', 'gM1', 'sdM1'; '' for anything without
    a spectral-type letter and digit (WD, CV, carbon, 'Non', 'O' …)."""
    s = str(subclass).strip()
    for pre in ("sdM", "dM", "gM"):
        if s.startswith(pre):
            s = "M" + s[len(pre):]
    return s[:2] if len(s) >= 2 and s[0] in "OBAFGKM" and s[1].isdigit() else ""


def merge_rare(keys, min_stars: int = MIN_STARS) -> np.ndarray:
    """``keys`` with every subclass of fewer than ``min_stars`` stars renamed to the nearest
    subclass of the same letter that has enough (ties: the earlier type); a letter with
    none: all its stars under their median subclass (kept if they are ``min_stars`` together)."""
    keys = np.asarray(keys, dtype="U4").copy()
    for letter in sorted({k[0] for k in keys if k}):
        sel = np.char.startswith(keys, letter)
        names, n = np.unique(keys[sel], return_counts=True)
        big = names[n >= min_stars]
        small = names[n < min_stars]
        if not len(big):
            digits = sorted(int(k[1]) for k in keys[sel])
            keys[sel] = f"{letter}{digits[(len(digits) - 1) // 2]}"
            continue
        for s in small:
            d = np.array([abs(int(b[1]) - int(s[1])) for b in big])
            keys[keys == s] = big[np.argmin(d)]
    return keys


def _rest(loglam, flux, w, z, step):
    """flux and weights of one spectrum on its rest frame (same grid), 0 where unknown."""
    pix = np.arange(loglam.size, dtype=np.float64)
    x = pix + np.log10(1.0 + z) / step               # rest pixel q sees observed pixel x
    lo = np.floor(x).astype(np.int64)
    inside = (lo >= 0) & (lo + 1 < loglam.size)
    good = w > 0
    lo = lo.clip(0, loglam.size - 2)
    ok = inside & good[lo] & good[lo + 1]
    return np.where(ok, np.interp(x, pix, flux), 0.0), ok


def build_library(loglam, flux, ivar, z, subclass, min_stars: int = MIN_STARS,
                  center: str = "median"):
    """(names (J,), templates (J, P) float64, stars per template (J,)) on the rest-frame grid
    ``loglam`` from the spectra (N, P) ``flux``/``ivar`` (ivar ≤ 0: no data) at redshifts
    ``z`` with labels ``subclass`` (module docstring).  Names are sorted; rows whose label has
    no type or whose normalisation fails (no good pixel in :data:`NORM_RANGE`) are not used.
    ``center``: "median" (what ships) or "clipped mean" (3σ-clipped, a variant the builder's
    ``--cv`` scores: the same within noise)."""
    from astropy.stats import sigma_clip
    keys = np.array([subclass_key(s) for s in subclass], dtype="U4")
    rows, X = rest_normalised(loglam, flux, ivar, z, np.flatnonzero(keys != ""))
    if not len(rows):
        return np.zeros(0, "U4"), np.zeros((0, loglam.size)), np.zeros(0, int)
    keys = merge_rare(keys[rows], min_stars)
    names, temps, counts = [], [], []
    for k in sorted(set(keys)):
        g = keys == k
        if g.sum() < min_stars:
            continue
        Xg = X[g]
        with warnings.catch_warnings():             # NaN (no data) is masked, as meant
            warnings.simplefilter("ignore")
            if center == "clipped mean":
                t = sigma_clip(Xg, sigma=3, axis=0, masked=True).mean(axis=0).filled(np.nan)
            else:
                t = np.nanmedian(Xg, axis=0)
        t = np.where(np.isfinite(Xg).mean(axis=0) >= 0.5, t, np.nan)
        names.append(k), temps.append(_fill(t)), counts.append(int(g.sum()))
    return np.array(names, "U4"), np.array(temps), np.array(counts)


def rest_normalised(loglam, flux, ivar, z, rows):
    """(rows kept, (n, P) spectra) of ``rows``: each in its rest frame, divided by its median
    flux in :data:`NORM_RANGE`, NaN where it has no data; rows with no good pixel there are
    dropped."""
    loglam = np.asarray(loglam, np.float64)
    step = float(np.median(np.diff(loglam)))
    wave = 10.0 ** loglam
    norm = (wave > NORM_RANGE[0]) & (wave < NORM_RANGE[1])
    kept, X = [], []
    for i in rows:
        f, ok = _rest(loglam, np.asarray(flux[i], np.float64), np.asarray(ivar[i]), float(z[i]),
                      step)
        s = np.median(f[ok & norm]) if (ok & norm).any() else 0.0
        if np.isfinite(s) and s > 0:
            kept.append(i)
            X.append(np.where(ok, f / s, np.nan))
    return np.array(kept, np.int64), np.array(X).reshape(len(kept), loglam.size)


def _fill(t: np.ndarray) -> np.ndarray:
    """NaN gaps inside the covered range interpolated; 0 outside it."""
    good = np.flatnonzero(np.isfinite(t))
    out = np.zeros_like(t)
    if len(good):
        q = np.arange(good[0], good[-1] + 1)
        out[q] = np.interp(q, good, t[good])
    return out
