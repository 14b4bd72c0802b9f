"""LAMOST low-resolution spectra, and plain 1-D FITS images with a linear wavelength WCS.

* **DR2–DR7** (``lamost``): primary image of (5, P) rows named by header EXTEN0 — flux,
  inverse variance, wavelength (Å), and_mask, or_mask; pipeline v2.6 files have a
  normalised "subcontinuum" row instead of wavelengths, which then come from the
  log-linear header grid COEFF0/COEFF1.  CLASS, SUBCLASS, Z, Z_ERR, OBSID … in the header.
* **DR8+** (``lamost-dr8``): a binary table (``COADD`` or the first table) with array
  columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK; labels in the primary header.
* **1-D WCS image** (``wcs1d``, e.g. Ondřejov CCD700 spectra): λ = CRVAL1 + (i + 1 −
  CRPIX1)·CDELT1 (CD1_1 if no CDELT1; log10 λ when DC-FLAG = 1).  There are no errors, so
  ivar is estimated (local DER_SNR, :func:`~specsift.io._common.estimate_ivar`) and
  INPUT_FLAGS gets ESTIMATED_IVAR.

Air or vacuum: LAMOST headers carry ``VACUUM = T`` (DR2 files here all do); a file
saying ``VACUUM = F`` (or ``AIRORVAC = 'air'``) is converted to vacuum.  A 1-D WCS image
with neither keyword is taken as air — the IRAF convention of ground-based
spectrographs such as Ondřejov's — and converted.  SDSS and DESI are vacuum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch
from ._common import air_to_vacuum, estimate_ivar, finalize, header_str, stable_id, table_columns

__all__ = ["sniff", "read_file", "header_labels", "is_air"]

_DR8_COLS = {"flux", "ivar", "wavelength"}


def _table_cols(hdu) -> set[str]:
    return {c.lower() for c in table_columns(hdu)}


def _is_lamost_header(hdr) -> bool:
    return ("LAMOST" in header_str(hdr, "TELESCOP").upper()
            or "LAMOST" in header_str(hdr, "ORIGIN").upper()
            or "Flux" in header_str(hdr, "EXTEN0"))


def sniff(hdul) -> str | None:
    prim = hdul[0]
    data_shape = prim.shape if prim.header.get("NAXIS", 0) else ()
    if len(data_shape) == 2 and 3 <= data_shape[0] <= 8 and data_shape[1] > 10:
        if _is_lamost_header(prim.header):
            return "lamost"
        row = np.asarray(prim.data[2], np.float64)
        if np.all(np.diff(row) > 0) and 1000 < row[0] < 20000:
            return "lamost"
    for hdu in hdul[1:]:
        cols = _table_cols(hdu)
        if _DR8_COLS <= cols and ("andmask" in cols or _is_lamost_header(hdul[0].header)):
            return "lamost-dr8"
    hdr = prim.header
    if (len(data_shape) == 1 or (len(data_shape) == 2 and data_shape[0] == 1)) and \
            "CRVAL1" in hdr and ("CDELT1" in hdr or "CD1_1" in hdr):
        return "wcs1d"
    return None


def is_air(hdr, default_air: bool) -> bool:
    if "VACUUM" in hdr:
        return not bool(hdr["VACUUM"])
    v = header_str(hdr, "AIRORVAC").lower()
    if v:
        return v.startswith("air")
    return default_air


def header_labels(hdr) -> dict:
    """Truth and ids from a LAMOST primary header (Z = −9999 means unknown → NaN)."""
    out: dict = {}
    for key, dst in (("CLASS", "CLASS"), ("SUBCLASS", "SUBCLASS")):
        if key in hdr:
            out[dst] = header_str(hdr, key)
    for key, dst in (("Z", "Z"), ("Z_ERR", "ZERR")):
        if key in hdr:
            try:
                v = float(hdr[key])
            except (TypeError, ValueError):
                v = np.nan
            out[dst] = np.nan if v <= -9990 else v
    for key in ("OBSID", "MJD", "LMJD", "SPID", "FIBERID"):
        if key in hdr:
            try:
                out[key] = int(str(hdr[key]).strip())
            except ValueError:
                pass
    for key in ("PLANID", "DESIG", "OBJNAME", "RA", "DEC"):
        if key in hdr:
            out[key] = hdr[key] if key in ("RA", "DEC") else header_str(hdr, key)
    return out


def _meta(path: Path, hdr, n: int = 1) -> Table:
    lab = header_labels(hdr)
    meta = Table({k: [v] * n for k, v in lab.items()})
    tid = lab.get("OBSID")
    meta["TARGETID"] = (np.full(n, tid, np.int64) if tid is not None
                        else stable_id(path.name) + np.arange(n, dtype=np.int64))
    meta["SURVEY"] = ["LAMOST"] * n
    return meta


def _check_wave(path: Path, wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, np.float64)
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError(f"{path}: {what} has NaN, inf or non-positive wavelengths")
    if np.any(np.diff(wave) <= 0):
        raise ValueError(f"{path}: {what} wavelength grid is not increasing")
    return wave


def _row_names(hdr, nrows: int) -> list[str]:
    """Row meaning from EXTEN0 ('Flux Inverse Wavelength Andmask Ormask' in DR2–DR7 v2.7+,
    'Flux Inverse Subcontinuum Andmask Ormask' in pipeline v2.6, whose wavelengths then
    come from the log-linear header WCS)."""
    words = header_str(hdr, "EXTEN0").lower().split()
    if len(words) >= nrows:
        return words[:nrows]
    return ["flux", "inverse", "wavelength", "andmask", "ormask"][:nrows]


def _header_loglam(path: Path, hdr, npix: int) -> np.ndarray:
    start = hdr.get("COEFF0", hdr.get("CRVAL1"))
    step = hdr.get("COEFF1", hdr.get("CD1_1", hdr.get("CDELT1")))
    if start is None or step is None:
        raise ValueError(f"{path}: LAMOST image has no wavelength row and no COEFF0/COEFF1 "
                         f"(or CRVAL1/CD1_1) header grid")
    if float(step) <= 0:
        raise ValueError(f"{path}: header wavelength step {step} is not positive")
    x = float(start) + float(step) * (np.arange(npix) + 1.0 - float(hdr.get("CRPIX1", 1.0)))
    return 10.0 ** x if int(hdr.get("DC-FLAG", 1) or 0) == 1 or float(start) < 10 else x


def _read_image(path: Path, hdul, grid: LogGrid | None) -> SpectraBatch:
    hdr = hdul[0].header
    d = np.asarray(hdul[0].data, np.float64)
    names = _row_names(hdr, d.shape[0])
    if "flux" not in names or not ({"inverse", "ivar"} & set(names)):
        raise ValueError(f"{path}: LAMOST image rows are {names}; need flux and inverse variance")
    row = {n: k for k, n in enumerate(names)}
    if "wavelength" in row:
        wave = _check_wave(path, d[row["wavelength"]], "wavelength row")
    else:
        wave = _check_wave(path, _header_loglam(path, hdr, d.shape[1]), "header WCS")
    if is_air(hdr, default_air=False):
        wave = air_to_vacuum(wave)
    mask = (d[row["andmask"]] != 0)[None] if "andmask" in row else None
    ivar = d[row.get("inverse", row.get("ivar"))]
    return finalize(path, np.log10(wave), d[row["flux"]][None], ivar[None], mask,
                    _meta(path, hdr), grid)


def _read_dr8(path: Path, hdul, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    candidates = [i for i, h in enumerate(hdul) if _DR8_COLS <= _table_cols(h)]
    k = next((i for i in candidates if hdul[i].name == "COADD"), candidates[0])
    table = hdul[k].data
    names = {c.lower(): c for c in table.columns.names}
    n = len(table)
    if n == 0:
        raise ValueError(f"{path}: LAMOST table HDU {k} has no rows")
    air = is_air(hdul[0].header, default_air=False) or is_air(hdul[k].header, default_air=False)
    parts = []
    for j in range(n):
        wave = _check_wave(path, np.ravel(table[names["wavelength"]][j]), f"row {j}")
        flux = np.ravel(table[names["flux"]][j])
        ivar = np.ravel(table[names["ivar"]][j])
        if flux.shape != wave.shape or ivar.shape != wave.shape:
            raise ValueError(f"{path}: row {j} FLUX/IVAR/WAVELENGTH lengths differ "
                             f"({flux.size}/{ivar.size}/{wave.size})")
        mask = (np.ravel(table[names["andmask"]][j]) != 0)[None] if "andmask" in names else None
        if air:
            wave = air_to_vacuum(wave)
        meta = _meta(path, hdul[0].header)
        if n > 1:
            meta["TARGETID"] = meta["TARGETID"] + j
        parts.append(finalize(path, np.log10(wave), flux[None], ivar[None], mask, meta, grid))
        if len(parts) == batch_size:
            yield SpectraBatch.concatenate(parts)
            parts = []
    if parts:
        yield parts[0] if len(parts) == 1 else SpectraBatch.concatenate(parts)


def _read_wcs1d(path: Path, hdul, grid: LogGrid | None) -> SpectraBatch:
    hdr = hdul[0].header
    flux = np.asarray(hdul[0].data, np.float64).ravel()
    if flux.size < 5:
        raise ValueError(f"{path}: 1-D spectrum has only {flux.size} pixels")
    step = float(hdr.get("CDELT1", hdr.get("CD1_1", 0.0)))
    if step <= 0:
        raise ValueError(f"{path}: wavelength step CDELT1/CD1_1 = {step} is not positive "
                         f"(grid not increasing)")
    pix = np.arange(flux.size) + 1.0
    x = float(hdr["CRVAL1"]) + (pix - float(hdr.get("CRPIX1", 1.0))) * step
    log = int(hdr.get("DC-FLAG", 0) or 0) == 1
    wave = 10.0 ** x if log else x
    unit = header_str(hdr, "CUNIT1").lower()
    wave = wave * {"nm": 10.0, "m": 1e10, "um": 1e4}.get(unit, 1.0)
    wave = _check_wave(path, wave, "WCS")
    if is_air(hdr, default_air=True):
        wave = air_to_vacuum(wave)
    ivar = estimate_ivar(flux)
    meta = Table({"TARGETID": [stable_id(path.name)], "OBJECT": [header_str(hdr, "OBJECT")],
                  "INPUT_FLAGS": np.array([InputFlag.ESTIMATED_IVAR], np.int32),
                  "SURVEY": [header_str(hdr, "OBSERVAT") or header_str(hdr, "TELESCOP")]})
    return finalize(path, np.log10(wave), flux[None], ivar[None], None, meta, grid)


def read_file(path: Path, hdul, kind: str, grid: LogGrid | None,
              batch_size: int) -> Iterator[SpectraBatch]:
    if kind == "lamost":
        yield _read_image(path, hdul, grid)
    elif kind == "lamost-dr8":
        yield from _read_dr8(path, hdul, grid, batch_size)
    elif kind == "wcs1d":
        yield _read_wcs1d(path, hdul, grid)
    else:
        raise ValueError(f"{path}: unknown LAMOST layout {kind!r}")
