"""FITS binary tables decoded by the standard's rules (FITS 4.0 §7.3), for the few columns a
reader needs: TFORMn types and repeat counts, TDIMn, TSCALn/TZEROn, unsigned integers,
padded text.  Why not astropy: it builds a Column object for every column before it returns
one row (SPECOBJ has 126, SPALL ≈ 500), and it reads a table whose TFORM was edited at shifted
offsets without a word (:func:`check_table`).  Used on astropy's HDUs (:func:`first_row`) and
on the raw headers of :mod:`.rawfits` alike: a header is anything with astropy Header's ``get``.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["BINTYPE", "table_fields", "check_table", "first_row", "decode_row", "RowDecoder"]

#: binary-table TFORMn (FITS 4.0 §7.3.1): repeat count, type code
_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])")
#: numpy dtype of each binary-table type code (big-endian, as stored)
BINTYPE = {"L": "u1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8",
            "C": ">c8", "M": ">c16"}
#: TZEROn that mark unsigned integers stored as signed (FITS 4.0 §7.3.2)
_UNSIGNED = {"I": (1 << 15, ">u2"), "J": (1 << 31, ">u4"), "K": (1 << 63, ">u8")}


def table_fields(hdr) -> tuple[dict, int]:
    """{TTYPE: (index, byte offset, repeat, type code)} and the row width they add up to."""
    fields, offset = {}, 0
    for i in range(1, int(hdr.get("TFIELDS", 0)) + 1):
        m = _TFORM.match(str(hdr.get(f"TFORM{i}", "")).upper())
        if m is None:
            raise ValueError(f"TFORM{i} = {hdr.get(f'TFORM{i}')!r} is not a binary-table format")
        r, code = int(m.group(1) or 1), m.group(2)
        fields[str(hdr.get(f"TTYPE{i}", "")).strip()] = (i, offset, r, code)
        offset += {"X": (r + 7) // 8, "A": r, "P": 8, "Q": 16}.get(
            code, r * np.dtype(BINTYPE.get(code, "u1")).itemsize)
    return fields, offset


def check_table(hdu, name: str = "") -> None:
    """ValueError unless a binary table's TFORMn widths add up to its NAXIS1 row width.

    astropy reads a table whose TFORM was edited (6A → 1J) at shifted offsets without a
    word: every column after it then holds bytes of its neighbours (wrong TARGETIDs, Z).
    """
    hdr = hdu.header
    if str(hdr.get("XTENSION", "")).strip() != "BINTABLE" or "ZIMAGE" in hdr:
        return
    _, width = table_fields(hdr)
    if width != int(hdr.get("NAXIS1", -1)):
        label = name or hdu.name or "table"
        raise ValueError(f"HDU {label}: columns (TFORMn) add up to {width} bytes a row but "
                         f"NAXIS1 says {hdr.get('NAXIS1')}; corrupt table header")


def first_row(hdu, columns) -> dict:
    """The first row of a FITS binary table, only those of ``columns`` it has, read
    straight from the file.

    astropy builds a Column object for every column of the table before it returns a row
    (SPECOBJ has 126, SPALL ≈ 500: 15–45 ms an SDSS file, more than the spectrum), and a
    second FITS library would open and parse the whole file again. This reads the row's
    NAXIS1 bytes at the table's data offset and decodes them with :func:`decode_row`.
    """
    hdr = hdu.header
    fields, width = table_fields(hdr)              # parsed once, for the check and the row
    if width != int(hdr.get("NAXIS1", -1)):
        raise ValueError(f"table columns add up to {width} bytes a row, NAXIS1 says "
                         f"{hdr.get('NAXIS1')}")
    info = hdu.fileinfo()
    fh = info["file"]
    fh.seek(info["datLoc"])
    return decode_row(hdr, fh.read(width), columns, (fields, width))


def decode_row(hdr, raw: bytes, columns, fields: tuple[dict, int] | None = None) -> dict:
    """Fields ``columns`` (those the table has) of one binary-table row ``raw``, decoded by
    the FITS rules: TFORMn types, TDIMn, TSCALn/TZEROn, unsigned integers, padded text.
    ``hdr``: anything with astropy Header's ``get`` (an astropy or a raw header, or just
    its TZEROn/TSCALn/TDIMn); ``fields``: :func:`table_fields` of it when known."""
    return RowDecoder(hdr, columns, fields)(raw)


class RowDecoder:
    """:func:`decode_row` split in two: what depends on the table's column cards alone (each
    wanted column's offset, type, scaling, shape), worked out once, and the decoding of one
    row's bytes (:meth:`__call__`).  Why: a survey's files share a few table layouts, and the
    per-file part is then a loop of ``frombuffer`` calls (the SDSS quick path keeps one
    decoder per layout, :func:`specsift.io.sdss.quick`)."""

    __slots__ = ("width", "steps", "plain")

    def __init__(self, hdr, columns, fields: tuple[dict, int] | None = None):
        fields, self.width = table_fields(hdr) if fields is None else fields
        steps, plain = [], []
        for name in (c for c in columns if c in fields):
            i, off, r, code = fields[name]
            if code == "A":
                steps.append((name, "A", off, r, None, None))
                continue
            if code in "XPQ":                      # raised when a row is decoded, as before
                steps.append((name, "bad", code, None, None, None))
                continue
            zero, scale = hdr.get(f"TZERO{i}"), hdr.get(f"TSCAL{i}")
            tdim = hdr.get(f"TDIM{i}")
            shape = tuple(int(d) for d in str(tdim).strip("() ").split(","))[::-1] \
                if tdim else None
            if code in _UNSIGNED and zero == _UNSIGNED[code][0] and scale in (None, 1):
                utype = np.dtype(_UNSIGNED[code][1])
                steps.append((name, "U", off, r, utype, (utype.type(zero), shape)))
            elif (zero is None and scale is None and r == 1 and shape is None
                  and code not in "LU"):
                plain.append((name, off, np.dtype(BINTYPE[code])))
                steps.append((name, "plain", None, None, None, None))
            else:
                ztuple = None if zero is None and scale is None else \
                    (1.0 if scale is None else scale, 0.0 if zero is None else zero)
                steps.append((name, code, off, r, np.dtype(BINTYPE[code]), (ztuple, shape)))
        self.steps = steps
        # the plain one-value numbers (most labels) read as one record, its values as
        # Python numbers (``tolist``) made the numpy scalars the column path gives: one
        # numpy call a row, where the record's native-order copy and a field look-up per
        # column cost twice as much (~16 against ~8 µs for SPALL's nine)
        self.plain = None if not plain else (np.dtype({
            "names": [p[0] for p in plain], "offsets": [p[1] for p in plain],
            "formats": [p[2].newbyteorder(">") for p in plain], "itemsize": self.width}),
            {p[0]: (i, p[2].type) for i, p in enumerate(plain)})

    def __call__(self, raw: bytes) -> dict:
        if len(raw) < self.width:
            raise ValueError("table data ends before its first row")
        out = {}
        rec = None if self.plain is None else np.frombuffer(raw, self.plain[0], 1)[0].tolist()
        for name, code, off, r, dt, extra in self.steps:
            if code == "plain":
                i, scalar = self.plain[1][name]
                out[name] = scalar(rec[i])
                continue
            if code == "A":
                out[name] = raw[off:off + r].split(b"\0", 1)[0].decode("ascii", "replace").rstrip()
                continue
            if code == "bad":
                raise ValueError(f"column {name}: type {off} is not read as a label")
            if code == "U":
                v = np.frombuffer(raw, dt, r, off) ^ extra[0]
            else:
                v = np.frombuffer(raw, dt, r, off)
                if code == "L":
                    v = v == ord("T")
                elif extra[0] is not None:
                    v = v * extra[0][0] + extra[0][1]
            v = v.astype(v.dtype.newbyteorder("="))
            shape = extra[1]
            if shape is not None:          # TDIMn "(a,b)", Fortran order: a varies fastest
                v = v.reshape(shape)
            out[name] = v[0] if r == 1 and shape is None else v
        return out
