"""The one data model every reader produces and every model consumes.

A :class:`SpectraBatch` holds N spectra on one shared log10-wavelength grid with
inverse variance and a bad-pixel mask, plus an astropy ``Table`` of per-spectrum
metadata.  Nothing downstream needs to know which survey a spectrum came from.

The grid and rebinning (:mod:`.grid`) and the per-row statistics (:mod:`.rowstats`) live in
their own modules; their names are re-exported here, the import path callers use.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
from astropy.table import Table, vstack

from .constants import RESAMPLE_IDENTITY_ATOL
from .flags import InputFlag
from .grid import DEFAULT_GRID, LogGrid, grid_offset, pixel_edges, rebin_matrix, same_grid
from .rowstats import median_snr, row_median_mad

__all__ = ["LogGrid", "DEFAULT_GRID", "SpectraBatch", "rebin_matrix", "pixel_edges",
           "row_median_mad", "median_snr", "same_grid", "sanitise", "grid_offset", "stack_meta"]


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


def stack_meta(tables: list[Table]) -> Table:
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
                                       stack_meta([b.meta for b in batches]), res)

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
        med, _ = row_median_mad(snr, np.isfinite(snr).sum(axis=1), overwrite_input=True)
        return np.nan_to_num(med[:, 0], nan=0.0).astype(np.float32)

    def good_fraction(self) -> np.ndarray:
        """Fraction of good (unmasked) pixels per spectrum."""
        return (~self.mask).mean(axis=1)
