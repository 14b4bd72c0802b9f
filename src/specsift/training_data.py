"""Streaming spectra to a network: the shuffled-chunk dataset and the class/redshift targets.

Split from :mod:`specsift.training` (which re-exports the names) to keep files short; the
network input :func:`~specsift.models.inputs.normalise` lives with the models (prediction
needs it, not the training loop) and is re-exported here.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from .models.inputs import normalise
from .spectra import SpectraBatch

__all__ = ["normalise", "StoreDataset", "class_and_logz_targets"]


# ---------------------------------------------------------------------------- data streaming
class StoreDataset(IterableDataset):
    """Stream ready-made mini-batches ``(inputs, targets)`` from a store or a batch.

    A store is read with the io package's one store path (:func:`~specsift.io.arrays.store_batch`:
    standard meta, ROW, INPUT_FLAGS), no slower than :meth:`SpectralStore.read` — 334 and
    335 µs a spectrum for 512-row chunks of 2048 simulated spectra (best of 7, one thread; the
    meta work is ~7 % of a read, within the noise).  A subset (``indices``) is read as
    windows of rows, each a plain slice from which the wanted rows are taken: faster than
    h5py's point selection (745 against 2144 µs a spectrum for a random half of that store),
    and the HDF5 chunks (256 rows) are read whole either way.

    ``source`` is a :class:`SpectralStore`, the path of one, or a :class:`SpectraBatch`.
    Rows are read ``chunk_size`` at a time (chunk order shuffled per epoch), ``buffer_chunks``
    chunks are pooled and permuted, and mini-batches of ``batch_size`` are cut from the pool
    (left-over rows carry to the next pool, so every row is seen exactly once per epoch).
    The order depends only on ``(seed, epoch)``; call :meth:`set_epoch` before iterating.
    With several DataLoader workers each takes every n-th chunk.  ``indices`` restricts the
    dataset to a subset of rows (e.g. a train/val split of one store).
    """

    def __init__(self, source, make_inputs: Callable, make_targets: Callable | None = None,
                 batch_size: int = 128, chunk_size: int = 512, buffer_chunks: int = 4,
                 shuffle: bool = True, seed: int = 0, indices: np.ndarray | None = None):
        self.source = source
        self.make_inputs, self.make_targets = make_inputs, make_targets
        self.batch_size, self.chunk_size = int(batch_size), int(chunk_size)
        self.buffer_chunks, self.shuffle, self.seed = max(1, int(buffer_chunks)), shuffle, seed
        self.epoch = 0
        if isinstance(source, SpectraBatch):
            n = len(source)
        else:
            with _open_store(source) as store:
                n = len(store)
        self.indices = np.arange(n) if indices is None else np.sort(np.asarray(indices, np.int64))
        if self.indices.size == 0:
            raise ValueError(f"{_name(source)}: no spectra to train on")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _chunks(self) -> list[np.ndarray]:
        idx = self.indices
        return [idx[i:i + self.chunk_size] for i in range(0, idx.size, self.chunk_size)]

    def _worker_chunks(self, worker: int, n_workers: int) -> list[np.ndarray]:
        chunks = self._chunks()
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(chunks))
            chunks = [chunks[i] for i in order]
        return chunks[worker::n_workers]

    def n_batches(self, n_workers: int = 0) -> int:
        """Mini-batches per epoch (sum over workers)."""
        total = 0
        for w in range(max(1, n_workers)):
            rows = sum(c.size for c in self._worker_chunks(w, max(1, n_workers)))
            total += math.ceil(rows / self.batch_size)
        return total

    def __len__(self) -> int:
        return self.n_batches(0)

    def _read(self, store, rows: np.ndarray) -> SpectraBatch:
        """Rows (sorted) of the source.  A store is read through
        :func:`specsift.io.arrays.store_batch`, the path ``specsift read`` and ``predict``
        take, so training sees the same meta and INPUT_FLAGS; the rows of a subset
        (``indices``) are taken from windows of at most ``4 × chunk_size`` rows."""
        contiguous = rows.size and rows[-1] - rows[0] + 1 == rows.size
        if isinstance(store, SpectraBatch):
            return store[slice(int(rows[0]), int(rows[-1]) + 1)] if contiguous else store[rows]
        from .io.arrays import store_batch
        parts = []
        for w in _windows(rows, 4 * max(self.chunk_size, 1)):
            lo, hi = int(w[0]), int(w[-1]) + 1
            b = store_batch(store, lo, hi, None)
            parts.append(b if hi - lo == w.size else b[w - lo])
        return parts[0] if len(parts) == 1 else SpectraBatch.concatenate(parts)

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, worker, 1])
        chunks = self._worker_chunks(worker, n_workers)
        owns = not isinstance(self.source, SpectraBatch)
        store = _open_store(self.source) if owns else self.source
        try:
            carry: SpectraBatch | None = None
            for start in range(0, len(chunks), self.buffer_chunks):
                parts = [self._read(store, c) for c in chunks[start:start + self.buffer_chunks]]
                if carry is not None:
                    parts.insert(0, carry)
                    carry = None
                pool = parts[0] if len(parts) == 1 else SpectraBatch.concatenate(parts)
                del parts                        # at most two copies of the pool alive
                if self.shuffle:
                    pool = pool[rng.permutation(len(pool))]
                last = start + self.buffer_chunks >= len(chunks)
                n_full = len(pool) if last else (len(pool) // self.batch_size) * self.batch_size
                for lo in range(0, n_full, self.batch_size):
                    yield self._convert(pool[lo:min(lo + self.batch_size, n_full)])
                carry = pool[n_full:] if n_full < len(pool) else None
        finally:
            if owns:
                store.close()

    def _convert(self, batch: SpectraBatch):
        x = self.make_inputs(batch)
        y = self.make_targets(batch) if self.make_targets is not None else None
        return x, y


def _windows(rows: np.ndarray, span: int) -> list[np.ndarray]:
    """Sorted ``rows`` cut into groups that each lie within ``span`` consecutive rows."""
    group = (rows - rows[0]) // span
    return np.split(rows, np.flatnonzero(np.diff(group)) + 1)


def _name(source) -> str:
    return str(getattr(source, "path", source if not isinstance(source, SpectraBatch) else "<batch>"))


class _NoClose:
    """Wrap an already-open store so that the dataset does not close the caller's handle."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def __len__(self):
        return len(self._store)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def close(self):
        pass


def _open_store(source):
    from .io.store import SpectralStore
    if isinstance(source, (str, os.PathLike)):
        return SpectralStore(source, "r")
    if isinstance(source, SpectralStore):
        # h5py handles do not survive a fork safely: re-open by path in every reader
        if source.is_open and source.mode == "r":
            return SpectralStore(source.path, "r") if get_worker_info() else _NoClose(source)
        return SpectralStore(source.path, "r")
    raise TypeError(f"cannot train on {type(source).__name__}: give a SpectralStore, its path "
                    f"or a SpectraBatch")


def class_and_logz_targets(meta, class_set: str, names) -> tuple:
    """Training targets shared by the classifier+redshift networks: class index (−1 where
    the truth has no label of ``class_set``) and u = ln(1+z) (NaN where z is unknown), so
    a spectrum without one of them still trains the other head."""
    import torch

    from .metrics import truth_labels
    idx = {n: i for i, n in enumerate(names)}
    y = torch.tensor([idx.get(s, -1) for s in truth_labels(meta, class_set)], dtype=torch.long)
    z = np.asarray(meta["Z"], np.float64) if "Z" in meta.colnames else np.full(len(meta), np.nan)
    return y, np.log1p(np.where(z > -1, z, np.nan))
