"""Plain arrays in ``.h5/.hdf5`` or ``.npz`` files, and SpectralStore files.

Keys: ``flux`` (N, P), ``ivar`` (N, P) (or ``error``/``sigma``; neither → estimated ivar,
flag ESTIMATED_IVAR), the grid as ``loglam`` (log10 Å; (P,) or (N, P)) or ``wave`` (Å),
optional ``mask`` (nonzero = bad) and ``targetid``.  Other 1-D keys of length N come into
meta (``class``/``z`` … upper-cased to the standard names).  HDF5 is read ``batch_size``
rows at a time; a SpectralStore is read through :class:`SpectralStore` chunk by chunk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch
from ._common import (
    check_declared,
    coverage_fraction,
    estimate_ivar,
    finalize,
    stable_id,
    standard_meta,
)
from .store import SpectralStore

__all__ = ["is_store", "sniff_store", "read_store", "store_rows", "store_batch",
           "sniff_arrays", "read_arrays", "array_rows", "open_npz"]

_STANDARD = {"targetid": "TARGETID", "class": "CLASS", "subclass": "SUBCLASS", "z": "Z",
             "zerr": "ZERR", "z_err": "ZERR", "plate": "PLATE", "mjd": "MJD",
             "fiberid": "FIBERID", "spectype": "CLASS"}
_RESERVED = {"flux", "ivar", "error", "sigma", "mask", "loglam", "wave", "wavelength"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# ---------------------------------------------------------------- SpectralStore files
def sniff_store(src) -> bool:
    """A SpectralStore: tagged ``format = specsift-store-1``, or (older files) 2-D ``flux``
    and ``mask`` datasets with a ``meta`` group.  Never raises on odd layouts."""
    import h5py

    h5 = src.handle
    if h5.attrs.get("format") == "specsift-store-1":
        return True
    flux, mask = h5.get("flux"), h5.get("mask")
    return (isinstance(flux, h5py.Dataset) and flux.ndim == 2
            and isinstance(mask, h5py.Dataset) and isinstance(h5.get("meta"), h5py.Group))


def is_store(path) -> bool:
    """True for a specsift SpectralStore; False for anything else, unreadable files too.
    The one test used by :mod:`specsift.io` and the run planner alike."""
    try:
        # os.open / os.read: an unbuffered 8-byte read (Python's buffered open was most of
        # the ~14 µs a file this test cost the planner of a million-file run: now ~2)
        fd = os.open(path, os.O_RDONLY)
        try:
            if os.read(fd, 8) != _HDF5_MAGIC:
                return False
        finally:
            os.close(fd)
        import h5py

        from .registry import Source
        path = Path(path)
        with h5py.File(path, "r") as h5:
            return sniff_store(Source(path, "hdf5", h5))
    except Exception:  # noqa: BLE001 - not a store is the answer for any unreadable file
        return False


def store_rows(src) -> int:
    return int(src.handle["flux"].shape[0])


def check_store(store: SpectralStore) -> None:
    """A store's datasets must be 2-D, one grid wide, and no bigger than the file can hold."""
    h5, path = store._h5, store.path
    import h5py

    for name in ("flux", "ivar", "mask", "loglam"):
        if not isinstance(h5.get(name), h5py.Dataset):
            raise ValueError(f"{path}: store has no '{name}' dataset")
    n, p = (h5["flux"].shape + (0, 0))[:2] if h5["flux"].ndim == 2 else (-1, -1)
    if h5["flux"].ndim != 2 or h5["loglam"].shape != (p,):
        raise ValueError(f"{path}: store flux {h5['flux'].shape} and loglam "
                         f"{h5['loglam'].shape} do not make an (N, P) grid")
    for name in ("ivar", "mask"):
        if h5[name].shape != (n, p):
            raise ValueError(f"{path}: store {name} shape {h5[name].shape} ≠ flux {(n, p)}")
    check_declared(path, sum(h5[k].size * h5[k].dtype.itemsize
                             for k in ("flux", "ivar", "mask", "loglam")), "the store's datasets")


