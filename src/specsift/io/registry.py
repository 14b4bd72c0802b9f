"""The one list of readers: (name, container, sniff, read[, rows]) entries, tried in order.

As specutils registers its loaders (an identifier and a reader per format), a format here is
one :class:`Reader` in :data:`READERS`.  Every reader has the same two signatures:

* ``sniff(src) -> bool``: is this file mine?  Looks at headers only (cheap: every file of a
  run is sniffed);
* ``read(src, grid, batch_size) -> Iterator[SpectraBatch]``: batches of at most
  ``batch_size`` spectra on ``grid`` (None: the file's native grid);
* ``rows(src) -> int`` (optional): the number of spectra the file declares, so that a file
  failing half-way still gives one flagged row per spectrum;
* ``quick(path) -> Native | None`` (optional): a one-spectrum file read without opening it
  as a Source (no astropy), or None to leave it to sniff/read.  For surveys of millions of
  one-spectrum files, where opening is the whole cost; :func:`quick_native` asks these and
  :func:`specsift.io.iter_read` assembles many such files into one batch.

``src`` is a :class:`Source`: the path, its container kind ('fits', 'hdf5', 'npz') and the
opened handle (astropy HDUList, h5py File, NpzFile), opened once for sniffing and reading.
A new format is one ``register(Reader(...))`` call; the first entry whose sniff says yes wins.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..spectra import LogGrid, SpectraBatch
from ._common import MAX_EXPANSION, NotSpectraError, file_size_ok, open_fits

__all__ = ["Source", "Reader", "READERS", "register", "container_of", "open_source",
           "identify", "read_file", "declared_rows", "quick_native"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class Source:
    """An opened spectra file: ``handle`` is an HDUList, an h5py File or an NpzFile."""

    path: Path
    container: str
    handle: object


@dataclass(frozen=True)
class Reader:
    name: str
    container: str
    sniff: Callable[[Source], bool]
    read: Callable[[Source, LogGrid | None, int], Iterator[SpectraBatch]]
    rows: Callable[[Source], int] | None = None
    description: str = ""
    quick: Callable[[Path], object] | None = None


READERS: list[Reader] = []


def register(reader: Reader, before: str | None = None) -> None:
    """Add ``reader`` at the end (or just before the entry named ``before``)."""
    if any(r.name == reader.name for r in READERS):
        raise ValueError(f"a reader named {reader.name!r} is already registered")
    names = [r.name for r in READERS]
    READERS.insert(names.index(before) if before in names else len(READERS), reader)


def container_of(path: Path) -> str:
    """'hdf5', 'npz' or 'fits', from the first bytes of the file (never the name)."""
    file_size_ok(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == _HDF5_MAGIC:
        return "hdf5"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if head[:6] == b"SIMPLE" or head[:2] == b"\x1f\x8b":
        return "fits"
    raise ValueError(f"{path}: not a spectra file (neither FITS, HDF5 nor NPZ by content)")


@contextmanager
def open_source(path) -> Iterator[Source]:
    path = Path(path)
    kind = container_of(path)
    if kind == "fits":
        handle = open_fits(path)
    elif kind == "hdf5":
        import h5py
        try:
            handle = h5py.File(path, "r")
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError …
            raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    else:
        from .arrays import open_npz
        handle = open_npz(path)
    try:
        yield Source(path, kind, handle)
    finally:
        handle.close()


def identify(src: Source) -> Reader:
    """The first registered reader of ``src``'s container whose sniff accepts it."""
    _load_builtin()
    for r in READERS:
        if r.container == src.container and r.sniff(src):
            return r
    if src.container != "fits":
        raise ValueError(f"{src.path}: {src.container.upper()} file without a 'flux' array")
    hdul = src.handle
    names = ", ".join(f"{k}:{h.name or type(h).__name__}" for k, h in enumerate(hdul))
    raise ValueError(f"{src.path}: FITS file has no recognised spectra HDU (found {names}; "
                     f"expected COADD with loglam/flux, DESI B/R/Z_FLUX, a LAMOST image or "
                     f"table, a 1-D WCS image or a table with a flux column)")


