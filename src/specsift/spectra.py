"""The one data model every reader produces and every model consumes.

A :class:`SpectraBatch` holds N spectra on one shared log10-wavelength grid with
inverse variance and a bad-pixel mask, plus an astropy ``Table`` of per-spectrum
metadata.  Nothing downstream needs to know which survey a spectrum came from.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from astropy.table import Table, vstack

from .constants import GRID_MATCH_PIXELS, RESAMPLE_IDENTITY_ATOL, SAME_GRID_ATOL
from .flags import InputFlag

__all__ = ["LogGrid", "DEFAULT_GRID", "SpectraBatch", "rebin_matrix", "pixel_edges",
           "row_median_mad", "median_snr", "same_grid", "sanitise", "grid_offset"]


def same_grid(a: np.ndarray, b: np.ndarray, atol: float = SAME_GRID_ATOL) -> bool:
    """Whether two log10-λ arrays are one grid (same length, every value within ``atol``)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=atol))


@dataclass(frozen=True)
class LogGrid:
    """A regular grid in log10(wavelength / Å), defined by start, step and size."""

    start: float
    step: float
    size: int

    @classmethod
    def from_range(cls, start: float, stop: float, step: float) -> "LogGrid":
        """Grid from ``start`` to ``stop`` inclusive (both log10 Å)."""
        size = int(round((stop - start) / step)) + 1
        return cls(float(start), float(step), size)

    @classmethod
    def from_loglam(cls, loglam: np.ndarray, rtol: float = 1e-3) -> "LogGrid":
        """Recognise a regular log grid; raise ValueError if the steps are not uniform."""
        loglam = np.asarray(loglam, dtype=np.float64)
        if loglam.ndim != 1 or loglam.size < 2:
            raise ValueError("a log-lambda grid needs at least two points in a 1-D array")
        steps = np.diff(loglam)
        step = float(np.median(steps))
        if step <= 0 or np.any(np.abs(steps - step) > rtol * step):
            raise ValueError("wavelength grid is not a regular increasing log10 grid")
        return cls(float(loglam[0]), step, loglam.size)

    @property
    def loglam(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.size, dtype=np.float64)

    @property
    def wave(self) -> np.ndarray:
        return 10.0 ** self.loglam

    def matches(self, loglam: np.ndarray, atol: float | None = None) -> bool:
        """True when ``loglam`` is this grid (to a small fraction of a pixel)."""
        loglam = np.asarray(loglam)
        if loglam.shape != (self.size,):
            return False
        atol = GRID_MATCH_PIXELS * self.step if atol is None else atol
        return bool(np.allclose(loglam, self.loglam, rtol=0, atol=atol))

    def to_dict(self) -> dict:
        return {"start": self.start, "step": self.step, "size": self.size}

    def __str__(self) -> str:
        w = self.wave
        return (f"log10 λ {self.start:.4f}…{self.loglam[-1]:.4f} step {self.step:g} "
                f"({self.size} px, {w[0]:.0f}–{w[-1]:.0f} Å)")


#: SDSS / GaSNet grid: log10 λ 3.5563 → 3.9638, step 1e-4 (4076 px, 3600–9200 Å).
DEFAULT_GRID = LogGrid.from_range(3.5563, 3.9638, 1e-4)


