"""The Parquet side of :mod:`.catalog` built without astropy's writer and without pandas: the
schema and ``table_meta_yaml`` astropy's ``write_table_parquet`` would give a table, and Arrow
buffers read back as numpy — each of those astropy/pyarrow paths imports astropy.coordinates or
pandas, more CPU than merging a few thousand catalog rows."""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np
from astropy.table import Table

__all__ = ["parquet_schema", "numpy_of", "dictionary_columns"]


def parquet_schema(proto):
    """The Arrow schema astropy's ``write_table_parquet`` gives ``proto`` (a Table, or a
    :class:`~.catalog_sources.Prototype` of one: column types from
    the numpy dtypes, string widths as ``table::len::NAME``, units and keywords as
    ``table_meta_yaml``), built directly: astropy's writer looks up ``Table.dtype`` once per
    column, O(columns²) — about half a CPU-second for a verified catalog's ~150 columns."""
    import pyarrow as pa
    fields, meta = [], {"table_meta_yaml": "\n".join(_table_yaml(proto))}   # astropy's order
    for name in proto.colnames:
        dt = proto[name].dtype
        sub = proto[name].shape[1:]
        if sub:
            fields.append((name, pa.list_(pa.from_numpy_dtype(dt.type), int(np.prod(sub)))))
        else:
            fields.append((name, pa.from_numpy_dtype(dt.type)))
        if dt.kind == "U":
            meta[f"table::len::{name}"] = str(dt.itemsize // 4)
        elif dt.kind == "S":
            meta[f"table::len::{name}"] = str(dt.itemsize)
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in meta.items()})


def dictionary_columns(schema) -> list[str] | bool:
    """The columns worth Parquet's dictionary encoding: the strings (SPECTYPE, SUBTYPE,
    SOURCE …, a few distinct values each).  pyarrow tries it on every column by default, and
    on the ~150 float columns of a catalog that try slows the write and grows the file for
    nothing (floats seldom repeat); the values read back are the same."""
    import pyarrow as pa
    names = [f.name for f in schema
             if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return names or False


def _table_yaml(table: Table) -> list[str]:
    """astropy's ``get_yaml_from_table(table)`` (the ``table_meta_yaml`` of its Parquet files),
    dumped with PyYAML's SafeDumper (libyaml's C emitter where PyYAML has it, the same text)
    and astropy's own representers for its ordered mappings.

    Why not astropy's: its dumper lives in ``astropy.io.misc.yaml``, whose import pulls in
    ``astropy.coordinates`` and ``astropy.time`` — ~0.4 CPU-s per process, more than writing
    the 2000 rows of a benchmark run.  For the plain types of a catalog (str, int, float) the
    two dumpers write the same text (tests/test_catalog_io.py checks it); anything else falls
    back to astropy's."""
    import yaml
    from astropy.table import meta as tm

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)   # libyaml's C emitter

    class Dumper(base):
        def ignore_aliases(self, data):
            return True

    def column_dict(dumper, data):      # a column's attributes in astropy's preferred order
        items = data.items()            # a ColumnOrderList: its sort() is that order
        items.sort()
        return dumper.represent_mapping("tag:yaml.org,2002:map", list(items))

    try:            # astropy's private helpers: any difference of theirs falls back to astropy
        Dumper.add_representer(OrderedDict, tm._repr_odict)
        Dumper.add_representer(tm.ColumnDict, column_dict)
        lines = _datatype_lines(table.columns.values())
        if lines is None:                   # a column the direct writer does not know
            header = {"datatype": [tm._get_col_attributes(c) for c in table.columns.values()]}
        else:                               # the small rest (the keywords) through PyYAML
            header = {}
        if table.meta:
            header["meta"] = OrderedDict(table.meta)
        rest = yaml.dump(header, default_flow_style=None, Dumper=Dumper,
                         width=130).splitlines() if header else []
        return rest if lines is None else ["datatype:", *lines, *rest]
    except (yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError):
        return tm.get_yaml_from_table(table.to_table() if hasattr(table, "to_table") else table)


#: characters PyYAML's emitter (``analyze_scalar``) refuses in a plain scalar of a flow
#: mapping: anywhere, and as the first character
_FLOW_ANYWHERE = frozenset(",?[]{}:")
_FLOW_FIRST = frozenset("#,[]{}&*!|>'\"%@`?:")


