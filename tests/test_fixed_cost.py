"""The fixed cost of a predict call cut without changing what it writes: the YAML header
written directly, the merge's Parquet prototype made from the schema, line columns put into
the table directly, a loaded network built without its random initialisation."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from astropy.table import Column, Table
from astropy.table.meta import get_yaml_from_table

from specsift.io import read_catalog
from specsift.io.catalog import merge_parts
from specsift.io.catalog_parquet import _datatype_lines, _table_yaml
from specsift.io.catalog_sources import PartSource, Prototype, _prepared_arrays, read_part
from specsift.lines.measure import _empty, _units, add_line_columns, line_table
from specsift.pipeline.parts import RunDir

#: names PyYAML writes plain, single-quoted for its resolver (numbers, booleans, null,
#: dates) or single-quoted for its flow indicators
_TRICKY = ["A", "true", "1.5", "yes", "No", "null", "~", "a:b", "a: b", "#x", "a#b", "a #b",
           "-x", "- x", "-", "x-", "---a", "...", "a,b", "a[1]", "'q'", 'd"q', "%x", "@x",
           "`x", "!x", "&x", "*x", "|x", ">x", "?x", "x?", "2026-12-02", "0x1F", "1e5",
           "1_000", ".inf", "=", "<<", "a b", "a  b", "on", "OFF", "y", "n", "1:20",
           "12:30:00", ".5", "+1", "0o17", "x'y", "NaN", ".NaN", "e", "E5", "x}"]


def test_datatype_lines_are_pyyamls_text():
    """Every name above, with and without units, vector and string columns, keywords with
    quotes and non-ASCII text: the same header as astropy's own dumper, through the direct
    writer (not its PyYAML fallback)."""
    t = Table()
    for i, name in enumerate(_TRICKY):
        t[name] = Column(np.zeros(2), unit=("km / s", None, "1e-17 erg / (s cm2 Angstrom)")[i % 3])
    t["V"] = np.zeros((2, 3), np.float32)
    t["M"] = np.zeros((2, 2, 5), np.int16)
    t["S"] = np.array(["a", "b"])
    t["B"] = np.array([True, False])
    t.meta.update({"A": 1, "DATE": "2026-12-02T00:41:17", "X": True, "C": "a: b 'q' é"})
    assert _datatype_lines(t.columns.values()) is not None
    assert _table_yaml(t) == get_yaml_from_table(t)


@pytest.mark.parametrize("col", [Column(np.zeros(2), name="é"),
                                 Column(np.zeros(2), name="D", description="why"),
                                 Column(np.zeros(2), name="F", format="%.3f"),
                                 Column(np.zeros(2), name="N" * 130)])
def test_other_columns_fall_back_to_pyyaml(col):
    """A column outside the direct writer's cases (non-ASCII name, description, format, a
    line PyYAML would wrap) leaves the whole list to PyYAML: still astropy's text."""
    t = Table([Column(np.zeros(2), name="Z", unit="km / s"), col])
    assert _datatype_lines(t.columns.values()) is None
    assert _table_yaml(t) == get_yaml_from_table(t)


def _part(tmp_path, table, k=0):
    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.write_part(0, k, table)
    return rd.part_path(0, k)


def test_schema_prototype_is_the_first_rows(tmp_path):
    """The Parquet prototype made from the merged schema has the dtypes, shapes, units and
    string widths of the one made from the first part's first row."""
    t = Table({"TARGETID": np.arange(3), "SOURCE": np.array(["a", "bbbbbbb", "c"]),
               "Z": np.ones(3), "NPIXELS": np.ones(3, np.int32), "OK": np.ones(3, bool),
               "COEFF": np.ones((3, 4), np.float32), "HBETA_FLUX": np.ones(3, np.float32)})
    src = PartSource([_part(tmp_path, t, 0), _part(tmp_path, t[:1], 1)], {"A": 1})
    new, old = src.schema_prototype(), Prototype(*_prepared_arrays(src._first_row(), src.widths),
                                                 src.meta)
    assert new.colnames == old.colnames
    for name in new.colnames:
        a, b = new[name], old[name]
        assert (a.dtype, a.shape, a.info.unit) == (b.dtype, b.shape, b.info.unit), name
    assert new["SOURCE"].dtype == np.dtype("U7")
    assert _table_yaml(new) == _table_yaml(old)


def test_merge_reads_back_every_column(tmp_path):
    t = Table({"TARGETID": np.arange(2), "SOURCE": np.array(["x", "yy"]),
               "COEFF": np.arange(8, dtype=np.float32).reshape(2, 4), "Z": [0.1, 0.2]})
    merge_parts([_part(tmp_path, t)], tmp_path / "out.parquet", {"MODEL": "m"})
    back = Table.read(tmp_path / "out.parquet")
    assert back.colnames == ["TARGETID", "SOURCE", "COEFF", "Z"]
    assert np.array_equal(back["COEFF"], t["COEFF"]) and list(back["SOURCE"]) == ["x", "yy"]
    assert b"table_meta_yaml" in pq.read_schema(tmp_path / "out.parquet").metadata


