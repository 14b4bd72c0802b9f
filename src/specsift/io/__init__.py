"""Read spectra from any supported file into :class:`~specsift.spectra.SpectraBatch`.

``read`` loads everything into one batch; ``iter_read`` streams files, directories and
globs in batches of at most ``batch_size`` spectra (constant memory however many files).
The format is recognised from the content (FITS HDU names and columns, HDF5 keys, NPZ),
not from the file name.  Modules: :mod:`.sdss`, :mod:`.fits_table`, :mod:`.desi`,
:mod:`.lamost`, :mod:`.arrays`, :mod:`.store` (SpectralStore) and :mod:`.catalog`.

Every batch's meta has TARGETID (int64), SOURCE (path), INPUT_FLAGS and, when the file
knows them, CLASS, SUBCLASS, Z, ZERR and survey ids (PLATE/MJD/FIBERID, OBSID, EXPID …).
"""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch, same_grid
from ._common import NotSpectraError, file_size_ok, open_fits, placeholder
from .catalog import read_catalog, write_catalog
from .store import SpectralStore

__all__ = ["read", "iter_read", "expand_paths", "detect_format", "write_catalog",
           "read_catalog", "SpectralStore", "NotSpectraError", "SPECTRA_SUFFIXES"]

#: File name endings picked up when a directory is given.
SPECTRA_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".h5", ".hdf5",
                    ".npz")
_GLOB_CHARS = set("*?[")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _has_suffix(p: Path) -> bool:
    return p.name.lower().endswith(SPECTRA_SUFFIXES)


def _expand(inputs) -> list[tuple[Path, bool]]:
    """(path, named explicitly) for files, directories (recursive) and glob patterns."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[tuple[Path, bool]] = []
    for item in inputs:
        s = os.fspath(item)
        if _GLOB_CHARS & set(s) and not Path(s).exists():
            hits = sorted(glob.glob(os.path.expanduser(s), recursive=True))
            if not hits:
                raise FileNotFoundError(f"{s}: no files match this pattern")
            for h in hits:
                p = Path(h)
                if p.is_dir():
                    out.extend(_expand_dir(p))
                else:
                    out.append((p, False))
        elif Path(s).is_dir():
            found = _expand_dir(Path(s))
            if not found:
                raise FileNotFoundError(f"{s}: directory holds no spectra files "
                                        f"({', '.join(SPECTRA_SUFFIXES)})")
            out.extend(found)
        else:
            out.append((Path(os.path.expanduser(s)), True))
    return out


def _expand_dir(d: Path) -> list[tuple[Path, bool]]:
    return [(p, False) for p in sorted(d.rglob("*")) if p.is_file() and _has_suffix(p)]


def expand_paths(inputs) -> list[Path]:
    """Files named by ``inputs``: paths, directories (searched recursively for spectra
    file endings) and glob patterns, in a stable sorted order."""
    return [p for p, _ in _expand(inputs)]


def detect_format(path) -> str:
    """Name of the reader for ``path``, from its content: 'sdss', 'desi', 'lamost',
    'lamost-dr8', 'wcs1d', 'fits-table', 'redrock', 'store', 'hdf5', 'npz'."""
    path = Path(path)
    kind = _container(path)
    if kind != "fits":
        return kind
    with open_fits(path) as hdul:
        return _fits_kind(path, hdul)


def _container(path: Path) -> str:
    """'store', 'hdf5', 'npz' or 'fits', from the first bytes of the file."""
    file_size_ok(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == _HDF5_MAGIC:
        from .arrays import is_store
        return "store" if is_store(path) else "hdf5"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if head[:6] == b"SIMPLE" or head[:2] == b"\x1f\x8b":
        return "fits"
    raise ValueError(f"{path}: not a spectra file (neither FITS, HDF5 nor NPZ by content)")


def _fits_kind(path: Path, hdul) -> str:
    from . import desi, fits_table, lamost, sdss

    if sdss.sniff(hdul):
        return "sdss"
    if desi.sniff(hdul):
        return "desi"
    kind = lamost.sniff(hdul)
    if kind:
        return kind
    if desi.is_redrock(hdul):
        return "redrock"
    if fits_table.sniff(hdul):
        return "fits-table"
    names = ", ".join(f"{k}:{h.name or type(h).__name__}" for k, h in enumerate(hdul))
    raise ValueError(f"{path}: FITS file has no recognised spectra HDU (found {names}; expected "
                     f"COADD with loglam/flux, DESI B/R/Z_FLUX, a LAMOST image, a 1-D WCS image "
                     f"or a table with a flux column)")


def _read_one(path: Path, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """Batches from one file, each spectrum's ROW (its index in the file) in the meta: the
    catalog's way back to the spectrum inside a multi-spectrum file."""
    row = 0
    for b in _read_one_file(path, grid, batch_size):
        if "ROW" not in b.meta.colnames:
            b.meta["ROW"] = np.arange(row, row + len(b), dtype=np.int64)
        row += len(b)
        yield b


