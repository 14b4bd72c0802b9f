"""Merge part files into the final catalog, one part in memory at a time, atomically.

FITS, Parquet and CSV (format from the extension, as :func:`specsift.io.write_catalog`).
Why not just ``write_catalog(vstack(parts))``: that needs the whole catalog in memory,
which for tens of millions of rows is gigabytes.  Here Parquet and CSV are streamed by
pyarrow, and FITS binary tables are written by hand: header with the final row count
first, then each part's rows as big-endian records (two passes over the parts: string
widths, then data).  Everything goes to a temporary file that is renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io.catalog import catalog_format
from .parts import arrow_to_table

__all__ = ["merge_parts", "merge_format"]

_BLOCK = 2880


def merge_format(catalog) -> str:
    """The format :func:`merge_parts` writes for this name; ValueError for a name it cannot
    write (checked before a run starts, see :mod:`.preflight`)."""
    catalog = Path(catalog)
    fmt = catalog_format(catalog)
    if fmt == "fits" and catalog.name.lower().endswith(".gz"):
        raise ValueError(f"{catalog}: write .fits (not .fits.gz) for large catalogs; "
                         f"compress afterwards if needed")
    if fmt not in ("fits", "parquet", "ascii.csv"):
        raise ValueError(f"{catalog}: predict writes .fits, .parquet or .csv catalogs")
    return fmt


def merge_parts(parts: list[Path], catalog: Path, meta: dict | None = None) -> int:
    """Write the rows of ``parts`` (in order) to ``catalog``; returns the row count."""
    catalog = Path(catalog)
    fmt = merge_format(catalog)
    if not parts:
        raise ValueError(f"{catalog}: no spectra were predicted")
    catalog.parent.mkdir(parents=True, exist_ok=True)
    tmp = catalog.with_name(f".{catalog.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            n = _parquet(parts, tmp, meta or {})
        elif fmt == "fits":
            n = _fits(parts, tmp, meta or {})
        else:
            n = _csv(parts, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, catalog)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return n


def _unified_schema(parts: list[Path]) -> pa.Schema:
    schemas = [pq.read_schema(p) for p in parts]
    return pa.unify_schemas(schemas, promote_options="permissive")


def _conform(at: pa.Table, schema: pa.Schema) -> pa.Table:
    """Same columns in the same order and types (a column absent in a part: nulls)."""
    cols = []
    for field in schema:
        if field.name in at.column_names:
            cols.append(at.column(field.name).cast(field.type))
        else:
            cols.append(pa.nulls(at.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _string_widths(parts, schema: pa.Schema) -> tuple[int, dict[str, int]]:
    """Row count and the longest value (bytes) of each string column, reading only those."""
    str_cols = [f.name for f in schema if pa.types.is_string(f.type)
                or pa.types.is_large_string(f.type)]
    widths = dict.fromkeys(str_cols, 1)
    n = 0
    for p in parts:
        names = pq.read_schema(p).names
        at = pq.read_table(p, columns=[c for c in str_cols if c in names])
        n += pq.read_metadata(p).num_rows
        for c in at.column_names:
            m = pc.max(pc.binary_length(pc.cast(at.column(c), pa.binary()))).as_py()
            widths[c] = max(widths[c], m or 1)
    return n, widths


def _parquet(parts, tmp: Path, meta: dict) -> int:
    schema = _unified_schema(parts)
    _, widths = _string_widths(parts, schema)
    md = {f"specsift.{k}": str(v) for k, v in meta.items()}
    md.update({f"table::len::{c}": str(w) for c, w in widths.items()})   # astropy reads these
    schema = schema.with_metadata(md)
    n = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for p in parts:
            at = _conform(pq.read_table(p), schema)
            w.write_table(at)
            n += at.num_rows
    return n


def _csv(parts, tmp: Path) -> int:
    import pyarrow.csv as pacsv
    schema = _unified_schema(parts)
    n = 0
    writer = None
    try:
        for p in parts:
            at = _conform(pq.read_table(p), schema)
            flat = {}
            for name in at.column_names:              # vector columns → NAME_0, NAME_1 …
                col = at.column(name)
                if pa.types.is_fixed_size_list(col.type):
                    size = col.type.list_size
                    values = col.combine_chunks().flatten().to_numpy(zero_copy_only=False)
                    values = values.reshape(-1, size)
                    for k in range(size):
                        flat[f"{name}_{k}"] = pa.array(values[:, k])
                else:
                    flat[name] = col
            at = pa.table(flat)
            if writer is None:
                writer = pacsv.CSVWriter(str(tmp), at.schema)
            writer.write_table(at)
            n += at.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


# ----------------------------------------------------------------------------- FITS
def _fits_dtype(schema: pa.Schema, widths: dict[str, int]) -> np.dtype:
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            fields.append((f.name, f"S{max(widths.get(f.name, 1), 1)}"))
        elif pa.types.is_fixed_size_list(t):
            inner = np.dtype(t.value_type.to_pandas_dtype()).newbyteorder(">")
            fields.append((f.name, inner, (t.list_size,)))
        elif pa.types.is_boolean(t):
            fields.append((f.name, "S1"))          # FITS logical: 'T' / 'F'
        else:
            fields.append((f.name, np.dtype(t.to_pandas_dtype()).newbyteorder(">")))
    return np.dtype(fields)


def _records(at: pa.Table, dtype: np.dtype) -> np.ndarray:
    rec = np.zeros(at.num_rows, dtype=dtype)
    for name in dtype.names:
        col = at.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            rec[name] = np.array([s or "" for s in col.to_pylist()], dtype=object).astype(
                dtype[name]) if len(col) else rec[name]
        elif pa.types.is_fixed_size_list(col.type):
            rec[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
        elif pa.types.is_boolean(col.type):
            rec[name] = np.where(col.to_numpy(zero_copy_only=False), b"T", b"F")
        else:
            fill = np.nan if pa.types.is_floating(col.type) else 0
            rec[name] = col.fill_null(fill).to_numpy(zero_copy_only=False)
    return rec


def _fits(parts, tmp: Path, meta: dict) -> int:
    from astropy.io import fits
    from astropy.table import Table

    schema = _unified_schema(parts)
    n, widths = _string_widths(parts, schema)          # pass 1: rows and string widths
    str_cols = list(widths)
    dtype = _fits_dtype(schema, widths)
    first = _conform(pq.read_table(parts[0]), schema).slice(0, 1)
    proto = arrow_to_table(first)
    for c in str_cols:
        proto[c] = proto[c].astype(f"U{widths[c]}")
    hdu = fits.BinTableHDU(Table(proto))
    header = hdu.header
    header["NAXIS2"] = n
    for k, v in meta.items():
        key = k.upper()                              # long keys as HIERARCH, not cut to 8
        header[key if len(key) <= 8 else f"HIERARCH {key}"] = str(v)[:60]
    if header["NAXIS1"] != dtype.itemsize:
        raise RuntimeError(f"FITS row size mismatch ({header['NAXIS1']} ≠ {dtype.itemsize})")
    with open(tmp, "wb") as fh:
        fh.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
        fh.write(header.tostring().encode("ascii"))
        written = 0
        for p in parts:                               # pass 2: the rows
            rec = _records(_conform(pq.read_table(p), schema), dtype)
            fh.write(rec.tobytes())
            written += rec.nbytes
        pad = (-written) % _BLOCK
        fh.write(b"\0" * pad)
    return n
