"""Distributed engine on Dask (``--engine dask``): one task per unit, a model per worker.

Why Dask (measured against Ray Data in ``benchmarks/engines.py``, see docs/scaling.md): the
work is embarrassingly parallel over units, so a task scheduler is all it needs; Dask
distributed is pure Python (≈25 MB installed against ≈240 MB for Ray), starts a local
cluster in about a second, and connects to an existing cluster with one address.

Each worker process loads the model once (cached in a module global, keyed by the model
file's content hash) from bytes broadcast by the client, so workers need no copy of the
model file — only read access to the input spectra (a shared file system).  Results come
back to the client, which alone writes the part files: the output directory need not be
shared, and resume works exactly as with the local engine.  At most two units per worker
are in flight, so the client's memory stays bounded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..spectra import LogGrid
from .local import StageOptions, prepare_model, run_unit, unit_events

__all__ = ["dask_engine"]

_MODELS: dict = {}


def _worker_model(key: str, blob, device: str, threads: int | None):
    """The model for this worker process, loaded on first use."""
    model = _MODELS.get(key)                # a local: another thread may clear _MODELS
    if model is None:
        from .. import load_model
        if isinstance(blob, bytes):
            with tempfile.TemporaryDirectory(prefix="specsift-worker-") as d:
                (Path(d) / "model.pt").write_bytes(blob)
                model = load_model(Path(d) / "model.pt")     # read fully: the file can go
        else:
            model = load_model(blob)                # a registered name with bundled weights
        model = prepare_model(model, device, threads)
        _MODELS.clear()
        _MODELS[key] = model
    return model


def _task(key, blob, device, threads, unit, batch_size, grid, skip, stages: StageOptions):
    model = _worker_model(key, blob, device, threads)
    return run_unit(model, unit, batch_size, LogGrid(**grid), set(skip), stages)


def dask_engine(model_ref: str, todo, batch_size: int, grid: LogGrid, workers: int,
                device: str = "cpu", stages: StageOptions = StageOptions(),
                address: str | None = None) -> Iterator[tuple]:
    """Run units on a Dask cluster: ``address`` of a running scheduler, or a LocalCluster
    of ``workers`` single-threaded processes started (and stopped) here."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--engine dask needs Dask: pip install 'specsift[distributed]'") from None
    cluster = None
    if address:
        client = Client(address)
        threads = None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        if Path(model_ref).is_file():
            data = Path(model_ref).read_bytes()
            key = hashlib.sha1(data).hexdigest()
            blob = client.scatter(data, broadcast=True)
        else:
            key, blob = f"name:{model_ref}", model_ref
        n_workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"])) if address \
            else workers
        g = grid.to_dict()
        it = iter(todo)
        index = {}

        def submit():
            nxt = next(it, None)
            if nxt is None:
                return None
            idx, unit, skip = nxt
            fut = client.submit(_task, key, blob, device, threads, unit, batch_size, g,
                                sorted(skip), stages, pure=False, key=f"specsift-unit-{idx}")
            index[fut.key] = idx
            return fut

        first = [f for f in (submit() for _ in range(2 * n_workers)) if f is not None]
        ac = as_completed(first)
        for fut in ac:
            result = fut.result()
            idx = index.pop(fut.key)
            fut.release()
            nxt = submit()
            if nxt is not None:
                ac.add(nxt)
            yield from unit_events(idx, result)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
