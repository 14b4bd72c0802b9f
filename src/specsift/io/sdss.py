"""SDSS / BOSS ``spec-PLATE-MJD-FIBER.fits`` files.

HDU ``COADD`` holds ``loglam`` (log10 Å, vacuum), ``flux`` (1e-17 erg/s/cm²/Å), ``ivar`` and
``and_mask``.  A pixel is masked when its ``and_mask`` has one of the bits that mean the data
are bad (:data:`BAD_AND_MASK`: NOPLUG, BADTRACE, BADFLAT, BADARC, FULLREJECT, NODATA,
BADFLUXFACTOR, BADSKYCHI); informational bits such as MANYBADCOLUMNS or BRIGHTSKY, which the
pipeline sets over whole halves of good spectra (masking Hα in spec-0266-51602-0013), are
kept.  ``SDSS_AND_MASK=all`` in the environment masks any bit, as a strict reading of
``and_mask ≠ 0`` would.  Labels come from ``SPECOBJ``
(SDSS-I/II, DR8+ layout) or ``SPALL`` (BOSS): CLASS, SUBCLASS, Z, Z_ERR→ZERR, PLATE, MJD,
FIBERID, read straight from the file (only those columns).  SDSS wavelengths are vacuum, so no
conversion is needed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..spectra import LogGrid, SpectraBatch
from ._common import column_of_kind, finalize, first_row, header_str, sdss_targetid

__all__ = ["sniff", "read", "BAD_AND_MASK"]

#: SPPIXMASK bits that mark bad data: NOPLUG 0, BADTRACE 1, BADFLAT 2, BADARC 3,
#: FULLREJECT 18, NODATA 24, BADFLUXFACTOR 26, BADSKYCHI 27.
BAD_AND_MASK = sum(1 << b for b in (0, 1, 2, 3, 18, 24, 26, 27))

_LABELS = {"CLASS": "CLASS", "SUBCLASS": "SUBCLASS", "Z": "Z", "Z_ERR": "ZERR",
           "ZERR": "ZERR", "ZWARNING": "SDSS_ZWARNING", "PLATE": "PLATE", "MJD": "MJD",
           "FIBERID": "FIBERID", "SPECOBJID": "SPECOBJID", "SN_MEDIAN_ALL": "SN_MEDIAN_ALL",
           "PLUG_RA": "RA", "PLUG_DEC": "DEC"}


#: expected value kinds of label columns: an edited TFORM must not pass as a label
_KINDS = {"CLASS": "SU", "SUBCLASS": "SU", "Z": "f", "ZERR": "f", "PLATE": "iu", "MJD": "iu",
          "FIBERID": "iu"}


def sniff(src) -> bool:
    """An HDU named COADD whose columns include loglam and flux (case-insensitive)."""
    hdul = src.handle
    if "COADD" not in hdul:
        return False
    cols = getattr(hdul["COADD"], "columns", None)
    names = {c.lower() for c in cols.names} if cols is not None else set()
    return {"loglam", "flux"} <= names


def snap_loglam(loglam: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Float32 loglam on the SDSS 1e-4 dex grid → exact float64 grid (float32 round-off
    makes the pixel steps jitter by ~0.5 %, which would look like an irregular grid)."""
    ll = np.asarray(loglam, np.float64)
    start = round(ll[0] / step) * step
    exact = start + step * np.arange(ll.size)
    if ll.size > 1 and np.max(np.abs(exact - ll)) < 0.05 * step:
        return exact
    return ll


def _label_row(path: Path, hdul) -> dict:
    """The pipeline's labels from the first row of SPECOBJ (SDSS) or SPALL (BOSS), label
    columns only (:func:`~._common.first_row`: without astropy's per-column set-up)."""
    for name in ("SPECOBJ", "SPALL"):
        if name not in hdul or not hdul[name].header.get("NAXIS2", 0):
            continue
        try:
            return first_row(hdul[name], _LABELS)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: HDU {name} could not be read ({exc})") from None
    return {}


def read(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    path, hdul = src.path, src.handle
    coadd = hdul["COADD"].data
    names = {c.lower(): c for c in coadd.columns.names}
    missing = [c for c in ("loglam", "flux", "ivar") if c not in names]
    if missing:
        raise ValueError(f"{path}: COADD HDU lacks column(s) {', '.join(missing)}")
    if len(coadd) == 0:
        raise ValueError(f"{path}: COADD HDU has no pixels")
    loglam = snap_loglam(coadd[names["loglam"]])
    flux = np.asarray(coadd[names["flux"]], np.float32)
    ivar = np.asarray(coadd[names["ivar"]], np.float32)
    mask = None
    if "and_mask" in names:
        bits = -1 if os.environ.get("SDSS_AND_MASK", "bad").lower() == "all" else BAD_AND_MASK
        mask = (np.asarray(coadd[names["and_mask"]]).astype(np.int64) & bits) != 0
    meta = Table()
    for key, value in _label_row(path, hdul).items():
        if _LABELS[key] not in meta.colnames:
            kinds = _KINDS.get(_LABELS[key])
            meta[_LABELS[key]] = [value if kinds is None else
                                  column_of_kind(value, key, kinds, path)]
    hdr = hdul[0].header
    for key in ("PLATEID", "MJD", "FIBERID"):
        dst = "PLATE" if key == "PLATEID" else key
        if dst not in meta.colnames and key in hdr:
            meta[dst] = [column_of_kind(hdr[key], key, "iu", path)]
    if {"PLATE", "MJD", "FIBERID"} <= set(meta.colnames):
        meta["TARGETID"] = sdss_targetid(meta["PLATE"], meta["MJD"], meta["FIBERID"])
    meta["SURVEY"] = ["BOSS" if "SPALL" in hdul or "BOSS" in header_str(hdr, "INSTRUME").upper()
                      else "SDSS"]
    if "SPECOBJID" in meta.colnames:
        meta["SPECOBJID"] = [str(meta["SPECOBJID"][0]).strip()]
    yield finalize(path, loglam, flux[None], ivar[None],
                   None if mask is None else mask[None], meta, grid)
