"""Pieces every reader shares: ids, air→vacuum, safe FITS opening, and turning native
arrays into a :class:`SpectraBatch` on the requested grid with the standard meta columns.

Readers stay small because the hard parts (resampling, flags, placeholder rows) live here.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from .bintable import check_table, decode_row, first_row, table_fields

__all__ = ["NotSpectraError", "DeclaredSizeError", "stable_id", "sdss_targetid", "air_to_vacuum", "open_fits",
           "finalize", "standard_meta", "placeholder", "coverage_fraction", "header_str",
           "estimate_ivar", "file_size_ok", "first_row", "check_declared", "check_table",
           "column_of_kind", "decode_row", "table_fields", "MAX_EXPANSION", "MIN_DECLARED_CAP"]

#: deflate (gzip, zip, HDF5 gzip filter) cannot expand data more than 1032:1; a file whose
#: headers promise more uncompressed bytes than this times its size is corrupt or hostile.
MAX_EXPANSION = 1100
#: declared sizes below this are always allowed (small files, fill-value datasets).
MIN_DECLARED_CAP = 64 * 2**20

#: Standard meta columns and the dtype each is coerced to, so batches from different
#: readers stack without type conflicts.
STANDARD_DTYPES = {
    "TARGETID": np.int64, "SOURCE": str, "INPUT_FLAGS": np.int32,
    "CLASS": str, "SUBCLASS": str, "Z": np.float64, "ZERR": np.float64,
    "PLATE": np.int64, "MJD": np.int64, "FIBERID": np.int64, "RR_ZWARN": np.int64,
    "EXPID": np.int64, "OBSID": np.int64, "SURVEY": str, "ERROR": str,
}


class NotSpectraError(ValueError):
    """The file is readable but holds no spectra (e.g. a Redrock redshift catalogue)."""


class DeclaredSizeError(ValueError):
    """A file declares more data than it can hold: its declared counts are not to be
    trusted either (a placeholder for it is one row, not the 20 M it claims)."""


def stable_id(text: str) -> int:
    """A deterministic positive int64 from a string (file names without numeric ids).

    The low 24 bits are zero so that ``stable_id(name) + row`` stays unique per row.
    """
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    return (h & 0x7FFF_FFFF_FFFF_FFFF) & ~0xFF_FFFF


#: (name, exclusive upper bound) of the parts of an SDSS TARGETID: with these bounds
#: PLATE·10¹⁰ + MJD·10⁴ + FIBERID stays below 2⁶³ and the parts cannot carry into each other.
_SDSS_ID_PARTS = (("PLATE", 10**8), ("MJD", 10**6), ("FIBERID", 10**4))


def sdss_targetid(plate, mjd, fiber) -> np.ndarray:
    """SDSS TARGETID = PLATE·10¹⁰ + MJD·10⁴ + FIBERID: readable, unique, fits int64 for
    every SDSS/BOSS plate (the bit-packed specObjID overflows int64 above plate 8191).

    A part that is negative, not an integer or too large (a corrupt PLATE = 2⁴⁰ would
    overflow int64 or run into MJD's digits) raises ValueError instead of a wrong id."""
    if all(type(v) is np.ndarray and v.ndim == 0 and v.dtype.kind in "iu"
           for v in (plate, mjd, fiber)):
        # one spectrum's labels (0-d integer arrays): the same number without 20 array ops,
        # the bounds tested on Python ints (numpy compares of 0-d arrays cost ~2 µs each)
        p, m, f = int(plate), int(mjd), int(fiber)
        if all(0 <= v < top for v, (_, top) in zip((p, m, f), _SDSS_ID_PARTS)):
            return np.int64(p * 10**10 + m * 10**4 + f)
    parts = []
    for (name, top), v in zip(_SDSS_ID_PARTS, (plate, mjd, fiber)):
        a = np.asarray(v)
        if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.all(
                np.isfinite(a) & (a == np.round(a)))):
            raise ValueError(f"{name} is not an integer ({a.ravel()[:3].tolist()}); "
                             f"cannot make a TARGETID")
        if np.any(a < 0) or np.any(a >= top):
            raise ValueError(f"{name} = {a.ravel()[:3].tolist()} is outside 0…{top - 1}; "
                             f"cannot make a TARGETID")
        parts.append(a.astype(np.int64))
    return parts[0] * 10**10 + parts[1] * 10**4 + parts[2]


