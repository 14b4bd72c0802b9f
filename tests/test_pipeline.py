"""Predict pipeline mechanics: order, flags of bad input, formats, resume, --workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _pipeline_data import as_plain, assert_same_catalog, make_inputs, make_model

from specsift.catalog import CATALOG_COLUMNS
from specsift.classes import labels
from specsift.flags import ZWARN
from specsift.io import read_catalog, write_catalog
from specsift.lines.fit import FIT_VERSION
from specsift.lines.stage import STAGE_COLUMNS
from specsift.pipeline import StageOptions, predict
from specsift.pipeline.parts import ResumeError, RunDir
from specsift.verify import VerifyOptions
from specsift.verify.stage import VERIFY_COLUMNS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    d = make_inputs(root)
    d["model"] = make_model(root / "tiny.pt")
    return d


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """One uninterrupted single-process run over files and store."""
    out = tmp_path_factory.mktemp("ref") / "cat.parquet"
    res = predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                  progress=False)
    return res, read_catalog(out)


def test_schema_and_rows(data, reference):
    res, cat = reference
    assert res.rows == len(cat) == data["n_files_rows"] + data["n_store"]
    want = list(CATALOG_COLUMNS) + [f"PROB_{k}" for k in labels("three")] + ["ANOMALY_SCORE",
                                                                               "MODEL"]
    # the verification and emission-line stages' columns (both run by default), then ROW
    lines_cols = [c for c in STAGE_COLUMNS if c not in VERIFY_COLUMNS]  # *_NET: verify's
    assert cat.colnames == want + list(VERIFY_COLUMNS) + lines_cols + ["ROW"]
    np.testing.assert_array_equal(np.asarray(cat["ROW"])[-600:], np.arange(600))
    assert cat["TARGETID"].dtype == np.int64 and cat["ZWARN"].dtype == np.int64
    ids = np.asarray(cat["TARGETID"])
    real = ids[ids >= 0]
    assert len(np.unique(real)) == len(real)
    # the planned order is kept: files sorted by name, then the store
    src = as_plain(cat)["SOURCE"]
    assert src[0].endswith("a_good.fits") and src[-1].endswith("store.h5")
    np.testing.assert_array_equal(ids[-600:], np.arange(10_000, 10_600))


def test_unreadable_file_in_the_middle_is_flagged_and_run_completes(data, reference):
    res, cat = reference
    c = as_plain(cat)
    bad = np.flatnonzero(np.char.endswith(c["SOURCE"], "b_broken.fits"))
    assert bad.size == 1
    k = bad[0]
    assert c["ZWARN"][k] & ZWARN.BAD_INPUT and c["ZWARN"][k] & ZWARN.NODATA
    assert c["Z"][k] == -1 and c["ZERR"][k] == -1 and c["CLASS_LABEL"][k] == ""
    assert 0 < k < len(cat) - 1                       # rows before and after it exist
    assert [s for s, _ in res.read_errors] == [str(data["files"] / "b_broken.fits")]
    # rows of good files carry no input bits
    good = np.char.endswith(c["SOURCE"], "a_good.fits") | np.char.endswith(c["SOURCE"], "store.h5")
    input_bits = ZWARN.BAD_INPUT | ZWARN.NODATA | ZWARN.LITTLE_COVERAGE
    assert not (c["ZWARN"][good] & input_bits).any()


def test_zwarn_bits_for_each_bad_input(reference):
    c = as_plain(reference[1])
    ids = c["TARGETID"]
    zw = dict(zip(ids.tolist(), c["ZWARN"].tolist()))
    assert zw[2000] & ZWARN.BAD_INPUT and not zw[2000] & ZWARN.NODATA   # NaN flux
    k = np.flatnonzero(ids == 2000)[0]              # masked pixels: the good ones still answer
    assert c["Z"][k] >= 0 and c["ZERR"][k] > 0 and c["CLASS_LABEL"][k] != ""
    assert np.isfinite(c["CHI2"][k]) and c["NPIXELS"][k] > 0    # and are verified
    assert not np.isfinite(c["CHI2"][ids == 2001][0])           # no good pixel: not verified
    assert zw[2001] & ZWARN.NODATA                                       # all ivar = 0
    assert c["Z"][ids == 2001][0] == -1
    assert not zw[2002] & (ZWARN.BAD_INPUT | ZWARN.NODATA)               # clean row, same file
    for t in (3000, 3001, 3002):                                         # 20 % of the grid
        assert zw[t] & ZWARN.LITTLE_COVERAGE


@pytest.mark.parametrize("ext", [".fits", ".csv"])
def test_streamed_formats_equal_write_catalog(data, reference, tmp_path, ext):
    out = tmp_path / f"cat{ext}"
    predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
            progress=False)
    ref = tmp_path / f"ref{ext}"
    write_catalog(reference[1], ref)
    assert_same_catalog(read_catalog(out), read_catalog(ref))


def test_resume_after_crash_gives_the_uninterrupted_catalog(data, reference, tmp_path,
                                                            monkeypatch):
    out = tmp_path / "cat.parquet"
    real = RunDir.write_part
    calls = {"n": 0}

    def crashing(self, unit, batch, table):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt                    # dies mid-run, parts on disk
        return real(self, unit, batch, table)

    monkeypatch.setattr(RunDir, "write_part", crashing)
    with pytest.raises(KeyboardInterrupt):
        predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                progress=False)
    monkeypatch.setattr(RunDir, "write_part", real)
    assert not out.exists()
    with pytest.raises(ResumeError, match="--resume"):       # never silently restarts
        predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                progress=False)
    with pytest.raises(ResumeError, match="batch_size"):     # other settings: refused
        predict([data["files"], data["store"]], out, model=data["model"], batch_size=32,
                resume=True, progress=False)
    other = StageOptions(verify_options=VerifyOptions(star_check_margin=None))
    with pytest.raises(ResumeError, match="verify_options"):  # other verification: refused
        predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                stages=other, resume=True, progress=False)
    plan_file = RunDir(out).path / "plan.json"              # a run of the 5-iteration line fit
    plan = json.loads(plan_file.read_text())
    assert plan["lines_fit"] == FIT_VERSION
    plan_file.write_text(json.dumps({**plan, "lines_fit": None}))
    with pytest.raises(ResumeError, match="lines_fit"):      # other line fit: refused
        predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                resume=True, progress=False)
    plan_file.write_text(json.dumps(plan))
    res = predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
                  resume=True, progress=False)
    assert res.rows_this_run < res.rows                      # earlier parts were kept
    assert_same_catalog(read_catalog(out), reference[1], rtol=0)
    assert not RunDir(out).path.exists()


def test_workers_2_equal_workers_1(data, reference, tmp_path):
    out = tmp_path / "cat.parquet"
    predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
            workers=2, progress=False)
    assert_same_catalog(read_catalog(out), reference[1])


def test_save_chi2_needs_a_chi2_model(data, tmp_path):
    with pytest.raises(ValueError, match="χ²"):
        predict([data["store"]], tmp_path / "c.fits", model=data["model"], save_chi2=True,
                progress=False)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cpu_precision_variants_run_and_stay_close(data, reference, tmp_path, precision):
    out = tmp_path / "c.parquet"
    predict([data["files"], data["store"]], out, model=data["model"], batch_size=64,
            precision=precision, progress=False)
    a, b = as_plain(read_catalog(out)), as_plain(reference[1])
    np.testing.assert_array_equal(a["TARGETID"], b["TARGETID"])
    np.testing.assert_array_equal(a["ZWARN"] & ZWARN.BAD_INPUT, b["ZWARN"] & ZWARN.BAD_INPUT)
    np.testing.assert_allclose(a["PROB_GALAXY"], b["PROB_GALAXY"], atol=0.05)


def test_stage_options_checked_once_and_picklable():
    """The stages after the model travel as one checked, picklable object: the CLI flags map
    onto it, the Python shortcuts replace its fields, and nonsense is refused up front."""
    import pickle

    from specsift.cli import build_parser
    from specsift.commands.predict import stage_options
    from specsift.models.base import PredictOptions
    from specsift.pipeline import StageOptions
    from specsift.verify import VerifyOptions

    args = build_parser().parse_args(["predict", "x.fits", "-o", "c.fits", "--no-verify",
                                      "--save-chi2"])
    st = stage_options(args)
    assert st == StageOptions(verify=False, lines=True, predict=PredictOptions(save_chi2=True))
    assert pickle.loads(pickle.dumps(st)) == st
    full = StageOptions(verify_options=VerifyOptions(net_margin=0.0))
    assert pickle.loads(pickle.dumps(full)).verify_options.net_margin == 0.0
    assert StageOptions.of(None) == StageOptions()
    assert StageOptions.of(st, verify=True, save_chi2=False) == StageOptions()
    assert StageOptions.of(st) is st
    with pytest.raises(ValueError, match="verification off"):
        StageOptions(verify=False, verify_options=VerifyOptions())
    with pytest.raises(TypeError, match="True or False"):
        StageOptions(lines="no")
    with pytest.raises(TypeError, match="PredictOptions"):
        StageOptions(predict={"save_chi2": True})


def test_resume_keeps_the_interrupted_runs_grouping_of_the_same_files(tmp_path):
    """A run planned by an older version (units of 256 files) resumes under today's grouping
    (units of max(256, batch size) files): same files, so the old plan's units are kept; a
    changed file still refuses, and names its reason."""
    from specsift.pipeline.parts import ResumeError, RunDir
    from specsift.pipeline.units import plan_units
    files = []
    for k in range(300):
        p = tmp_path / f"f{k:03d}.fits"
        p.write_bytes(b"x")
        files.append(p)
    stages = StageOptions()
    new_units = plan_units(files, 1024)
    old_units = plan_units(files, 256)
    assert len(new_units) == 1 and len(old_units) == 2
    old = RunDir.make_plan(old_units, 1024, "m", {}, stages)
    run = RunDir(tmp_path / "cat.fits")
    run.start(old, resume=False)
    got = RunDir(tmp_path / "cat.fits").start(RunDir.make_plan(new_units, 1024, "m", {}, stages),
                                              resume=True)
    assert [len(u.paths) for u in got] == [256, 44]
    files[5].write_bytes(b"changed")
    with pytest.raises(ResumeError, match="inputs"):
        RunDir(tmp_path / "cat.fits").start(
            RunDir.make_plan(plan_units(files, 1024), 1024, "m", {}, stages), resume=True)
