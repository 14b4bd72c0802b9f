"""The one catalog module: every format written and read back with its columns, units and
provenance; the streamed merge of part files equal to the in-memory writer; FITS layout."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from specsift.io import read_catalog, write_catalog
from specsift.io.catalog import catalog_suffixes, merge_parts
from specsift.io.catalog_schema import provenance, unit_for
from specsift.pipeline.parts import table_to_arrow

FORMATS = (".fits", ".fits.gz", ".parquet", ".csv", ".ecsv")
PROV = {"SPECSIFT": "0.1.0", "MODEL": "gasnet-1:my@0123456789ab", "MODELSHA": "f" * 64,
        "DATE": "2026-12-01T10:00:00", "NINPUT": 4,
        "COMMAND": "specsift predict " + " ".join(f"spec-{k:04d}.fits" for k in range(12))}


def catalog(n: int = 4, first: int = 0) -> Table:
    rng = np.random.default_rng(first)
    t = Table()
    t["TARGETID"] = np.arange(first, first + n, dtype=np.int64)
    t["SOURCE"] = [f"dir/file-{k}.fits" for k in range(n)]
    t["Z"] = rng.uniform(0, 3, n)
    t["ZERR"] = rng.uniform(0, 0.01, n)
    t["ZWARN"] = np.arange(n, dtype=np.int64) * 4
    t["SPECTYPE"] = (["GALAXY", "QSO", "", "STAR"] * n)[:n]
    t["CHI2"] = rng.uniform(0, 1e4, n)
    t["COEFF"] = rng.normal(size=(n, 5)).astype(np.float32)       # fixed-length array column
    t["HALPHA_FLUX"] = rng.uniform(0, 100, n)                      # a later stage's column
    t["VERIFIED"] = np.arange(n) % 2 == 0
    t["MODEL"] = "gasnet-1:my@0123456789ab"
    t["ROW"] = np.arange(n, dtype=np.int64)
    t["RA"] = rng.uniform(0, 360, n)
    t["DEC"] = rng.uniform(-90, 90, n)
    t["PLATE"] = np.full(n, 266, np.int64)
    return t


def assert_same(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y.astype(float), rtol=1e-12, err_msg=name)
        else:
            assert (x.astype(str) == y.astype(str)).all(), name


def test_suffixes_cover_every_format():
    assert set(FORMATS) <= set(catalog_suffixes())


@pytest.mark.parametrize("ext", FORMATS)
def test_round_trip_columns_units_provenance(tmp_path, ext):
    t = catalog()
    t.meta["LOGLAM_STEP"] = 1e-4                    # a model's own keyword
    path = write_catalog(t, tmp_path / f"cat{ext}", meta=PROV)
    back = read_catalog(path)
    assert_same(t, back)
    assert back["COEFF"].shape == (4, 5)
    assert back["Z"].unit == u.dimensionless_unscaled
    assert back["RA"].unit == u.deg
    assert back["HALPHA_FLUX"].unit == u.Unit("1e-17 erg / (s cm2)")
    assert back["TARGETID"].unit is None
    if ext == ".csv":                               # spreadsheets: no room for keywords
        return
    for key, value in PROV.items():
        assert back.meta[key] == value, key
    assert back.meta["LOGLAM_STEP"] == 1e-4


def test_fits_layout_is_redrock_like(tmp_path):
    path = write_catalog(catalog(), tmp_path / "cat.fits", meta=PROV)
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "REDSHIFTS", "FIBERMAP"]
        red, fib = hdul["REDSHIFTS"], hdul["FIBERMAP"]
        assert "Z" in red.columns.names and "RA" not in red.columns.names
        assert fib.columns.names == ["TARGETID", "SOURCE", "ROW", "RA", "DEC", "PLATE"]
        assert hdul[0].header["MODELSHA"] == "f" * 64
        assert hdul[0].header["COMMAND"] == PROV["COMMAND"]     # long value: CONTINUE cards
        assert fib.columns["RA"].unit == "deg"


def test_parquet_keeps_provenance_for_plain_astropy_and_pyarrow(tmp_path):
    path = write_catalog(catalog(), tmp_path / "cat.parquet", meta=PROV)
    assert Table.read(path).meta["MODEL"] == PROV["MODEL"]
    assert b"MODELSHA" in pq.read_schema(path).metadata[b"table_meta_yaml"]


@pytest.mark.parametrize("ext", FORMATS)
def test_streamed_merge_equals_in_memory_writer(tmp_path, ext):
    parts = []
    for k, (n, first) in enumerate(((3, 0), (5, 100), (2, 200))):
        t = catalog(n, first)
        if k == 1:
            t["SOURCE"] = [f"a/much/longer/path/than/the/others-{j}.fits" for j in range(n)]
            t.remove_column("PLATE")                # a part without a column: filled
        p = tmp_path / f"part{k}.parquet"
        pq.write_table(table_to_arrow(t), p)
        parts.append(p)
    out = tmp_path / f"merged{ext}"
    assert merge_parts(parts, out, PROV) == 10
    merged = read_catalog(out)
    assert len(merged) == 10
    assert list(merged["TARGETID"]) == [0, 1, 2, 100, 101, 102, 103, 104, 200, 201]
    assert str(merged["SOURCE"][3]).startswith("a/much/longer")   # widest string kept whole
    assert list(merged["PLATE"][3:8]) == [-1] * 5
    np.testing.assert_allclose(np.asarray(merged["COEFF"])[8:], np.asarray(catalog(2, 200)["COEFF"]),
                               rtol=1e-6)
    if ext != ".csv":
        assert merged.meta["MODELSHA"] == "f" * 64
    assert merged["Z"].unit == u.dimensionless_unscaled


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown catalog extension"):
        write_catalog(catalog(), tmp_path / "cat.xlsx")


def test_unit_table_covers_later_stages_columns():
    assert unit_for("OIII_5007_EW") == u.AA
    assert unit_for("HBETA_SIGMA") == u.km / u.s
    assert unit_for("Z_NET") == u.dimensionless_unscaled
    assert unit_for("PROB_QSO") == u.dimensionless_unscaled
    assert unit_for("ZWARN") is None and unit_for("CLASS_LABEL") is None


def test_user_trained_model_carries_its_own_name_and_hash(tmp_path):
    from specsift import load_model
    from specsift.models.vgg1d import VGG1D
    bundled = load_model("eigen")
    mine = load_model(VGG1D(class_set="three", width=0.05, seed=0).save(tmp_path / "mine.pt"))
    pb, pm = provenance(bundled, 10, ["specsift", "predict"]), provenance(mine, 10, [])
    assert pb["MODEL"] == "eigen-" + bundled.version          # the bundled string
    assert pm["MODEL"].startswith("vgg1d-") and ":mine@" in pm["MODEL"]
    assert pm["MODELSHA"] == mine.file_sha256 and pm["MODEL"].endswith(pm["MODELSHA"][:12])
    assert pm["MODELFIL"] == "mine.pt" and pb["COMMAND"] == "specsift predict"
    assert len(pb["MODELSHA"]) == 64 and pb["MODELSHA"] != pm["MODELSHA"]


@pytest.mark.parametrize("ext", [".fits", ".parquet", ".ecsv"])
def test_non_ascii_paths_and_empty_catalog(tmp_path, ext):
    t = catalog(3)
    t["SOURCE"] = ["/données/ñ.fits", "/data/a.fits", ""]
    p = tmp_path / "part.parquet"
    pq.write_table(table_to_arrow(t), p)
    merge_parts([p], tmp_path / f"m{ext}", PROV)
    back = read_catalog(tmp_path / f"m{ext}")
    want = "/donn\\xe9es/\\xf1.fits" if ext == ".fits" else "/données/ñ.fits"  # FITS: ASCII
    assert back["SOURCE"][0] == want and back["SOURCE"][2] == ""
    if ext == ".ecsv":            # astropy 8 cannot read back a 0-row ECSV array column
        return
    empty = write_catalog(catalog(0), tmp_path / f"e{ext}", meta=PROV)
    got = read_catalog(empty)
    assert len(got) == 0 and got.meta["MODEL"] == PROV["MODEL"]


def test_long_command_with_a_quoted_non_ascii_path_survives_the_fits_header(tmp_path):
    """#20 item 2: a non-ASCII input path made the FITS catalog unwritable after all the work
    (its shell-quoted COMMAND keyword); astropy also cut a long quoted value at its first quote
    pair when read back."""
    cmd = ("specsift predict '/tmp/spéctra dir/one.fits' -o /tmp/some/long/output/folder/cat.fits"
           " --no-progress --threads 1")
    path = write_catalog(catalog(2), tmp_path / "c.fits", meta={**PROV, "COMMAND": cmd})
    got = read_catalog(path).meta["COMMAND"]
    assert got.startswith('specsift predict "/tmp/sp\\xe9ctra dir/one.fits" -o ')
    assert got.endswith("--no-progress --threads 1")


def test_parquet_schema_is_astropys_own(tmp_path):
    """The merge builds the Parquet schema and its ``table_meta_yaml`` itself (astropy's
    writer is O(columns²) and its YAML dumper imports astropy.coordinates): the same text and
    schema as astropy's writer on the same table, units and keywords included."""
    from astropy.table.meta import get_yaml_from_table

    from specsift.io.catalog_parquet import _table_yaml, parquet_schema
    from specsift.io.catalog_sources import MemorySource
    t = catalog(3)
    t["FLUX_G"] = np.ones(3)                     # a composite unit (1e-17 erg / (s cm2 Å))
    src = MemorySource(t, {**PROV, "VERIFIED": True, "NOTE": {"b": 1, "a": [2, 3]}})
    proto = src.prototype()
    assert proto["FLUX_G"].unit is not None and len(proto["FLUX_G"].unit.bases) > 2
    proto.meta.update(src.provenance)
    assert _table_yaml(proto) == get_yaml_from_table(proto)
    proto.write(tmp_path / "astropy.parquet", format="parquet")
    mine = parquet_schema(proto)
    with pq.ParquetWriter(tmp_path / "mine.parquet", mine):
        pass
    assert pq.read_schema(tmp_path / "mine.parquet").equals(
        pq.read_schema(tmp_path / "astropy.parquet"), check_metadata=True)