@pytest.mark.parametrize("n", [1, 5])
def test_line_columns_added_as_add_columns_would(n):
    """Direct insertion gives the table ``add_columns(line_table(cols))`` gives: names,
    order, units, values, no copies of the arrays; the table stays usable (a row slice,
    a new column, a removal)."""
    base = Table({"Z": np.linspace(0, 1, n), "SPECTYPE": np.full(n, "GALAXY")})
    cols = _empty(n)
    cols["HBETA_FLUX"][:] = np.arange(n)
    mine = base.copy(copy_data=False)
    add_line_columns(mine, cols)
    ref = base.copy()
    ref.add_columns(list(line_table(cols).columns.values()))
    assert mine.colnames == ref.colnames
    for name in ref.colnames:
        assert mine[name].unit == ref[name].unit, name
        a, b = np.asarray(mine[name]), np.asarray(ref[name])
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert np.shares_memory(np.asarray(mine["HBETA_FLUX"]), cols["HBETA_FLUX"])
    assert mine["HBETA_FLUX"].unit == _units()["HBETA_FLUX"]
    assert mine["HBETA_FLUX"].info.parent_table is mine
    assert len(mine[:1]) == 1 and mine[:1]["HBETA_FLUX"].unit == ref["HBETA_FLUX"].unit
    mine["X"] = np.ones(n)
    mine.remove_column("HBETA_EW")
    assert "HBETA_EW" not in mine.colnames and mine.colnames[-1] == "X"


def test_add_line_columns_refuses_a_wrong_length():
    base = Table({"Z": np.zeros(3)})
    cols = _empty(2)
    with pytest.raises(ValueError):
        add_line_columns(base, cols)


def test_loaded_network_is_its_file():
    """A loaded model's weights are the file's, every one of them."""
    from specsift import torchfile
    from specsift.models.base import load_model, model_path
    m = load_model("gasnet")
    weights = torchfile.load(model_path("gasnet"))["state"]["weights"]
    sd = m.net.state_dict()
    assert set(sd) == set(weights)
    for k, v in weights.items():
        assert torch.equal(sd[k], v.float() if v.is_floating_point() else v), k


def _fits_kinds(n: int = 5) -> Table:
    rng = np.random.default_rng(1)
    t = Table()
    t["TARGETID"] = np.arange(n, dtype=np.int64)
    t["SOURCE"] = np.array([f"spec-{k}.fits" for k in range(n - 2)] + ["pä th ", "x  "])
    t["Z"] = rng.random(n)
    t["Z"][1] = np.nan
    t["ZWARN"] = np.arange(n, dtype=np.int64) * 4
    t["NPIXELS"] = np.arange(n, dtype=np.int32)
    t["NCOEFF"] = np.arange(n, dtype=np.int16)
    t["OK"] = np.arange(n) % 2 == 0
    t["SPECTYPE"] = np.array(["GALAXY", "QSO", "STAR", "", "QSO"][:n])
    t["COEFF"] = rng.random((n, 10)).astype(np.float32)
    t["HBETA_FLUX"] = rng.random(n).astype(np.float32)
    t["RA"] = rng.random(n) * 360
    t["PLATE"] = np.arange(n, dtype=np.int64) + 1000
    return t


