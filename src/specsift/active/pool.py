"""The pool of unlabelled spectra: a SpectralStore or a set of files, addressed by integer ids.

An id is what the label database, the strategies and the web page pass around, so nothing
from a browser is ever used as a path: the server maps ids back to rows or files itself.

* :class:`StorePool` — id = row of the HDF5 store.
* :class:`FilesPool` — files, directories or globs (expanded once, sorted); id =
  ``file_index << ROW_BITS | row`` so a file holding several spectra (a DESI coadd) gets one
  id per spectrum while a million single-spectrum LAMOST files need no up-front scan.

Both stream ``(ids, batch)`` with bounded memory for scoring millions of spectra.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ..spectra import LogGrid, SpectraBatch
from .text import printable

__all__ = ["Pool", "StorePool", "FilesPool", "open_pool", "ROW_BITS"]

ROW_BITS = 16


class Pool:
    """Common interface (see the module docstring)."""

    spec: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def iter_batches(self, batch_size: int = 2048, grid: LogGrid | None = None
                     ) -> Iterator[tuple[np.ndarray, SpectraBatch]]:
        raise NotImplementedError

    def read(self, ids, grid: LogGrid | None = None) -> SpectraBatch:
        raise NotImplementedError

    def read_native(self, item: int) -> SpectraBatch:
        """One spectrum at its own resolution (for display)."""
        return self.read([item])

    def iter_ids(self, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Pool ids without reading fluxes (for the random first batch)."""
        raise NotImplementedError

    def read_readable(self, ids, grid: LogGrid | None = None
                      ) -> tuple[np.ndarray, SpectraBatch | None, list[str]]:
        """(ids read, their batch, one message per id that could not be read): one file
        that became unreadable must not stop a retraining on all the other labels."""
        ids = np.asarray(ids, np.int64)
        try:
            return ids, self.read(ids, grid), []
        except (OSError, ValueError, KeyError) as exc:
            if ids.size == 1:
                return ids[:0], None, [str(exc)]
        ok, parts, problems = [], [], []
        for i in ids:
            try:
                parts.append(self.read([int(i)], grid))
                ok.append(int(i))
            except (OSError, ValueError, KeyError) as exc:
                problems.append(str(exc))
        batch = SpectraBatch.concatenate(parts) if parts else None
        return np.array(ok, np.int64), batch, problems

    def origin(self, item: int) -> tuple[str, int]:
        """(file name, row in that file) of ``item``: how a catalog of the same spectra
        names it."""
        raise NotImplementedError

    def ident(self, item: int) -> str:
        raise NotImplementedError

    def valid(self, item) -> bool:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Changes when the pool's items change (guards resuming on another pool)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class StorePool(Pool):
    def __init__(self, path):
        from ..io.store import SpectralStore
        self.path = Path(path)
        self.store = SpectralStore(self.path, "r")
        self.spec = str(self.path.resolve())
        self._n = len(self.store)
        cols = self.store.meta_columns
        self._tid = self.store.read_meta(["TARGETID"])["TARGETID"] if "TARGETID" in cols else None

    def __len__(self):
        return self._n

    def _grid(self, b: SpectraBatch, grid):
        return b if grid is None else b.resample(grid) if not grid.matches(b.loglam) else b

    def iter_batches(self, batch_size=2048, grid=None):
        for lo in range(0, self._n, batch_size):
            hi = min(lo + batch_size, self._n)
            yield np.arange(lo, hi, dtype=np.int64), self._grid(self.store.read(slice(lo, hi)), grid)

    def iter_ids(self, chunk=1 << 20):
        for lo in range(0, self._n, chunk):
            yield np.arange(lo, min(self._n, lo + chunk), dtype=np.int64)

    def read(self, ids, grid=None):
        ids = np.asarray(ids, np.int64)
        bad = [int(i) for i in ids if not self.valid(i)]
        if bad:
            raise KeyError(f"{self.path}: no spectrum with id {bad[0]} (pool has {self._n})")
        return self._grid(self.store.read(ids), grid)

    def ident(self, item):
        item = int(item)
        return f"{self.path.name}#{item}" + (f" TARGETID {self._tid[item]}" if self._tid is not None else "")

    def origin(self, item):
        return self.path.name, int(item)

    def valid(self, item):
        try:
            return 0 <= int(item) < self._n
        except (TypeError, ValueError):
            return False

    def fingerprint(self):
        return f"store:{self._n}:{self.store.grid.start:.6f}:{self.store.grid.size}"

    def close(self):
        self.store.close()


