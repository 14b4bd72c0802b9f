"""`specsift predict` end to end: plan units, run an engine, record parts, merge atomically.

The orchestrator is the only writer of the run directory: engines (local thread, worker
processes, Dask) only compute.  So resuming, progress and the final merge are the same
code for every engine, and the catalog of a ``--workers 4`` or ``--engine dask`` run is the
local one row for row.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..io.catalog import merge_parts
from ..term import printable
from .local import PartReady, StageOptions, local_engine, pool_engine, prepare_model
from .parts import RunDir
from .preflight import KEY, check_run, holds_output_lock
from .units import plan_units

__all__ = ["predict", "default_model_name", "PredictResult", "ENGINES", "StageOptions"]

ENGINES = ("local", "dask")
#: Bundled models in order of preference for the default.
_PREFERENCE = ("gasnet", "speccznet", "eigen")


def default_model_name() -> str:
    """``gasnet`` when its pretrained weights are bundled, else the best bundled model."""
    from ..models.base import bundled_path
    for name in _PREFERENCE:
        if bundled_path(name) is not None:
            return name
    raise FileNotFoundError("no pretrained model is bundled with this installation; pass "
                            "--model PATH to a model file made by `specsift train`")


@dataclass
class PredictResult:
    catalog: Path
    rows: int                        # rows in the final catalog
    rows_this_run: int               # rows predicted by this call (less when resuming)
    seconds: float
    read_errors: list = field(default_factory=list)   # (source, message)
    model: str = ""

    @property
    def rate(self) -> float:
        return self.rows_this_run / self.seconds if self.seconds > 0 else float("nan")


def _model_ref(model) -> tuple[object, str | None]:
    """(loaded model, a reference another process can load: registered name or path)."""
    from ..models.base import load_model, model_ref
    if model is None:
        model = default_model_name()
    if isinstance(model, (str, Path)):
        ref = model_ref(model)                     # a registered name is never a cwd file
        return load_model(ref), ref
    return model, None                             # saved for workers only when needed


def _saved(model) -> str:
    """An in-memory model saved where worker processes can load a copy."""
    path = Path(tempfile.mkdtemp(prefix="specsift-model-")) / "model.pt"
    model.save(path)
    return str(path)


@holds_output_lock
def predict(inputs, output, model=None, batch_size: int = 1024, device: str = "cpu",
            workers: int = 1, resume: bool = False, engine: str = "local",
            save_chi2: bool | None = None, progress: bool = True, threads: int | None = None,
            address: str | None = None, precision: str = "fp32", overwrite: bool = False,
            log=None, verify: bool | None = None, lines: bool | None = None,
            stages: StageOptions | None = None) -> PredictResult:
    """Predict every spectrum in ``inputs`` into the catalog ``output``.

    ``model``: registered name, model file or a loaded SpectralModel (default:
    :func:`default_model_name`).  ``workers``: processes (local) or cluster workers
    started for ``engine='dask'`` when no ``address`` of a running scheduler is given.
    ``resume``: continue an interrupted run of the same catalog; ``overwrite``: replace a
    finished catalog of other inputs (see :mod:`.preflight`).  Returns a summary;
    files that could not be read are listed in ``read_errors`` and flagged in ZWARN.

    ``stages``: what runs after the model (:class:`StageOptions`; default: verification and
    lines on).  ``save_chi2``, ``verify`` and ``lines``, when given, replace those fields of
    ``stages``: ``verify`` — the template χ² fit of :mod:`specsift.verify` decides among the
    model's candidates (False: the model's own answer); ``lines`` — emission-line
    measurements and rule-based subclasses (:mod:`specsift.lines`).
    """
    stages = StageOptions.of(stages, save_chi2=save_chi2, verify=verify, lines=lines)
    if precision != "fp32" and (engine != "local" or workers != 1):
        raise ValueError("--precision other than fp32 is for the single-process engine")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if batch_size < 1 or workers < 1:
        raise ValueError("--batch-size and --workers must be at least 1")
    log = log or (lambda msg: print(printable(msg), file=sys.stderr))
    output = Path(output)
    files, key, complete = check_run(output, inputs, device=device if engine == "local" else "cpu",
                                     resume=resume, overwrite=overwrite)   # before any work
    run_dir = RunDir(output)
    if complete:
        log(f"{output}: already complete, nothing to resume")
        return PredictResult(output, _count_rows(output), 0, 0.0, [], "")
    model_obj, ref = _model_ref(model)
    model_obj.check_options(stages.predict)                # before any work
    units = plan_units(files, batch_size, expanded=True)
    plan = RunDir.make_plan(units, batch_size, model_obj.tag, model_obj.grid.to_dict(),
                            stages)
    units = run_dir.start(plan, resume)
    done_units = run_dir.done_units()
    done_batches = run_dir.done_batches()
    todo = [(i, u, done_batches.get(i, set())) for i, u in enumerate(units) if i not in done_units]
    if resume and done_units:
        log(f"resuming: {len(done_units)} of {len(units)} units already done")
    grid = model_obj.grid
    if ref is None and (engine != "local" or workers > 1):
        ref = _saved(model_obj)

    if engine == "local" and workers == 1:
        prepare_model(model_obj, device, threads, precision)
        events = local_engine(model_obj, todo, batch_size, grid, stages)
    elif engine == "local":
        events = pool_engine(ref, todo, batch_size, grid, workers, device, stages)
    else:
        from .dask_engine import dask_engine
        events = dask_engine(ref, todo, batch_size, grid, workers, device, stages, address)

    t0 = time.perf_counter()
    rows, errors, unit_rows = 0, [], {}
    expected = {i: _expected_rows(u) for i, u in enumerate(units)}
    bar = _bar(sum(expected.values()) - sum(expected[i] for i in done_units)
               + sum(d.get("rows", 0) for d in done_units.values()),
               sum(d.get("rows", 0) for d in done_units.values()), progress)
    try:
        for ev in events:
            if isinstance(ev, PartReady):
                idx, errs = ev.unit, ev.errors
                written = run_dir.write_part(idx, ev.batch, ev.table)
                unit_rows.setdefault(idx, {})[ev.batch] = written
                rows += written
                if bar.n + written > bar.total:          # a file held more than expected
                    bar.total = bar.n + written
                bar.update(written)
                for src, msg in errs:
                    errors.append((src, msg))
                    bar.write(printable(f"specsift predict: {src}: could not be read, row "
                                        f"flagged BAD_INPUT ({msg[:200]})"), file=sys.stderr)
            else:                                     # UnitSent
                known = unit_rows.pop(ev.unit, None)
                run_dir.finish_unit(ev.unit, ev.n_batches, known)
                _correct_total(bar, expected[ev.unit], sum((known or {}).values()),
                               ev.n_batches - len(known or {}))
                run_dir.write_progress(len(units), rows, len(errors))
    finally:
        bar.close()
        events.close()                       # every engine is a generator
    parts = run_dir.ordered_parts(len(units))
    from ..io.catalog_schema import provenance
    n_input = sum(d["rows"] for d in run_dir.done_units().values())
    meta = {**provenance(model_obj, n_input), KEY: key, "VERIFIED": stages.verify}
    meta.update(model_obj.catalog_meta(stages.predict))   # e.g. the χ² curves' z grid
    n = merge_parts(parts, output, meta, tables=run_dir.held_parts())
    run_dir.remove()
    return PredictResult(output, n, rows, time.perf_counter() - t0, errors, model_obj.tag)


def _count_rows(path: Path) -> int:
    from ..io import read_catalog
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return pq.read_metadata(path).num_rows
    return len(read_catalog(path))


def _expected_rows(unit) -> int:
    """Spectra a unit is expected to hold before it is read: exact for a store, one per
    file otherwise (SDSS/LAMOST spec files); corrected when the unit is done."""
    return unit.n_rows if unit.n_rows is not None else len(unit.paths)


def _correct_total(bar, expected: int, seen: int, skipped_batches: int) -> None:
    """Once a unit is done its spectra are known: fix the bar's total (and so its ETA)."""
    if skipped_batches == 0 and seen != expected:
        bar.total += seen - expected
        bar.refresh()


def _bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="spectra", desc="predict",
                disable=not enabled, dynamic_ncols=True, file=sys.stderr)
