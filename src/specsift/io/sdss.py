"""SDSS / BOSS ``spec-PLATE-MJD-FIBER.fits`` files.

HDU ``COADD`` holds ``loglam`` (log10 Å, vacuum), ``flux`` (1e-17 erg/s/cm²/Å), ``ivar`` and
``and_mask``; a pixel with any ``and_mask`` bit set is masked.  Labels come from ``SPECOBJ``
(SDSS-I/II, DR8+ layout) or ``SPALL`` (BOSS): CLASS, SUBCLASS, Z, Z_ERR→ZERR, PLATE, MJD,
FIBERID.  SDSS wavelengths are vacuum, so no conversion is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..spectra import LogGrid, SpectraBatch
from ._common import finalize, header_str, sdss_targetid

__all__ = ["sniff", "read_file"]

_LABELS = {"CLASS": "CLASS", "SUBCLASS": "SUBCLASS", "Z": "Z", "Z_ERR": "ZERR",
           "ZERR": "ZERR", "ZWARNING": "SDSS_ZWARNING", "PLATE": "PLATE", "MJD": "MJD",
           "FIBERID": "FIBERID", "SPECOBJID": "SPECOBJID", "SN_MEDIAN_ALL": "SN_MEDIAN_ALL",
           "PLUG_RA": "RA", "PLUG_DEC": "DEC"}


def sniff(hdul) -> bool:
    """An HDU named COADD whose columns include loglam and flux (case-insensitive)."""
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


def read_file(path: Path, hdul, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
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
        mask = np.asarray(coadd[names["and_mask"]]) != 0
    meta = Table()
    for hduname in ("SPECOBJ", "SPALL"):
        if hduname in hdul and len(hdul[hduname].data):
            row = hdul[hduname].data[0]
            cols = set(hdul[hduname].columns.names)
            for src, dst in _LABELS.items():
                if src in cols and dst not in meta.colnames:
                    meta[dst] = [row[src]]
            break
    hdr = hdul[0].header
    for key in ("PLATEID", "MJD", "FIBERID"):
        dst = "PLATE" if key == "PLATEID" else key
        if dst not in meta.colnames and key in hdr:
            meta[dst] = [int(hdr[key])]
    if {"PLATE", "MJD", "FIBERID"} <= set(meta.colnames):
        meta["TARGETID"] = sdss_targetid(meta["PLATE"], meta["MJD"], meta["FIBERID"])
    meta["SURVEY"] = ["BOSS" if "SPALL" in hdul or "BOSS" in header_str(hdr, "INSTRUME").upper()
                      else "SDSS"]
    if "SPECOBJID" in meta.colnames:
        meta["SPECOBJID"] = [str(meta["SPECOBJID"][0]).strip()]
    yield finalize(path, loglam, flux[None], ivar[None],
                   None if mask is None else mask[None], meta, grid)
