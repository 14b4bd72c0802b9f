"""A stellar continuum for galaxies when no verification fit provides one.

Why BC03 and not SDSS's spEigenGal: SDSS's galaxy eigenspectra carry emission lines, so a
continuum built from them would eat the lines it is meant to sit under.  The bundled
Bruzual & Charlot (2003) SSPs (the simulator's, ``data/templates/galaxies.npz``) are pure
starlight; their first principal components, broadened to a typical velocity dispersion,
plus a cubic polynomial (dust, flux calibration), fitted with every emission-line pixel
masked, give the Balmer absorption under Hβ and Hα that a running median would miss.  The
fit is linear: one batched (N, K, K) solve.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d, uniform_filter1d

from .fit import fit_pixels
from .linear import inverse
from .noise import bin_noise
from .problem import bin_sum
from .table import C_KMS, TABLE

__all__ = ["stellar_continuum", "line_mask"]

_N_PCA = 6
_N_POLY = 4
_BIN = 6              # pixels per bin of the continuum fit
_N_MULT = 3          # multiplicative Legendre terms on the SSP components (dust, calibration)
_VDISP = (60.0, 160.0)  # km/s added to BC03's own ~75 km/s: total σ* ≈ 95 and 175 km/s, star-forming to early-type
_MASK_KMS = 700.0       # half-width of the emission-line mask
_MASKED = tuple(ln.wave for ln in TABLE if "narrow" in ln.kind)


@lru_cache(maxsize=None)
def _basis() -> tuple[np.ndarray, float, float]:
    """(K, R) orthonormal SSP components on the rest grid, its start and step (log10 Å)."""
    path = Path(__file__).resolve().parents[1] / "data" / "templates" / "galaxies.npz"
    with np.load(path, allow_pickle=False) as d:
        ssp = np.asarray(d["ssp"], float)
        start, step = float(d["loglam_start"]), float(d["loglam_step"])
    ssp = ssp / np.maximum(np.abs(ssp).mean(1, keepdims=True), 1e-30)
    pix = C_KMS * np.log(10) * step
    # components of the SSPs at several velocity dispersions: a galaxy's absorption-line
    # profiles (the Balmer cores under the emission lines) then fit whatever its σ*
    ssp = np.concatenate([gaussian_filter1d(ssp, v / pix, axis=1) for v in _VDISP])
    # principal components from the small (40 × 40) Gram matrix: the SVD of the (40, 13301)
    # array through a multi-threaded BLAS cost 0.7 CPU-s on a busy machine, 37 ms on one
    # thread, and was paid once per process (a third of a 2000-spectrum run's line stage)
    val, vec = np.linalg.eigh(np.einsum("ip,jp->ij", ssp, ssp))
    top = np.argsort(val)[::-1][:_N_PCA]
    comps = np.einsum("ik,ip->kp", vec[:, top], ssp) / np.sqrt(val[top])[:, None]
    return comps.astype(np.float32), start, step


def line_mask(loglam: np.ndarray, z: np.ndarray, half_kms: float = _MASK_KMS) -> np.ndarray:
    """(N, P) True within ``half_kms`` of any narrow emission line at redshift ``z``, on any
    grid (a nearest-line search over every pixel; on a uniform grid :func:`_masked_bins`
    sets the same intervals on the bins directly)."""
    loglam = np.asarray(loglam, float)
    lz = np.log10(1 + np.asarray(z, float))
    h = half_kms / (C_KMS * np.log(10))
    ll = np.log10(np.sort(_MASKED))
    lrest = loglam[None, :] - lz[:, None]
    k = np.clip(np.searchsorted(ll, lrest), 1, ll.size - 1)
    dist = np.minimum(np.abs(lrest - ll[k - 1]), np.abs(lrest - ll[k]))
    return dist < h


def _masked_bins(loglam: np.ndarray, z: np.ndarray, nb: int) -> np.ndarray:
    """(N, nb) True where a bin of :data:`_BIN` pixels holds a pixel of
    :func:`line_mask`: the same intervals, set on the bins (a sixth of the pixels'
    difference array, and no (N, P) mask to build and apply)."""
    p = loglam.size
    step = np.diff(loglam)
    if p < 2 or not np.allclose(step, step[0], rtol=1e-6, atol=0):
        m = line_mask(loglam, z)[:, :nb * _BIN]
        return m.reshape(len(m), nb, _BIN).any(2)
    lz = np.log10(1 + np.asarray(z, float))
    h = _MASK_KMS / (C_KMS * np.log(10)) / step[0]
    pos = (np.log10(np.sort(_MASKED))[None, :] + lz[:, None] - loglam[0]) / step[0]
    lo = np.clip(np.ceil(pos - h).astype(np.int64), 0, p)          # pixels [lo, hi)
    hi = np.clip(np.floor(pos + h).astype(np.int64) + 1, 0, p)
    some = hi > lo
    b0 = np.minimum(lo // _BIN, nb)
    b1 = np.minimum((hi - 1) // _BIN + 1, nb)
    # +1 where a masked interval starts, −1 after it ends, counted per (row, bin) with
    # bincount (np.add.at's unbuffered loop was most of this function)
    rows = np.broadcast_to(np.arange(lz.size)[:, None] * (nb + 1), lo.shape)
    size = lz.size * (nb + 1)
    d = (np.bincount((rows + b0)[some], minlength=size)
         - np.bincount((rows + b1)[some], minlength=size)).reshape(lz.size, nb + 1)
    return np.cumsum(d, axis=1)[:, :nb] > 0


def _design(ll, pc, lz, pairs) -> np.ndarray:
    """(N, K·J + J, C) basis at log λ ``ll`` ((C,) or (N, C)) of galaxies at log10(1 + z)
    ``lz`` (N, 1), with polynomials ``pc`` ((J, C) or (J, N, C)), the components from the
    pair table ``pairs`` (:func:`_pair_table`)."""
    _, rstart, rstep = _basis()
    n = lz.shape[0]
    k_t = pairs.shape[0] // 2
    pos = (np.broadcast_to(ll, (n,) + np.shape(ll)[-1:]) - lz - rstart) / rstep
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, pairs.shape[1] - 1)
    f = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    c = i0.shape[1]
    pc = np.broadcast_to(pc if pc.ndim == 3 else pc[:, None, :], (_N_POLY, n, c))
    A = np.empty((n, k_t * _N_MULT + _N_POLY, c), np.float32)
    # every component at once (one gather, one broadcast product: a loop over the
    # 6 × 3 terms was a fifth of the continuum fit); one gather from the (2K, R − 1)
    # pair table, each neighbour then weighted in place (two fancy-index gathers and
    # three temporaries were a third of the continuum fit)
    g = pairs.take(i0, axis=1)                                                 # (2K, N, C)
    t = np.multiply(g[:k_t], 1 - f, out=g[:k_t])                               # (K, N, C)
    t += np.multiply(g[k_t:], f, out=g[k_t:])
    np.multiply(t.transpose(1, 0, 2)[:, :, None, :], pc[:_N_MULT].transpose(1, 0, 2)[:, None],
                out=A[:, :k_t * _N_MULT].reshape(n, k_t, _N_MULT, c))
    A[:, k_t * _N_MULT:] = pc.transpose(1, 0, 2)
    return A


def stellar_continuum(loglam, flux, ivar, z, at, with_cov: bool = False,
                      noise_corr: float = 0.0):
    """Best-fit stellar continuum of galaxies at redshifts ``z``, lines masked, at the
    pixels ``at`` (N, M) (a line fit needs it in its windows alone: evaluating every pixel
    cost a fifth of the stage, and no caller needs the whole grid).

    Model: Σ_kj c_kj T_k(λ/(1+z)) P_j(λ) — the SSP components times a low-order Legendre
    polynomial (multiplicative, as dust and flux calibration act) — plus an additive
    polynomial.  Why multiplicative: with an additive cubic only, dust-reddened galaxies
    were fitted with a distorted population mix whose Balmer absorption was ~2 % of the
    emission line too shallow under Hα and Hβ (line fluxes 2–3 % low, Hα pulls centred at
    −1.6).  (The templates span 590–12600 Å rest, every galaxy window at z ≤ 1.)

    The fit runs on bins of :data:`_BIN` pixels (ivar-weighted means, lines masked first)
    against the templates averaged over the same bins: every pixel counts (the continuum's
    error under a line is what limits Balmer-line errors) at a sixth of the cost.

    ``with_cov``: also return ``design(idx)`` → (N, K, M) basis at per-row pixel indices
    and the (N, K, K) covariance of the coefficients (white errors × the bins' variance
    factor for pixel noise of lag-1 correlation ``noise_corr``), so that a line fit on
    top can propagate the continuum's uncertainty into its errors."""
    loglam = np.asarray(loglam, float)
    z = np.atleast_1d(np.asarray(z, float))
    n, p = flux.shape
    x = np.linspace(-1, 1, p)
    poly = np.polynomial.legendre.legvander(x, _N_POLY - 1).T.astype(np.float32)   # (J, P)
    lz = np.log10(1 + z)[:, None]

    def design(cols):
        """The basis at pixel columns ``cols``, (C,) or per row (N, C)."""
        cols = np.clip(cols, 0, p - 1)
        pc = poly[:, cols]
        return _design(loglam[cols], pc, lz, _pair_table(False))

    # bins of _BIN pixels: data ivar-weighted, templates and polynomials bin-averaged
    nb = p // _BIN
    llb = loglam[:nb * _BIN].reshape(nb, _BIN).mean(1)
    pcb = poly[:, :nb * _BIN].reshape(_N_POLY, nb, _BIN).mean(2)
    parts = [_binned_fit(loglam, flux[r], ivar[r], z[r], lz[r], llb, pcb)
             for r in (slice(a, a + _ROWS) for a in range(0, max(n, 1), _ROWS))]
    H = np.concatenate([h for h, _ in parts])
    coef = np.concatenate([c for _, c in parts])
    B = design(np.asarray(at))
    out = np.matmul(coef[:, None, :], B)[:, 0]              # (einsum: 10× slower)
    if not with_cov:
        return out
    design_at = lambda idx: B if np.array_equal(idx, at) else design(idx)  # noqa: E731
    return out, design_at, inverse(H) * bin_noise(_BIN, noise_corr)[0]