def test_fits_rows_are_astropys_bytes(tmp_path, monkeypatch):
    """The FITS rows filled with numpy are the bytes astropy's BinTableHDU gives, for every
    column kind of a catalog (booleans, strings with trailing blanks and non-ASCII
    characters, vectors, NaN), in the in-memory writer and in the merge of parts."""
    import specsift.io.catalog_fits as catalog_fits
    from specsift.io.catalog import write_catalog
    t = _fits_kinds()
    parts = [_part(tmp_path, t[:3], 0), _part(tmp_path, t[3:], 1)]
    meta = {"MODEL": "m", "NINPUT": 5}
    write_catalog(t, tmp_path / "mine.fits", meta=meta)
    merge_parts(parts, tmp_path / "mine-parts.fits", meta)
    used = []
    real = catalog_fits._fits_rows
    monkeypatch.setattr(catalog_fits, "_fits_rows", lambda *a: used.append(1) or real(*a))
    write_catalog(t, tmp_path / "again.fits", meta=meta)
    assert used                                   # the numpy rows, not astropy's
    monkeypatch.setattr(catalog_fits, "_fits_row_dtype", lambda data: None)
    write_catalog(t, tmp_path / "astropy.fits", meta=meta)
    merge_parts(parts, tmp_path / "astropy-parts.fits", meta)
    assert (tmp_path / "mine.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()
    assert (tmp_path / "mine-parts.fits").read_bytes() == \
        (tmp_path / "astropy-parts.fits").read_bytes()


def test_fits_rows_refuse_what_they_do_not_know():
    """A column kind outside the numpy path (unsigned integers, other shapes) gives None, so
    astropy writes that part."""
    from astropy.io import fits

    from specsift.io.catalog_fits import _fits_row_dtype, _fits_rows
    t = Table({"A": np.arange(3, dtype=np.uint16)})
    assert _fits_row_dtype(fits.table_to_hdu(t).data) is None
    t = Table({"A": np.zeros(3), "V": np.zeros((3, 2), np.float32)})
    row = _fits_row_dtype(fits.table_to_hdu(t).data)
    assert row is not None
    assert _fits_rows(Table({"A": np.zeros(3), "V": np.zeros((3, 4), np.float32)}), row) is None
    assert _fits_rows(Table({"A": np.zeros(3, np.int64), "V": np.zeros((3, 2), np.float32)}),
                      row) is None


def test_merge_of_held_parts_is_the_merge_of_the_files(tmp_path):
    """A merge given the parts' Arrow tables (the run that wrote them) writes the catalog the
    merge of the files writes; with one part missing from ``tables`` it reads them all."""
    import pyarrow as pa

    from specsift.pipeline.parts import table_to_arrow
    t = _fits_kinds()
    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.write_part(0, 0, table_to_arrow(t[:3]))
    rd.write_part(0, 1, table_to_arrow(t[3:]))
    held = rd.held_parts()
    parts = [rd.part_path(0, 0), rd.part_path(0, 1)]
    assert set(held) == set(parts) and all(isinstance(v, pa.Table) for v in held.values())
    meta = {"MODEL": "m"}
    for ext in ("parquet", "fits", "ecsv"):
        merge_parts(parts, tmp_path / f"files.{ext}", meta)
        merge_parts(parts, tmp_path / f"held.{ext}", meta, tables=held)
        merge_parts(parts, tmp_path / f"some.{ext}", meta, tables={parts[0]: held[parts[0]]})
        a = read_catalog(tmp_path / f"files.{ext}")
        for other in ("held", "some"):
            b = read_catalog(tmp_path / f"{other}.{ext}")
            assert a.colnames == b.colnames and a.meta == b.meta
            for name in a.colnames:
                assert a[name].dtype == b[name].dtype and a[name].unit == b[name].unit
                assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]),
                                      equal_nan=a[name].dtype.kind == "f"), (ext, name)
    assert (tmp_path / "files.fits").read_bytes() == (tmp_path / "held.fits").read_bytes()
    assert pq.read_schema(tmp_path / "files.parquet").equals(
        pq.read_schema(tmp_path / "held.parquet"), check_metadata=True)


def test_held_part_is_what_was_written_even_if_the_batch_changes_later(tmp_path):
    """A held part is a copy: writing into the batch's arrays after ``write_part`` (a reused
    buffer) changes neither the part file nor what the merge takes from memory."""
    from specsift.pipeline.parts import table_to_arrow
    t = _fits_kinds()
    z = np.asarray(t["Z"]).copy()
    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True, exist_ok=True)
    at = table_to_arrow(t)
    rd.write_part(0, 0, at)
    np.asarray(t["Z"])[:] = -5.0          # the batch's memory reused after the part was written
    held = rd.held_parts()[rd.part_path(0, 0)]
    assert np.array_equal(held.column("Z").to_numpy(), z, equal_nan=True)
    assert np.array_equal(read_part(rd.part_path(0, 0)).column("Z").to_numpy(), z,
                          equal_nan=True)


def test_parts_held_only_up_to_the_limit(tmp_path, monkeypatch):
    import specsift.pipeline.parts as parts_mod
    from specsift.pipeline.parts import table_to_arrow
    monkeypatch.setattr(parts_mod, "HELD_BYTES", 600)
    rd = RunDir(tmp_path / "c.parquet")
    rd.path.mkdir(parents=True, exist_ok=True)
    at = table_to_arrow(_fits_kinds(3))
    assert at.nbytes < 600 < 3 * at.nbytes
    rd.write_part(0, 0, at)
    assert len(rd.held_parts()) == 1
    rd.write_part(0, 1, at)
    rd.write_part(0, 2, at)
    assert rd.held_parts() == {}                  # past the limit: the merge reads them all
    rd.write_part(0, 3, at)
    assert rd.held_parts() == {}


def _arrow_strings_reference(a):
    """The string columns as table_to_arrow made them before (np.char.encode, str_len)."""
    import pyarrow as pa
    n = len(a)
    enc = np.char.encode(a, "utf-8") if a.dtype.kind == "U" else a
    lens = np.char.str_len(enc).astype(np.int64) if n else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    width = enc.dtype.itemsize
    data = np.ascontiguousarray(enc).view(np.uint8).reshape(n, width)[
        np.arange(width)[None, :] < lens[:, None]] if width and n else np.zeros(0, np.uint8)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(data)])


@pytest.mark.parametrize("values", [
    np.array(["GALAXY", "QSO", "", "STAR"]), np.array(["", ""]), np.array([], dtype="U3"),
    np.array(["pä th", "x", "日本"]), np.array(["a\x00b", "c"]), np.array(["a b ", " x"]),
    np.array([b"ab", b"", b"a\x00c"]), np.array(["x" * 40] * 5)[::2]])
def test_arrow_strings_as_before(values):
    from specsift.pipeline.parts import arrow_array
    got = arrow_array(values)
    got.validate(full=True)
    assert got.equals(_arrow_strings_reference(values))
