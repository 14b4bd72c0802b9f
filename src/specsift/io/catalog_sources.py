"""What a catalog writer writes: one table in memory, or the part files of a ``predict``
run (Arrow IPC, or Parquet from older versions and other callers) streamed one part at a time.

Apart from :mod:`.catalog` (the formats: FITS, Parquet, ECSV/CSV writers and the reader)
because it is the other half of every write: each format asks a source for a one-row
``prototype`` (schema, widths, keywords), ``n_rows``, ``meta``/``provenance`` and the rows
as astropy tables (``tables``) or, for part files, Arrow tables (``arrow_tables``); the
part source does its own first pass over the parts' schemas and string widths so that no
format holds the whole catalog in memory.  :func:`prepare` is what both sources apply to
their rows: canonical order, units, filled masks, fixed-width strings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.table import Column, Table

from .catalog_parquet import numpy_of
from .catalog_schema import canonical_order, unit_for

__all__ = ["MemorySource", "PartSource", "Prototype", "prepare", "fill_value", "arrow_to_table",
           "provenance_of", "IPC_SUFFIX", "read_part", "part_rows"]

#: the ending of part files in Arrow's IPC file format (what ``predict`` writes: see
#: :meth:`specsift.pipeline.parts.RunDir.write_part`); a part under any other name is Parquet
#: (the parts of older versions, and of callers of :func:`~.catalog.merge_parts`)
IPC_SUFFIX = ".arrow"


def _is_ipc(path) -> bool:
    return Path(path).suffix == IPC_SUFFIX


def read_part(path, columns: list[str] | None = None, metadata=None):
    """Part file ``path``'s columns ``columns`` (None: all) as an Arrow table, Arrow IPC or
    Parquet (``metadata``: its Parquet footer, when already read).  An IPC part is read whole
    (one read, LZ4 decompressed into Arrow's memory) and the columns picked from it."""
    if _is_ipc(path):
        import pyarrow as pa
        with pa.OSFile(str(path)) as fh:
            at = pa.ipc.open_file(fh).read_all()
        return at if columns is None else at.select(columns)
    import pyarrow.parquet as pq
    return pq.ParquetFile(path, metadata=metadata).read(columns=columns)


def _part_footer(path):
    """(Arrow schema, rows, Parquet metadata or None) of part file ``path``, without its rows."""
    if _is_ipc(path):
        import pyarrow as pa
        with pa.OSFile(str(path)) as fh:
            r = pa.ipc.open_file(fh)
            return r.schema, r.count_rows(), None
    import pyarrow.parquet as pq
    m = pq.read_metadata(path)                                  # one footer read a part
    return m.schema.to_arrow_schema(), m.num_rows, m


def part_rows(path) -> int:
    """Rows in part file ``path`` (from its footer)."""
    return _part_footer(path)[1]


def prepare(table: Table, widths: dict[str, int] | None = None) -> Table:
    """Canonical column order, units from the schema, masked values filled, strings as
    fixed-width unicode (``widths`` when merging: the same width in every part)."""
    return _prepared({name: table[name] for name in table.colnames}, widths, table.meta)


def _prepared(columns: dict, widths: dict[str, int] | None, meta) -> Table:
    """:func:`prepare` of columns given as {name: array or Column}: the table is built in
    one call from finished arrays, names and units (a column assigned into a Table costs a
    copy and astropy's per-column bookkeeping twice: a third of a merge of 400 rows was its
    one-row prototype)."""
    names, cols, units = _prepared_arrays(columns, widths)
    # plain arrays with names and units: astropy makes one Column each (finished Columns
    # were copied once more by the Table: 13 against 21 ms for a 162-column prototype)
    return Table(cols, names=names, units=units or None, meta=dict(meta), copy=False)


def _prepared_arrays(columns: dict, widths: dict[str, int] | None
                     ) -> tuple[list[str], list[np.ndarray], dict[str, str]]:
    """The (names, arrays, units) :func:`_prepared` makes its table of."""
    cols, names, units = [], canonical_order(list(columns)), {}
    for name in names:
        col = columns[name]
        data = np.asarray(col.filled(fill_value(col.dtype)) if hasattr(col, "filled") else col)
        if data.dtype.kind in "SUO":
            data = np.char.decode(data, "utf-8") if data.dtype.kind == "S" else data.astype(str)
            width = max((widths or {}).get(name, 1), data.dtype.itemsize // 4, 1)
            data = data.astype(f"U{width}")
        unit = unit_for(name) if data.dtype.kind in "fiu" else None
        if unit is not None:
            units[name] = unit
        cols.append(data)
    return names, cols, units


class Prototype:
    """A one-row prototype as :func:`.catalog_parquet.parquet_schema` reads it — column
    names, dtypes, shapes, units (as astropy's ``Column.unit`` parses them) and the table's
    meta — without the astropy Table: making its ~150 Columns was a large part of the fixed
    cost of merging a run's parts, paid once per ``predict``.  ``to_table``
    gives the Table for what needs astropy itself."""

    def __init__(self, names: list[str], arrays: list[np.ndarray], units: dict[str, str],
                 meta: dict):
        self.colnames = list(names)
        self._arrays, self._units = arrays, units
        self.columns = {n: _ColumnSpec(n, a, units.get(n)) for n, a in zip(names, arrays)}
        self.meta = dict(meta)

    def __getitem__(self, name: str) -> "_ColumnSpec":
        return self.columns[name]

    def to_table(self) -> Table:
        return Table(self._arrays, names=self.colnames, units=self._units or None,
                     meta=dict(self.meta), copy=False)


class _ColumnSpec:
    """What astropy's ``_get_col_attributes`` (the YAML header) and ``parquet_schema`` read
    of a Column: ``dtype``, ``shape`` and ``info`` (name, dtype, unit, format, description,
    meta)."""

    __slots__ = ("dtype", "shape", "info")

    def __init__(self, name: str, data: np.ndarray, unit: str | None):
        self.dtype, self.shape = data.dtype, data.shape
        self.info = _ColumnInfo(name, data.dtype, None if unit is None else _unit(unit))


class _ColumnInfo:
    __slots__ = ("name", "dtype", "unit", "format", "description", "meta")

    def __init__(self, name, dtype, unit):
        self.name, self.dtype, self.unit = name, dtype, unit
        self.format = self.description = None
        self.meta = {}


@lru_cache(maxsize=512)
def _unit(text: str):
    """``text`` as astropy's Column parses a unit given to it (``parse_strict='silent'``)."""
    from astropy.units import Unit
    return Unit(text, parse_strict="silent")


def fill_value(dtype):
    """What a missing value becomes in a catalog column of ``dtype`` (NaN, '', False, -1)."""
    kind = np.dtype(dtype).kind
    return np.nan if kind == "f" else ("" if kind in "SUO" else (False if kind == "b" else -1))


def arrow_to_table(at) -> Table:
    """An Arrow table (a part file's rows) as an astropy table: fixed-size lists as 2-D
    columns, strings as numpy str, nulls as :func:`fill_value` makes them (``''``, NaN, −1,
    False).  The one conversion for every reader of parts (the merge's prototype here,
    :mod:`specsift.pipeline.parts` and its benchmark), so that they cannot drift apart;
    numbers go through :func:`.catalog_parquet.numpy_of`, which does not import pandas."""
    cols = _arrow_columns(at)
    return Table([Column(v, name=k, copy=False) for k, v in cols.items()], copy=False) \
        if cols else Table()


def _arrow_columns(at) -> dict[str, np.ndarray]:
    """The numpy columns of :func:`arrow_to_table`."""
    import pyarrow as pa
    out = {}
    for name in at.column_names:
        col = at.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            size = col.type.list_size
            # without null lists the values are the child array's slice: ``flatten`` gets
            # them through pyarrow.compute, whose import costs more than a merge
            flat = col.flatten() if col.null_count else \
                col.values.slice(col.offset * size, len(col) * size)
            out[name] = numpy_of(flat).reshape(len(col), size)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.array([s or "" for s in col.to_pylist()], dtype=str) \
                if len(col) else np.zeros(0, "U1")
        else:
            filled = col.fill_null(fill_value(col.type.to_pandas_dtype())) \
                if col.null_count else col
            out[name] = numpy_of(filled)
    return out


class MemorySource:
    """One table in memory, seen as a single part."""

    def __init__(self, table: Table, meta: dict | None):
        self.table = prepare(Table(table, copy=False))
        self.meta = {**self.table.meta, **(meta or {})}
        self.table.meta.clear()
        self.provenance = provenance_of(self.meta)
        self.n_rows = len(self.table)

    def prototype(self) -> Table:
        t = self.table[:1].copy()
        t.meta.update(self.meta)
        return t

    def schema_prototype(self) -> Table:
        """What the Parquet schema is made from (:meth:`PartSource.schema_prototype`): here
        the one-row Table itself, already in memory."""
        return self.prototype()

    def tables(self, cols, with_meta: bool = False):
        t = self.table[list(cols)]
        if with_meta:
            t.meta.update(self.meta)
        yield t


class PartSource:
    """Part files of a predict run (:func:`read_part`: Arrow IPC or Parquet): a first pass reads
    schema, row count and string widths (of a Parquet part without the other columns);
    ``tables`` reads one part at a time."""

    def __init__(self, parts: list[Path], meta: dict | None, tables: dict | None = None):
        import pyarrow as pa
        self.parts, self.meta = list(parts), dict(meta or {})
        self.provenance = provenance_of(self.meta)
        # the Arrow tables of the parts when the caller still holds every one of them (the
        # run that just wrote them): the same rows, without reading each part twice
        held = tables or {}
        self._held = {p: held[p] for p in self.parts} \
            if self.parts and all(p in held for p in self.parts) else {}
        if self._held:
            schemas = [self._held[p].schema for p in self.parts]
            rows = [self._held[p].num_rows for p in self.parts]
        else:
            footers = [_part_footer(p) for p in self.parts]
            schemas = [f[0] for f in footers]
            rows = [f[1] for f in footers]
            metas = [f[2] for f in footers]
        self.schema = pa.unify_schemas(schemas, promote_options="permissive")
        strs = [f.name for f in self.schema if pa.types.is_string(f.type)
                or pa.types.is_large_string(f.type)]
        self.widths = dict.fromkeys(strs, 1)
        self.n_rows = sum(rows)
        for k, (p, s) in enumerate(zip(self.parts, schemas)):
            at = self._read(p, [c for c in strs if c in s.names],
                            None if self._held else metas[k])
            for c in at.column_names:
                self.widths[c] = max(self.widths[c], string_width(at.column(c)) or 1)

    @property
    def in_memory(self) -> bool:
        """Every part's rows are held in memory (nothing is read back from the files)."""
        return bool(self._held)

    def _read(self, part: Path, columns: list[str] | None = None, metadata=None):
        """Part ``part``'s columns ``columns`` (None: all) as an Arrow table: the held one,
        else read from its file."""
        if self._held:
            at = self._held[part]
            return at if columns is None else at.select(columns)
        return read_part(part, columns, metadata)

    def _conform(self, at, cols):
        """``at``'s columns ``cols`` in the merged schema's types (a column already of its
        type is not cast: a cast per column was most of a one-row prototype's set-up)."""
        import pyarrow as pa
        out = []
        have = set(at.column_names)
        for name in cols:
            field = self.schema.field(name)
            if name not in have:
                out.append(pa.nulls(at.num_rows, field.type))
                continue
            col = at.column(name)
            out.append(col if col.type == field.type else col.cast(field.type))
        return pa.Table.from_arrays(out, names=list(cols))

    def prototype(self) -> Table:
        return _prepared(self._first_row(), self.widths, self.meta)

    def schema_prototype(self) -> Prototype:
        """:meth:`prototype` for the Parquet schema alone (:class:`Prototype`): made from the
        merged schema and the string widths, which the first pass has (reading the first
        part's rows for it was a quarter of a one-part merge); from the first row where a
        column's type is not a plain number, boolean, string or fixed-size list of numbers."""
        row = _schema_row(self.schema, self.widths)
        return Prototype(*_prepared_arrays(row if row is not None else self._first_row(),
                                           self.widths), self.meta)

    def _first_row(self) -> dict:
        first = self._conform(self._read(self.parts[0]).slice(0, 1), self.schema.names)
        return _arrow_columns(first)

    def arrow_tables(self, schema):
        """Each part as an Arrow table of ``schema``: columns in its order and types, a column
        a part lacks (or its nulls) filled as :func:`prepare` fills them."""
        import pyarrow as pa
        for p in self.parts:
            at = self._part_columns(p, schema.names)
            have = set(at.column_names)
            cols = []
            for field in schema:
                src = at.column(field.name) if field.name in have else \
                    pa.nulls(at.num_rows, self.schema.field(field.name).type)
                # a column already of its type is not cast (a cast, like a fill, goes through
                # pyarrow.compute, whose import is ~0.06–0.15 CPU-s a process)
                col = src if src.type == field.type else src.cast(field.type)
                if src.null_count and not pa.types.is_fixed_size_list(src.type):
                    import pyarrow.compute as pc
                    col = pc.fill_null(col, fill_value(np.str_ if pa.types.is_string(field.type)
                                                  else field.type.to_pandas_dtype()))
                cols.append(col)
            yield pa.Table.from_arrays(cols, schema=schema)

    def _part_columns(self, part: Path, names):
        """The columns ``names`` that part ``part`` has."""
        if self._held:
            have = set(self._held[part].column_names)
            return self._read(part, [c for c in names if c in have])
        if _is_ipc(part):                           # read whole anyway
            at = read_part(part)
            return at.select([c for c in names if c in set(at.column_names)])
        have = set(_part_footer(part)[0].names)
        return read_part(part, [c for c in names if c in have])

    def tables(self, cols, with_meta: bool = False):
        for p in self.parts:
            at = self._part_columns(p, cols)
            yield _prepared(_arrow_columns(self._conform(at, cols)), self.widths,
                            self.meta if with_meta else {})   # one Table, as prototype()


def _schema_row(schema, widths: dict[str, int]) -> dict[str, np.ndarray] | None:
    """A row of :func:`_arrow_columns`' dtypes and shapes for ``schema`` (zeros, empty strings
    of the merged width: a prototype's values are never written), or None for a type it
    does not cover."""
    import pyarrow as pa
    out = {}
    for field in schema:
        typ, shape = field.type, (1,)
        if pa.types.is_fixed_size_list(typ):
            typ, shape = typ.value_type, (1, typ.list_size)
            if not (pa.types.is_integer(typ) or pa.types.is_floating(typ)
                    or pa.types.is_boolean(typ)):
                return None
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            if len(shape) > 1:
                return None
            out[field.name] = np.zeros(1, f"U{max(widths.get(field.name, 1), 1)}")
        elif pa.types.is_boolean(typ):
            out[field.name] = np.zeros(shape, bool)
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
            out[field.name] = np.zeros(shape, np.dtype(typ.to_pandas_dtype()))
        else:
            return None
    return out


def string_width(col) -> int | None:
    """Width a string column needs in the catalog: its longest value in UTF-8 bytes, or, when
    a value is not ASCII, in the backslash escapes FITS writes for it (None: no values).

    Read from the Arrow buffers (offsets and bytes) rather than with ``pyarrow.compute``
    (``string_is_ascii``, ``binary_length``, ``max``): importing that module costs ~0.06–0.15
    CPU-s a process, and a merge needs nothing else of it.  Columns with nulls take the
    compute path, which skips them."""
    import pyarrow as pa
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if any(ch.null_count for ch in chunks):
        return _string_width_compute(col)
    longest, ascii_ = None, True
    for ch in chunks:
        if not len(ch):
            continue
        wide = pa.types.is_large_string(ch.type)
        off = np.frombuffer(ch.buffers()[1], np.int64 if wide else np.int32,
                            count=len(ch) + 1, offset=ch.offset * (8 if wide else 4))
        m = int(np.max(np.diff(off)))
        longest = m if longest is None else max(longest, m)
        data = ch.buffers()[2]
        if data is not None and off[-1] > off[0] and \
                np.frombuffer(data, np.uint8)[off[0]:off[-1]].max() >= 0x80:
            ascii_ = False
    if not ascii_:                                       # FITS escapes them
        return max((len(x.encode("ascii", "backslashreplace"))
                    for ch in chunks for x in ch.to_pylist() if x), default=1)
    return longest


def _string_width_compute(col) -> int | None:
    import pyarrow as pa
    import pyarrow.compute as pc
    if pc.all(pc.string_is_ascii(col)).as_py() is False:
        return max((len(x.encode("ascii", "backslashreplace"))
                    for x in col.to_pylist() if x), default=1)
    return pc.max(pc.binary_length(pc.cast(col, pa.binary()))).as_py()


def provenance_of(meta: dict) -> dict:
    """The provenance subset of ``meta`` (what also goes into the FITS primary header)."""
    keys = ("SPECSIFT", "MODEL", "MODELSHA", "MODELFIL", "DATE", "NINPUT", "COMMAND")
    return {k: meta[k] for k in keys if k in meta}
