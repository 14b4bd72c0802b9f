"""specutils interop: :class:`specutils.Spectrum` (``Spectrum1D`` in specutils 1.x) to and
from :class:`~specsift.spectra.SpectraBatch`.

Why here and not in a reader: a Spectrum is already in memory (made by specutils' own
loaders, by a user, or by another package such as Prospect or jdaviz), so it only needs
its units converted and its pixels put on the model's grid, which is what
:meth:`SpectraBatch.from_spectra` does.  specutils is imported only when one of these
functions runs, so the rest of specsift works without it.

Units: flux densities of any kind astropy can convert (erg/s/cm²/Å, W/m²/nm, Jy via
``spectral_density``) become SDSS's 1e-17 erg/s/cm²/Å; the spectral axis becomes Å
(wavelength, frequency or energy).  An uncertainty of any NDData kind (inverse variance,
standard deviation, variance) becomes ivar in the same units; none: ivar estimated from
the flux scatter as the readers do, flagged ESTIMATED_IVAR.  specutils' mask is True at bad
pixels, as is specsift's.
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.table import Table

from .spectra import DEFAULT_GRID, LogGrid, SpectraBatch

__all__ = ["from_specutils", "to_specutils", "is_specutils", "FLUX_UNIT"]

#: specsift's (SDSS's) flux density unit.
FLUX_UNIT = u.Unit("1e-17 erg / (s cm2 Angstrom)")
_META_KEY = "specsift_meta"


def _spectrum_class():
    import specutils
    return getattr(specutils, "Spectrum", None) or specutils.Spectrum1D


def is_specutils(obj) -> bool:
    """A specutils Spectrum / Spectrum1D / SpectrumList, or a non-empty list of Spectra."""
    mod = type(obj).__module__ or ""
    if mod.startswith("specutils"):
        return True
    return (isinstance(obj, (list, tuple)) and len(obj) > 0
            and all((type(o).__module__ or "").startswith("specutils") for o in obj))


def _ivar(spec, flux_scale: np.ndarray) -> np.ndarray | None:
    """Inverse variance in FLUX_UNIT² from any NDData uncertainty (None: none given)."""
    unc = spec.uncertainty
    if unc is None:
        return None
    from astropy.nddata import InverseVariance, StdDevUncertainty, VarianceUncertainty
    arr = np.asarray(unc.array, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(unc, InverseVariance):
            ivar = arr
        elif isinstance(unc, StdDevUncertainty):
            ivar = np.where(arr > 0, 1.0 / arr ** 2, 0.0)
        elif isinstance(unc, VarianceUncertainty):
            ivar = np.where(arr > 0, 1.0 / arr, 0.0)
        else:
            raise ValueError(f"specutils uncertainty {type(unc).__name__} is not a variance, "
                             f"standard deviation or inverse variance")
        return ivar / flux_scale ** 2          # (f·k)'s ivar is ivar/k²


def _one(spec, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(wave Å, flux, ivar, mask) rows of one Spectrum, in specsift's units."""
    wave = spec.spectral_axis.to_value(u.AA, equivalencies=u.spectral())
    flux_q = spec.flux
    if flux_q.unit == u.dimensionless_unscaled or flux_q.unit == u.Unit(""):
        flux = np.asarray(flux_q.value, np.float64)
        scale = np.ones_like(flux)
    else:
        wq = np.broadcast_to(wave, flux_q.shape) * u.AA
        flux = flux_q.to_value(FLUX_UNIT, equivalencies=u.spectral_density(wq))
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(flux_q.value != 0, flux / flux_q.value,
                             (1 * flux_q.unit).to_value(FLUX_UNIT, u.spectral_density(wq)))
    ivar = _ivar(spec, scale)
    mask = None if spec.mask is None else np.asarray(spec.mask, bool)
    if wave.size > 1 and wave[0] > wave[-1]:            # frequency axes run the other way
        wave, flux = wave[::-1], flux[..., ::-1]
        ivar = None if ivar is None else ivar[..., ::-1]
        mask = None if mask is None else mask[..., ::-1]
    return wave, np.atleast_2d(flux), None if ivar is None else np.atleast_2d(ivar), \
        None if mask is None else np.atleast_2d(mask)


def from_specutils(spectra, grid: LogGrid | None = DEFAULT_GRID,
                   meta: Table | None = None) -> SpectraBatch:
    """Spectrum (1-D, or 2-D: N spectra on one axis), SpectrumList or a list of them → a
    batch on ``grid`` (None: the spectrum's own axis, which must be a regular log grid).
    ``meta``: one row per spectrum; by default what :func:`to_specutils` stored, if any."""
    items = [spectra] if not isinstance(spectra, (list, tuple)) else list(spectra)
    if not items:
        raise ValueError("no specutils spectra given")
    waves, fluxes, ivars, masks, metas = [], [], [], [], []
    for k, spec in enumerate(items):
        wave, flux, ivar, mask = _one(spec, k)
        for r in range(flux.shape[0]):
            waves.append(wave)
            fluxes.append(flux[r])
            ivars.append(None if ivar is None else ivar[r])
            masks.append(None if mask is None else mask[r])
        stored = (spec.meta or {}).get(_META_KEY)
        if isinstance(stored, Table) and len(stored) == flux.shape[0]:
            metas.append(stored)
    if meta is None and len(metas) == len(items):
        from astropy.table import vstack
        meta = metas[0] if len(metas) == 1 else vstack(metas, metadata_conflicts="silent")
    meta = _with_defaults(meta, len(fluxes))
    if grid is None:
        grid = LogGrid.from_loglam(np.log10(waves[0]))
    from .io._common import estimate_ivar  # the readers' estimate, same flag
    no_ivar = np.array([iv is None for iv in ivars])
    ivars = [estimate_ivar(f[None])[0] if iv is None else iv for f, iv in zip(fluxes, ivars)]
    batch = SpectraBatch.from_spectra(waves, fluxes, ivars, masks, meta=meta, grid=grid,
                                      source="<specutils>")
    if no_ivar.any():
        from .flags import InputFlag
        flags = np.asarray(batch.meta["INPUT_FLAGS"], np.int32)
        flags[no_ivar] |= np.int32(InputFlag.ESTIMATED_IVAR)
        batch.meta["INPUT_FLAGS"] = flags
    return batch


def _with_defaults(meta: Table | None, n: int) -> Table:
    meta = Table() if meta is None else Table(meta, copy=True)
    if len(meta.colnames) == 0:
        meta["TARGETID"] = np.arange(n, dtype=np.int64)
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows for {n} spectra")
    if "SOURCE" not in meta.colnames:
        meta["SOURCE"] = np.full(n, "<specutils>")
    if "ROW" not in meta.colnames:
        meta["ROW"] = np.arange(n, dtype=np.int64)
    return meta


def to_specutils(batch: SpectraBatch):
    """The batch as one 2-D Spectrum (N × P on the batch's grid, flux in FLUX_UNIT, inverse
    variance, mask); ``meta['specsift_meta']`` keeps the per-spectrum table, so
    :func:`from_specutils` gives the same batch back."""
    from astropy.nddata import InverseVariance
    Spectrum = _spectrum_class()
    return Spectrum(flux=batch.flux * FLUX_UNIT, spectral_axis=batch.wave * u.AA,
                    uncertainty=InverseVariance(batch.ivar / FLUX_UNIT ** 2),
                    mask=batch.mask.copy(), meta={_META_KEY: batch.meta.copy()})
