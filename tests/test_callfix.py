"""Branch callfix (a predict call's fixed cost): string columns to Arrow by their code units,
parts as Arrow IPC files (older Parquet parts still read), held parts merged as one row group,
the YAML header's repeated values written once — none of it changes a catalog."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Column, Table
from astropy.table.meta import get_yaml_from_table

from specsift.io import read_catalog
from specsift.io.catalog import merge_parts
from specsift.io.catalog_parquet import _datatype_lines, _table_yaml
from specsift.io.catalog_sources import read_part
from specsift.pipeline.parts import RunDir, _utf8, table_to_arrow


@pytest.mark.parametrize("values", [
    np.array(["GALAXY", "QSO", "", "STAR"]), np.array([], "U3"), np.array(["", ""]),
    np.array(["a\x00b", " x ", "~\x7f"]), np.array(["abc", "d"], ">U3"),
    np.zeros(2, "U0"), np.array(["x" * 40] * 5)[::2]])
def test_ascii_strings_are_numpys_cast(values):
    got, ref = _utf8(values), values.astype(f"S{max(values.dtype.itemsize // 4, 1)}")
    assert got.dtype == ref.dtype and got.shape == ref.shape and got.tobytes() == ref.tobytes()


def test_other_strings_are_encoded_as_utf8():
    a = np.array(["pä th", "x", "日本"])
    assert _utf8(a).tolist() == [s.encode() for s in a]


def _table(n=5, k=0):
    return Table({"TARGETID": np.arange(k, k + n), "SOURCE": np.array([f"f{i}" * (i % 3 + 1)
                                                                        for i in range(n)]),
                  "Z": np.linspace(0, 1, n), "ZWARN": np.arange(n, dtype=np.int32),
                  "OK": np.arange(n) % 2 == 0, "COEFF": np.ones((n, 3), np.float32),
                  "HBETA_FLUX": np.full(n, np.nan, np.float32)})


def _run(tmp_path, tables):
    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True, exist_ok=True)
    for b, t in enumerate(tables):
        rd.write_part(0, b, table_to_arrow(t))
    return rd


def test_parts_are_arrow_files_of_the_rows(tmp_path):
    t = _table()
    rd = _run(tmp_path, [t])
    path = rd.part_path(0, 0)
    assert path.suffix == ".arrow" and path.read_bytes()[:6] == b"ARROW1"
    want = table_to_arrow(t)
    for got in (read_part(path), rd.held_parts()[path]):
        assert got.schema.equals(want.schema)
        assert repr(got.to_pydict()) == repr(want.to_pydict())      # NaNs where NaNs


def test_held_parts_merge_as_one_row_group_with_the_same_catalog(tmp_path):
    tables = [_table(5, 0), _table(3, 5), _table(1, 8)]
    rd = _run(tmp_path, tables)
    parts = [rd.part_path(0, b) for b in range(3)]
    merge_parts(parts, tmp_path / "files.parquet", {"MODEL": "m"})
    merge_parts(parts, tmp_path / "held.parquet", {"MODEL": "m"}, tables=rd.held_parts())
    assert pq.read_metadata(tmp_path / "files.parquet").num_row_groups == 3
    assert pq.read_metadata(tmp_path / "held.parquet").num_row_groups == 1
    assert pq.read_schema(tmp_path / "files.parquet").equals(
        pq.read_schema(tmp_path / "held.parquet"), check_metadata=True)
    a, b = Table.read(tmp_path / "files.parquet"), Table.read(tmp_path / "held.parquet")
    assert a.colnames == b.colnames and a.meta == b.meta and len(a) == 9
    for name in a.colnames:
        assert (a[name].dtype, a[name].unit) == (b[name].dtype, b[name].unit)
        assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes(), name


def test_an_older_runs_parquet_parts_are_resumed(tmp_path):
    """A run of an earlier version left Parquet parts: they are found, counted and merged
    beside the IPC parts this version writes, into the catalog of an all-new run."""
    tables = [_table(4, 0), _table(4, 4)]
    new = _run(tmp_path / "new", tables)
    new.finish_unit(0, 2)
    ref = tmp_path / "ref.parquet"
    merge_parts(new.ordered_parts(1), ref, {"MODEL": "m"})

    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True)
    pq.write_table(table_to_arrow(tables[0]), rd.path / "u000000-b0000.parquet")   # older
    assert rd.done_batches() == {0: {0}}
    rd.write_part(0, 1, table_to_arrow(tables[1]))
    assert rd.done_batches() == {0: {0, 1}}
    rd.finish_unit(0, 2, {1: 4})
    assert rd.done_units()[0] == {"batches": 2, "rows": 8}
    parts = rd.ordered_parts(1)
    assert [p.suffix for p in parts] == [".parquet", ".arrow"]
    merge_parts(parts, tmp_path / "mixed.parquet", {"MODEL": "m"}, tables=rd.held_parts())
    a, b = read_catalog(ref), read_catalog(tmp_path / "mixed.parquet")
    assert a.colnames == b.colnames and a.meta == b.meta
    for name in a.colnames:
        assert np.asarray(a[name]).tobytes() == np.asarray(b[name]).tobytes(), name


def test_repeated_units_and_names_like_them_in_the_yaml_header():
    """Units and datatypes written once a call; a name that reads like a unit, a number or
    a datatype is still quoted as PyYAML quotes it."""
    t = Table([Column(np.zeros(2), name=n, unit=u) for n, u in (
        ("Z", ""), ("A_FLUX", "1e-17 erg / (s cm2)"), ("B_FLUX", "1e-17 erg / (s cm2)"),
        ("1e-17 erg / (s cm2)", "km / s"), ("float64", None), ("km / s", "km / s"),
        ("1.5", "Angstrom"), ("yes", None), ("C", "Angstrom"))])
    t["V"] = np.zeros((2, 3), np.float32)
    t["W"] = np.zeros((2, 3), np.float32)
    t["S"] = np.array(["a", "b"])
    assert _datatype_lines(t.columns.values()) is not None
    assert _table_yaml(t) == get_yaml_from_table(t)


def test_merge_of_ipc_parts_reads_them_back_without_held_tables(tmp_path):
    tables = [_table(2, 0), _table(3, 2)]
    rd = _run(tmp_path, tables)
    parts = [rd.part_path(0, b) for b in range(2)]
    for ext in ("parquet", "fits", "ecsv", "csv"):
        merge_parts(parts, tmp_path / f"files.{ext}", {"MODEL": "m"})
        merge_parts(parts, tmp_path / f"held.{ext}", {"MODEL": "m"}, tables=rd.held_parts())
        a, b = read_catalog(tmp_path / f"files.{ext}"), read_catalog(tmp_path / f"held.{ext}")
        assert len(a) == 5 and a.colnames == b.colnames
        for name in a.colnames:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]),
                                  equal_nan=a[name].dtype.kind == "f"), (ext, name)
    assert pa.ipc.open_file(str(parts[0])).schema.equals(table_to_arrow(tables[0]).schema)


def test_small_parts_uncompressed_large_ones_lz4_both_held_as_copies(tmp_path):
    """Both kinds of part read back as written, and what is held owns its memory (writing
    into the batch's arrays afterwards changes nothing held)."""
    import specsift.pipeline.parts as parts_mod
    big = _table(parts_mod._LZ4_BYTES // 8, 0)
    small = _table(2, 0)
    for t in (small, big):
        rd = _run(tmp_path / str(len(t)), [])
        at = table_to_arrow(t)
        z = np.asarray(t["Z"]).copy()
        rd.write_part(0, 0, at)
        np.asarray(t["Z"])[:] = -1.0                      # the batch's memory reused
        for got in (read_part(rd.part_path(0, 0)), rd.held_parts()[rd.part_path(0, 0)]):
            assert np.array_equal(got.column("Z").to_numpy(), z)
        compressed = rd.part_path(0, 0).stat().st_size < at.nbytes / 2   # ones, NaNs, a ramp
        assert compressed == (at.nbytes >= parts_mod._LZ4_BYTES)
