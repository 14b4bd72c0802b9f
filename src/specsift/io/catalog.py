"""Catalog files: one writer and one reader for ``.fits``, ``.fits.gz``, ``.parquet``,
``.csv`` and ``.ecsv``, used both for a table in memory and for merging the part files of a
``predict`` run.

Layout (Redrock's where it applies): FITS has an empty primary HDU with the provenance
keywords, a ``REDSHIFTS`` table (TARGETID and the model's columns) and a ``FIBERMAP`` table
(TARGETID, SOURCE, ROW and the input's identifiers: RA, DEC, PLATE/MJD/FIBERID, OBSID …);
the single-table formats hold the same columns side by side.  Units come from
:mod:`.catalog_schema` by column name; provenance (package version, model, weights sha256,
date, input count, command line) goes into the FITS headers, the Parquet and ECSV metadata
(astropy's own ``table_meta_yaml``, so plain ``Table.read`` gets units and keywords too).
Plain ``.csv`` is for spreadsheets: one header line, vector columns as NAME_0, NAME_1 …, no
units or keywords (use ``.ecsv`` for a text file that keeps them).

Merging parts never holds the catalog in memory: a first pass over the parts reads only
the schema, row count and string widths (:mod:`.catalog_sources`: what is written); then
every HDU / file is written part by part with astropy (``fits.StreamingHDU`` for FITS, the
ECSV/CSV writers per part) or pyarrow's ``ParquetWriter``.  ``.fits.gz`` is the finished
``.fits`` gzip-compressed as a stream.  This module picks the format and writes Parquet and
text; the FITS layout (HDUs, header cards, rows in the on-disk dtype) is :mod:`.catalog_fits`.
Everything goes to a temporary file renamed into place: a crash never leaves half a catalog.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyWarning

from .catalog_fits import read_fits, write_fits
from .catalog_parquet import dictionary_columns, parquet_schema
from .catalog_schema import unit_for
from .catalog_sources import MemorySource, PartSource

__all__ = ["write_catalog", "read_catalog", "merge_parts", "catalog_format", "catalog_suffixes"]

_FORMATS = {".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
            ".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".ecsv": "ecsv"}


def catalog_suffixes() -> tuple[str, ...]:
    """File name endings a catalog can be written to (and read from)."""
    return tuple(_FORMATS)


def catalog_format(path) -> str:
    """'fits', 'parquet', 'csv' or 'ecsv' from the file name; ValueError otherwise."""
    name = Path(path).name.lower()
    for ext in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return _FORMATS[ext]
    raise ValueError(f"{path}: unknown catalog extension; use one of "
                     f"{', '.join(catalog_suffixes())}")


# --------------------------------------------------------------------------- columns
def _flatten(table: Table) -> Table:
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
    return out


# --------------------------------------------------------------------------- writing
def write_catalog(table: Table, path, meta: dict | None = None,
                  overwrite: bool = True) -> Path:
    """Write ``table`` (any columns, including fixed-length array columns) to ``path``;
    the format comes from the extension, keywords from ``table.meta`` and ``meta``."""
    return _write(MemorySource(table, meta), Path(path), overwrite)


def merge_parts(parts: list[Path], catalog, meta: dict | None = None,
                tables: dict | None = None) -> int:
    """Write the rows of the part files ``parts`` (in order; Arrow IPC ``.arrow`` files as
    ``predict`` writes them, any other name read as Parquet) to ``catalog``, one part in
    memory at a time; returns the row count.  ``tables``: {part path: its Arrow table}
    that the caller still holds (used only when it holds every part: the rows are the
    same, and no part is read back)."""
    if not parts:
        raise ValueError(f"{catalog}: no spectra were predicted")
    src = PartSource(parts, meta, tables)
    _write(src, Path(catalog), True)
    return src.n_rows


def _write(src, path: Path, overwrite: bool) -> Path:
    fmt = catalog_format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            if fmt == "fits":
                write_fits(src, tmp, gz=path.name.lower().endswith(".gz"))
            elif fmt == "parquet":
                _write_parquet(src, tmp)
            else:
                _write_text(src, tmp, fmt)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        raise ValueError(f"{path}: could not write catalog ({exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path



def _write_parquet(src, tmp: Path) -> None:
    """Schema and metadata as astropy's own Parquet writer makes them (:func:`parquet_schema`,
    from a one-row prototype), rows streamed through pyarrow with exactly that schema: parts of
    a predict run go Arrow to Arrow (:meth:`.catalog_sources.PartSource.arrow_tables`), never through astropy.

    Parts that are all in memory (``PartSource.in_memory``: the run that just wrote them,
    up to ``RunDir.HELD_BYTES``) are written as one table, so one row group instead of one
    a part: zstd and the column statistics cost per column chunk, and the ~156 columns'
    chunks of every extra part were ~6 of the ~24 CPU-ms of writing a 2000-row catalog of
    two parts.  The rows, schema and metadata read back are the same; parts read back from
    their files are still written one at a time (a catalog never held in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    proto = src.schema_prototype()
    proto.meta.update(src.provenance)
    schema = parquet_schema(proto)
    plain = {f"specsift.{k}": str(v) for k, v in src.meta.items()}   # for pyarrow / pandas
    schema = schema.with_metadata({**(schema.metadata or {}),
                                   **{k.encode(): v.encode() for k, v in plain.items()}})
    with pq.ParquetWriter(tmp, schema, compression="zstd",
                          use_dictionary=dictionary_columns(schema)) as w:
        if hasattr(src, "arrow_tables"):
            tables = src.arrow_tables(schema)
            if src.in_memory:        # every part held: one write, so one row group
                tables = [pa.concat_tables(list(tables))]
            for at in tables:
                w.write_table(at)
            return
        for t in src.tables(proto.colnames):
            cols = []
            for field in schema:
                a = np.asarray(t[field.name])
                if a.ndim > 1:
                    flat = pa.array(np.ascontiguousarray(a).reshape(-1), field.type.value_type)
                    cols.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
                else:
                    cols.append(pa.array(a.tolist() if a.dtype.kind == "U" else a, field.type))
            w.write_table(pa.Table.from_arrays(cols, schema=schema))


def _write_text(src, tmp: Path, fmt: str) -> None:
    """ECSV (header with units and keywords) or plain CSV, written by astropy part by part:
    the first part with its header, the others' data lines appended."""
    first = True
    with open(tmp, "w", newline="") as fh:
        for t in src.tables(src.prototype().colnames, with_meta=True):
            buf = io.StringIO()
            if fmt == "ecsv":
                t.meta.update(src.provenance)
                t.write(buf, format="ascii.ecsv", delimiter=",")
                lines = buf.getvalue().splitlines(keepends=True)
                body = [ln for ln in lines if not ln.startswith("#")][1:]
            else:
                _flatten(t).write(buf, format="ascii.csv")
                lines = buf.getvalue().splitlines(keepends=True)
                body = lines[1:]
            fh.writelines(lines if first else body)
            first = False


# --------------------------------------------------------------------------- reading
def read_catalog(path) -> Table:
    """Read a catalog written by :func:`write_catalog` / :func:`merge_parts` (or any table
    in those formats): one table with every column, units and the keywords in ``meta``."""
    path = Path(path)
    fmt = catalog_format(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such catalog")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            if fmt == "fits":
                t = _unmask_strings(read_fits(path))
            elif fmt == "parquet":
                t = Table.read(path, format="parquet")
            elif fmt == "ecsv":
                with _long_fields():
                    t = _unmask_strings(Table.read(path, format="ascii.ecsv"))
            else:
                with _long_fields():
                    t = _unflatten(_booleans(_unmask_strings(
                        Table.read(path, format="ascii.csv"))))
    except Exception as exc:
        raise ValueError(f"{path}: could not read catalog ({exc})") from exc
    return _with_units(t)


@contextmanager
def _long_fields():
    """Let one text field exceed Python's csv limit of 128 KiB while a catalog is read: a
    ``--save-chi2`` curve (thousands of χ² values) is one ECSV field, and astropy's ECSV reader
    parses through the csv module, which otherwise refuses the file that predict wrote."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _with_units(t: Table) -> Table:
    """Units from the schema where the file has none: FITS writes no TUNIT for
    dimensionless columns (Z, ZERR …) and plain CSV none at all."""
    for name in t.colnames:
        unit = unit_for(name)
        if unit is not None and t[name].unit is None and t[name].dtype.kind in "fiu":
            t[name].unit = unit
    return t


def _booleans(t: Table) -> Table:
    """Plain CSV writes booleans as True/False; read them back as booleans."""
    for name in t.colnames:
        a = np.asarray(t[name])
        if a.dtype.kind == "U" and len(a) and np.isin(a, ("True", "False")).all():
            t[name] = a == "True"
    return t


def _unmask_strings(t: Table) -> Table:
    """Empty strings come back masked from text formats; a catalog's '' is a value."""
    for name in t.colnames:
        col = t[name]
        if isinstance(col, MaskedColumn) and col.dtype.kind in "SU":
            t[name] = np.asarray(col.filled(""))
    return t


def _unflatten(t: Table) -> Table:
    """NAME_0, NAME_1 … (written for vector columns) back into one NAME column."""
    out = Table(meta=t.meta)
    names = t.colnames
    skip = set()
    for name in names:
        if name in skip:
            continue
        base, _, k = name.rpartition("_")
        if k == "0" and base and base not in names and f"{base}_1" in names:
            run = []
            while f"{base}_{len(run)}" in names:
                run.append(f"{base}_{len(run)}")
            out[base] = np.stack([np.asarray(t[c]) for c in run], axis=1)
            skip.update(run)
        else:
            out[name] = t[name]
    return out
