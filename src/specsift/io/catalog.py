"""Catalog files: an astropy Table to/from ``.fits``, ``.parquet`` or ``.csv`` by extension.

Writes go to a temporary file in the same directory and are renamed into place, so a
crash never leaves a half-written catalog where a finished one is expected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import Table

__all__ = ["write_catalog", "read_catalog", "catalog_format"]

_FORMATS = {".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".parquet": "parquet",
            ".pq": "parquet", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}


def catalog_format(path) -> str:
    name = Path(path).name.lower()
    for ext in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return _FORMATS[ext]
    raise ValueError(f"{path}: unknown catalog extension; use .fits, .parquet or .csv")


def _flatten_for_csv(table: Table) -> Table:
    """CSV holds scalars only: vector columns become NAME_0, NAME_1 …"""
    out = Table()
    for name in table.colnames:
        col = table[name]
        if col.ndim > 1:
            flat = np.asarray(col).reshape(len(col), -1)
            for k in range(flat.shape[1]):
                out[f"{name}_{k}"] = flat[:, k]
        else:
            out[name] = col
    out.meta.update(table.meta)
    return out


def write_catalog(table: Table, path, overwrite: bool = True) -> Path:
    """Write ``table`` to ``path`` (format from the extension), atomically."""
    path = Path(path)
    fmt = catalog_format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = Table(table, copy=False)
    if fmt.startswith("ascii"):
        table = _flatten_for_csv(table)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        table.write(tmp, format=fmt, overwrite=True)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ValueError(f"{path}: could not write catalog ({exc})") from exc
    return path


def read_catalog(path) -> Table:
    """Read a catalog written by :func:`write_catalog` (or any table in those formats)."""
    path = Path(path)
    fmt = catalog_format(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such catalog")
    try:
        return Table.read(path, format=fmt)
    except Exception as exc:
        raise ValueError(f"{path}: could not read catalog ({exc})") from exc