def store_batch(store: SpectralStore, lo: int, hi: int, grid: LogGrid | None) -> SpectraBatch:
    """Rows ``lo:hi`` of a store on ``grid``, with the standard meta columns and
    LITTLE_COVERAGE when resampled: the one way a store is read, whether through
    :func:`specsift.io.read` or a ``predict`` work unit, so both give the same flags."""
    path = store.path
    loglam, flux, ivar, mask, cols = store.read_arrays(slice(lo, hi))
    if "ROW" not in cols:                          # the spectrum's row in the store
        cols["ROW"] = np.arange(lo, hi, dtype=np.int64)
    # the meta Table built once, by standard_meta, from the plain columns (not a store
    # Table rebuilt: two Tables of ~32 columns were ~5 ms of a batch's fixed cost)
    b = SpectraBatch._unchecked(loglam, flux, ivar, mask, standard_meta(cols, path, len(flux)))
    if grid is None or grid.matches(b.loglam):
        return b
    w = 10.0 ** b.loglam
    good = ~b.mask
    has = good.any(axis=1)
    wlo = np.where(has, w[good.argmax(axis=1)], np.inf)
    whi = np.where(has, w[good.shape[1] - 1 - good[:, ::-1].argmax(axis=1)], -np.inf)
    b = b.resample(grid)
    flags = np.asarray(b.meta["INPUT_FLAGS"], np.int32).copy()
    flags[coverage_fraction(wlo, whi, grid) < 0.5] |= InputFlag.LITTLE_COVERAGE
    b.meta["INPUT_FLAGS"] = flags
    return b


def read_store(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    with SpectralStore(src.path, "r") as store:
        check_store(store)
        if len(store) == 0:
            raise ValueError(f"{src.path}: store holds no spectra")
        for lo in range(0, len(store), batch_size):
            yield store_batch(store, lo, min(lo + batch_size, len(store)), grid)


# ------------------------------------------------------------------ plain array files
class _Npz:
    """An NPZ archive whose arrays are each decompressed once (``NpzFile[key]`` reads the
    whole member again on every access, i.e. once per batch), after checking that the
    sizes the members declare are ones the archive can hold."""

    def __init__(self, path: Path):
        try:
            self._f = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - zipfile, numpy and pickle errors alike
            raise ValueError(f"{path}: not a readable NPZ archive ({exc})") from None
        if not hasattr(self._f, "files"):
            raise ValueError(f"{path}: a single .npy array, not an NPZ archive of named arrays")
        check_declared(path, sum(i.file_size for i in self._f.zip.infolist()),
                       "the archive's members")
        self.files = list(self._f.files)
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, key):
        a = self._cache.get(key)             # a local: close() may clear the cache meanwhile
        if a is None:
            a = self._cache[key] = self._f[key]
        return a

    def close(self):
        self._cache.clear()
        self._f.close()


def open_npz(path: Path) -> _Npz:
    return _Npz(path)


class _Source:
    """Uniform row-sliced access to an opened HDF5 file or NPZ archive."""

    def __init__(self, src):
        import h5py

        self.path, self.kind, self._f = src.path, src.container, src.handle
        if self.kind == "hdf5":
            flux = self._f.get("flux")
            if flux is not None and not isinstance(flux, h5py.Dataset):
                raise ValueError(f"{self.path}: 'flux' is an HDF5 {type(flux).__name__}, not a "
                                 f"dataset of spectra")
            self.keys = {k.lower(): k for k in self._f.keys()
                         if isinstance(self._f[k], h5py.Dataset)}
        else:
            self.keys = {k.lower(): k for k in self._f.files}

    def shape(self, key):
        return self._f[self.keys[key]].shape

    def nbytes(self, key) -> int:
        ds = self._f[self.keys[key]]
        return int(np.prod(ds.shape, dtype=np.float64)) * ds.dtype.itemsize

    def get(self, key, sl=slice(None)):
        return np.asarray(self._f[self.keys[key]][sl])


def sniff_arrays(src) -> bool:
    keys = src.handle.keys() if src.container == "hdf5" else src.handle.files
    return any(k.lower() == "flux" for k in keys)


