"""Engines on one machine: a reading thread feeding inference, or N worker processes.

Every engine is a generator of events for the orchestrator (:mod:`.run`), which alone
writes part files and done markers:

* :class:`PartReady` — catalog rows of one batch; ``errors`` lists ``(source, message)`` of
  files that could not be read (their rows are flagged);
* :class:`UnitSent` — every batch of a unit has been sent.

The single-process engine reads in a background thread through a bounded queue, so reading
and preprocessing (numpy, h5py, astropy: mostly GIL-free) overlap with inference while at
most ``queue_size`` batches are in memory: memory stays flat whatever the number of spectra.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..flags import InputFlag
from ..models.base import PredictOptions
from ..spectra import LogGrid, SpectraBatch
from .parts import table_to_arrow
from .units import Unit, iter_unit

if TYPE_CHECKING:
    from ..verify import VerifyOptions

__all__ = ["StageOptions", "prepare_model", "predict_batch", "run_unit", "local_engine",
           "pool_engine"]

_END = object()


@dataclass(frozen=True)
class PartReady:
    """Catalog rows of batch ``batch`` of unit ``unit`` (an Arrow table) and the files of that
    batch that could not be read."""
    unit: int
    batch: int
    table: object
    errors: list


@dataclass(frozen=True)
class UnitSent:
    """Every batch of ``unit`` has been sent (``n_batches`` of them, skipped ones included)."""
    unit: int
    n_batches: int


@dataclass(frozen=True)
class StageOptions:
    """What runs on every batch after the model is chosen: the model's own options, the
    template verification (:mod:`specsift.verify`) and the emission-line stage
    (:mod:`specsift.lines`).

    Why one object: the choices are made once, where the user makes them (``specsift
    predict`` flags or :func:`specsift.pipeline.predict`'s arguments), checked there, and then
    travel unchanged through every engine to every worker (it pickles: plain fields only), so
    a new stage option is one field here instead of one more positional argument in five
    signatures.  ``verify_options`` (None: :class:`~specsift.verify.VerifyOptions`'s
    defaults) tunes the verification and needs ``verify``."""

    verify: bool = True
    lines: bool = True
    predict: PredictOptions = field(default_factory=PredictOptions)
    verify_options: "VerifyOptions | None" = None

    def __post_init__(self):
        for name in ("verify", "lines"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"StageOptions.{name} must be True or False, "
                                f"not {getattr(self, name)!r}")
        if not isinstance(self.predict, PredictOptions):
            raise TypeError(f"StageOptions.predict must be a PredictOptions, "
                            f"not {type(self.predict).__name__}")
        if self.verify_options is not None and not self.verify:
            raise ValueError("verification options were given with verification off")

    @classmethod
    def of(cls, stages: "StageOptions | None" = None, *, save_chi2: bool | None = None,
           verify: bool | None = None, lines: bool | None = None) -> "StageOptions":
        """``stages`` (default: every stage on) with the shortcuts that are not None
        replacing its fields: the one place the Python API's flags become options."""
        out = stages if stages is not None else cls()
        if not isinstance(out, cls):
            raise TypeError(f"stages must be a StageOptions, not {type(out).__name__}")
        given = {k: v for k, v in (("verify", verify), ("lines", lines)) if v is not None}
        if save_chi2 is not None:
            given["predict"] = replace(out.predict, save_chi2=bool(save_chi2))
        return replace(out, **given) if given else out


def prepare_model(model, device: str = "cpu", threads: int | None = None,
                  precision: str = "fp32"):
    """:meth:`~specsift.models.base.SpectralModel.prepare` (what every engine does to the
    model it loads); returns the model."""
    return model.prepare(device, threads, precision)


def predict_batch(model, batch: SpectraBatch, stages: StageOptions = StageOptions()):
    """``model.predict`` under ``torch.inference_mode`` (no autograd bookkeeping); with
    ``stages.verify`` (the default of ``specsift predict``) the model proposes and the template
    fit of :mod:`specsift.verify` decides; then, unless ``stages.lines`` is False, the
    emission-line stage (:func:`specsift.lines.add_lines`) measures lines at the decided
    redshift."""
    import torch
    with torch.inference_mode():
        if stages.verify:
            from ..verify import verify_batch
            table = verify_batch(model, batch, stages.verify_options, options=stages.predict)
        else:
            table = model.predict(batch, options=stages.predict)
    if stages.lines and len(table) == len(batch) and "SPECTYPE" in table.colnames:
        from ..lines import add_lines
        table = add_lines(batch, table, copy=False)     # the table is ours
    return table


def read_errors(batch: SpectraBatch) -> list[tuple[str, str]]:
    """(source, message) of the placeholder rows standing for unreadable files."""
    meta = batch.meta
    if "INPUT_FLAGS" not in meta.colnames:
        return []
    bad = np.flatnonzero((np.asarray(meta["INPUT_FLAGS"]) & InputFlag.READ_ERROR) != 0)
    msgs = meta["ERROR"] if "ERROR" in meta.colnames else None
    return [(str(meta["SOURCE"][k]), str(msgs[k]) if msgs is not None else "unreadable")
            for k in bad]


def run_unit(model, unit: Unit, batch_size: int, grid: LogGrid, skip=frozenset(),
             stages: StageOptions = StageOptions()) -> list[tuple[int, object, list]]:
    """All batches of one unit → ``[(batch, arrow table | None if skipped, errors)]``."""
    out = []
    for k, batch in iter_unit(unit, batch_size, grid, skip):
        if batch is None:
            out.append((k, None, []))
            continue
        out.append((k, table_to_arrow(predict_batch(model, batch, stages)),
                    read_errors(batch)))
    return out


# ------------------------------------------------------------------------- one process
def local_engine(model, todo: list[tuple[int, Unit, set]], batch_size: int, grid: LogGrid,
                 stages: StageOptions = StageOptions(),
                 queue_size: int = 3) -> Iterator[PartReady | UnitSent]:
    """Reading thread → bounded queue → inference in this thread."""
    q: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def reader():
        try:
            for idx, unit, skip in todo:
                n = 0
                for k, batch in iter_unit(unit, batch_size, grid, skip):
                    n = k + 1
                    if batch is not None:
                        _put(q, ("batch", idx, k, batch), stop)
                _put(q, ("unit", idx, n), stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer to re-raise
            _put(q, ("error", exc), stop)
        finally:
            _put(q, _END, stop)

    t = threading.Thread(target=reader, name="specsift-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if item[0] == "error":
                raise item[1]
            if item[0] == "unit":
                yield UnitSent(item[1], item[2])
                continue
            _, idx, k, batch = item
            table = predict_batch(model, batch, stages)
            yield PartReady(idx, k, table_to_arrow(table), read_errors(batch))
    finally:
        stop.set()
        t.join(timeout=5)


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


# ------------------------------------------------------------------------- N processes
_WORKER: dict = {}


def _init_worker(model_ref: str, device: str, threads: int, parent: int) -> None:
    from .. import load_model
    from .lifeline import die_with_parent
    die_with_parent(parent)                        # no orphans after a SIGKILL of the run
    _WORKER["model"] = prepare_model(load_model(model_ref), device, threads)


def _work(unit: Unit, batch_size: int, grid: dict, skip, stages: StageOptions):
    return run_unit(_WORKER["model"], unit, batch_size, LogGrid(**grid), skip, stages)


def pool_engine(model_ref: str, todo, batch_size: int, grid: LogGrid, workers: int,
                device: str = "cpu",
                stages: StageOptions = StageOptions()) -> Iterator[PartReady | UnitSent]:
    """``workers`` processes, each with its own model and ``cores / workers`` torch threads;
    at most 2 units per worker in flight so memory stays bounded."""
    import multiprocessing as mp
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")     # fork after torch threads start can deadlock
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(model_ref, device, threads, os.getpid())) as pool:
        pending, it = {}, iter(todo)
        while True:
            while len(pending) < 2 * workers:
                nxt = next(it, None)
                if nxt is None:
                    break
                idx, unit, skip = nxt
                fut = pool.submit(_work, unit, batch_size, grid.to_dict(), set(skip), stages)
                pending[fut] = idx
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                idx = pending.pop(fut)
                yield from unit_events(idx, fut.result())


def unit_events(idx: int, results) -> Iterator[PartReady | UnitSent]:
    """Events for one unit's collected results (the shape every remote engine returns)."""
    for k, at, errors in results:
        if at is not None:
            yield PartReady(idx, k, at, errors)
    yield UnitSent(idx, len(results))