def quick_native(path: Path):
    """The file as a :class:`~.assemble.Native` from the first readers' ``quick`` (only while
    every reader before it has one too: a reader without one might claim the file), or None."""
    _load_builtin()
    for r in READERS:
        if r.quick is None:
            return None
        native = r.quick(path)
        if native is not None:
            return native
    return None


def read_file(path, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    """Batches from one file: open once, identify, read (errors as the reader raises them;
    :func:`specsift.io.iter_read` is where they become flagged rows)."""
    with open_source(path) as src:
        yield from identify(src).read(src, grid, batch_size)


def declared_rows(path) -> int:
    """Spectra a file declares (1 when unknown or unreadable): the size of the placeholder
    for a file whose reading failed.  Bounded by what the file can hold (16 bytes a
    spectrum at the very least, :data:`MAX_EXPANSION` × that when compressed), so a tiny
    file declaring 20 M rows gets one row, not 20 M placeholders."""
    try:
        with open_source(path) as src:
            r = identify(src)
            n = max(1, int(r.rows(src))) if r.rows is not None else 1
        size = Path(path).stat().st_size
        packed = src.container == "npz" or Path(path).name.lower().endswith((".gz", ".fz"))
        return max(1, min(n, size * (MAX_EXPANSION if packed else 1) // 16))
    except Exception:  # noqa: BLE001 - a best guess for a file already known to be broken
        return _raw_fits_rows(Path(path))


def _raw_fits_rows(path: Path) -> int:
    """Rows of a FITS file that fails our checks (a junk card in one header): the NAXIS2
    of its DESI ``*_FLUX`` images read leniently, header by header; 1 otherwise."""
    import warnings

    from astropy.io import fits

    try:
        size = path.stat().st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, lazy_load_hdus=True, ignore_missing_end=True) as hdul:
                n = [int(h.header.get("NAXIS2", 1)) for h in hdul
                     if str(h.header.get("EXTNAME", "")).upper().endswith("_FLUX")
                     and int(h.header.get("NAXIS", 0)) == 2]
        packed = path.name.lower().endswith((".gz", ".fz"))
        return max(1, min(max(n, default=1), size * (MAX_EXPANSION if packed else 1) // 16))
    except Exception:  # noqa: BLE001
        return 1


def _not_spectra(src: Source, grid, batch_size):
    raise NotSpectraError(f"{src.path}: a Redrock redshift file (labels only, no spectra); "
                          f"it is read automatically beside its coadd/spectra file")
    yield  # pragma: no cover


_LOADED = False


def _load_builtin() -> None:
    """Register the bundled readers once, in the order they must be tried (SDSS before
    the generic table reader that would also accept its COADD HDU, …)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import arrays, desi, fits_table, lamost, sdss

    for r in (
        Reader("sdss", "fits", sdss.sniff, sdss.read, None, "SDSS/BOSS spec-*.fits",
               sdss.quick),
        Reader("desi", "fits", desi.sniff, desi.read, desi.rows, "DESI coadd/spectra"),
        Reader("lamost", "fits", lamost.sniff_image, lamost.read_image, None,
               "LAMOST DR1–DR9 5-row image (plain, .gz, tile-compressed)"),
        Reader("lamost-dr8", "fits", lamost.sniff_table, lamost.read_table, lamost.table_rows,
               "LAMOST DR8+ COADD binary table"),
        Reader("wcs1d", "fits", lamost.sniff_wcs1d, lamost.read_wcs1d, None,
               "1-D image with a linear wavelength WCS"),
        Reader("redrock", "fits", desi.is_redrock, _not_spectra, None,
               "Redrock redshift file (labels only)"),
        Reader("fits-table", "fits", fits_table.sniff, fits_table.read, fits_table.rows,
               "binary table with a flux column"),
        Reader("store", "hdf5", arrays.sniff_store, arrays.read_store, arrays.store_rows,
               "specsift SpectralStore"),
        Reader("hdf5", "hdf5", arrays.sniff_arrays, arrays.read_arrays, arrays.array_rows,
               "HDF5 arrays flux/ivar/loglam"),
        Reader("npz", "npz", arrays.sniff_arrays, arrays.read_arrays, arrays.array_rows,
               "NPZ arrays flux/ivar/loglam"),
    ):
        register(r)
