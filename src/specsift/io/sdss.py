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

Two ways in, one construction (:func:`_native`): :func:`quick` reads a plain file from its bytes
(:mod:`.rawfits`, ~0.2–0.6 CPU ms instead of astropy's 15–60 ms) for :func:`specsift.io.iter_read`
to assemble many into one batch; :func:`sniff`/:func:`read` go through astropy for everything
else (gzip, scaled columns, broken files) and for callers of the reader list.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from ..grid import step_products
from ..spectra import LogGrid, SpectraBatch
from ._common import (
    column_of_kind,
    first_row,
    header_str,
    sdss_targetid,
    stable_id,
)
from .assemble import Native, assemble, prepared
from .bintable import BINTYPE, RowDecoder
from .rawfits import RawFits, layout, tagged

__all__ = ["sniff", "read", "quick", "BAD_AND_MASK"]

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
    return _snapped(loglam, step)[0]


def _snapped(loglam: np.ndarray, step: float = 1e-4) -> tuple[np.ndarray, int | None]:
    """(:func:`snap_loglam`'s grid, its first pixel ``k`` when it is the exact grid
    ``k·step + step·arange(n)`` of :func:`_exact_grid`, else None)."""
    loglam = np.asarray(loglam)
    if loglam.ndim != 1:
        raise ValueError(f"loglam has shape {loglam.shape}, not one axis")
    if loglam.dtype.kind != "f":                 # integers and the like: as float64 values
        loglam = np.asarray(loglam, np.float64)
    if loglam.size < 2:
        return np.asarray(loglam, np.float64), None
    key = (round(float(loglam[0]) / step), loglam.size, step, loglam.dtype)
    seen = _SNAPPED.get(key)                     # pixels equal to a file's already snapped
    if seen is not None and bool((seen[0] == loglam).all()):       # same shape: the key
        return seen[1], key[0]
    exact = _exact_grid(key[0], loglam.size, step)
    dev = exact - loglam                # float32 pixels widened exactly, as a float64 copy
    if np.abs(dev, out=dev).max() < 0.05 * step:
        if len(_SNAPPED) >= 256:
            _SNAPPED.clear()
        _SNAPPED[key] = (np.array(loglam), exact)
        return exact, key[0]
    return np.asarray(loglam, np.float64), None


#: (first pixel, pixels, step, dtype) → (the last file's loglam that snapped there, its exact
#: grid): a survey's files share a few grids (as :func:`_exact_grid` has it), and comparing
#: the pixels costs less than the float64 copy and the deviation test; equal values snap to
#: the same grid, so the answer is the one the test gives
_SNAPPED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


@lru_cache(maxsize=64)
def _exact_grid(k: int, size: int, step: float) -> np.ndarray:
    """``k·step + step·arange(size)`` (read-only): a survey's files share a few first pixels
    and lengths, so each grid is built once, not once a file."""
    out = k * step + step_products(step, 0, size)       # step * arange(size), bit for bit
    out.flags.writeable = False
    return out


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
    columns = {low: coadd[name] for low, name in names.items() if low in _COADD}
    native = _native(path, columns, _label_row(path, hdul), hdul[0].header, "SPALL" in hdul)
    yield assemble([native], grid)


#: COADD columns read
_COADD = ("loglam", "flux", "ivar", "and_mask")


def _native(path: Path, columns: dict, labels: dict, hdr, spall: bool) -> Native:
    """The spectrum and its meta from COADD ``columns`` (lower-case name → array), the
    ``labels`` of SPECOBJ/SPALL, the primary header ``hdr`` (astropy's or a raw one) and
    whether the file has an SPALL HDU: the one construction behind both ways of reading."""
    loglam, first = _snapped(columns["loglam"])
    flux = np.asarray(columns["flux"], np.float32)
    ivar = np.asarray(columns["ivar"], np.float32)
    mask = None
    if "and_mask" in columns:
        bits = -1 if os.environ.get("SDSS_AND_MASK", "bad").lower() == "all" else BAD_AND_MASK
        and_mask = np.asarray(columns["and_mask"])
        if and_mask.dtype.kind == "i" and and_mask.dtype.itemsize == 4:
            # SDSS's 32-bit column (TFORM J) as stored: the bits land where the int64 copy
            # put them, one copy fewer a file
            mask = (and_mask & np.int32(bits)) != 0
        else:
            mask = (and_mask.astype(np.int64) & bits) != 0
    meta: dict = {}
    for key, value in labels.items():
        dst = _LABELS[key]
        if dst not in meta:
            kinds = _KINDS.get(dst)
            meta[dst] = value if kinds is None else column_of_kind(value, key, kinds, path)
    for key in ("PLATEID", "MJD", "FIBERID"):
        dst = "PLATE" if key == "PLATEID" else key
        if dst not in meta and key in hdr:
            meta[dst] = column_of_kind(hdr[key], key, "iu", path)
    if {"PLATE", "MJD", "FIBERID"} <= meta.keys():
        meta["TARGETID"] = sdss_targetid(meta["PLATE"], meta["MJD"], meta["FIBERID"])
    else:               # as standard_meta would give it, so that batches keep one key set
        meta["TARGETID"] = np.int64(stable_id(str(path)))
    meta["SURVEY"] = ("BOSS" if spall or "BOSS" in header_str(hdr, "INSTRUME").upper()
                      else "SDSS")
    if "SPECOBJID" in meta:
        meta["SPECOBJID"] = str(meta["SPECOBJID"]).strip()
    lattice = None if first is None else (first, 1e-4)
    return prepared(Native(path, loglam, flux, ivar, mask, meta, lattice=lattice))  # hot pixels


def quick(path: Path) -> Native | None:
    """The file as a :class:`~.assemble.Native` read from its bytes (:mod:`.rawfits`), or None
    when it is not an SDSS spec file or anything about it is not plain — then the astropy
    path (:func:`sniff`, :func:`read`) decides, with its error messages.

    Checked as the astropy path checks what it reads: COADD's and SPECOBJ/SPALL's TFORMn add
    up to their row widths, COADD has loglam/flux/ivar and pixels, the label kinds, the
    TARGETID parts, and the whole file is there (every HDU, with its padding: the
    per-exposure HDUs after SPZLINE are skimmed for their extent, :func:`_walked`).  The
    COADD columns read must be plain numbers (no TSCAL/TZERO/TDIM, one value a row).  Of
    SPZLINE, which no reader uses, only the layout (TFORMn against NAXIS1, as astropy checks
    every table) is parsed: a bad TFORM sends the file to the astropy path; another bad
    card there, or any bad card in a per-exposure header but its mandatory ones, does not
    stop the spectrum being read here (astropy's path refuses the whole file)."""
    try:
        with _walked(path) as raw:
            coadd = raw.find("COADD")
            if coadd is None or not coadd.is_table:
                return None
            columns = _raw_coadd(raw, coadd)
            if columns is None:
                return None
            labels: dict = {}
            found = {name: raw.find(name) for name in ("SPECOBJ", "SPALL")}
            for hdu in found.values():
                if hdu is not None and (hdu.dims[1:] or [0])[0]:
                    decoder = _label_decoder(hdu)
                    labels = decoder(raw.first_bytes(hdu, decoder.width))
                    break
            native = _native(path, columns, labels, raw.hdus[0].header,
                             found["SPALL"] is not None)
            del columns                            # views of the rows read
            return native
    except Exception:  # noqa: BLE001 - anything unusual: the astropy path reads it
        return None


#: HDUs 0–3 of an SDSS/BOSS spec file in the data model (PRIMARY, COADD, SPECOBJ or SPALL,
#: SPZLINE); the per-exposure HDUs that follow are not read (:func:`_walked`)
_MODEL_HDUS = 4


def _walked(path: Path) -> RawFits:
    """The file's first :data:`_MODEL_HDUS` HDUs walked (:class:`.rawfits.RawFits`'s
    ``first``) when HDU 1 is COADD and HDU 2 SPECOBJ or SPALL, as the data model has them;
    else (or when those are all it has) every HDU, as before.  Why: the per-exposure HDUs
    after SPZLINE (a BOSS file has 16–18) hold nothing the spectrum or its labels come from,
    and walking them was about half the cost of a file.  What that leaves unchecked:
    their headers' other cards (astropy's path refuses a file with a broken one; this one
    reads its spectrum).  A file cut short among them, at a block boundary too, is still
    refused as truncated (:meth:`~.rawfits.RawFits._skim` follows their sizes to the end);
    what neither walk can see is a file cut exactly between two HDUs."""
    raw = RawFits(path, first=_MODEL_HDUS)
    names = [h.name for h in raw.hdus[1:3]]
    if raw.complete or (names[:1] == ["COADD"] and names[1:] in (["SPECOBJ"], ["SPALL"])):
        return raw
    raw.close()
    return RawFits(path)


#: the plain numeric TFORM codes the quick path maps directly (the rest go to astropy)
_PLAIN = {c: BINTYPE[c] for c in "EDIJKB"}


#: what the quick path makes of a table layout (:func:`.rawfits.layout`'s key: the exact
#: column cards), worked out once per layout: the label decoder of SPECOBJ/SPALL, COADD's
#: row dtype (or None: not for this path); (kind, layout tag) → (layout key, plan)
_PLANS: dict[tuple[str, tuple], tuple[bytes, object]] = {}


def _planned(kind: str, hdu, make):
    """``make(hdu)``, remembered per (kind, layout): looked up by the layout's short tag and
    confirmed against its whole key (:func:`.rawfits.tagged`)."""
    return tagged(_PLANS, (kind, hdu.layout_tag), hdu.layout_key, make, hdu)


def _label_decoder(hdu) -> RowDecoder:
    """The decoder of the label columns of SPECOBJ/SPALL (:data:`_LABELS`), one a layout."""
    def make(h):
        fields, width, extras = layout(h)
        return RowDecoder(extras, _LABELS, (fields, width))
    return _planned("labels", hdu, make)        # row widths: checked by RawFits on opening


def _raw_coadd(raw: RawFits, coadd) -> dict | None:
    """COADD's loglam/flux/ivar/and_mask as views of the rows read, None when not for this
    path (what is read depends only on the layout: :func:`_coadd_dtype`, once a layout)."""
    dtype = _planned("coadd", coadd, _coadd_dtype)  # row width: checked by RawFits on opening
    nrows = coadd.dims[1]
    if dtype is None or nrows <= 0:
        return None
    rows = raw.rows(coadd, dtype, nrows)
    return {low: rows[low] for low in dtype.names}


def _coadd_dtype(coadd) -> np.dtype | None:
    """The row dtype of COADD's loglam/flux/ivar/and_mask (plain numbers, one a row), or
    None when the layout is not one for this path."""
    fields, width, extras = layout(coadd)
    lower = {}
    for name in fields:
        if name.lower() in lower or name != name.strip():
            return None                           # duplicate or odd names: astropy's rules
        lower[name.lower()] = name
    if not {"loglam", "flux", "ivar"} <= lower.keys():
        return None
    names, formats, offsets = [], [], []
    for low in (c for c in _COADD if c in lower):
        i, off, repeat, code = fields[lower[low]]
        if repeat != 1 or code not in _PLAIN or any(f"{k}{i}" in extras
                                                    for k in ("TSCAL", "TZERO", "TDIM")):
            return None
        names.append(low)
        formats.append(_PLAIN[code])
        offsets.append(off)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": width})
