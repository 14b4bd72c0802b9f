"""Work units: the deterministic cut of a predict run's inputs into independent pieces.

Why units: resuming, multi-core and distributed runs all need the same answer to "which
spectra make up piece k, and in which batches?".  A unit is either a row range of a
SpectralStore or a small group of consecutive files; inside it, batch ``b`` always holds
the same spectra, so a part file named ``(unit, batch)`` is done or not, never half-done,
whichever process or machine made it.  The plan depends only on the inputs and the batch
size — never on the number of workers — so every engine gives the same rows in the same order.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..spectra import LogGrid, SpectraBatch

__all__ = ["Unit", "plan_units", "files_per_unit", "iter_unit", "is_store", "store_rows"]

#: Files grouped into one unit at most when the batch is smaller (small files such as SDSS
#: spec-*.fits hold 1 spectrum); with a larger batch a unit holds ``batch_size`` files
#: (:func:`files_per_unit`).
FILES_PER_UNIT = 256
#: A store unit spans this many batches.
BATCHES_PER_STORE_UNIT = 4


@dataclass(frozen=True)
class Unit:
    """``paths`` read in order; for a store (one path) rows ``start:stop``."""

    paths: tuple[str, ...]
    start: int = 0
    stop: int | None = None
    store: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["paths"] = list(self.paths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Unit":
        return cls(tuple(d["paths"]), d.get("start", 0), d.get("stop"), d.get("store", False))

    @property
    def n_rows(self) -> int | None:
        """Known number of spectra (stores only)."""
        return None if self.stop is None else self.stop - self.start


def is_store(path: Path) -> bool:
    """True for a specsift SpectralStore (:func:`specsift.io.is_store`, never raises)."""
    from ..io import is_store as _is_store
    return _is_store(path)


def store_rows(path: Path) -> int:
    """Spectra in a store, from the flux dataset's shape alone (no data read): how
    units are planned and the progress bar's total counted."""
    import h5py
    with h5py.File(path, "r") as h5:
        return int(h5["flux"].shape[0])


def files_per_unit(batch_size: int) -> int:
    """Files in one unit: ``max(FILES_PER_UNIT, batch_size)``, so that a unit of
    one-spectrum files fills a whole inference batch.

    Why: every batch pays fixed costs besides its spectra — the catalog's astropy columns
    (~240 of them made per batch across the model, verification and line stages), numpy and
    torch calls on small arrays in every window group and line model: ≈ 50 CPU-ms a batch,
    measured as ``predict_batch`` on 8 to 400 SDSS spec files.  Units of 256 files cut a
    1024-spectrum batch into four; units as large as the batch pay that once.  Depends
    only on the batch size, so a plan is still the same for every engine and worker count
    (``--workers`` on a few thousand files: pass a smaller ``--batch-size`` for more,
    smaller units)."""
    return max(FILES_PER_UNIT, int(batch_size))


def plan_units(inputs, batch_size: int, expanded: bool = False) -> list[Unit]:
    """Units for ``inputs`` (files, directories, globs; see :func:`specsift.io.expand_paths`;
    ``expanded=True``: file paths already expanded, as :func:`~.preflight.check_run` gives
    them — not expanded again, which cost a stat and two Paths a file).

    Stores are cut into row ranges of ``BATCHES_PER_STORE_UNIT × batch_size``; runs of other
    files into groups of at most :func:`files_per_unit` files.  A missing or unreadable file still
    gets a unit: its reader turns it into a flagged placeholder row.  Only files that begin
    with the HDF5 signature are opened as HDF5 (a million FITS files cost one 8-byte read each).
    """
    from ..io import expand_paths

    # absolute (links kept): workers of a cluster may start in another directory
    paths = [os.path.abspath(p) for p in (inputs if expanded else expand_paths(inputs))]
    if not paths:
        raise FileNotFoundError(f"{' '.join(map(str, inputs))}: no spectra files found")
    units: list[Unit] = []
    group: list[str] = []

    def flush():
        if group:
            units.append(Unit(tuple(group)))
            group.clear()

    step = BATCHES_PER_STORE_UNIT * batch_size
    per_unit = files_per_unit(batch_size)
    for p in paths:
        if is_store(p):
            flush()
            n = store_rows(Path(p))
            units.extend(Unit((p,), lo, min(lo + step, n), True) for lo in range(0, n, step))
        else:
            group.append(p)
            if len(group) >= per_unit:
                flush()
    flush()
    return units


