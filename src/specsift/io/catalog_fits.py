"""The FITS catalog layout: what :mod:`.catalog` writes to and reads from ``.fits`` /
``.fits.gz``.

Its own file because that layout is one job apart from choosing a format: the columns split
into REDSHIFTS and FIBERMAP (joined back into one table when read), provenance and keywords as
header cards (printable ASCII, HIERARCH for long keys), and the rows of every part filled in
the on-disk dtype with numpy (astropy's BinTableHDU only where a column kind is not covered),
then streamed with ``fits.StreamingHDU``.  :mod:`.catalog` imports this module, never the other
way round.
"""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .catalog_schema import FIBERMAP_COLUMNS, canonical_order

__all__ = ["write_fits", "read_fits"]

#: Header keywords astropy writes for the table structure (not catalog metadata).
_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "EXTNAME",
               "SIMPLE", "EXTEND", "TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL", "TSCAL",
               "TZERO", "TDISP", "COMMENT", "HISTORY", "")


# --------------------------------------------------------------------------- columns
def _split(table: Table) -> tuple[Table, Table | None]:
    """(REDSHIFTS, FIBERMAP or None when the table has no identifiers besides TARGETID)."""
    ids = [n for n in table.colnames if n in FIBERMAP_COLUMNS and n != "TARGETID"]
    red = table[[n for n in table.colnames if n not in ids]]
    if not ids:
        return red, None
    fib = table[[n for n in ("TARGETID", *ids) if n in table.colnames]]
    return red, fib


def _header_value(v):
    """A FITS header value: numbers as they are; text as printable ASCII (a command line or
    path with 'é' or a control character gets backslash escapes, as the FITS columns do)."""
    if isinstance(v, (bool, int, float, np.integer, np.floating, np.bool_)):
        return v.item() if hasattr(v, "item") else v
    text = v if isinstance(v, str) else json.dumps(v, default=str)
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    # astropy 7/8 reads a long (CONTINUE) string holding '' back cut at the first quote pair:
    # a shell-quoted path in COMMAND would lose the rest of the command line
    text = text.replace("'", '"')
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)


def _put_meta(header: fits.Header, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)   # HIERARCH for long keys
        for k, v in meta.items():
            header[str(k).upper()] = _header_value(v)


# --------------------------------------------------------------------------- writing
def write_fits(src, tmp: Path, gz: bool) -> None:
    """``src`` (:mod:`.catalog_sources`) to ``tmp``: an empty primary HDU with the
    provenance, then REDSHIFTS and FIBERMAP streamed part by part; ``gz``: the finished
    file gzip-compressed into ``tmp``."""
    plain = tmp.with_name(tmp.name + ".fits") if gz else tmp
    proto = _ascii(src.prototype(), None)
    red, fib = _split(proto)
    primary = fits.PrimaryHDU()
    _put_meta(primary.header, src.provenance)
    primary.writeto(plain, overwrite=True)
    for name, cols in (("REDSHIFTS", red.colnames), ("FIBERMAP", fib.colnames if fib else None)):
        if cols is None:
            continue
        hdu = fits.table_to_hdu(proto[cols])
        hdu.header["EXTNAME"] = name
        hdu.header["NAXIS2"] = src.n_rows
        if name == "REDSHIFTS":
            _put_meta(hdu.header, src.meta)
        row = _fits_row_dtype(hdu.data)                # the on-disk row, from the prototype
        stream = fits.StreamingHDU(str(plain), hdu.header)
        try:
            if src.n_rows == 0:
                continue
            for t in src.tables(cols):
                t = _ascii(t, proto)
                raw = _fits_rows(t, row) if row is not None else None
                if raw is None:
                    raw = _fits_rows_astropy(t)
                stream.write(np.frombuffer(raw.tobytes(), np.uint8))
        finally:
            stream.close()
    if gz:
        try:
            with open(plain, "rb") as fin, gzip.open(tmp, "wb", compresslevel=6) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        finally:
            plain.unlink(missing_ok=True)


def _fits_rows_astropy(t: Table) -> np.ndarray:
    """``t``'s rows as a FITS binary table stores them (big-endian, booleans as 'T'/'F',
    strings as NUL-padded ASCII), through astropy's own BinTableHDU."""
    return _raw_rows(fits.table_to_hdu(t).data)


