"""LAMOST low-resolution spectra, and plain 1-D FITS images with a linear wavelength WCS.

Every layout of the real files in ``../shared/data/lamost-real`` and ``lamost`` (see its
README), plain, gzipped (``.fits.gz``) or tile-compressed (fpack ``.fz``):

* **DR1–DR9 image** (``lamost``): a (5, P) image whose rows EXTEN0 names, however it is
  spelled — 'Flux Inverse Wavelength Andmask Ormask' (DR2–DR4), 'Flux, Inverse, Wavelength,
  Andmask, Ormask' (DR5–DR8), or DR1's 'Flux Inverse Subcontinuum Andmask Ormask', whose
  third row is a normalised spectrum: wavelengths then come from the log-linear header
  WCS (COEFF0/COEFF1 or CRVAL1/CD1_1, CRPIX1).  In an ``.fz`` file the image and its
  header are in extension 1.
* **DR8+ table** (``lamost-dr8``; DR10 files): a binary table (``COADD`` or the first
  table) with array columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK.
* **1-D WCS image** (``wcs1d``, e.g. Ondřejov CCD700 spectra): λ = CRVAL1 + (i + 1 −
  CRPIX1)·CDELT1 (CD1_1 if no CDELT1; log10 λ when DC-FLAG = 1).  There are no errors, so
  ivar is estimated (local DER_SNR, :func:`~specsift.io._common.estimate_ivar`) and
  INPUT_FLAGS gets ESTIMATED_IVAR.

Meta from the header: CLASS, SUBCLASS, Z, ZERR (Z = −9999 → NaN), OBSID (= TARGETID when
present), RA, DEC, PLANID, SPID, FIBERID, MJD, LMJD, DESIG, OBJTYPE, VERSPIPE (the LAMOST
pipeline version that set CLASS/SUBCLASS: the verification stage follows its type convention),
SURVEY = 'LAMOST'.

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

__all__ = ["sniff_image", "sniff_table", "sniff_wcs1d", "read_image", "read_table",
           "read_wcs1d", "table_rows", "header_labels", "is_air", "row_names"]

_DR8_COLS = {"flux", "ivar", "wavelength"}
#: EXTEN0 words (any case, any separator) → row meaning
_ROW_SYNONYMS = {"flux": "flux", "inverse": "ivar", "ivar": "ivar", "invvar": "ivar",
                 "inverse_variance": "ivar", "wavelength": "wavelength", "wave": "wavelength",
                 "lambda": "wavelength", "subcontinuum": "subcontinuum",
                 "sub-continuum": "subcontinuum", "continuum": "subcontinuum",
                 "andmask": "andmask", "and_mask": "andmask", "ormask": "ormask",
                 "or_mask": "ormask"}
_DEFAULT_ROWS = ["flux", "ivar", "wavelength", "andmask", "ormask"]


def _table_cols(hdu) -> set[str]:
    return {c.lower() for c in table_columns(hdu)}


def _is_lamost_header(hdr) -> bool:
    return ("LAMOST" in header_str(hdr, "TELESCOP").upper()
            or "LAMOST" in header_str(hdr, "ORIGIN").upper()
            or "flux" in header_str(hdr, "EXTEN0").lower())


def _image_hdu(hdul):
    """The HDU holding the (rows, pixels) image: the primary, or for a tile-compressed
    (fpack ``.fz``) file the first extension, whose header then carries the labels."""
    from astropy.io import fits

    for hdu in hdul[:2]:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and \
                int(hdu.header.get("NAXIS", 0) or 0):
            return hdu
    return hdul[0]


def _shape(hdu) -> tuple:
    """Image shape from the header (no data read); () for tables and empty HDUs."""
    from astropy.io import fits

    if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return ()
    hdr = hdu.header
    n = int(hdr.get("NAXIS", 0) or 0)
    return tuple(int(hdr.get(f"NAXIS{i}", 0)) for i in range(n, 0, -1))


def sniff_image(src) -> bool:
    """A (3–8, P) image whose header says LAMOST, or whose third row is a wavelength row."""
    hdu = _image_hdu(src.handle)
    shape = _shape(hdu)
    if not (len(shape) == 2 and 3 <= shape[0] <= 8 and shape[1] > 10):
        return False
    if _is_lamost_header(hdu.header) or _is_lamost_header(src.handle[0].header):
        return True
    row = np.asarray(hdu.data[2], np.float64)
    return bool(np.all(np.diff(row) > 0) and 1000 < row[0] < 20000)


def sniff_table(src) -> bool:
    """DR8+ layout: a binary table with FLUX, IVAR, WAVELENGTH (and ANDMASK or a LAMOST
    primary header)."""
    hdul = src.handle
    for hdu in hdul[1:]:
        cols = _table_cols(hdu)
        if _DR8_COLS <= cols and ("andmask" in cols or _is_lamost_header(hdul[0].header)):
            return True
    return False


def sniff_wcs1d(src) -> bool:
    hdr = src.handle[0].header
    shape = _shape(src.handle[0])
    return (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)) and \
        "CRVAL1" in hdr and ("CDELT1" in hdr or "CD1_1" in hdr)


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
    for key in ("PLANID", "DESIG", "OBJNAME", "OBJTYPE", "VERSPIPE"):
        if key in hdr:
            out[key] = header_str(hdr, key)
    for key in ("RA", "DEC"):
        if key in hdr:
            try:
                out[key] = float(hdr[key])
            except (TypeError, ValueError):
                out[key] = np.nan
    return out


def _meta(path: Path, hdr, n: int = 1) -> Table:
    lab = header_labels(hdr)
    meta = Table({k: [v] * n for k, v in lab.items()})
    tid = lab.get("OBSID")
    parts = [lab.get(k) for k in ("LMJD", "PLANID", "SPID", "FIBERID")]
    if tid is not None:
        meta["TARGETID"] = np.full(n, tid, np.int64)
    else:      # DR1 has no OBSID: the night, plan, spectrograph and fibre name the spectrum
        key = " ".join(map(str, parts)) if None not in parts else path.name
        meta["TARGETID"] = stable_id(f"LAMOST {key}") + np.arange(n, dtype=np.int64)
    meta["SURVEY"] = ["LAMOST"] * n
    return meta


def _check_wave(path: Path, wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, np.float64)
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise ValueError(f"{path}: {what} has NaN, inf or non-positive wavelengths")
    if np.any(np.diff(wave) <= 0):
        raise ValueError(f"{path}: {what} wavelength grid is not increasing")
    return wave


def row_names(hdr, nrows: int) -> list[str]:
    """Row meanings from EXTEN0 however it is spelled: 'Flux Inverse Wavelength Andmask
    Ormask' (DR2–DR4), 'Flux, Inverse, Wavelength, Andmask, Ormask' (DR5–DR8), 'Flux
    Inverse Subcontinuum Andmask Ormask' (DR1, pipeline v2.6: wavelengths then come from
    the log-linear header WCS), or one EXTENk key per row.  Unknown or missing: the DR2+
    order, whose wavelength row :func:`read_image` then checks before trusting it."""
    import re

    words = [w for w in re.split(r"[\s,;|/]+", header_str(hdr, "EXTEN0").lower()) if w]
    if len(words) < nrows:
        words = [header_str(hdr, f"EXTEN{k}").lower() for k in range(nrows)]
    names = [_ROW_SYNONYMS.get(w, w) for w in words[:nrows]]
    if "flux" in names and "ivar" in names:
        return names
    return _DEFAULT_ROWS[:nrows] + [f"row{k}" for k in range(len(_DEFAULT_ROWS), nrows)]


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


def _plausible_wave(row: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(row)) and np.all(np.diff(row) > 0)
                and 1000 < row[0] < 20000)


def read_image(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """One spectrum from a (5, P) LAMOST image (plain, gzipped or tile-compressed)."""
    path = src.path
    hdu = _image_hdu(src.handle)
    hdr = hdu.header
    d = np.asarray(hdu.data, np.float64)
    if d.ndim != 2:
        raise ValueError(f"{path}: LAMOST image is {d.ndim}-D, expected (rows, pixels)")
    names = row_names(hdr, d.shape[0])
    row = {n: k for k, n in enumerate(names)}
    if "wavelength" in row and _plausible_wave(d[row["wavelength"]]):
        wave = d[row["wavelength"]]
    else:
        wave = _check_wave(path, _header_loglam(path, hdr, d.shape[1]), "header WCS")
    if is_air(hdr, default_air=False):
        wave = air_to_vacuum(wave)
    mask = (d[row["andmask"]] != 0)[None] if "andmask" in row else None
    labels_hdr = hdr if "CLASS" in hdr or "OBSID" in hdr else src.handle[0].header
    yield finalize(path, np.log10(wave), d[row["flux"]][None], d[row["ivar"]][None], mask,
                   _meta(path, labels_hdr), grid)


def _table_hdu(hdul) -> int:
    candidates = [i for i, h in enumerate(hdul) if _DR8_COLS <= _table_cols(h)]
    return next((i for i in candidates if hdul[i].name == "COADD"), candidates[0])


def table_rows(src) -> int:
    return int(src.handle[_table_hdu(src.handle)].header.get("NAXIS2", 1))


def read_table(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """DR8+ ``COADD`` table: one spectrum per row (DR10 files hold one row)."""
    path, hdul = src.path, src.handle
    k = _table_hdu(hdul)
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


def read_wcs1d(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """A 1-D image with a linear (or log-linear) wavelength WCS, e.g. Ondřejov CCD700."""
    path, hdul = src.path, src.handle
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
    yield finalize(path, np.log10(wave), flux[None], ivar[None], None, meta, grid)