#: rows of the binned fit done together (:func:`_binned_fit`)
_ROWS = 64


def _binned_fit(loglam, flux, ivar, z, lz, llb, pcb):
    """(normal matrix (n, K, K) float64, coefficients (n, K) float32) of the fit on bins of
    :data:`_BIN` pixels, for a few rows of the batch (:data:`_ROWS`).

    Why in groups of rows: the binned basis, its weighted copy and the gathered template
    pairs of 300 galaxies are 10–18 MB each, each freshly mapped and paged in by the
    kernel at every call; 64 rows at a time keep them near the caches and the continuum
    fit of 306 galaxies went from 61 to 43 ms, bit for bit the same (every step is per
    row)."""
    n, nb = flux.shape[0], llb.size
    sl = slice(0, nb * _BIN)
    w_pix = np.asarray(ivar, np.float32)[:, sl].reshape(n, nb, _BIN)
    # a bin with any masked pixel (a line's edge, a bad pixel) is left out: its data mean
    # would not be over the span its template average covers
    good = _bin_all_positive(w_pix) & ~_masked_bins(loglam, z, nb)
    w = np.where(good, bin_sum(w_pix), 0.0)
    yb = bin_sum(w_pix * np.asarray(flux, np.float32)[:, sl].reshape(n, nb, _BIN))
    yb = np.where(w > 0, yb / np.where(w > 0, w, 1), 0.0).astype(np.float32)
    A = _design(llb, pcb, lz, _pair_table(True))
    Aw = A * w[:, None, :]
    H = (Aw @ A.transpose(0, 2, 1)).astype(float)
    k = np.arange(H.shape[1])
    H[:, k, k] += 1e-9 * np.maximum(H[:, k, k].max(1, keepdims=True), 1e-30)
    rhs = (Aw @ yb[..., None]).astype(float)
    return H, np.linalg.solve(H, rhs)[..., 0].astype(np.float32)


