"""Chunked HDF5 store of spectra on one grid: append batches, iterate them back.

Memory stays bounded by the batch size however many spectra the file holds, which is
what simulations, training sets and million-spectrum pools need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..spectra import LogGrid, SpectraBatch, same_grid

__all__ = ["SpectralStore"]

_FORMAT = "specsift-store-1"


def _h5_column(col: np.ndarray) -> np.ndarray:
    """Astropy/numpy column → something h5py can store (unicode → bytes; masked entries
    filled with '' / NaN / 0 rather than their hidden values)."""
    if hasattr(col, "mask") and np.any(col.mask):
        k = col.dtype.kind
        col = col.filled("" if k in "US" else np.nan if k == "f" else 0)
    a = np.asarray(col)
    if a.dtype.kind == "U":
        return np.char.encode(a, "utf-8")
    if a.dtype.kind == "O":
        return np.char.encode(a.astype(str), "utf-8")
    return a


class SpectralStore:
    """HDF5 file with datasets ``loglam`` (P,), ``flux``/``ivar`` (N, P) float32, ``mask``
    (N, P) bool and a ``meta`` group holding one dataset per metadata column.

    Open with mode ``'r'`` to read, ``'w'`` to create, ``'a'`` to append.
    """

    def __init__(self, path, mode: str = "r", chunk_rows: int = 256,
                 compression: str | None = None):
        self.path = Path(path)
        self.mode = mode
        self.chunk_rows = chunk_rows
        self.compression = compression
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such store")
        # h5py here, not with the module: reading spec files needs no HDF5 (its import was
        # ~50 ms of every `specsift` process that never opens a store)
        import h5py
        try:
            self._h5 = h5py.File(self.path, mode)
        except OSError as exc:
            raise OSError(f"{self.path}: not a readable HDF5 store ({exc})") from None
        if mode == "r" and "flux" not in self._h5:
            self._h5.close()
            raise ValueError(f"{self.path}: HDF5 file has no 'flux' dataset; not a specsift store")
        self._meta_ds: list | None = None    # [(name, h5py.Dataset)], see _meta_datasets
        self._arrays: tuple | None = None    # flux, ivar, mask h5py.Datasets
        self._loglam: np.ndarray | None = None

    # -- context manager ------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether the HDF5 file is still open (``close`` or leaving ``with`` closes it): a
        training reader reuses an open read-only store rather than opening it again."""
        return bool(self._h5.id.valid)

    def close(self) -> None:
        if self.is_open:
            self._h5.close()

    # -- writing --------------------------------------------------------------
    def append(self, batch: SpectraBatch) -> None:
        """Append a batch (same grid and meta columns as what is already stored)."""
        import h5py
        h5 = self._h5
        n = len(batch)
        if "flux" not in h5:
            self._create(batch)
        elif not same_grid(h5["loglam"][:], batch.loglam):
            raise ValueError(f"{self.path}: batch is on another wavelength grid than the store")
        start = h5["flux"].shape[0]
        for name, data in (("flux", batch.flux), ("ivar", batch.ivar), ("mask", batch.mask)):
            h5[name].resize(start + n, axis=0)
            h5[name][start:] = data
        meta = h5["meta"]
        for name in meta:
            ds = meta[name]
            ds.resize(start + n, axis=0)
            if name in batch.meta.colnames:
                values = _h5_column(batch.meta[name])
                if h5py.check_string_dtype(ds.dtype) is not None:
                    ds[start:] = np.char.decode(values.astype("S"), "utf-8").astype(object)
                    continue
                if values.dtype.kind == "S" and values.dtype.itemsize > ds.dtype.itemsize:
                    raise ValueError(f"{self.path}: meta column {name} value longer than "
                                     f"{ds.dtype.itemsize} bytes")
                ds[start:] = values
            elif h5py.check_string_dtype(ds.dtype) is not None:
                ds[start:] = np.full(n, "", dtype=object)
            else:
                ds[start:] = np.zeros(n, dtype=ds.dtype)
        h5.flush()

    def _create(self, batch: SpectraBatch) -> None:
        import h5py
        h5, p, c = self._h5, batch.npix, self.chunk_rows
        h5.attrs["format"] = _FORMAT
        h5.create_dataset("loglam", data=batch.loglam)
        # flux and ivar uncompressed unless asked: noisy float32 barely compresses (LZF: 10 %
        # on simulated spectra) while decompressing cost ~115 µs a spectrum, 7× the read; the
        # boolean mask compresses ~100× and reads fast either way
        for name, dtype, comp in (("flux", "f4", self.compression),
                                  ("ivar", "f4", self.compression), ("mask", "bool", "lzf")):
            h5.create_dataset(name, shape=(0, p), maxshape=(None, p), dtype=dtype,
                              chunks=(c, p), compression=comp)
        self._meta_ds, self._arrays, self._loglam = None, None, None
        meta = h5.create_group("meta")
        for name in batch.meta.colnames:
            col = _h5_column(batch.meta[name])
            if col.ndim != 1:
                continue  # vector columns (e.g. χ² curves) do not belong in the store
            dtype = col.dtype
            if dtype.kind == "S":
                # variable-length UTF-8: paths and labels of any length, no truncation
                dtype = h5py.string_dtype("utf-8")
            meta.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                chunks=(max(c, 1024),))

    @property
    def attrs(self):
        """Free-form attributes (e.g. how a simulation was made)."""
        return self._h5.attrs

    # -- reading --------------------------------------------------------------
    def __len__(self) -> int:
        return self._h5["flux"].shape[0] if "flux" in self._h5 else 0

    @property
    def loglam(self) -> np.ndarray:
        if self._loglam is None:
            self._loglam = self._h5["loglam"][:]
        return self._loglam.copy()          # a batch's own array, as a fresh read gave

    def _meta_datasets(self) -> list:
        """``(name, h5py.Dataset)`` of every meta column, looked up once per opened store:
        ``group[name]`` costs ~0.15 ms in h5py, 31 columns × every batch ≈ 5 ms of a
        predict batch's fixed cost.  Appending only resizes them (the objects stay valid);
        ``_create`` resets the list."""
        if self._meta_ds is None:
            g = self._h5["meta"]
            self._meta_ds = [(name, g[name]) for name in g]
        return self._meta_ds

    def _array_datasets(self) -> tuple:
        """flux, ivar, mask datasets, opened once per store (a fresh ``h5["mask"]`` per
        batch re-opened it and dropped its chunk cache).  flux and ivar go without a chunk
        cache: their 256-row chunks (4 MB) outgrow HDF5's 1 MB default, yet HDF5 staged
        each one whole through it, 1.7 ms CPU to read one row, 0.17 ms without (1024 rows:
        7.3 → 3.8 ms); the data read is the same.  The LZF mask (1 MB chunks) keeps its
        cache, so reading it row by row does not decompress a chunk per row."""
        if self._arrays is None:
            import h5py
            dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
            dapl.set_chunk_cache(0, 0, 1.0)

            def uncached(name):
                if not isinstance(self._h5.get(name), h5py.Dataset):
                    return self._h5[name]           # missing or not a dataset: fails as before
                return h5py.Dataset(h5py.h5d.open(self._h5.id, name.encode(), dapl))
            self._arrays = (uncached("flux"), uncached("ivar"), self._h5["mask"])
        return self._arrays

    @property
    def grid(self) -> LogGrid:
        return LogGrid.from_loglam(self.loglam)

    @property
    def meta_columns(self) -> list[str]:
        return list(self._h5["meta"]) if "meta" in self._h5 else []

    def read_meta(self, columns=None) -> Table:
        """All metadata rows (small: a few columns × N) without touching the fluxes."""
        g = self._h5["meta"]
        cols = columns or list(g)
        return Table({c: _decode(g[c][:]) for c in cols})

    def read(self, index) -> SpectraBatch:
        """Spectra at a slice or an index array (sorted internally for h5py)."""
        loglam, flux, ivar, mask, cols = self.read_arrays(index)
        return SpectraBatch._unchecked(loglam, flux, ivar, mask, _table(cols))

    def read_arrays(self, index):
        """``(loglam, flux, ivar, mask, meta columns)`` of :meth:`read` with the meta as a
        dict of decoded numpy columns in the store's order, no Table yet: a caller that
        adds or coerces columns (:func:`specsift.io.arrays.store_batch`) builds the one
        Table itself (astropy's Table and Column set-up was ~5 ms a batch, paid twice)."""
        if isinstance(index, slice):
            sel, order = index, None
        else:
            idx = np.asarray(index, dtype=np.int64).ravel()
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise IndexError(f"{self.path}: index out of range for {len(self)} spectra")
            idx = np.where(idx < 0, idx + len(self), idx)
            sel, inverse = np.unique(idx, return_inverse=True)
            order = inverse
            if sel.size == 0:
                sel, order = slice(0, 0), None
        flux, ivar, mask = (ds[sel] for ds in self._array_datasets())
        cols = {name: _decode(ds[sel]) for name, ds in self._meta_datasets()}
        if order is not None:
            flux, ivar, mask = flux[order], ivar[order], mask[order]
            cols = {name: a[order] for name, a in cols.items()}
        return self.loglam, flux, ivar, mask, cols

    def iter_batches(self, batch_size: int = 1024, start: int = 0,
                     stop: int | None = None) -> Iterator[SpectraBatch]:
        """Consecutive batches from ``start`` to ``stop``; constant memory."""
        stop = len(self) if stop is None else min(stop, len(self))
        for lo in range(start, stop, batch_size):
            yield self.read(slice(lo, min(lo + batch_size, stop)))


def _table(cols: dict) -> Table:
    """One Table over freshly read columns, sharing their memory (nothing else holds them)."""
    return Table(list(cols.values()), names=list(cols), copy=False)


def _decode(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "S":
        return np.char.decode(a, "utf-8")
    if a.dtype.kind == "O":  # variable-length strings come back as bytes objects
        return np.array([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in a],
                        dtype=str) if a.size else np.zeros(0, dtype="U1")
    return a