def check_declared(path, nbytes: float, what: str) -> None:
    """Refuse to allocate what a file merely declares: uncompressed ``nbytes`` above
    :data:`MAX_EXPANSION` × the file's size (and above :data:`MIN_DECLARED_CAP`) cannot be
    real data, so a 2 KB file claiming 2³¹ pixels fails at once instead of after 8 GB."""
    size = os.path.getsize(path)
    cap = max(MAX_EXPANSION * size, MIN_DECLARED_CAP)
    if nbytes > cap:
        raise DeclaredSizeError(f"{path}: {what} promise {nbytes / 2**20:.0f} MiB of data, more "
                         f"than a {size}-byte file can hold ({cap / 2**20:.0f} MiB cap); "
                         f"corrupt header")


def column_of_kind(values, name: str, kinds: str, path) -> np.ndarray:
    """``values`` as an array, or ValueError when its dtype kind is not one of ``kinds``
    ('iu' integers, 'f' floats, 'SU' text): a column whose TFORM was changed reads as
    numbers of the wrong meaning, which must not reach the catalog."""
    a = np.asarray(values)
    if a.dtype.kind not in kinds:
        want = {"iu": "integer", "f": "float", "SU": "text", "iuf": "numeric"}.get(kinds, kinds)
        raise ValueError(f"{path}: column {name} has type {a.dtype} where {want} is expected")
    return a


def air_to_vacuum(wave_air) -> np.ndarray:
    """Air → vacuum wavelength (Å), the IAU standard (Morton 2000 / Ciddor 1996 refractive
    index, as used by SDSS and VALD); valid above 2000 Å, returned unchanged below."""
    w = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / np.where(w > 0, w, 1.0)) ** 2
    n = (1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2)
         + 1.599740894897e-4 / (38.92568793293 - s2))
    return np.where(w >= 2000.0, w * n, w)


def header_str(header, key, default: str = "") -> str:
    v = header.get(key, default)
    return default if v is None else str(v).strip()


def table_columns(hdu) -> list[str]:
    """Column names of a FITS binary/ASCII table from its TTYPEn keywords ([] for images).

    Cheaper than ``hdu.columns``, which builds astropy Column objects: format sniffing
    looks at every HDU of every file."""
    hdr = hdu.header
    if hdr.get("XTENSION", "").strip() not in ("BINTABLE", "TABLE"):
        return []
    return [str(hdr.get(f"TTYPE{i}", "")) for i in range(1, int(hdr.get("TFIELDS", 0)) + 1)]


def open_fits(path: Path):
    """Open a FITS file (memory-mapped) with errors that name the file and the problem;
    a file shorter than its headers promise is reported as truncated (astropy warns while
    it reads every header at open, ``lazy_load_hdus=False``: no second pass is needed)."""
    from astropy.io import fits

    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: empty file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except Exception as exc:  # noqa: BLE001 - astropy raises OSError, VerifyError, TypeError …
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        raise ValueError(f"{path}: not a readable FITS file ({msg})") from None
    for w in caught:
        text = str(w.message)
        if "corrupted" in text or "truncated" in text:
            hdul.close()
            first = " ".join(text.split())
            raise ValueError(f"{path}: truncated FITS file ({first})")
    try:
        _check_headers(path, hdul)
    except Exception as exc:  # noqa: BLE001
        hdul.close()
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        cls = DeclaredSizeError if isinstance(exc, DeclaredSizeError) else ValueError
        raise cls(msg if str(path) in msg else f"{path}: {msg}") from None
    if any(h.header.get("NAXIS", 0) and ("BZERO" in h.header or "BSCALE" in h.header
                                        or "BLANK" in h.header) for h in hdul):
        # scaled integer images cannot be memory-mapped; astropy still reads HDUs lazily
        hdul.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    return hdul


