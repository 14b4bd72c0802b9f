"""FITS binary tables of spectra.

Two layouts:

* **row tables** — one spectrum per row, vector columns ``flux`` and ``ivar`` (or an error
  column ``error``/``sigma``, turned into ivar), optional ``mask``/``and_mask``; the
  wavelength grid in a column of the same HDU (``loglam``, ``wave`` …, one shared grid
  or one per row) or in another HDU (e.g. ``input_grid`` in HDU 2 of the GaSNet files).
  Scalar columns come along into meta (``Z_ERR`` → ``ZERR``; ``SPECTYPE`` → ``CLASS``).
  Rows are read ``batch_size`` at a time from the memory map, so big tables stream.
* **column spectra** — one spectrum whose pixels are the rows: a wavelength column
  (``spectral``, ``wave``, ``wavelength``, ``loglam``) and a ``flux`` column, such as the
  Ondřejov VO spectra.  A column comment or TUNIT saying "air" triggers air→vacuum.
  Without errors, ivar is estimated (:func:`~specsift.io._common.estimate_ivar`).

Grids whose values are all below 10 are taken as log10 Å, otherwise as Å.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch
from ._common import (
    air_to_vacuum,
    estimate_ivar,
    finalize,
    header_str,
    sdss_targetid,
    stable_id,
    table_columns,
)

__all__ = ["sniff", "read", "rows", "find_table_hdu", "row_table_batches"]

_WAVE_NAMES = ("loglam", "log_lambda", "logwave", "input_grid", "wave", "wavelength",
               "lambda", "wave_grid", "spectral")
_IVAR_NAMES = ("ivar", "inverse_variance", "inv_var")
_ERR_NAMES = ("error", "err", "sigma", "flux_err", "noise")
_MASK_NAMES = ("and_mask", "andmask", "mask")
_TFORM_REPEAT = re.compile(r"\s*(\d*)")
_RENAME = {"Z_ERR": "ZERR", "SPECTYPE": "CLASS", "SUBTYPE": "SUBCLASS", "ZWARN": "RR_ZWARN",
           "FIBER": "FIBERID"}


def _lower(names) -> dict[str, str]:
    return {n.lower(): n for n in names}


def _pick(names: dict[str, str], candidates) -> str | None:
    for c in candidates:
        if c in names:
            return names[c]
    return None


def find_table_hdu(hdul):
    """Index of the first binary table with a ``flux`` column, or None."""
    for k, hdu in enumerate(hdul):
        if "flux" in _lower(table_columns(hdu)):
            return k
    return None


def sniff(src) -> bool:
    return find_table_hdu(src.handle) is not None


def rows(src) -> int:
    """Spectra in the table: its rows, or 1 for a column spectrum (flux a scalar column)."""
    hdu = src.handle[find_table_hdu(src.handle)]
    k = [c.lower() for c in table_columns(hdu)].index("flux") + 1
    m = _TFORM_REPEAT.match(str(hdu.header.get(f"TFORM{k}", "")))
    repeat = int(m.group(1) or 1) if m else 1
    return int(hdu.header.get("NAXIS2", 1)) if repeat > 1 else 1


def _is_air(hdu, colname: str) -> bool:
    """True when the header says the wavelengths are in air (column comment/unit or keys)."""
    hdr = hdu.header
    cols = hdu.columns
    idx = cols.names.index(colname) + 1
    text = " ".join(str(x) for x in (hdr.comments[f"TTYPE{idx}"] if f"TTYPE{idx}" in hdr else "",
                                     hdr.get(f"TUNIT{idx}", ""), hdr.get("AIRORVAC", ""),
                                     hdr.get("WAVEREF", "")))
    if "VACUUM" in hdr:
        return not bool(hdr["VACUUM"])
    return "air" in text.lower()


def _to_loglam(values: np.ndarray, path: Path, air: bool = False) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{path}: wavelength grid has NaN/inf values")
    if np.all(v < 10):
        if air:
            v = np.log10(air_to_vacuum(10.0 ** v))
        return v
    if np.any(v <= 0):
        raise ValueError(f"{path}: wavelength grid has non-positive values")
    return np.log10(air_to_vacuum(v) if air else v)


def _grid_from_other_hdu(hdul, skip: int, path: Path):
    """A wavelength grid stored in another HDU: a named column (first row) or an image."""
    for k, hdu in enumerate(hdul):
        if k == skip or hdu.data is None:
            continue
        cols = getattr(hdu, "columns", None)
        if cols is not None:
            name = _pick(_lower(cols.names), _WAVE_NAMES)
            if name is not None and len(hdu.data):
                return np.asarray(hdu.data[name][0], np.float64).ravel(), _is_air(hdu, name)
        elif hdu.name.upper() in ("WAVE", "WAVELENGTH", "LOGLAM") and hdu.data.ndim == 1:
            return np.asarray(hdu.data, np.float64), "AIR" in header_str(hdu.header, "AIRORVAC").upper()
    raise ValueError(f"{path}: table has flux but no wavelength grid (no loglam/wave column "
                     f"in this or another HDU)")


def _scalar_meta(data, names_all, path: Path, lo: int, hi: int) -> Table:
    meta = Table()
    for name in names_all:
        col = data[name]
        if col.ndim != 1:
            continue
        dst = _RENAME.get(name.upper(), name.upper() if name.upper() in
                          ("CLASS", "SUBCLASS", "Z", "ZERR", "PLATE", "MJD", "FIBERID",
                           "TARGETID", "OBSID") else name)
        if dst in meta.colnames:
            continue
        vals = col[lo:hi]
        if vals.dtype.kind == "S":
            vals = np.char.strip(np.char.decode(vals, "utf-8", "replace"))
        meta[dst] = np.asarray(vals)
    if "TARGETID" not in meta.colnames:
        if {"PLATE", "MJD", "FIBERID"} <= set(meta.colnames):
            meta["TARGETID"] = sdss_targetid(meta["PLATE"], meta["MJD"], meta["FIBERID"])
        else:
            meta["TARGETID"] = stable_id(str(path)) + np.arange(lo, hi, dtype=np.int64)
    return meta


def row_table_batches(path: Path, hdul, k: int, grid: LogGrid | None, batch_size: int,
                      extra_meta: dict | None = None) -> Iterator[SpectraBatch]:
    """Stream a row table (HDU ``k``) in chunks of ``batch_size`` rows."""
    hdu = hdul[k]
    data = hdu.data
    names = _lower(hdu.columns.names)
    fcol = names["flux"]
    icol = _pick(names, _IVAR_NAMES)
    ecol = _pick(names, _ERR_NAMES) if icol is None else None
    mcol = _pick(names, _MASK_NAMES)
    wcol = _pick(names, _WAVE_NAMES)
    n = len(data)
    if n == 0:
        raise ValueError(f"{path}: table HDU {k} has no rows")
    npix = int(np.prod(data[fcol].shape[1:])) if data[fcol].ndim > 1 else 1
    for name in (icol, ecol, mcol):
        if name is not None and data[name].shape != data[fcol].shape:
            raise ValueError(f"{path}: column {name} has shape {data[name].shape[1:]} per row "
                             f"but flux has {data[fcol].shape[1:]}")
    shared = None
    per_row = False
    if wcol is not None and data[wcol].ndim > 1:
        wv = data[wcol]
        if wv.shape != data[fcol].shape:
            raise ValueError(f"{path}: wavelength column {wcol} shape {wv.shape[1:]} does not "
                             f"match flux {data[fcol].shape[1:]}")
        first = np.asarray(wv[0], np.float64)
        per_row = n > 1 and not all(np.array_equal(first, wv[j]) for j in (n // 2, n - 1))
        shared = None if per_row else _to_loglam(first, path, _is_air(hdu, wcol))
    else:
        values, air = _grid_from_other_hdu(hdul, k, path)
        if values.size != npix:
            raise ValueError(f"{path}: wavelength grid has {values.size} pixels but flux "
                             f"has {npix} per row")
        shared = _to_loglam(values, path, air)
    if shared is not None and np.any(np.diff(shared) <= 0):
        raise ValueError(f"{path}: wavelength grid is not increasing")
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        flux = np.asarray(data[fcol][lo:hi], np.float32).reshape(hi - lo, -1)
        flags = np.zeros(hi - lo, np.int32)
        if icol is not None:
            ivar = np.asarray(data[icol][lo:hi], np.float32).reshape(hi - lo, -1)
        elif ecol is not None:
            err = np.asarray(data[ecol][lo:hi], np.float64).reshape(hi - lo, -1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ivar = np.where(err > 0, 1.0 / err**2, 0.0).astype(np.float32)
        else:
            ivar = estimate_ivar(flux)
            flags |= InputFlag.ESTIMATED_IVAR
        mask = (np.asarray(data[mcol][lo:hi]).reshape(hi - lo, -1) != 0) if mcol else None
        meta = _scalar_meta(data, hdu.columns.names, path, lo, hi)
        meta["INPUT_FLAGS"] = flags
        for key, val in (extra_meta or {}).items():
            meta[key] = [val] * (hi - lo)
        if not per_row:
            yield finalize(path, shared, flux, ivar, mask, meta, grid)
            continue
        if grid is None:
            raise ValueError(f"{path}: rows have different wavelength grids; give a grid "
                             f"to resample onto")
        parts = []
        for j in range(hi - lo):
            ll = _to_loglam(data[wcol][lo + j], path, _is_air(hdu, wcol))
            if np.any(np.diff(ll) <= 0):
                raise ValueError(f"{path}: row {lo + j} wavelength grid is not increasing")
            parts.append(finalize(path, ll, flux[j:j + 1], ivar[j:j + 1],
                                  None if mask is None else mask[j:j + 1], meta[j:j + 1], grid))
        yield SpectraBatch.concatenate(parts)


def column_spectrum(path: Path, hdul, k: int, grid: LogGrid | None) -> SpectraBatch:
    """One spectrum stored as columns (wavelength, flux[, ivar|error])."""
    hdu = hdul[k]
    data = hdu.data
    names = _lower(hdu.columns.names)
    wcol = _pick(names, _WAVE_NAMES)
    if wcol is None:
        raise ValueError(f"{path}: table HDU {k} has a flux column but no wavelength column")
    if len(data) < 2:
        raise ValueError(f"{path}: table HDU {k} has {len(data)} rows; too few for a spectrum")
    loglam = _to_loglam(data[wcol], path, _is_air(hdu, wcol))
    if np.any(np.diff(loglam) <= 0):
        raise ValueError(f"{path}: wavelength column {wcol} is not increasing")
    flux = np.asarray(data[names["flux"]], np.float32)[None]
    icol, ecol = _pick(names, _IVAR_NAMES), _pick(names, _ERR_NAMES)
    flags = 0
    if icol:
        ivar = np.asarray(data[icol], np.float32)[None]
    elif ecol:
        err = np.asarray(data[ecol], np.float64)[None]
        with np.errstate(divide="ignore"):
            ivar = np.where(err > 0, 1.0 / err**2, 0.0).astype(np.float32)
    else:
        ivar, flags = estimate_ivar(flux), int(InputFlag.ESTIMATED_IVAR)
    hdr = hdu.header
    meta = Table({"TARGETID": [stable_id(Path(path).name)], "INPUT_FLAGS": [flags],
                  "OBJECT": [header_str(hdr, "OBJECT")]})
    if header_str(hdr, "SRCCLASS"):
        meta["SRCCLASS"] = [header_str(hdr, "SRCCLASS")]
    return finalize(path, loglam, flux, ivar, None, meta, grid)


def read(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    path, hdul = src.path, src.handle
    k = find_table_hdu(hdul)
    if k is None:
        raise ValueError(f"{path}: no table HDU with a flux column")
    if hdul[k].data[hdul[k].columns.names[_col_index(hdul[k], 'flux')]].ndim == 1:
        yield column_spectrum(path, hdul, k, grid)
    else:
        yield from row_table_batches(path, hdul, k, grid, batch_size)


def _col_index(hdu, lower_name: str) -> int:
    return [c.lower() for c in hdu.columns.names].index(lower_name)
