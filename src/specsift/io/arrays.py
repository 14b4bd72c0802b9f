"""Plain arrays in ``.h5/.hdf5`` or ``.npz`` files, and SpectralStore files.

Keys: ``flux`` (N, P), ``ivar`` (N, P) (or ``error``/``sigma``; neither → estimated ivar,
flag ESTIMATED_IVAR), the grid as ``loglam`` (log10 Å; (P,) or (N, P)) or ``wave`` (Å),
optional ``mask`` (nonzero = bad) and ``targetid``.  Other 1-D keys of length N come into
meta (``class``/``z`` … upper-cased to the standard names).  HDF5 is read ``batch_size``
rows at a time; a SpectralStore is read through :class:`SpectralStore` chunk by chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch
from ._common import coverage_fraction, estimate_ivar, finalize, stable_id, standard_meta
from .store import SpectralStore

__all__ = ["is_store", "read_file"]

_STANDARD = {"targetid": "TARGETID", "class": "CLASS", "subclass": "SUBCLASS", "z": "Z",
             "zerr": "ZERR", "z_err": "ZERR", "plate": "PLATE", "mjd": "MJD",
             "fiberid": "FIBERID", "spectype": "CLASS"}
_RESERVED = {"flux", "ivar", "error", "sigma", "mask", "loglam", "wave", "wavelength"}


def is_store(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as h5:
        return h5.attrs.get("format") == "specsift-store-1" or (
            "flux" in h5 and "mask" in h5 and isinstance(h5.get("meta"), h5py.Group))


def _read_store(path: Path, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    with SpectralStore(path, "r") as store:
        if len(store) == 0:
            raise ValueError(f"{path}: store holds no spectra")
        loglam = store.loglam
        resample = grid is not None and not grid.matches(loglam)
        if resample:
            w = 10.0 ** loglam
        for b in store.iter_batches(batch_size):
            b.meta = standard_meta(b.meta, path, len(b))
            if resample:
                good = ~b.mask
                has = good.any(axis=1)
                lo = np.where(has, w[good.argmax(axis=1)], np.inf)
                hi = np.where(has, w[good.shape[1] - 1 - good[:, ::-1].argmax(axis=1)], -np.inf)
                b = b.resample(grid)
                flags = np.asarray(b.meta["INPUT_FLAGS"], np.int32).copy()
                flags[coverage_fraction(lo, hi, grid) < 0.5] |= InputFlag.LITTLE_COVERAGE
                b.meta["INPUT_FLAGS"] = flags
            yield b


class _Source:
    """Uniform row-sliced access to an HDF5 file or an NPZ archive."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        if kind == "hdf5":
            import h5py
            self._f = h5py.File(path, "r")
            self.keys = {k.lower(): k for k in self._f.keys()
                         if isinstance(self._f[k], h5py.Dataset)}
        else:
            try:
                self._f = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise ValueError(f"{path}: not a readable NPZ archive ({exc})") from None
            self.keys = {k.lower(): k for k in self._f.files}

    def shape(self, key):
        return self._f[self.keys[key]].shape

    def get(self, key, sl=slice(None)):
        return np.asarray(self._f[self.keys[key]][sl])

    def close(self):
        self._f.close()


def _arrays(path: Path, kind: str, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    src = _Source(path, kind)
    try:
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
    finally:
        src.close()


def read_file(path: Path, kind: str, grid: LogGrid | None,
              batch_size: int) -> Iterator[SpectraBatch]:
    if kind == "store":
        yield from _read_store(path, grid, batch_size)
    elif kind in ("hdf5", "npz"):
        yield from _arrays(path, kind, grid, batch_size)
    else:
        raise ValueError(f"{path}: unknown array layout {kind!r}")
