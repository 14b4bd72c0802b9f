"""What the per-file and per-run savings of the read path and the catalog merge must not
change: the SDSS quick path's per-layout plans, its snapped-grid memo and its header reads
sized by earlier files give the natives a fresh process gives; a directory lists the files
``sorted(rglob)`` listed; string widths from Arrow buffers are pyarrow.compute's; the merge's
light prototype gives the Parquet schema (and YAML header) of the astropy one; a merge does
not import pyarrow.compute."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from specsift.io import _expand_dir, _has_suffix, iter_read, sdss
from specsift.io.catalog_sources import PartSource, _string_width_compute, string_width
from specsift.io.rawfits import BLOCK, RawFits
from specsift.spectra import DEFAULT_GRID

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _natives_equal(a, b) -> None:
    assert np.array_equal(a.loglam, b.loglam) and a.loglam.dtype == b.loglam.dtype
    for k in ("flux", "ivar", "mask"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    assert list(a.meta) == list(b.meta)
    for k in a.meta:
        assert np.asarray(a.meta[k]).dtype == np.asarray(b.meta[k]).dtype, k
        assert np.array_equal(np.asarray(a.meta[k]), np.asarray(b.meta[k])), k


def _walk(path):
    with RawFits(path) as raw:
        return [(h.name, h._span, h.dims, h.data_offset, h.data_size, h.is_table,
                 h._layout_key, bytes(h._raw)) for h in raw.hdus]


def test_quick_natives_with_warm_plans_equal_a_cold_read(shared_data, monkeypatch):
    """Plans (label decoder, COADD dtype), the snapped-grid memo and the read-size hints are
    filled by the files before; every file then reads as it does with all of them empty."""
    files = sorted((shared_data / "sdss").glob("spec-*.fits"))
    cold = {}
    for f in files:
        monkeypatch.setattr(sdss, "_PLANS", {})
        monkeypatch.setattr(sdss, "_SNAPPED", {})
        monkeypatch.setattr(RawFits, "_HINTS", {})
        cold[f] = sdss.quick(f)
        assert cold[f] is not None, f
    monkeypatch.setattr(RawFits, "_HINTS", {})
    for f in [*files, *files[::-1], *files]:          # SDSS and BOSS layouts interleaved
        _natives_equal(sdss.quick(f), cold[f])
    assert len(sdss._PLANS) >= 3 and RawFits._HINTS         # COADD, SPECOBJ, SPALL


@pytest.mark.parametrize("hint", [80, BLOCK, 3 * BLOCK + 80, 24 * BLOCK])
def test_walk_is_the_same_whatever_the_hints(shared_data, monkeypatch, hint):
    """A hint too small for a header (one more read), one too large (past the data into
    the next header: END is still the first one), one cutting an END card: the same HDUs."""
    files = sorted((shared_data / "sdss").glob("spec-*.fits"))
    monkeypatch.setattr(RawFits, "_LEARN", False)
    want = {f: _walk(f) for f in files}
    monkeypatch.setattr(RawFits, "_LEARN", True)
    monkeypatch.setattr(RawFits, "_HINTS", dict.fromkeys(range(30), hint))
    monkeypatch.setattr(RawFits, "_learn", lambda self, k, end: None)   # keep them wrong
    for f in files:
        assert _walk(f) == want[f], f


def test_hints_learn_the_largest_header_of_each_hdu(shared_data, monkeypatch):
    monkeypatch.setattr(RawFits, "_HINTS", {})
    sdss_i = shared_data / "sdss" / "spec-0266-51602-0013.fits"
    boss = shared_data / "sdss" / "spec-6717-56397-0534.fits"
    for f in (sdss_i, boss, sdss_i):
        RawFits(f).close()
    with RawFits(boss) as raw:
        sizes = [h._span[1] - h._span[0] + 80 for h in raw.hdus]
    with RawFits(sdss_i) as raw:
        sizes_i = [h._span[1] - h._span[0] + 80 for h in raw.hdus]
    # every HDU of the two files is hinted (else the loop below could check nothing)
    assert len(sizes) > 1 and set(RawFits._HINTS) == set(range(max(len(sizes), len(sizes_i))))
    for k, hint in RawFits._HINTS.items():
        need = max(s[k] for s in (sizes, sizes_i) if k < len(s))
        assert hint == min(-(-need // BLOCK) * BLOCK, 4 * RawFits._FIRST_READ), k


def test_snapped_grid_memo_answers_as_the_test_does():
    step = 1e-4
    ll = (3.58 + step * np.arange(3000)).astype(">f4")          # a file's float32 pixels
    a = sdss.snap_loglam(ll)
    assert sdss.snap_loglam(ll.copy()) is a                     # equal pixels: the same grid
    moved = ll.copy()
    moved[1500] += np.float32(3e-5)                             # not on the grid any more
    assert np.array_equal(sdss.snap_loglam(moved), moved.astype(np.float64))
    assert sdss.snap_loglam(ll) is a
    bad = ll.copy()
    bad[7] = np.nan
    assert np.isnan(sdss.snap_loglam(bad)[7])


def test_a_directory_lists_what_sorted_rglob_listed(tmp_path):
    for rel in ["a/b.fits", "a-b.fits", "a/c/d.FITS", "A.fits", ".hid.fits", "x.txt",
                "z/y.h5", "a b.fits", "ä.fits", "dir.fits/in.fits"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "dirlink").symlink_to(tmp_path / "a")
    (tmp_path / "filelink.fits").symlink_to(tmp_path / "A.fits")
    (tmp_path / "broken.fits").symlink_to(tmp_path / "nope")
    old = [(p, False) for p in sorted(tmp_path.rglob("*")) if p.is_file() and _has_suffix(p)]
    assert _expand_dir(tmp_path) == old
    assert len(old) == 10


@pytest.mark.parametrize("values", [
    ["GALAXY", "QSO", "", "STAR"], ["ñandú", "a", "é\x01"], [], ["", ""], ["x" * 70]])
def test_string_width_is_pyarrows(values):
    arrays = [pa.array(values, pa.string()), pa.array(values, pa.large_string()),
              pa.chunked_array([pa.array(values[:1], pa.string()),
                                pa.array(values[1:], pa.string())]),
              pa.array(["pad", *values, "padding"], pa.string()).slice(1, len(values))]
    for a in arrays:
        assert string_width(a) == _string_width_compute(a), (values, a.type)


def test_string_width_with_nulls_skips_them():
    a = pa.array(["ab", None, "abcd"])
    assert string_width(a) == 4 == _string_width_compute(a)


def _parts(tmp_path, ragged: bool = True):
    """Two part files as a predict run writes them: vector columns, a non-ASCII source,
    numbers with units, and (``ragged``) a column one part lacks."""
    import pyarrow.parquet as pq
    a = pa.table({"TARGETID": pa.array([1, 2], pa.int64()),
                  "Z": pa.array([0.1, 0.2]), "SPECTYPE": ["GALAXY", "QSO"],
                  "SOURCE": ["ñ/spec-1.fits", "spec-2.fits"],
                  "COEFF": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6.0)), 3)})
    if not ragged:
        a = a.append_column("ZERR", pa.array([0.02, 0.03]))
    a = a.append_column("FLUX_G", pa.array([1.0, 2.0]))     # a composite unit (FLUX_ prefix)
    b = pa.table({"TARGETID": pa.array([3], pa.int64()), "Z": pa.array([1.5]),
                  "SPECTYPE": ["STAR"], "SOURCE": ["x"], "ZERR": pa.array([0.01]),
                  "COEFF": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(3.0)), 3),
                  "FLUX_G": pa.array([3.0])})
    out = []
    for k, t in enumerate((a, b)):
        out.append(tmp_path / f"u000000-b{k:04d}.parquet")
        pq.write_table(t, out[-1])
    return out


def test_light_prototype_gives_the_astropy_prototypes_schema(tmp_path):
    from specsift.io.catalog_parquet import parquet_schema
    src = PartSource(_parts(tmp_path), {"MODEL": "gasnet-1", "COMMAND": "predict 'a b'"})
    full, light = src.prototype(), src.schema_prototype()
    full.meta.update(src.provenance)
    light.meta.update(src.provenance)
    assert parquet_schema(full).equals(parquet_schema(light), check_metadata=True)
    assert light.to_table().colnames == full.colnames
    # a composite unit parsed as astropy's Column parses it, in both
    assert light["FLUX_G"].info.unit == full["FLUX_G"].unit and len(full["FLUX_G"].unit.bases) > 2
    from astropy.table.meta import get_yaml_from_table

    from specsift.io.catalog_parquet import _table_yaml
    assert _table_yaml(light) == get_yaml_from_table(full)


def test_merge_reads_back_and_imports_no_pyarrow_compute(tmp_path):
    """In a fresh process (pyarrow.compute costs ~0.06–0.15 CPU-s to import there), parts
    with the same columns, as a run writes them; a column missing from a part is filled
    (through pyarrow.compute) and reads back as a missing value."""
    parts = _parts(tmp_path, ragged=False)
    code = ("import sys; from specsift.io.catalog import merge_parts, read_catalog\n"
            f"merge_parts({[str(p) for p in parts]!r}, {str(tmp_path / 'c.parquet')!r}, "
            "{'MODEL': 'm'})\n"
            "print('pyarrow.compute' in sys.modules)\n")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert got.stdout.strip() == "False", got.stderr
    from specsift.io import read_catalog
    from specsift.io.catalog import merge_parts
    cat = read_catalog(tmp_path / "c.parquet")
    assert list(cat["SOURCE"]) == ["ñ/spec-1.fits", "spec-2.fits", "x"]
    assert np.array_equal(cat["COEFF"], np.r_[np.arange(6.0), np.arange(3.0)].reshape(3, 3))
    assert list(cat["ZERR"]) == [0.02, 0.03, 0.01]
    ragged = tmp_path / "ragged"
    ragged.mkdir()
    merge_parts(_parts(ragged), ragged / "c.parquet", {"MODEL": "m"})
    cat = read_catalog(ragged / "c.parquet")
    assert np.isnan(cat["ZERR"][0]) and cat["ZERR"][2] == 0.01


def test_iter_read_on_a_mix_is_the_same_in_a_fresh_order(shared_data, monkeypatch):
    """A batch of many files read with warm plans and hints equals each file read alone with
    empty ones (what a resumed or a one-file run gives)."""
    files = sorted((shared_data / "sdss").glob("spec-*.fits"))
    mixed = [files[k % len(files)] for k in (0, 6, 1, 7, 4, 6, 0, 5)]
    batch = next(iter_read(mixed, batch_size=64, grid=DEFAULT_GRID))
    for row, f in enumerate(mixed):
        monkeypatch.setattr(sdss, "_PLANS", {})
        monkeypatch.setattr(sdss, "_SNAPPED", {})
        monkeypatch.setattr(RawFits, "_HINTS", {})
        one = next(iter_read([f], batch_size=64, grid=DEFAULT_GRID))
        assert np.array_equal(batch.flux[row], one.flux[0])
        assert np.array_equal(batch.mask[row], one.mask[0])
        assert [str(batch.meta[c][row]) for c in one.meta.colnames if c != "ROW"] == \
            [str(one.meta[c][0]) for c in one.meta.colnames if c != "ROW"]


def test_run_dir_keeps_its_done_markers_as_the_folder_has_them(tmp_path):
    """RunDir reads the .done markers once and then keeps them as it writes them: what it
    returns after each finished unit is what a fresh reader of the folder finds."""
    from specsift.pipeline.parts import RunDir
    from specsift.pipeline.units import Unit
    cat = tmp_path / "c.parquet"
    run = RunDir(cat)
    units = [Unit((str(tmp_path / f"f{k}.fits"),)) for k in range(3)]
    run.start({"format": "x", "units": [{"unit": u.to_dict(), "files": [None]} for u in units]},
              resume=False)
    assert run.done_units() == {}
    for k in range(3):
        run.write_part(k, 0, pa.table({"TARGETID": pa.array([k, k + 10], pa.int64())}))
        run.finish_unit(k, 1, {0: 2})
        assert run.done_units() == RunDir(cat).done_units() == {
            j: {"batches": 1, "rows": 2} for j in range(k + 1)}
    mutated = run.done_units()
    mutated.clear()                                  # a copy: the kept markers stay
    assert len(run.done_units()) == 3
    again = RunDir(cat)
    again.start(run.plan, resume=True)
    assert again.done_units() == run.done_units()