def _read_one_file(path: Path, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """Batches (≤ batch_size) from one file; errors name the file.  A FITS file is opened
    once (format sniffing and reading share the HDU list: ~half the per-file cost)."""
    kind = _container(path)
    if kind != "fits":
        from . import arrays
        yield from arrays.read_file(path, kind, grid, batch_size)
        return
    from . import desi, fits_table, lamost, sdss

    with open_fits(path) as hdul:
        kind = _fits_kind(path, hdul)
        if kind == "sdss":
            yield from sdss.read_file(path, hdul, grid, batch_size)
        elif kind == "desi":
            yield from desi.read_file(path, hdul, grid, batch_size)
        elif kind == "redrock":
            raise NotSpectraError(f"{path}: a Redrock redshift file (labels only, no spectra); "
                                  f"it is read automatically beside its coadd/spectra file")
        elif kind == "fits-table":
            yield from fits_table.read_file(path, hdul, grid, batch_size)
        else:
            yield from lamost.read_file(path, hdul, kind, grid, batch_size)


def _named(path: Path, exc: BaseException) -> BaseException:
    """The exception with the file named in its message (kept as is if already named)."""
    msg = str(exc).strip() or exc.__class__.__name__
    if str(path) in msg:
        return exc
    if isinstance(exc, (OSError, ValueError)):
        cls = OSError if isinstance(exc, OSError) else ValueError
        return cls(f"{path}: {msg}")
    return ValueError(f"{path}: cannot read ({exc.__class__.__name__}: {msg})")


def _split(buffer: list[SpectraBatch], batch_size: int):
    """Concatenate buffered batches and cut full batches off the front."""
    cat = buffer[0] if len(buffer) == 1 else SpectraBatch.concatenate(buffer)
    full = []
    while len(cat) >= batch_size:
        full.append(cat[:batch_size])
        cat = cat[batch_size:]
    return full, ([cat] if len(cat) else [])


def iter_read(inputs, batch_size: int = 1024, grid: LogGrid | None = DEFAULT_GRID,
              on_error: str = "flag") -> Iterator[SpectraBatch]:
    """Stream spectra from files/directories/globs in batches of at most ``batch_size``.

    ``on_error='flag'``: a file that cannot be read becomes one placeholder row (flux 0,
    ivar 0, all masked, INPUT_FLAGS READ_ERROR, ERROR = the message) and a warning naming
    the file, so a million-file run never dies on one bad file.  ``'raise'``: the first
    error stops the run, with the file named.  ``grid=None`` keeps the native grid (every
    file must then share one).  Redrock files met inside a directory/glob are skipped.
    """
    if on_error not in ("flag", "raise"):
        raise ValueError(f"on_error must be 'flag' or 'raise', not {on_error!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    buffer: list[SpectraBatch] = []
    count = 0
    ref: tuple[np.ndarray, Path] | None = None
    for path, explicit in _expand(inputs):
        try:
            for b in _read_one(path, grid, batch_size):
                if ref is None:
                    ref = (b.loglam, path)
                elif not same_grid(b.loglam, ref[0]):
                    raise _GridMismatch(f"{path}: native wavelength grid differs from that of "
                                        f"{ref[1]}; pass a grid to resample onto")
                buffer.append(b)
                count += len(b)
                if count >= batch_size:
                    full, buffer = _split(buffer, batch_size)
                    count = sum(len(x) for x in buffer)
                    yield from full
        except _GridMismatch as exc:
            raise ValueError(str(exc)) from None
        except NotSpectraError as exc:
            if explicit:
                if on_error == "raise":
                    raise
                warnings.warn(str(exc), stacklevel=2)
            continue
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            err = _named(path, exc)
            if on_error == "raise":
                raise err from (None if err is exc else exc)
            warnings.warn(f"{path}: could not be read, placeholder row flagged READ_ERROR "
                          f"({err})", stacklevel=2)
            ph = placeholder(path, str(err), None if ref is None else ref[0])
            if ref is None and grid is not None:
                ph = ph.resample(grid)
            buffer.append(ph)
            count += 1
            if count >= batch_size:
                full, buffer = _split(buffer, batch_size)
                count = sum(len(x) for x in buffer)
                yield from full
    if buffer:
        full, rest = _split(buffer, batch_size)
        yield from full
        yield from rest


class _GridMismatch(ValueError):
    pass


def read(path_or_paths, grid: LogGrid | None = DEFAULT_GRID, on_error: str = "raise",
         batch_size: int = 4096) -> SpectraBatch:
    """Read every spectrum named by ``path_or_paths`` into one batch on ``grid``
    (default: the SDSS log-λ grid; None keeps a single file's native grid).  specutils
    Spectrum objects (or a list of them) are converted instead of read."""
    from ..specutils_io import is_specutils
    if is_specutils(path_or_paths):
        return SpectraBatch.from_specutils(path_or_paths, grid=grid)
    batches = list(iter_read(path_or_paths, batch_size=batch_size, grid=grid,
                             on_error=on_error))
    if not batches:
        raise ValueError(f"{path_or_paths}: no spectra found")
    return batches[0] if len(batches) == 1 else SpectraBatch.concatenate(batches)