def _datatype_lines(columns) -> list[str] | None:
    """The ``datatype:`` list of the YAML header, one ``- {name: …, unit: …, datatype: …}``
    line a column, written directly: PyYAML's representer and resolver made a YAML node per
    scalar, ~600 of them for a catalog's ~150 columns — ~6 CPU-ms of every predict call's
    merge.  The text is what PyYAML writes (tests/test_catalog_io.py checks it on a catalog
    and on names that need quotes); None — so that PyYAML writes the list — for anything
    outside the plain cases: a format, description or meta on a column, object columns,
    a value that is not printable ASCII, a line that PyYAML would wrap."""
    from astropy.table.meta import _get_datatype_from_dtype
    units: dict = {}
    # the few distinct datatypes of a catalog, each named once a call (most of a
    # ~150-column header's values repeat; their text is cached by :func:`_scalar`)
    names: dict = {}
    out = []
    for col in columns:
        info = col.info
        if info.format is not None or info.description is not None or info.meta:
            return None
        dtype, shape = info.dtype, col.shape[1:]
        if dtype.kind == "O" or not isinstance(info.name, str):
            return None
        items = [("name", info.name)]
        unit = info.unit
        if unit is not None:
            if unit not in units:
                units[unit] = str(unit)
            items.append(("unit", units[unit]))
        if dtype not in names:
            names[dtype] = _get_datatype_from_dtype(dtype)
        if shape:
            items.append(("datatype", "string"))
            items.append(("subtype", names[dtype]
                          + "[" + ",".join(str(int(k)) for k in shape) + "]"))
        else:
            items.append(("datatype", names[dtype]))
        parts = []
        for key, value in items:
            text = _scalar(value)
            if text is None:
                return None
            parts.append(f"{key}: {text}")
        line = "- {" + ", ".join(parts) + "}"
        if len(line) > 120:                          # PyYAML wraps past its width (130)
            return None
        out.append(line)
    return out or None


@lru_cache(maxsize=4096)
def _scalar(s: str) -> str | None:
    """``s`` as PyYAML writes a string value in a flow mapping (plain, or single-quoted
    where a plain scalar would not read back as the same string); None outside printable
    ASCII (PyYAML's double-quoted escapes are not reproduced here).  Cached: a catalog's
    ~150 columns repeat a few units and datatypes (~1 of the header's ~2 CPU-ms)."""
    if not s:
        return "''"
    if not s.isascii() or not s.isprintable():
        return None
    plain = (s[0] != " " and s[-1] != " " and not s.startswith(("---", "..."))
             and s[0] not in _FLOW_FIRST and not (s[0] == "-" and (len(s) == 1 or s[1] == " "))
             and not _FLOW_ANYWHERE.intersection(s[1:]) and " #" not in s
             and _implicit_tag(s) == "tag:yaml.org,2002:str")
    return s if plain else "'" + s.replace("'", "''") + "'"


def _implicit_tag(s: str) -> str:
    """The tag PyYAML's resolver gives ``s`` written plain (a string that would read back
    as a number, boolean, null or date has to be quoted, as the emitter does)."""
    global _RESOLVER
    import yaml
    if _RESOLVER is None:
        _RESOLVER = yaml.resolver.Resolver()
    return _RESOLVER.resolve(yaml.ScalarNode, s, (True, False))


_RESOLVER = None


def numpy_of(col) -> np.ndarray:
    """An Arrow array of numbers or booleans without nulls → numpy, from its data buffer:
    ``to_numpy`` goes through pyarrow's pandas shim, which imports pandas (~0.3 CPU-s a
    process) — for the one-row prototype of a merge."""
    import pyarrow as pa
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count or not (pa.types.is_boolean(col.type) or pa.types.is_integer(col.type)
                              or pa.types.is_floating(col.type)):
        return col.to_numpy(zero_copy_only=False)
    n, off = len(col), col.offset
    if pa.types.is_boolean(col.type):
        if not n:
            return np.zeros(0, bool)
        bits = np.frombuffer(col.buffers()[1], np.uint8)
        return np.unpackbits(bits, count=off + n, bitorder="little")[off:].astype(bool)
    dt = np.dtype(col.type.to_pandas_dtype())
    if not n:
        return np.zeros(0, dt)
    return np.frombuffer(col.buffers()[1], dt, count=n, offset=off * dt.itemsize).copy()