class FilesPool(Pool):
    def __init__(self, inputs):
        from ..io import expand_paths
        self.inputs = [os.fspath(i) for i in (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        self.files = expand_paths(self.inputs)
        if not self.files:
            raise FileNotFoundError(f"{', '.join(self.inputs)}: no spectra files")
        self.spec = ";".join(str(Path(i).resolve()) for i in self.inputs)
        common = os.path.commonpath([str(p.resolve().parent) for p in self.files])
        self.root = Path(common)

    def __len__(self):
        return len(self.files)        # files; a multi-spectrum file holds several ids

    def _read_file(self, k: int, grid) -> SpectraBatch:
        from ..io import read
        path = self.files[k]
        return read(path, grid=grid, on_error="raise")

    def iter_batches(self, batch_size=2048, grid=None):
        """Stream every spectrum of every file, each put on ``grid`` (required when files
        have different native grids); unreadable files are warned about and skipped."""
        ids, parts, n = [], [], 0
        for k, path in enumerate(self.files):
            try:
                b = self._read_file(k, None)
                if grid is not None:
                    b = b.resample(grid)
            except (OSError, ValueError, KeyError) as exc:
                warnings.warn(printable(f"{path}: skipped ({exc})"), stacklevel=2)
                continue
            ids.append((k << ROW_BITS) + np.arange(len(b), dtype=np.int64))
            parts.append(b)
            n += len(b)
            if n >= batch_size:
                yield np.concatenate(ids), SpectraBatch.concatenate(parts)
                ids, parts, n = [], [], 0
        if parts:
            yield np.concatenate(ids), SpectraBatch.concatenate(parts)

    def iter_ids(self, chunk=1 << 20):
        """The first spectrum of every file (opening a million files just to count rows would
        take long; further rows of multi-spectrum files are reached by scoring)."""
        n = len(self.files)
        for lo in range(0, n, chunk):
            yield np.arange(lo, min(n, lo + chunk), dtype=np.int64) << ROW_BITS

    def _split(self, item):
        item = int(item)
        return item >> ROW_BITS, item & ((1 << ROW_BITS) - 1)

    def read_native(self, item):
        if not self.valid(item):
            raise KeyError(f"no spectrum with id {item} in the pool")
        k, row = self._split(item)
        b = self._read_file(k, None)
        if row >= len(b):
            raise KeyError(f"{self.files[k]}: has {len(b)} spectra, no row {row}")
        return b[row]

    def read(self, ids, grid=None):
        out = []
        for i in np.asarray(ids, np.int64):
            b = self.read_native(int(i))
            out.append(b.resample(grid) if grid is not None else b)
        return out[0] if len(out) == 1 else SpectraBatch.concatenate(out)

    def ident(self, item):
        k, row = self._split(item)
        p = self.files[k]
        try:
            rel = p.resolve().relative_to(self.root)
        except ValueError:
            rel = p.name
        return f"{rel}" + (f"[{row}]" if row else "")

    def origin(self, item):
        k, row = self._split(item)
        return self.files[k].name, row

    def path_of(self, item) -> Path:
        return self.files[self._split(item)[0]]

    def valid(self, item):
        try:
            item = int(item)
        except (TypeError, ValueError):
            return False
        return item >= 0 and (item >> ROW_BITS) < len(self.files)

    def fingerprint(self):
        h = hashlib.blake2b(digest_size=8)
        for p in self.files:
            h.update(str(p).encode())
        return f"files:{len(self.files)}:{h.hexdigest()}"


def open_pool(spec) -> Pool:
    """A store (HDF5 SpectralStore file) or files/directories/globs."""
    if isinstance(spec, Pool):
        return spec
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    if len(items) == 1 and Path(items[0]).is_file():
        with open(items[0], "rb") as fh:
            if fh.read(8) == b"\x89HDF\r\n\x1a\n":
                return StorePool(items[0])
    return FilesPool(list(items))
