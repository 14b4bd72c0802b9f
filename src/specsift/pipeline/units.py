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

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch

__all__ = ["Unit", "plan_units", "iter_unit", "is_store"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Files grouped into one unit at most (small files such as SDSS spec-*.fits hold 1 spectrum).
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
    """True for a specsift SpectralStore (HDF5 with a 2-D ``flux`` and a ``meta`` group)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != _HDF5_MAGIC:
                return False
        import h5py
        with h5py.File(path, "r") as h5:
            return "flux" in h5 and h5["flux"].ndim == 2 and "meta" in h5
    except OSError:
        return False


def _store_rows(path: Path) -> int:
    import h5py
    with h5py.File(path, "r") as h5:
        return int(h5["flux"].shape[0])


def plan_units(inputs, batch_size: int) -> list[Unit]:
    """Units for ``inputs`` (files, directories, globs; see :func:`specsift.io.expand_paths`).

    Stores are cut into row ranges of ``BATCHES_PER_STORE_UNIT × batch_size``; runs of other
    files into groups of at most ``FILES_PER_UNIT``.  A missing or unreadable file still
    gets a unit: its reader turns it into a flagged placeholder row.
    """
    from ..io import expand_paths

    # absolute (links kept): workers of a cluster may start in another directory
    paths = [Path(os.path.abspath(p)) for p in expand_paths(inputs)]
    if not paths:
        raise FileNotFoundError(f"{' '.join(map(str, inputs))}: no spectra files found")
    units: list[Unit] = []
    group: list[str] = []

    def flush():
        if group:
            units.append(Unit(tuple(group)))
            group.clear()

    step = BATCHES_PER_STORE_UNIT * batch_size
    for p in paths:
        if p.is_file() and is_store(p):
            flush()
            n = _store_rows(p)
            units.extend(Unit((str(p),), lo, min(lo + step, n), True) for lo in range(0, n, step))
        else:
            group.append(str(p))
            if len(group) >= FILES_PER_UNIT:
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
                                                grid=grid, on_error="flag")):
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
    from ..io.store import SpectralStore

    path = unit.paths[0]
    try:
        store = SpectralStore(path)
    except Exception as exc:  # noqa: BLE001
        yield 0, (None if 0 in skip else _placeholders([path], str(exc), grid))
        return
    with store:
        for k, lo in enumerate(range(unit.start, unit.stop, batch_size)):
            if k in skip:
                yield k, None
                continue
            hi = min(lo + batch_size, unit.stop)
            try:
                b = store.read(slice(lo, hi))
                if "SOURCE" not in b.meta.colnames:
                    b.meta["SOURCE"] = np.full(len(b), path)
                if "INPUT_FLAGS" not in b.meta.colnames:
                    b.meta["INPUT_FLAGS"] = np.zeros(len(b), np.int32)
                if "ROW" not in b.meta.colnames:             # row of the store
                    b.meta["ROW"] = np.arange(lo, hi, dtype=np.int64)
                if not grid.matches(b.loglam):
                    b = b.resample(grid)
            except Exception as exc:  # noqa: BLE001
                warnings.warn(f"{path}: rows {lo}–{hi} unreadable ({exc}); flagged READ_ERROR",
                              stacklevel=2)
                b = _placeholders([path] * (hi - lo), f"rows {lo}-{hi}: {exc}", grid)
                b.meta["INPUT_FLAGS"] |= np.int32(InputFlag.READ_ERROR)
            yield k, b