def _declared_bytes(hdr) -> int:
    """Uncompressed data size an HDU header promises (tile-compressed: the image size)."""
    if "ZIMAGE" in hdr and "ZNAXIS" in hdr:
        dims = [int(hdr.get(f"ZNAXIS{i}", 0)) for i in range(1, int(hdr["ZNAXIS"]) + 1)]
        bitpix = int(hdr.get("ZBITPIX", 32))
    else:
        dims = [int(hdr.get(f"NAXIS{i}", 0)) for i in range(1, int(hdr.get("NAXIS", 0)) + 1)]
        bitpix = int(hdr.get("BITPIX", 8))
    n = int(np.prod(dims, dtype=np.float64)) if dims else 0
    return n * abs(bitpix) // 8 + int(hdr.get("PCOUNT", 0) or 0)


def _check_headers(path: Path, hdul) -> None:
    """Every binary table's row width matches its TFORMs, and what the headers declare
    fits in the file (compressed files: within the largest ratio deflate can reach)."""
    compressed = path.name.lower().endswith((".gz", ".fz")) or any(
        "ZIMAGE" in h.header for h in hdul)
    total = 0
    for k, hdu in enumerate(hdul):
        check_table(hdu, hdu.name or str(k))
        total += _declared_bytes(hdu.header)
    if compressed:
        check_declared(path, total, "the file's headers")


def coverage_fraction(wave_lo, wave_hi, grid: LogGrid) -> np.ndarray:
    """Fraction of ``grid`` pixels whose centre lies inside [wave_lo, wave_hi] (Å)."""
    ll = grid.loglam
    lo = np.log10(np.maximum(np.asarray(wave_lo, np.float64), 1e-30))
    hi = np.log10(np.maximum(np.asarray(wave_hi, np.float64), 1e-30))
    n_in = (np.searchsorted(ll, hi, side="right") - np.searchsorted(ll, lo, side="left"))
    return np.clip(n_in, 0, None) / grid.size


def _check_targetid(tid: np.ndarray, path) -> None:
    """TARGETIDs must be integers that fit int64: a NaN would become −2⁶³ and a text or
    fractional value a different object's id."""
    if tid.dtype.kind in "iub":
        return
    if tid.dtype.kind == "f":
        ok = np.isfinite(tid) & (tid == np.round(tid)) & (np.abs(tid) < 2.0**63)
        if np.all(ok):
            return
        bad = tid[~ok].ravel()[:3].tolist()
    else:
        bad = tid.ravel()[:3].tolist()
    raise ValueError(f"{path}: TARGETID holds values that are not int64 ids ({bad}, dtype "
                     f"{tid.dtype})")


def standard_meta(meta: Table | dict | None, path, n: int) -> Table:
    """TARGETID, SOURCE and INPUT_FLAGS always present; known columns coerced to one dtype.

    Works on plain arrays and builds the Table once: astropy's per-column replacement
    cost ~20 ms a file for LAMOST's ~17 header columns, more than reading the spectrum."""
    if meta is None:
        cols: dict = {}
    elif isinstance(meta, Table):
        cols = {c: meta[c] for c in meta.colnames}
    else:
        cols = dict(meta)
    if "TARGETID" in cols:
        _check_targetid(np.asarray(cols["TARGETID"]), path)
    else:
        cols["TARGETID"] = np.full(n, stable_id(str(path)), np.int64) + np.arange(n)
    cols.setdefault("SOURCE", np.full(n, str(path)))
    cols.setdefault("INPUT_FLAGS", np.zeros(n, np.int32))
    for name, dtype in STANDARD_DTYPES.items():
        if name not in cols:
            continue
        if dtype is str:
            vals = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in np.asarray(cols[name]).tolist()]
            cols[name] = np.array([v.strip() for v in vals], dtype=str) if vals else \
                np.zeros(0, dtype="U1")
        else:
            cols[name] = np.asarray(cols[name]).astype(dtype)
    order = ["TARGETID", "SOURCE"] + [c for c in cols if c not in ("TARGETID", "SOURCE")]
    out = Table([cols[c] for c in order], names=order, copy=False)
    if isinstance(meta, Table):
        out.meta.update(meta.meta)
    return out


