"""`--engine dask` on a local cluster of 2 workers gives the local catalog row for row."""

from __future__ import annotations

import pytest
from _pipeline_data import assert_same_catalog, make_inputs, make_model

from specsift.io import read_catalog
from specsift.pipeline import predict

pytest.importorskip("dask.distributed", reason="install specsift[distributed]")


def test_dask_two_workers_equals_local(tmp_path):
    d = make_inputs(tmp_path / "in")
    model = make_model(tmp_path / "m.pt", window=True)   # light: start-up dominates
    inputs = [d["files"], d["store"]]
    local = predict(inputs, tmp_path / "local.parquet", model=model, batch_size=64,
                    progress=False)
    dist = predict(inputs, tmp_path / "dask.parquet", model=model, batch_size=64,
                   engine="dask", workers=2, progress=False)
    assert dist.rows == local.rows == d["n_files_rows"] + d["n_store"]
    assert [s for s, _ in dist.read_errors] == [s for s, _ in local.read_errors]
    assert_same_catalog(read_catalog(tmp_path / "dask.parquet"),
                        read_catalog(tmp_path / "local.parquet"))
