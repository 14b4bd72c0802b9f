"""Read spectra from any supported file into :class:`~specsift.spectra.SpectraBatch`.

``read`` loads everything into one batch; ``iter_read`` streams files, directories and
globs in batches of at most ``batch_size`` spectra (constant memory however many files).
The format is recognised from the content (FITS HDU names and columns, HDF5 keys, NPZ),
not from the file name, by the one reader list in :mod:`.registry` (name, sniff, read).
Modules: :mod:`.sdss`, :mod:`.fits_table`, :mod:`.desi`, :mod:`.lamost`, :mod:`.arrays`,
:mod:`.store` (SpectralStore) and :mod:`.catalog`.

One-spectrum files that a reader can read from their bytes (SDSS spec files:
:func:`.sdss.quick`, :mod:`.rawfits`) skip astropy and are assembled many to a batch
(:mod:`.assemble`): at millions of files the per-file cost is the whole cost.  Anything unusual
about such a file sends it down the ordinary path below, with its checks and messages.

Bad input never costs other files: whatever a reader raises (OSError, astropy's
VerifyError, KeyError, TypeError …) becomes, in :func:`read_guarded` only, flagged
placeholder rows for that file alone — as many as the file declares spectra — with the
file named in the message.

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
from ._common import DeclaredSizeError, NotSpectraError, placeholder
from .assemble import assemble
from .catalog import read_catalog, write_catalog
from .registry import (
    READERS,
    Reader,
    container_of,
    declared_rows,
    open_source,
    quick_native,
    register,
)
from .registry import identify as _identify
from .registry import read_file as _read_file
from .store import SpectralStore

__all__ = ["read", "iter_read", "read_guarded", "expand_paths", "detect_format",
           "write_catalog", "read_catalog", "SpectralStore", "NotSpectraError",
           "SPECTRA_SUFFIXES", "READERS", "Reader", "register", "is_store", "container_of",
           "expand_inputs", "named_error"]

#: File name endings picked up when a directory is given.
SPECTRA_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fz", ".h5", ".hdf5",
                    ".npz")
_GLOB_CHARS = set("*?[")
def _has_suffix(p: Path) -> bool:
    return p.name.lower().endswith(SPECTRA_SUFFIXES)


def expand_inputs(inputs) -> list[tuple[Path, bool]]:
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
        elif os.path.isdir(s):
            found = _expand_dir(Path(s))
            if not found:
                raise FileNotFoundError(f"{s}: directory holds no spectra files "
                                        f"({', '.join(SPECTRA_SUFFIXES)})")
            out.extend(found)
        else:
            out.append((Path(os.path.expanduser(s)), True))
    return out


def _expand_dir(d: Path) -> list[tuple[Path, bool]]:
    """The spectra files under ``d``, as ``sorted(d.rglob("*"))`` filtered by ``is_file``
    and the suffix gives them (real subdirectories searched, links to directories not;
    order by path components), from ``os.scandir``: its entries know their type, where
    ``rglob`` + ``is_file`` paid a Path, a stat and slow Path comparisons a file, most of a
    predict run's checks on a folder of spec files."""
    found: list[tuple[tuple[str, ...], str]] = []

    def walk(folder: str, rel: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except PermissionError:
            return
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                walk(e.path, rel + (e.name,))
            elif e.name.lower().endswith(SPECTRA_SUFFIXES):
                try:
                    if e.is_file():
                        found.append((rel + (e.name,), e.path))
                except OSError:
                    continue

    walk(str(d), ())
    found.sort(key=lambda item: item[0])
    return [(Path(path), False) for _, path in found]


def expand_paths(inputs) -> list[Path]:
    """Files named by ``inputs``: paths, directories (searched recursively for spectra
    file endings) and glob patterns, in a stable sorted order."""
    return [p for p, _ in expand_inputs(inputs)]


def detect_format(path) -> str:
    """Name of the reader for ``path``, from its content: one of the names in
    :data:`READERS` ('sdss', 'desi', 'lamost', 'lamost-dr8', 'wcs1d', 'redrock',
    'fits-table', 'store', 'hdf5', 'npz')."""
    with open_source(Path(path)) as src:
        return _identify(src).name


def is_store(path) -> bool:
    """True for a specsift SpectralStore (never raises)."""
    from .arrays import is_store as _is_store
    return _is_store(path)


def read_guarded(path: Path, grid: LogGrid | None, batch_size: int,
                 on_error: str = "flag", loglam: np.ndarray | None = None
                 ) -> Iterator[SpectraBatch]:
    """Batches from one file, where any reader exception ends: with ``on_error='flag'``
    it becomes placeholder rows (INPUT_FLAGS READ_ERROR, ERROR naming the file) for the
    spectra of this file not yet produced — the file's declared count, so a 5-spectrum
    coadd keeps 5 rows — and a warning; with ``'raise'`` an error naming the file.
    NotSpectraError (a Redrock file) passes through.  ``loglam``: grid of the
    placeholders when ``grid`` is None."""
    done = 0
    try:
        for b in _read_file(path, grid, batch_size):
            if "ROW" not in b.meta.colnames:     # the catalog's way back into the file
                b.meta["ROW"] = np.arange(done, done + len(b), dtype=np.int64)
            done += len(b)
            yield b
    except (NotSpectraError, _GridMismatch):
        raise
    except Exception as exc:  # noqa: BLE001 - the one place reader errors become flags
        err = named_error(path, exc)
        if on_error == "raise":
            raise err from (None if err is exc else exc)
        n = 1 if isinstance(exc, DeclaredSizeError) else declared_rows(path)
        n = max(n - done, 0 if done else 1)
        warnings.warn(f"{path}: could not be read, {n} placeholder row(s) flagged "
                      f"READ_ERROR ({err})", stacklevel=2)
        ll = loglam if grid is None else grid.loglam
        for lo in range(0, n, batch_size):
            ph = placeholder(path, str(err), DEFAULT_GRID.loglam if ll is None else ll,
                             min(batch_size, n - lo))
            ph.meta["ROW"] = np.arange(done + lo, done + lo + len(ph), dtype=np.int64)
            yield ph


def named_error(path: Path, exc: BaseException) -> BaseException:
    """The exception with the file named in its message (kept as is if already named)."""
    msg = str(exc).strip() or exc.__class__.__name__
    if str(path) in msg and isinstance(exc, (OSError, ValueError)):
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
              on_error: str = "flag", files: bool = False) -> Iterator[SpectraBatch]:
    """Stream spectra from files/directories/globs in batches of at most ``batch_size``.

    ``on_error='flag'``: a file that cannot be read becomes placeholder rows, one per
    spectrum it declares (flux 0, ivar 0, all masked, INPUT_FLAGS READ_ERROR, ERROR = the
    message) and a warning naming the file, so a million-file run never dies on one bad
    file (:func:`read_guarded`).  ``'raise'``: the first
    error stops the run, with the file named.  ``grid=None`` keeps the native grid (every
    file must then share one).  Redrock files met inside a directory/glob are skipped.
    ``files=True``: ``inputs`` is a list of file paths already expanded (a predict unit's,
    :func:`expand_paths`), each read as named — no glob or directory test per path (a
    stat and a Path a file, ~20 µs of the ~0.4 ms an SDSS spec file costs).
    """
    if on_error not in ("flag", "raise"):
        raise ValueError(f"on_error must be 'flag' or 'raise', not {on_error!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    buffer: list[SpectraBatch] = []
    natives: list = []                   # one-spectrum files read quickly, not yet a batch
    count = 0
    ref: tuple[np.ndarray, Path] | None = None

    def gather():
        if not natives:
            return
        try:
            buffer.append(_assembled(natives, grid))
        except Exception:  # noqa: BLE001 - one odd file must not cost the others
            for nat in natives:
                try:
                    buffer.append(_assembled([nat], grid))
                except Exception:  # noqa: BLE001 - its errors as the ordinary path gives them
                    buffer.extend(read_guarded(nat.path, grid, batch_size, on_error))
        natives.clear()

    if files and isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]                 # one path, not its characters
    pairs = [(Path(p), True) for p in inputs] if files else expand_inputs(inputs)
    for path, explicit in pairs:
        native = quick_native(path) if grid is not None else None
        if native is not None:
            natives.append(native)
            count += 1
            if count >= batch_size:
                gather()
                full, buffer = _split(buffer, batch_size)
                count = sum(len(x) for x in buffer)
                yield from full
            continue
        gather()
        try:
            for b in read_guarded(path, grid, batch_size, on_error,
                                  None if ref is None else ref[0]):
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
    gather()
    if buffer:
        full, rest = _split(buffer, batch_size)
        yield from full
        yield from rest


def _assembled(natives: list, grid: LogGrid) -> SpectraBatch:
    b = assemble(natives, grid)
    b.meta["ROW"] = np.zeros(len(b), np.int64)            # one spectrum a file
    return b


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