def _raw_rows(data) -> np.ndarray:
    """The bytes of a FITS_rec as they go to the file."""
    data._scale_back()                               # booleans, strings → FITS bytes
    raw = np.asarray(data).view(np.ndarray)
    return raw.astype(raw.dtype.newbyteorder(">"))


def _fits_row_dtype(data) -> np.dtype | None:
    """The on-disk row dtype of the FITS table ``data`` (the prototype's HDU): what
    :func:`_fits_rows` fills; None for a column kind it does not cover (unsigned or
    scaled integers, variable-length arrays, anything but numbers, booleans, strings)."""
    raw = _raw_rows(data)
    for col, name in zip(data.columns, raw.dtype.names):
        base = raw.dtype[name].base
        boolean = str(col.format).endswith("L")
        if base.kind not in "ifS" or (base == np.dtype("i1")) != boolean \
                or col.bzero not in (None, 0) or col.bscale not in (None, 1):
            return None
    return raw.dtype


def _fits_rows(t: Table, row: np.dtype) -> np.ndarray | None:
    """``t``'s rows in the on-disk dtype ``row``, filled column by column with numpy: the
    bytes :func:`_fits_rows_astropy` gives (tests/test_fixed_cost.py compares them), where
    that made a whole BinTableHDU of every part — its ~160 columns' header cards and unit
    parsing, ~80 CPU-ms a part, a quarter of writing a one-part FITS catalog.  None (astropy
    writes the part) for a column this does not know."""
    out = np.zeros(len(t), row)
    for name, field in zip(t.colnames, row.names):
        a = np.asarray(t[name])
        base = row[field].base
        if a.shape[1:] != row[field].shape:
            return None
        if a.dtype.kind == "b":
            if base != np.dtype("i1"):
                return None
            out[field] = np.where(a, ord("T"), ord("F"))
        elif a.dtype.kind == "U" and base.kind == "S":
            enc = np.char.encode(a, "ascii")         # _ascii made them ASCII
            if enc.dtype.itemsize > base.itemsize:
                return None
            out[field] = np.char.rstrip(enc, b" ")   # trailing blanks → NULs, as astropy
        elif a.dtype.kind in "if" and (a.dtype.kind, a.dtype.itemsize) == \
                (base.kind, base.itemsize):
            out[field] = a
        else:
            return None
    return out


def _ascii(t: Table, proto: Table | None) -> Table:
    """FITS strings are ASCII: other characters (a path with 'ñ') become backslash escapes
    rather than end a long run in an encoding error; widths those of ``proto``."""
    for name in t.colnames:
        a = np.asarray(t[name])
        if a.dtype.kind != "U":
            continue
        width = np.asarray(proto[name]).dtype.itemsize // 4 if proto is not None else None
        if not all(x.isascii() for x in a.tolist()):
            a = np.char.decode(np.char.encode(a, "ascii", "backslashreplace"), "ascii")
        t[name] = a.astype(f"U{width or max(a.dtype.itemsize // 4, 1)}")
    return t


# --------------------------------------------------------------------------- reading
def read_fits(path: Path) -> Table:
    """REDSHIFTS with the FIBERMAP columns beside it (or the first table HDU of any other
    FITS file), the primary header's keywords in ``meta``, strings as str; empty strings
    may still come back masked (:func:`.catalog.read_catalog` unmasks them, as for text)."""
    with fits.open(path, memmap=False) as hdul:
        names = [h.name for h in hdul]
        red_idx = names.index("REDSHIFTS") if "REDSHIFTS" in names else next(
            (k for k, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)), None)
        if red_idx is None:
            raise ValueError("no table HDU")
        red = Table.read(hdul, hdu=red_idx)
        meta = {k: v for k, v in hdul[0].header.items() if k not in _STRUCTURAL}
        if "FIBERMAP" in names and red_idx == names.index("REDSHIFTS"):
            fib = Table.read(hdul, hdu="FIBERMAP")
            for name in fib.colnames:
                if name not in red.colnames:
                    red[name] = fib[name]
    out = Table(red[canonical_order(red.colnames)], meta={**meta, **red.meta})
    for name in out.colnames:                       # FITS strings come back as bytes
        if out[name].dtype.kind == "S":
            out[name] = np.char.decode(np.asarray(out[name]), "utf-8")
    return out
