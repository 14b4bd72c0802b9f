"""Label exports: one row per labeller per spectrum (their latest label), with TARGETID and
the label set's extra fields, as CSV, JSON or FITS.

Every labeller's label is kept rather than the latest one overall, so disagreements can be
studied and a consensus built afterwards (as DESI's VI merges several inspectors).  TARGETID
is written as text in CSV/JSON (a spreadsheet or JavaScript would round an int64) and as
int64 in FITS when every value is an integer.  CSV cells are neutralised against formula
injection (:func:`.text.csv_cell`).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from .text import csv_cell

__all__ = ["export_labels", "COLUMNS"]

#: Column order of the CSV (the first five as in earlier versions of the export).
COLUMNS = ("item", "ident", "label", "who", "at", "source", "iteration", "targetid",
           "z_vi", "z_quality", "comment")


def _flat(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        d = r.get("data") or {}
        out.append({"item": int(r["item"]), "ident": r["ident"], "label": r["label"],
                    "who": r["who"], "at": r["at"], "source": r["source"],
                    "iteration": r["iteration"], "targetid": str(r.get("targetid") or ""),
                    "z_vi": d.get("z_vi"), "z_quality": d.get("z_quality"),
                    "comment": d.get("comment", "")})
    return out


def _csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([csv_cell(r[c]) for c in COLUMNS])
    return buf.getvalue().encode("utf-8")


def _json(rows: list[dict], meta: dict) -> bytes:
    return json.dumps({**meta, "columns": list(COLUMNS), "labels": rows},
                      ensure_ascii=False, indent=1).encode("utf-8")


def _ascii(values) -> np.ndarray:
    """FITS text is ASCII: other characters (a comment's "Hα") as \\u escapes."""
    return np.array([str(v).encode("ascii", "backslashreplace").decode() for v in values],
                    dtype=str)


def _fits(rows: list[dict], meta: dict) -> bytes:
    from astropy.io import fits
    from astropy.table import Table
    tids = [r["targetid"] for r in rows]
    as_int = all(t.lstrip("-").isdigit() for t in tids) and len(tids) > 0
    t = Table({"TARGETID": np.array([int(x) for x in tids], np.int64) if as_int
               else _ascii(tids),
               "ITEM": np.array([r["item"] for r in rows], np.int64),
               "IDENT": _ascii(r["ident"] for r in rows),
               "LABEL": _ascii(r["label"] for r in rows),
               "WHO": _ascii(r["who"] for r in rows),
               "AT": _ascii(r["at"] for r in rows),
               "Z_VI": np.array([np.nan if r["z_vi"] is None else r["z_vi"] for r in rows]),
               "Z_QUALITY": np.array([-1 if r["z_quality"] is None else r["z_quality"]
                                      for r in rows], np.int16),
               "COMMENT": _ascii(r["comment"] for r in rows)})
    hdu = fits.table_to_hdu(t)
    hdu.name = "LABELS"
    hdu.header["LABELSET"] = meta["label_set"]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()


def export_labels(rows: list[dict], fmt: str, label_set: str, pool: str) -> tuple[bytes, str, str]:
    """(content, media type, file name); ``KeyError`` for an unknown format."""
    flat = _flat(rows)
    meta = {"label_set": label_set, "pool": pool}
    if fmt == "csv":
        return _csv(flat), "text/csv; charset=utf-8", "labels.csv"
    if fmt == "json":
        return _json(flat, meta), "application/json", "labels.json"
    if fmt == "fits":
        return _fits(flat, meta), "application/fits", "labels.fits"
    raise KeyError(fmt)