def fingerprint(unit: Unit) -> list:
    """(size, mtime) of each file: resuming over files that changed would mix two inputs."""
    out = []
    for p in unit.paths:
        try:
            st = os.stat(p)
            out.append([st.st_size, int(st.st_mtime)])
        except OSError:
            out.append(None)
    return out


def _placeholders(paths, message: str, grid: LogGrid) -> SpectraBatch:
    from ..io._common import placeholder
    batches = [placeholder(p, message, grid.loglam) for p in paths]
    return batches[0] if len(batches) == 1 else SpectraBatch.concatenate(batches)


def iter_unit(unit: Unit, batch_size: int, grid: LogGrid,
              skip: set[int] | frozenset = frozenset()) -> Iterator[tuple[int, SpectraBatch | None]]:
    """``(batch_index, batch)`` for every batch of ``unit`` on ``grid``; ``None`` in place of
    the batches listed in ``skip`` (already done) so that indices stay aligned.

    A reader error that escapes :func:`specsift.io.iter_read`'s own flagging (a bug or a
    broken store) never ends the run: the files of the unit not yet seen become flagged
    placeholder rows in one more batch, and a warning names them.
    """
    if unit.store:
        yield from _iter_store(unit, batch_size, grid, skip)
        return
    from ..io import iter_read

    seen: set[str] = set()
    k = -1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # iter_read warns per bad file; we report it
            for k, batch in enumerate(iter_read(list(unit.paths), batch_size=batch_size,
                                                grid=grid, on_error="flag", files=True)):
                seen.update(np.asarray(batch.meta["SOURCE"], dtype=str).tolist())
                yield k, (None if k in skip else batch)
    except Exception as exc:  # noqa: BLE001 - one unit must not end a million-spectrum run
        missing = [p for p in unit.paths if p not in seen] or list(unit.paths[-1:])
        msg = f"{exc.__class__.__name__}: {exc}"
        warnings.warn(f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}: "
                      f"read failed ({msg}); rows flagged READ_ERROR", stacklevel=2)
        k += 1
        yield k, (None if k in skip else _placeholders(missing, msg, grid))


def _iter_store(unit: Unit, batch_size: int, grid: LogGrid, skip) -> Iterator:
    """A store unit's batches through :func:`specsift.io.arrays.store_batch`, the same
    reading (meta, resampling, LITTLE_COVERAGE) as :func:`specsift.io.read` gives; rows
    that cannot be read become flagged placeholders, one per row."""
    from ..io.arrays import check_store, store_batch
    from ..io.store import SpectralStore

    path = unit.paths[0]
    store, failure = None, None
    try:
        store = SpectralStore(path)
        check_store(store)
    except Exception as exc:  # noqa: BLE001 - a broken store costs its own rows only
        failure = exc
    try:
        for k, lo in enumerate(range(unit.start, unit.stop, batch_size)):
            if k in skip:
                yield k, None
                continue
            hi = min(lo + batch_size, unit.stop)
            try:
                if failure is not None:
                    raise failure
                b = store_batch(store, lo, hi, grid)
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"{path}: rows {lo}–{hi} unreadable ({exc}); flagged READ_ERROR",
                              stacklevel=2)
                b = _placeholders([path] * (hi - lo), f"{path}: rows {lo}-{hi}: {exc}", grid)
            yield k, b
    finally:
        if store is not None:
            store.close()