def _bin_all_positive(x: np.ndarray) -> np.ndarray:
    """``(x > 0).all(2)`` as a chain over the last axis (see :func:`bin_sum`)."""
    out = x[..., 0] > 0
    for j in range(1, x.shape[-1]):
        out &= x[..., j] > 0
    return out


@lru_cache(maxsize=None)
def _pair_table(boxcar: bool) -> np.ndarray:
    """(2K, R − 1) table of the components (bin-averaged if ``boxcar``) at rest pixel i
    (rows :K) and i + 1 (rows K:): the interpolation's two neighbours of every component
    in one gather."""
    t = _boxcar_basis() if boxcar else _basis()[0]
    pair = np.concatenate([t[:, :-1], t[:, 1:]])
    pair.flags.writeable = False
    return pair


@lru_cache(maxsize=None)
def _boxcar_basis() -> np.ndarray:
    """The components averaged over :data:`_BIN` rest pixels (the rest step is the fit
    grid's, so a bin of observed pixels is a bin of rest pixels)."""
    return uniform_filter1d(_basis()[0], _BIN, axis=1, mode="nearest").astype(np.float32)


@lru_cache(maxsize=None)
def _broadened_template(spec: str) -> np.ndarray:
    """A bundled rest-frame template (``name:σ``, e.g. ``feii_uv:1200``) broadened to σ
    km/s, normalised to unit peak; the Fe II templates are I Zw 1's (FWHM ≈ 900 km/s)."""
    name, sigma = spec.split(":")
    path = Path(__file__).resolve().parents[1] / "data" / "templates" / "galaxies.npz"
    with np.load(path, allow_pickle=False) as d:
        t = np.asarray(d[name], float)
        step = float(d["loglam_step"])
    pix = C_KMS * np.log(10) * step
    extra = np.sqrt(max(float(sigma) ** 2 - (900.0 / 2.3548) ** 2, 0.0)) / pix
    t = gaussian_filter1d(t, extra) if extra > 0 else t
    return (t / max(np.abs(t).max(), 1e-30)).astype(np.float32)


def template_columns(model, loglam, z) -> np.ndarray:
    """(N, M, T) values of ``model.templates`` at the centres of its fit bins at redshifts
    ``z``, each column scaled to unit mean over the window (conditioning)."""
    _, rstart, rstep = _basis()
    loglam = np.asarray(loglam, float)
    z = np.atleast_1d(np.asarray(z, float))
    idx = fit_pixels(model, loglam, z)
    step = loglam[1] - loglam[0]
    ll = loglam[0] + step * (idx + 0.5 * (model.bin - 1)) - np.log10(1 + z)[:, None]
    out = np.empty(idx.shape + (len(model.templates),), np.float32)
    for e, spec in enumerate(model.templates):
        t = _broadened_template(spec)
        v = np.interp((ll - rstart) / rstep, np.arange(t.size), t, left=0.0, right=0.0)
        scale = np.abs(v).mean(1, keepdims=True)
        out[:, :, e] = np.where(scale > 1e-6, v / np.where(scale > 1e-6, scale, 1), 0.0)
    return out
