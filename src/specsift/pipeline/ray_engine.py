"""Ray Data engine (``--engine ray``): ``map_batches`` over units with an actor pool, each
actor holding one model.  Kept for sites that already run Ray; Dask is the tested default
for distributed runs (see docs/scaling.md for the measured comparison).

Needs ``pip install 'ray[data]'``.  Results are pickled per unit and streamed back to the
driver, which writes the parts, so resume and output order are those of the local engine.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Iterator

import numpy as np

from ..spectra import LogGrid
from .local import prepare_model, run_unit, unit_events
from .units import Unit

__all__ = ["ray_engine"]


class _Predictor:
    """Ray actor: loads the model once, predicts whole units."""

    def __init__(self, blob: bytes, device: str, threads: int | None, batch_size: int,
                 grid: dict, save_chi2: bool, verify: bool = True, lines: bool = True):
        import tempfile
        from pathlib import Path

        from .. import load_model
        with tempfile.TemporaryDirectory(prefix="specsift-ray-") as d:
            (Path(d) / "model.pt").write_bytes(blob)
            model = load_model(Path(d) / "model.pt")
        self.model = prepare_model(model, device, threads)
        self.batch_size, self.grid, self.save_chi2 = batch_size, LogGrid(**grid), save_chi2
        self.verify, self.lines = verify, lines

    def __call__(self, batch: dict) -> dict:
        results = []
        for unit_json, skip_json in zip(batch["unit"], batch["skip"]):
            unit = Unit.from_dict(json.loads(str(unit_json)))
            res = run_unit(self.model, unit, self.batch_size, self.grid,
                           set(json.loads(str(skip_json))), self.save_chi2, self.verify, self.lines)
            results.append(pickle.dumps(res))
        return {"idx": np.asarray(batch["idx"]), "result": np.array(results, dtype=object)}


def ray_engine(model_ref: str, todo, batch_size: int, grid: LogGrid, workers: int,
               device: str = "cpu", save_chi2: bool = False,
               address: str | None = None, verify: bool = True, lines: bool = True) -> Iterator[tuple]:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError("--engine ray needs Ray Data: pip install 'ray[data]'") from None
    from pathlib import Path

    if not Path(model_ref).is_file():
        from ..models.base import _bundled
        bundled = _bundled(model_ref)
        if bundled is None:
            raise FileNotFoundError(f"{model_ref}: no such model file")
        model_ref = str(bundled)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        items = [{"idx": idx, "unit": json.dumps(u.to_dict()), "skip": json.dumps(sorted(s))}
                 for idx, u, s in todo]
        if not items:
            return
        threads = None if address else max(1, (os.cpu_count() or 1) // workers)
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        out = ds.map_batches(_Predictor, batch_size=1, concurrency=workers, num_cpus=1,
                             num_gpus=1 if device == "cuda" else 0,
                             fn_constructor_args=(Path(model_ref).read_bytes(), device, threads,
                                                  batch_size, grid.to_dict(), save_chi2,
                                                  verify, lines))
        for row in out.iter_rows():
            yield from unit_events(int(row["idx"]), pickle.loads(row["result"]))
    finally:
        if started:
            ray.shutdown()