def test_part_prototype_is_the_in_memory_one(tmp_path):
    """The merge's one-row prototype (built in one call, only the columns whose type differs
    from the merged schema's cast) is the in-memory writer's for the same rows: columns,
    dtypes, widths, units, values and the Parquet schema — with a first part whose PLATE is
    int32 (cast to the schema's int64) and whose strings are narrower than a later part's."""
    from specsift.io.catalog_parquet import parquet_schema
    from specsift.io.catalog_sources import MemorySource, PartSource
    t = catalog(5)
    t["FLUX_G"] = np.arange(5.0)                 # a composite unit, parsed as astropy does
    t["SOURCE"] = ["a"] * 2 + ["a/much/longer/path.fits"] * 3
    first, rest = t[:2].copy(), t[2:]
    first["PLATE"] = first["PLATE"].astype(np.int32)
    parts = []
    for k, part in enumerate((first, rest)):
        parts.append(tmp_path / f"p{k}.parquet")
        pq.write_table(table_to_arrow(part), parts[-1])
    mine = PartSource(parts, PROV).prototype()
    want = MemorySource(t, PROV).prototype()
    assert mine.colnames == want.colnames
    for name in want.colnames:
        assert mine[name].dtype == want[name].dtype, name
        assert mine[name].unit == want[name].unit, name
    assert_same(mine, want)
    assert mine.meta == want.meta
    assert want["FLUX_G"].unit is not None and len(want["FLUX_G"].unit.bases) > 2
    assert parquet_schema(mine).equals(parquet_schema(want), check_metadata=True)

