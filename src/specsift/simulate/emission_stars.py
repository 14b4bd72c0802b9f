"""Stars with Balmer (Hα, Hβ) emission at LAMOST resolution (R ≈ 1800), for the active-learning
benchmark: absorption stars, single-peaked emission and double-peaked (Be-star disc) emission.

Stellar continua and absorption lines come from the bundled Redrock stellar basis
(``data/templates/stars.npz``: real archetype coefficients, already at SDSS/LAMOST resolution
R ≈ 2000).  Emission is added analytically: each component is a Gaussian in velocity whose
intrinsic width is combined in quadrature with the LAMOST line-spread function
(σ = c / R / 2.355 ≈ 71 km/s), and integrated over every pixel with the error function — no
numerical convolution, so 100k spectra take seconds.

Labels are given by what is *visible* in the noise-free LAMOST-resolution spectrum, as a
person labelling by eye would: EMISSION needs the Hα peak ≥ 15 % above the local
continuum; DOUBLE_PEAK needs two Hα maxima with a dip between them of ≥ 15 % of the weaker
peak's height.  Draws that fail are redrawn, so every label is earned.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy.special import erf

from ..constants import C_KMS
from ..spectra import LogGrid, SpectraBatch

__all__ = ["simulate_emission_stars", "LAMOST_GRID", "HALPHA_GRID", "HALPHA", "HBETA",
           "balmer_emission", "LAMOST_R", "CLASSES"]

HALPHA, HBETA = 6564.61, 4862.68          # vacuum Å (LAMOST wavelengths are vacuum)
LAMOST_R = 1800.0
#: LAMOST DR2 low-resolution grid: log10 λ from 3.5682, step 1e-4, 3909 px (3700–9100 Å).
LAMOST_GRID = LogGrid(3.5682, 1e-4, 3909)
#: The Hα region of that grid with margin around the vgg1d window (6416–6841 Å): what the
#: benchmark stores, so a 100k pool stays small.
HALPHA_GRID = LogGrid(3.5682 + 1e-4 * 2390, 1e-4, 280)
CLASSES = ("ABSORPTION", "EMISSION", "DOUBLE_PEAK")

# Base population of stellar types (Redrock archetype families) for normal stars and for the
# emission-line objects (Be/Ae/Herbig stars are early-type; dMe/T Tauri stars late-type).
_NORMAL_TYPES = {"A": 0.25, "F": 0.30, "G": 0.20, "K": 0.17, "M": 0.05, "B": 0.03}
_EMISSION_TYPES = {"B": 0.45, "A": 0.30, "F": 0.10, "G": 0.05, "K": 0.05, "M": 0.05}


@lru_cache(maxsize=1)
def _templates():
    path = Path(str(resources.files("specsift") / "data" / "templates" / "stars.npz"))
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled stellar templates are missing; reinstall specsift")
    d = np.load(path)
    loglam = float(d["loglam_start"]) + float(d["loglam_step"]) * np.arange(int(d["size"]))
    coeff, types, rss = d["coeff"], d["type"], d["fit_rss"]
    bases = {t: d[f"basis_{t}"] for t in ("A", "B", "F", "G", "K", "M")}
    # keep archetype rows that reconstruct well and are positive around the Balmer lines
    keep = {}
    ha = (loglam > np.log10(6300)) & (loglam < np.log10(6850))
    hb = (loglam > np.log10(4750)) & (loglam < np.log10(4980))
    for t, basis in bases.items():
        rows = np.flatnonzero(types == t)
        rows = rows[rss[rows] <= np.quantile(rss[rows], 0.9)]
        f = coeff[rows] @ basis
        ok = (f[:, ha].min(axis=1) > 0.05 * np.median(f[:, ha], axis=1)) & (f[:, hb].min(axis=1) > 0)
        keep[t] = rows[ok]
    return loglam, coeff, bases, keep


def _stars(types: np.ndarray, rng: np.random.Generator, loglam_out: np.ndarray,
           rv: np.ndarray) -> np.ndarray:
    """Noise-free stellar spectra of the given families on ``loglam_out`` (continuum ≈ 1 at Hα)."""
    loglam, coeff, bases, keep = _templates()
    out = np.empty((types.size, loglam_out.size), np.float32)
    for t in np.unique(types):
        idx = np.flatnonzero(types == t)
        rows = rng.choice(keep[t], size=idx.size)
        f = coeff[rows] @ bases[t]                           # (n, P_template)
        for j, k in enumerate(idx):                          # shift by the RV, sample the grid
            shifted = loglam + math.log10(1 + rv[k] / C_KMS)
            out[k] = np.interp(loglam_out, shifted, f[j])
    cont = _continuum(out, loglam_out)
    return out / cont[:, None]


def _continuum(flux: np.ndarray, loglam: np.ndarray) -> np.ndarray:
    """Pseudo-continuum level at Hα: median of the bands 6470–6510 and 6620–6660 Å."""
    w = 10 ** loglam
    band = ((w > 6470) & (w < 6510)) | ((w > 6620) & (w < 6660))
    if band.sum() < 5:
        band = np.ones_like(w, bool)
    c = np.median(flux[:, band], axis=1)
    return np.where(c > 0, c, np.maximum(np.median(np.abs(flux), axis=1), 1e-6))


def balmer_emission(loglam: np.ndarray, line: float, centres_kms, sigmas_kms, areas,
                    rv_kms=0.0, R: float = LAMOST_R) -> np.ndarray:
    """Sum of Gaussian emission components (velocity offsets, intrinsic σ, equivalent widths in
    Å) around ``line``, broadened by the LSF of resolution ``R``, averaged over each pixel.

    Arrays are (N, K) for N spectra with K components; returns (N, P) in units of the continuum.
    """
    edges = np.concatenate([[loglam[0] - (loglam[1] - loglam[0]) / 2],
                            (loglam[1:] + loglam[:-1]) / 2,
                            [loglam[-1] + (loglam[-1] - loglam[-2]) / 2]])
    v_edges = (10 ** edges / line - 1.0) * C_KMS                         # (P+1,)
    centres = np.atleast_2d(centres_kms) + np.asarray(rv_kms).reshape(-1, 1)
    sig = np.sqrt(np.atleast_2d(sigmas_kms) ** 2 + (C_KMS / R / 2.3548) ** 2)
    areas = np.atleast_2d(areas)
    out = np.zeros((centres.shape[0], loglam.size))
    dv = np.diff(v_edges)
    for k in range(centres.shape[1]):
        z = (v_edges[None, :] - centres[:, k:k + 1]) / (np.sqrt(2) * sig[:, k:k + 1])
        frac = 0.5 * np.diff(erf(z), axis=1)                    # fraction of the line per pixel
        # EW (Å) → velocity area: EW · c / λ ; divide by pixel width in km/s → mean height
        out += frac * (areas[:, k:k + 1] * C_KMS / line) / dv[None, :]
    return out


def _draw_profiles(kind: np.ndarray, rng) -> tuple:
    """(centres, sigmas, EWs) for Hα, shape (N, 2): single lines use one component."""
    n = kind.size
    centres = np.zeros((n, 2)); sig = np.zeros((n, 2)); ew = np.zeros((n, 2))
    s = kind == 1
    ew[s, 0] = np.exp(rng.uniform(np.log(1.5), np.log(60.0), s.sum()))
    sig[s, 0] = rng.uniform(40, 180, s.sum())
    d = kind == 2
    nd = int(d.sum())
    sep = rng.uniform(260, 700, nd)
    total = np.exp(rng.uniform(np.log(4.0), np.log(50.0), nd))
    vr = np.exp(rng.uniform(np.log(0.6), np.log(1.6), nd))             # V/R peak ratio
    centres[d, 0], centres[d, 1] = -sep / 2, sep / 2
    sig[d, 0] = sig[d, 1] = rng.uniform(0.12, 0.28, nd) * sep
    ew[d, 0], ew[d, 1] = total * vr / (1 + vr), total / (1 + vr)
    return centres, sig, ew


def _visible(flux: np.ndarray, loglam: np.ndarray, kind: np.ndarray, rv) -> np.ndarray:
    """Does the noise-free spectrum show what its label claims?"""
    w = 10 ** loglam
    ok = np.ones(kind.size, bool)
    for i in np.flatnonzero(kind > 0):
        c = HALPHA * (1 + rv[i] / C_KMS)
        m = (w > c - 14) & (w < c + 14)
        f = flux[i, m]
        if f.max() < 1.15:
            ok[i] = False
            continue
        if kind[i] == 2:
            peaks = [j for j in range(1, f.size - 1) if f[j] >= f[j - 1] and f[j] >= f[j + 1]
                     and f[j] > 1.10]
            good = False
            for a in range(len(peaks)):
                for b in range(a + 1, len(peaks)):
                    pa, pb = peaks[a], peaks[b]
                    if pb - pa < 2:
                        continue
                    low = min(f[pa], f[pb])
                    dip = f[pa:pb + 1].min()
                    if low - dip >= 0.15 * (low - 1.0 + 1e-9) and low - dip > 0.03:
                        good = True
            ok[i] = good
    return ok


def simulate_emission_stars(n: int, rare_fraction: float = 0.01, double_share: float = 0.5,
                            seed: int = 0, grid: LogGrid = HALPHA_GRID,
                            snr_range: tuple = (8.0, 120.0), start_id: int = 0) -> SpectraBatch:
    """``n`` LAMOST-like stellar spectra; a ``rare_fraction`` of them show Balmer emission,
    ``double_share`` of those double-peaked.  meta: TARGETID, LABEL (ABSORPTION / EMISSION /
    DOUBLE_PEAK), STYPE, SNR, EW_HA (emission EW, Å), PEAK_SEP (km/s), RV."""
    rng = np.random.default_rng(seed)
    loglam = grid.loglam
    kind = np.zeros(n, np.int64)
    n_rare = int(round(rare_fraction * n))
    rare = rng.choice(n, n_rare, replace=False)
    kind[rare] = np.where(rng.random(n_rare) < double_share, 2, 1)
    types = np.where(kind > 0, rng.choice(list(_EMISSION_TYPES), n, p=list(_EMISSION_TYPES.values())),
                     rng.choice(list(_NORMAL_TYPES), n, p=list(_NORMAL_TYPES.values())))
    rv = rng.normal(0, 25, n)                                  # radial velocities, km/s
    flux = _stars(types, rng, loglam, rv).astype(np.float64)
    centres, sig, ew = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros((n, 2))
    todo = np.flatnonzero(kind > 0)
    hb_ratio = rng.uniform(0.15, 0.4, n)
    base = flux.copy()
    for _ in range(50):                       # redraw profiles that would not be visible
        if todo.size == 0:
            break
        c, s, e = _draw_profiles(kind[todo], rng)
        centres[todo], sig[todo], ew[todo] = c, s, e
        em = balmer_emission(loglam, HALPHA, c, s, e, rv[todo])
        trial = base[todo] + em
        ok = _visible(trial, loglam, kind[todo], rv[todo])
        flux[todo[ok]] = trial[ok]
        todo = todo[~ok]
    if todo.size:                              # give up on the rare stubborn draw: relabel it
        kind[todo] = 0
    hb = (loglam.min() < np.log10(HBETA + 20)) and (loglam.max() > np.log10(HBETA - 20))
    if hb:
        em_b = kind > 0
        flux[em_b] += balmer_emission(loglam, HBETA, centres[em_b], sig[em_b],
                                      ew[em_b] * hb_ratio[em_b, None] * HBETA / HALPHA, rv[em_b])
    snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), n))
    sigma = np.sqrt(np.clip(flux, 0.05, None)) / snr[:, None]          # photon-like noise
    noisy = flux + rng.normal(size=flux.shape) * sigma
    scale = np.exp(rng.normal(np.log(1000), 1.0, n))[:, None]           # LAMOST-like counts
    meta = Table({"TARGETID": np.arange(start_id, start_id + n, dtype=np.int64),
                  "LABEL": np.array([CLASSES[k] for k in kind], dtype="U11"),
                  "STYPE": types.astype("U2"), "SNR": snr.astype(np.float32),
                  "EW_HA": ew.sum(axis=1).astype(np.float32),
                  "PEAK_SEP": np.where(kind == 2, centres[:, 1] - centres[:, 0], 0).astype(np.float32),
                  "RV": rv.astype(np.float32)})
    return SpectraBatch(loglam, (noisy * scale).astype(np.float32),
                        (1.0 / (sigma * scale) ** 2).astype(np.float32), None, meta,
                        source="simulate_emission_stars")