def array_rows(src) -> int:
    s = _Source(src)
    shape = s.shape("flux")
    return int(shape[0]) if len(shape) == 2 else 1


def read_arrays(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    yield from _arrays(_Source(src), grid, batch_size)


def _arrays(src: _Source, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    path = src.path
    keys = src.keys
    if "flux" not in keys:
        raise ValueError(f"{path}: no 'flux' dataset (found: {', '.join(keys) or 'none'})")
    fshape = src.shape("flux")
    if len(fshape) == 1:
        fshape = (1, fshape[0])
        two_d = False
    elif len(fshape) == 2:
        two_d = True
    else:
        raise ValueError(f"{path}: flux must be (N, P), got shape {fshape}")
    n, p = fshape
    if n == 0:
        raise ValueError(f"{path}: flux holds no spectra")
    err_key = next((k for k in ("ivar", "error", "sigma") if k in keys), None)
    for k in (err_key, "mask"):
        if k in keys and src.shape(k) != src.shape("flux"):
            raise ValueError(f"{path}: '{k}' shape {src.shape(k)} does not match flux "
                             f"shape {src.shape('flux')}")
    if "loglam" in keys:
        gkey, is_log = "loglam", True
    elif "wave" in keys or "wavelength" in keys:
        gkey, is_log = ("wave" if "wave" in keys else "wavelength"), False
    else:
        raise ValueError(f"{path}: no wavelength grid ('loglam' in log10 Å or 'wave' in Å)")
    gshape = src.shape(gkey)
    if gshape not in ((p,), (n, p)):
        raise ValueError(f"{path}: grid '{gkey}' has shape {gshape}, flux {fshape}")
    per_row = len(gshape) == 2 and n > 1
    if src.kind == "hdf5":             # NPZ sizes were checked when the archive opened
        check_declared(path, sum(src.nbytes(k) for k in keys), "the file's datasets")
    extra = [k for k in keys if k not in _RESERVED and src.shape(k) == (n,)]

    def to_loglam(g):
        g = np.asarray(g, np.float64)
        if not is_log:
            if np.any(g <= 0):
                raise ValueError(f"{path}: wavelengths must be positive")
            g = np.log10(g)
        if not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
            raise ValueError(f"{path}: wavelength grid '{gkey}' is not increasing")
        return g

    shared = None if per_row else to_loglam(src.get(gkey).reshape(-1)[:p])
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        sl = slice(lo, hi) if two_d else slice(None)
        flux = src.get("flux", sl).reshape(hi - lo, p)
        flags = np.zeros(hi - lo, np.int32)
        if err_key == "ivar":
            ivar = src.get("ivar", sl).reshape(hi - lo, p)
        elif err_key is not None:
            e = src.get(err_key, sl).reshape(hi - lo, p).astype(np.float64)
            with np.errstate(divide="ignore"):
                ivar = np.where(e > 0, 1.0 / e**2, 0.0)
        else:
            ivar = estimate_ivar(flux)
            flags |= InputFlag.ESTIMATED_IVAR
        mask = (src.get("mask", sl).reshape(hi - lo, p) != 0) if "mask" in keys else None
        meta = Table()
        for k in extra:
            v = src.get(k, slice(lo, hi))
            if v.dtype.kind == "S":
                v = np.char.decode(v, "utf-8", "replace")
            meta[_STANDARD.get(k, k)] = v
        if "TARGETID" not in meta.colnames:
            meta["TARGETID"] = stable_id(path.name) + np.arange(lo, hi, dtype=np.int64)
        meta["INPUT_FLAGS"] = flags
        if not per_row:
            yield finalize(path, shared, flux, ivar, mask, meta, grid)
            continue
        if grid is None:
            raise ValueError(f"{path}: spectra have different grids; give a grid")
        gl = src.get(gkey, slice(lo, hi))
        yield SpectraBatch.concatenate(
            [finalize(path, to_loglam(gl[j]), flux[j:j + 1], ivar[j:j + 1],
                      None if mask is None else mask[j:j + 1], meta[j:j + 1], grid)
             for j in range(hi - lo)])
