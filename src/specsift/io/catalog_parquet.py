"""The Parquet side of :mod:`.catalog` built without astropy's writer and without pandas: the
schema and ``table_meta_yaml`` astropy's ``write_table_parquet`` would give a table, and Arrow
buffers read back as numpy — each of those astropy/pyarrow paths imports astropy.coordinates or
pandas, more CPU than merging a few thousand catalog rows."""

from __future__ import annotations

from collections import OrderedDict

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
        header = {"datatype": [tm._get_col_attributes(c) for c in table.columns.values()]}
        if table.meta:
            header["meta"] = OrderedDict(table.meta)
        return yaml.dump(header, default_flow_style=None, Dumper=Dumper, width=130).splitlines()
    except (yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError):
        return tm.get_yaml_from_table(table.to_table() if hasattr(table, "to_table") else table)


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