def row_median_mad(a: np.ndarray, n_good: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and median absolute deviation of the finite values of each row ((N, 1) each,
    NaN where a row has none), exact, from a single sort.

    The sort puts NaNs last, so the median is the middle of the first ``n_good`` values.
    The absolute deviations are then two sorted runs (below the median, read backwards, and
    above it), so their k-th smallest is found by a binary search over how many come from
    each run, vectorised over rows — instead of a second sort (it is on the inference hot
    path: one sort of a 1000 × 4000 batch costs ~50 ms on one core)."""
    s = np.sort(a, axis=1)
    n_rows, p = s.shape
    n = n_good.astype(np.int64)
    rows = np.arange(n_rows)

    def at(idx):
        return s[rows, np.clip(idx, 0, p - 1)]

    med = 0.5 * (at((n - 1) // 2) + at(n // 2))
    below = (s < med[:, None]).sum(axis=1)                 # run A: med − s[below-1-t]
    size_b = n - below                                    # run B: s[below+t] − med

    def dev_a(t):
        return np.where(t < below, med - at(below - 1 - t), np.inf)

    def dev_b(t):
        return np.where(t < size_b, at(below + t) - med, np.inf)

    def kth(k):
        lo = np.maximum(0, k + 1 - size_b)
        hi = np.minimum(below, k + 1)
        for _ in range(int(np.ceil(np.log2(p + 1))) + 1):
            i = (lo + hi) // 2
            j = k + 1 - i
            more = (lo < hi) & (dev_a(i) < np.where(j > 0, dev_b(j - 1), -np.inf))
            lo = np.where(more, i + 1, lo)
            hi = np.where((lo < hi) & ~more, i, hi)
        i = lo
        j = k + 1 - i
        return np.maximum(np.where(i > 0, dev_a(i - 1), -np.inf),
                          np.where(j > 0, dev_b(j - 1), -np.inf))

    with np.errstate(invalid="ignore"):                   # rows without finite values
        mad = 0.5 * (kth((n - 1) // 2) + kth(n // 2))
    none = n <= 0
    med = np.where(none, np.nan, med)[:, None]
    mad = np.where(none, np.nan, mad)[:, None]
    return med, mad


def median_snr(flux, ivar, good=None, step: int = 1) -> np.ndarray:
    """Median |f|·√ivar per spectrum over ``good`` pixels (default: ivar > 0 and finite
    flux), like SDSS's SN_MEDIAN; 0 when none. ``step`` > 1 uses every step-th pixel: a
    median of ~1000 pixels is within a few per cent of the full one at a fraction of the
    cost of the sort, which matters on an inference hot path."""
    if good is None:
        good = (ivar > 0) & np.isfinite(flux)
    g = good[:, ::step]
    sn = np.where(g, np.abs(flux[:, ::step]) * np.sqrt(np.where(g, ivar[:, ::step], 0.0)),
                  np.nan)
    med, _ = row_median_mad(sn, g.sum(axis=1))
    return np.nan_to_num(med[:, 0], nan=0.0)


def pixel_edges(loglam: np.ndarray) -> np.ndarray:
    """Pixel boundaries (log10 Å) half-way between centres, extrapolated at the ends."""
    loglam = np.asarray(loglam, dtype=np.float64)
    mid = 0.5 * (loglam[1:] + loglam[:-1])
    first = loglam[0] - (mid[0] - loglam[0])
    last = loglam[-1] + (loglam[-1] - mid[-1])
    return np.concatenate([[first], mid, [last]])


def rebin_matrix(loglam_in: np.ndarray, loglam_out: np.ndarray) -> sp.csr_matrix:
    """Sparse (P_out, P_in) matrix of overlap fractions for flux-conserving rebinning.

    Entry (j, i) is the length in wavelength of the overlap of input pixel i with output
    pixel j, divided by the width of output pixel j.  Applying it to a flux density
    gives the mean flux density over each output pixel, so ∫f dλ is conserved over
    every output pixel that lies inside the input coverage.
    """
    e_in = 10.0 ** pixel_edges(loglam_in)
    e_out = 10.0 ** pixel_edges(loglam_out)
    if np.any(np.diff(e_in) <= 0):
        raise ValueError("input wavelength grid is not strictly increasing")
    # Every boundary of either grid cuts the wavelength axis into segments that each
    # lie in exactly one input and one output pixel (or outside one of the grids).
    cuts = np.union1d(e_in, e_out)
    lo, hi = cuts[:-1], cuts[1:]
    centre = 0.5 * (lo + hi)
    i = np.searchsorted(e_in, centre) - 1
    j = np.searchsorted(e_out, centre) - 1
    inside = (i >= 0) & (i < e_in.size - 1) & (j >= 0) & (j < e_out.size - 1)
    i, j, length = i[inside], j[inside], (hi - lo)[inside]
    width_out = np.diff(e_out)
    weights = length / width_out[j]
    return sp.csr_matrix((weights, (j, i)), shape=(e_out.size - 1, e_in.size - 1))


def _to_table(meta: Table | None, n: int) -> Table:
    if meta is None:
        meta = Table()
    elif not isinstance(meta, Table):
        meta = Table(meta)
    if len(meta.colnames) and len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows for {n} spectra")
    if not len(meta.colnames):
        meta = Table({"TARGETID": np.arange(n, dtype=np.int64)})
    if "INPUT_FLAGS" not in meta.colnames:
        meta["INPUT_FLAGS"] = np.zeros(n, dtype=np.int32)
    return meta


def survey_of(meta, n: int) -> np.ndarray:
    """(n,) upper-case survey names from the reader's SURVEY column ("" where absent): the
    key by which the verification (STAR floor, SUBTYPE polynomial, nominal resolution) and
    the anomaly score choose a survey's own settings."""
    if meta is None or "SURVEY" not in getattr(meta, "colnames", ()):
        return np.full(n, "", dtype="U1")
    return np.char.upper(np.char.strip(np.asarray(meta["SURVEY"]).astype(str)))


def meta_kind(a) -> str:
    """The kind by which meta columns of several tables are joined or clash: "num" for
    numbers and booleans, "str" for text, else the dtype kind."""
    k = np.asarray(a).dtype.kind
    return "num" if k in "iufb" else "str" if k in "US" else k


def _stack_meta(tables: list[Table]) -> Table:
    """Stack meta tables; a column missing from some gets '' / NaN / -1 / False there
    (never a masked column, whose hidden values would leak into stores and catalogs),
    and a column whose types clash between tables is dropped with a warning."""
    if len(tables) == 1:
        return tables[0].copy()
    names = list(dict.fromkeys(c for t in tables for c in t.colnames))
    kinds: dict[str, set] = {}
    for t in tables:
        for c in t.colnames:
            kinds.setdefault(c, set()).add(meta_kind(t[c]))
    clash = [c for c in names if len(kinds[c]) > 1]
    if clash:
        warnings.warn(f"meta column(s) {', '.join(clash)} have different types in the "
                      f"batches being joined and were dropped", stacklevel=3)
        tables = [t[[c for c in t.colnames if c not in clash]] for t in tables]
    out = vstack(tables, join_type="outer", metadata_conflicts="silent")
    for name in out.colnames:
        col = out[name]
        if getattr(col, "mask", None) is None or not np.any(col.mask):
            if hasattr(col, "mask"):
                out[name] = np.asarray(col)
            continue
        k = col.dtype.kind
        fill = "" if k in "US" else np.nan if k in "fc" else False if k == "b" else -1
        out[name] = col.filled(fill)
    return out


def sanitise(flux: np.ndarray, ivar: np.ndarray, mask: np.ndarray, flags: np.ndarray):
    """(flux, ivar, mask, number of spectra concerned) with non-finite flux and negative or
    non-finite ivar masked (flux 0, ivar 0) and ivar 0 wherever masked; ``flags`` (N,) gets
    NONFINITE_FLUX, BAD_IVAR and NO_GOOD_PIXELS in place.  The one rule of
    :class:`SpectraBatch` and of readers that assemble batches themselves
    (:func:`specsift.io.assemble.assemble`).  A caller's arrays are copied before any change."""
    bad_flux = ~np.isfinite(flux)
    bad_ivar = ~np.isfinite(ivar) | (ivar < 0)
    if bad_flux.any() or bad_ivar.any() or (mask & (ivar != 0)).any():
        flux, ivar = flux.copy(), ivar.copy()
    flags[bad_flux.any(axis=1)] |= InputFlag.NONFINITE_FLUX
    flags[bad_ivar.any(axis=1)] |= InputFlag.BAD_IVAR
    flux[bad_flux] = 0.0
    ivar[bad_ivar | bad_flux] = 0.0
    mask = mask | bad_flux | bad_ivar | (ivar <= 0)
    ivar[mask] = 0.0
    empty = ~(~mask).any(axis=1)
    flags[empty] |= InputFlag.NO_GOOD_PIXELS
    return flux, ivar, mask, int(((bad_flux | bad_ivar).any(axis=1) | empty).sum())


def sanitise_message(source: str, n_bad: int) -> str:
    return (f"{source}: {n_bad} spectrum(s) with NaN/inf flux, negative ivar or no good "
            f"pixels were masked and flagged in INPUT_FLAGS")


def grid_offset(loglam: np.ndarray, grid: "LogGrid") -> int | None:
    """``k`` when ``loglam`` is ``grid``'s own pixels from pixel ``k`` on (same step, a
    whole-pixel offset, each centre within RESAMPLE_IDENTITY_ATOL; ``k`` may be negative
    or past the end), else None.  Flux-conserving rebinning between such grids moves each
    pixel unchanged, so it is a shift (SDSS and BOSS spec files on the default grid)."""
    loglam = np.asarray(loglam, np.float64)
    if loglam.ndim != 1 or loglam.size < 2:
        return None
    k = int(round((loglam[0] - grid.start) / grid.step))
    exact = grid.start + grid.step * np.arange(k, k + loglam.size, dtype=np.float64)
    return k if np.abs(loglam - exact).max() <= RESAMPLE_IDENTITY_ATOL else None


class SpectraBatch:
    """N spectra on one log10-λ grid.

    Attributes
    ----------
    loglam : (P,) float64, log10 wavelength in Å of pixel centres (vacuum as given by the survey)
    flux, ivar : (N, P) float32, flux density (SDSS units 1e-17 erg/s/cm²/Å) and its inverse variance
    mask : (N, P) bool, True where a pixel is bad; always ``ivar == 0`` there
    meta : astropy Table with one row per spectrum (TARGETID, SOURCE, labels, INPUT_FLAGS …)
    resolution : (N, P) float32 or None, the instrument's line-spread function as a
        Gaussian-equivalent σ in Å at each pixel (NaN where unknown), for stages that
        compare spectra with templates (convolve the template to it).  Readers set it when
        the file carries it (DESI ``<ARM>_RESOLUTION``); None otherwise.  Rebinning keeps
        it on the new grid; stores do not save it.
    """

    resolution: np.ndarray | None = None

    def __init__(self, loglam, flux, ivar=None, mask=None, meta: Table | None = None,
                 source: str = "<arrays>"):
        loglam = np.asarray(loglam, dtype=np.float64)
        flux = np.atleast_2d(np.asarray(flux, dtype=np.float32))
        n, p = flux.shape
        if loglam.shape != (p,):
            raise ValueError(f"{source}: wavelength grid has {loglam.size} pixels, "
                             f"flux has {p}")
        if p > 1 and not np.all(np.diff(loglam) > 0):
            raise ValueError(f"{source}: wavelength grid is not strictly increasing")
        ivar = (np.ones_like(flux) if ivar is None
                else np.atleast_2d(np.asarray(ivar, dtype=np.float32)))
        if ivar.shape != flux.shape:
            raise ValueError(f"{source}: ivar shape {ivar.shape} does not match flux "
                             f"shape {flux.shape}")
        mask = (np.zeros(flux.shape, bool) if mask is None
                else np.atleast_2d(np.asarray(mask, dtype=bool)))
        if mask.shape != flux.shape:
            raise ValueError(f"{source}: mask shape {mask.shape} does not match flux "
                             f"shape {flux.shape}")
        self.loglam, self.flux, self.ivar, self.mask = loglam, flux, ivar, mask
        self.meta = _to_table(meta, n)
        self._sanitise(source)

    # -- construction helpers -------------------------------------------------
    @classmethod
    def _unchecked(cls, loglam, flux, ivar, mask, meta: Table,
                   resolution: np.ndarray | None = None) -> "SpectraBatch":
        """A batch from arrays that are already valid (slices, stacks, rebinned or stored
        batches, placeholder rows): skips the O(N·P) checks of ``__init__`` on purpose."""
        out = object.__new__(cls)
        out.loglam, out.flux, out.ivar, out.mask, out.meta = loglam, flux, ivar, mask, meta
        out.resolution = resolution
        return out

    def _sanitise(self, source: str) -> None:
        """Mask non-finite flux and negative/non-finite ivar; flag the spectra concerned."""
        flags = np.asarray(self.meta["INPUT_FLAGS"], dtype=np.int32).copy()
        self.flux, self.ivar, self.mask, n_bad = sanitise(self.flux, self.ivar, self.mask, flags)
        if n_bad:
            warnings.warn(sanitise_message(source, n_bad), stacklevel=3)
        self.meta["INPUT_FLAGS"] = flags

    @classmethod
    def from_spectra(cls, waves: Sequence[np.ndarray], fluxes: Sequence[np.ndarray],
                     ivars: Sequence[np.ndarray | None], masks: Sequence[np.ndarray | None] | None = None,
                     meta: Table | None = None, grid: LogGrid = DEFAULT_GRID,
                     source: str = "<arrays>") -> "SpectraBatch":
        """Put spectra with their own wavelength arrays (Å) on ``grid``.

        Spectra sharing one wavelength array are rebinned together with one sparse matrix.
        """
        n = len(fluxes)
        masks = masks if masks is not None else [None] * n
        out_f = np.zeros((n, grid.size), np.float32)
        out_i = np.zeros((n, grid.size), np.float32)
        out_m = np.ones((n, grid.size), bool)
        for k in range(n):
            one = cls(np.log10(np.asarray(waves[k], dtype=np.float64)), fluxes[k], ivars[k],
                      masks[k], meta=None, source=source)
            r = one.resample(grid)
            out_f[k], out_i[k], out_m[k] = r.flux[0], r.ivar[0], r.mask[0]
            if one.meta["INPUT_FLAGS"][0]:
                meta = _to_table(meta, n)
                meta["INPUT_FLAGS"][k] |= one.meta["INPUT_FLAGS"][0]
        return cls(grid.loglam, out_f, out_i, out_m, meta, source=source)

    @classmethod
    def from_specutils(cls, spectra, grid: LogGrid | None = DEFAULT_GRID,
                       meta: Table | None = None) -> "SpectraBatch":
        """specutils Spectrum(s) on ``grid``; see :func:`specsift.specutils_io.from_specutils`."""
        from .specutils_io import from_specutils
        return from_specutils(spectra, grid, meta)

    def to_specutils(self):
        """One 2-D specutils Spectrum; see :func:`specsift.specutils_io.to_specutils`."""
        from .specutils_io import to_specutils
        return to_specutils(self)

    # -- basic container behaviour -------------------------------------------
    def __len__(self) -> int:
        return self.flux.shape[0]

    @property
    def npix(self) -> int:
        return self.flux.shape[1]

    @property
    def wave(self) -> np.ndarray:
        return 10.0 ** self.loglam

    def __getitem__(self, index) -> "SpectraBatch":
        """Select spectra by int, slice, boolean mask or index array (always a batch)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        res = None if self.resolution is None else self.resolution[index]
        return SpectraBatch._unchecked(self.loglam, self.flux[index], self.ivar[index],
                                       self.mask[index], self.meta[index], res)

    select = __getitem__

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def __repr__(self) -> str:
        return (f"<SpectraBatch {len(self)} spectra × {self.npix} px, "
                f"{self.wave[0]:.0f}–{self.wave[-1]:.0f} Å>")

    @classmethod
    def concatenate(cls, batches: Iterable["SpectraBatch"]) -> "SpectraBatch":
        """Stack batches that share a grid (raises if grids differ)."""
        batches = list(batches)
        if not batches:
            raise ValueError("nothing to concatenate")
        ref = batches[0].loglam
        for b in batches[1:]:
            if not same_grid(b.loglam, ref):
                raise ValueError("cannot concatenate batches on different wavelength grids; "
                                 "resample them to one grid first")
        res = None
        if any(b.resolution is not None for b in batches):
            res = np.concatenate([np.full(b.flux.shape, np.nan, np.float32)
                                  if b.resolution is None else b.resolution for b in batches])
        return SpectraBatch._unchecked(ref, np.concatenate([b.flux for b in batches]),
                                       np.concatenate([b.ivar for b in batches]),
                                       np.concatenate([b.mask for b in batches]),
                                       _stack_meta([b.meta for b in batches]), res)

    # -- physics helpers -------------------------------------------------------
    def resample(self, grid: LogGrid | np.ndarray = DEFAULT_GRID,
                 min_coverage: float = 0.5) -> "SpectraBatch":
        """Flux-conserving rebinning onto ``grid`` with inverse-variance propagation.

        Each output pixel is the mean flux density of the good input pixels it overlaps,
        weighted by overlap length w_i; its variance is Σ w_i² σ_i² / (Σ w_i)².  An output
        pixel whose good-pixel coverage is below ``min_coverage`` of its width, or that lies
        outside the spectrum, gets ivar = 0 and mask = True.
        """
        loglam_out = grid.loglam if isinstance(grid, LogGrid) else np.asarray(grid, float)
        if same_grid(loglam_out, self.loglam, RESAMPLE_IDENTITY_ATOL):
            return self
        W = rebin_matrix(self.loglam, loglam_out)            # (P_out, P_in)
        good = (~self.mask).astype(np.float64)               # (N, P_in)
        var = np.where(self.mask, 0.0, 1.0 / np.where(self.ivar > 0, self.ivar, 1.0))
        cover = (W @ good.T).T                               # Σ w_i over good pixels
        num = (W @ (self.flux * good).T).T
        var_num = ((W.multiply(W)) @ (var * good).T).T       # Σ w_i² σ_i²
        ok = cover >= min_coverage
        safe = np.where(ok, cover, 1.0)
        flux = np.where(ok, num / safe, 0.0)
        var_out = var_num / safe**2
        ivar = np.where(ok & (var_out > 0), 1.0 / np.where(var_out > 0, var_out, 1.0), 0.0)
        res = None
        if self.resolution is not None:      # overlap-weighted mean σ of the known pixels
            known = np.isfinite(self.resolution)
            wsum = (W @ known.T.astype(np.float64)).T
            rsum = (W @ np.where(known, self.resolution, 0.0).T).T
            with np.errstate(invalid="ignore", divide="ignore"):
                res = np.where(wsum > 0, rsum / wsum, np.nan).astype(np.float32)
        ivar32 = ivar.astype(np.float32)
        out = SpectraBatch._unchecked(loglam_out, flux.astype(np.float32), ivar32,
                                      ~ok | (ivar32 <= 0), self.meta.copy(copy_data=True), res)
        flags = np.asarray(out.meta["INPUT_FLAGS"], dtype=np.int32)
        flags[~(~out.mask).any(axis=1)] |= InputFlag.NO_GOOD_PIXELS
        out.meta["INPUT_FLAGS"] = flags
        return out

    def median_snr(self) -> np.ndarray:
        """Median of flux·√ivar over good pixels, per spectrum (0 when none)."""
        snr = np.where(self.mask, np.nan, self.flux * np.sqrt(self.ivar))
        med, _ = row_median_mad(snr, np.isfinite(snr).sum(axis=1))
        return np.nan_to_num(med[:, 0], nan=0.0).astype(np.float32)

    def good_fraction(self) -> np.ndarray:
        """Fraction of good (unmasked) pixels per spectrum."""
        return (~self.mask).mean(axis=1)