def finalize(path, loglam, flux, ivar, mask, meta, grid: LogGrid | None,
             wave_bounds: tuple[np.ndarray, np.ndarray] | None = None,
             resolution: np.ndarray | None = None) -> SpectraBatch:
    """Native arrays (shared ``loglam`` (P,)) → SpectraBatch on ``grid`` (None: native).

    NaN/inf flux and negative ivar are masked and flagged by SpectraBatch itself; here we
    add LITTLE_COVERAGE for spectra covering < 50% of the target grid.  ``resolution``:
    line-spread σ in Å per native pixel (see :attr:`SpectraBatch.resolution`).
    """
    flux = np.atleast_2d(flux)
    n = flux.shape[0]
    meta = standard_meta(meta, path, n)
    batch = SpectraBatch(loglam, flux, ivar, mask, meta, source=str(path))
    if resolution is not None:
        batch.resolution = np.asarray(resolution, np.float32).reshape(batch.flux.shape)
    if grid is None:
        return batch
    if wave_bounds is None:
        good = ~batch.mask
        has = good.any(axis=1)
        first = np.where(has, good.argmax(axis=1), 0)
        last = np.where(has, good.shape[1] - 1 - good[:, ::-1].argmax(axis=1), 0)
        wave = batch.wave
        lo, hi = np.where(has, wave[first], np.inf), np.where(has, wave[last], -np.inf)
    else:
        lo, hi = wave_bounds
    out = batch.resample(grid)
    if out is batch:
        out = batch[:]
        out.meta = batch.meta.copy()
    cov = coverage_fraction(lo, hi, grid) if n else np.zeros(0)
    flags = np.asarray(out.meta["INPUT_FLAGS"], np.int32).copy()
    flags[cov < 0.5] |= InputFlag.LITTLE_COVERAGE
    out.meta["INPUT_FLAGS"] = flags
    return out


def placeholder(path, message: str, loglam: np.ndarray | None = None,
                n: int = 1) -> SpectraBatch:
    """``n`` rows standing for a file (or the unread rest of one) that could not be read:
    flux 0, ivar 0, all masked, INPUT_FLAGS READ_ERROR, the message in ERROR.  ``n`` is
    the file's declared number of spectra, so a catalog keeps one row per input spectrum."""
    loglam = DEFAULT_GRID.loglam if loglam is None else loglam
    shape = (n, loglam.size)
    meta = Table({"TARGETID": np.full(n, -1, np.int64), "SOURCE": np.full(n, str(path)),
                  "INPUT_FLAGS": np.full(n, InputFlag.READ_ERROR | InputFlag.NO_GOOD_PIXELS,
                                         np.int32),
                  "ERROR": np.full(n, str(message))})
    return SpectraBatch._unchecked(loglam, np.zeros(shape, np.float32),
                                   np.zeros(shape, np.float32), np.ones(shape, bool), meta)


def file_size_ok(path: Path) -> None:
    """Raise the errors a user expects for a missing, unreadable or empty file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: not readable")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")


def estimate_ivar(flux: np.ndarray, window: int = 101) -> np.ndarray:
    """Inverse variance for a spectrum that carries no errors (flagged ESTIMATED_IVAR).

    Local DER_SNR noise (Stoehr et al. 2008): σ_i = 1.482602/√6 · running median over
    ``window`` pixels of |2f_j − f_{j−2} − f_{j+2}|.  The second difference cancels any
    continuum that is locally linear, so σ follows the pixel-to-pixel scatter (photon +
    read noise), not the spectral shape; the running median keeps absorption/emission
    lines from inflating it.  Unbiased for white noise; overestimates σ inside lines
    sharper than ~2 px.
    """
    from scipy.ndimage import median_filter

    f = np.asarray(flux, np.float64)
    rows = np.atleast_2d(f)
    out = np.zeros(rows.shape, dtype=np.float32)
    for k, row in enumerate(rows):
        good = np.isfinite(row)
        if good.sum() < 5:
            continue
        r = row.copy()
        r[~good] = np.interp(np.flatnonzero(~good), np.flatnonzero(good), row[good])
        d = np.abs(2.0 * r[2:-2] - r[:-4] - r[4:])
        d = np.concatenate([d[:2], d, d[-2:]])
        sigma = 1.482602 / np.sqrt(6.0) * median_filter(d, size=min(window, d.size),
                                                         mode="nearest")
        positive = sigma[sigma > 0]
        floor = 1e-3 * np.median(positive) if positive.size else 0.0
        sigma = np.maximum(sigma, floor)
        with np.errstate(divide="ignore"):
            iv = np.where(good & (sigma > 0), 1.0 / sigma**2, 0.0)
        out[k] = iv
    return out.reshape(f.shape)
