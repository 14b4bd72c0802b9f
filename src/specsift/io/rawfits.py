"""The structure of a plain FITS file read straight from its bytes: a fast path, not a reader.

Why: an SDSS ``spec-*.fits`` file holds one spectrum, and a survey holds millions of them, so
the cost of opening one is the cost of the survey.  Astropy's ``fits.open`` parses every
card of every HDU, the per-exposure ones included, and builds a Column object per column;
this walk reads each header, finds its END and takes its facts from :mod:`.fitscards`.
Timed per file (wall, best of 5, load ≈ 1.5) with ::

    python -m timeit -s "from specsift.io.rawfits import RawFits; \
        f='../shared/data/sdss/spec-7339-56683-0739.fits'; RawFits(f).close()" \
        "RawFits(f).close()"
    python -m timeit -s "from astropy.io import fits; f='…the same…'" \
        "h = fits.open(f, lazy_load_hdus=False); [x.columns for x in h[1:]]; h.close()"

on spec-0266-51602-0013 (4 HDUs) and spec-7339-56683-0739 (22): astropy 29 / 110 ms, this
walk 0.074 / 0.42 ms (≈ 19 µs an HDU).  What is read is what the FITS standard (4.0, §4.4 and
§7.3) fixes: 2880-byte blocks of 80-byte cards, the mandatory keywords in their order and
fixed format, the binary-table row layout from TFORMn.

It only says yes to what it fully understands — an uncompressed file, ``SIMPLE = T``, no heap
(PCOUNT 0), GCOUNT 1, every HDU whole with its padding and nothing after the last one — and
raises :class:`RawFitsError` for everything else.  Callers then read the file through astropy
exactly as before, so every error message about a broken file, and every odd but valid file,
stays astropy's.  Every binary table walked is checked as :func:`~._common.check_table` checks it
on astropy's path (TFORMn parse and add up to NAXIS1), so the two paths accept the same
files; with ``first`` (:class:`RawFits`) the HDUs after the first few are only skimmed for
the file's extent.  Used by :func:`specsift.io.sdss.quick`.
"""

from __future__ import annotations

import os

import numpy as np

from .bintable import table_fields
from .fitscards import (
    RawFitsError,
    RawHeader,
    find_end,
    header_shape,
    names_and_layouts,
    parse_value,
)

__all__ = ["RawFitsError", "RawHeader", "RawHDU", "RawFits", "parse_value", "layout"]

BLOCK = 2880
#: most cards a header may have here (astropy has no limit; real SDSS headers: ≤ 500)
MAX_CARDS = 20000


class RawHDU:
    """An HDU of a :class:`RawFits`: EXTNAME (upper case, '' when absent; PRIMARY for the
    first), NAXISn, whether it is a binary table, where its data lie (``data_offset``,
    ``data_size`` bytes before padding), where its header lies in the file (``_span``) and
    its :attr:`header` (the header's bytes, read by the walk)."""

    __slots__ = ("_raw", "_span", "_header", "_layout_key", "_tag", "index", "dims", "data_offset",
                 "data_size", "name", "is_table")

    def __init__(self, raw: bytes, span: tuple[int, int], index: int, dims: list[int],
                 data_offset: int, data_size: int, is_table: bool):
        self._raw, self._span, self._header, self._layout_key = raw, span, None, b""
        self._tag = None
        self.index, self.dims, self.is_table = index, dims, is_table
        self.data_offset, self.data_size = data_offset, data_size
        self.name = "PRIMARY" if index == 0 else ""

    @property
    def header(self) -> RawHeader:
        if self._header is None:
            self._header = RawHeader(self._raw)
        return self._header

    @property
    def layout_key(self) -> bytes:
        """The exact bytes of the table's column cards, found by the walk: tables with equal
        keys decode alike (what :func:`layout` and the readers' per-layout plans cache on)."""
        return self._layout_key

    @property
    def layout_tag(self) -> tuple:
        """A short stand-in for :attr:`layout_key` to look caches up by — its length and
        first and last 160 bytes — confirmed against the whole key on a hit (see
        :func:`layout`).  Why: SPECOBJ's key is 20 kB and SPALL's 38 kB, and hashing a
        new one each file cost ~8–12 µs; comparing it with the cached one costs < 1."""
        if self._tag is None:
            key = self._layout_key
            self._tag = (len(key), key[:160], key[-160:])
        return self._tag


#: :attr:`RawHDU.layout_tag` → (the whole layout key, :func:`layout`'s answer)
_LAYOUTS: dict[tuple, tuple] = {}


def layout(hdu: RawHDU) -> tuple[dict, int, dict]:
    """(fields, row width, {TZEROn/TSCALn/TDIMn: value}) of a binary table HDU
    (:func:`~._common.table_fields`); RawFitsError unless its TFORMn parse and add up to
    NAXIS1 — the check :func:`~._common.check_table` makes on astropy's path.

    Cached by the exact bytes of the table's column cards (TFIELDS, TTYPEn, TFORMn, TZEROn,
    TSCALn, TDIMn, in order, found by the walk): what this returns depends on those cards
    alone, and a survey's files share a few table layouts."""
    if not hdu.is_table or len(hdu.dims) != 2:
        raise RawFitsError(f"HDU {hdu.index}: not a two-axis binary table")
    hit = tagged(_LAYOUTS, hdu.layout_tag, hdu._layout_key, _layout, hdu)
    if hit[1] != hdu.dims[0]:
        raise RawFitsError(f"HDU {hdu.index}: TFORMn add up to {hit[1]}, NAXIS1 {hdu.dims[0]}")
    return hit


def _layout(hdu: RawHDU) -> tuple[dict, int, dict]:
    header = hdu.header
    header.index()
    fields, width = table_fields(header)
    extras = {}
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        for k in ("TZERO", "TSCAL", "TDIM"):
            if f"{k}{i}" in header:
                extras[f"{k}{i}"] = header[f"{k}{i}"]
    return fields, width, extras


def tagged(cache: dict, tag, key: bytes, make, arg, limit: int = 256):
    """``make(arg)``, remembered in ``cache`` under ``tag`` (a short stand-in for ``key``:
    :attr:`RawHDU.layout_tag`) and given again only when the entry's whole ``key`` is
    ``key``; the cache is emptied at ``limit`` entries (a survey has a few layouts).  The
    entry is kept in a local: another reader thread may clear ``cache`` meanwhile.  (``arg``,
    not a closure: one is made per call, ~0.15 µs, and a BOSS file has 21 tables.)"""
    entry = cache.get(tag)
    if entry is not None and entry[0] == key:
        return entry[1]
    value = make(arg)
    if len(cache) >= limit:
        cache.clear()
    cache[tag] = (key, value)
    return value


class RawFits:
    """The HDUs of a plain FITS file (use as a context manager).

    Read with ``os.pread``: each header as the walk meets it, and of the data only what a
    caller asks for (:meth:`rows`, :meth:`first_bytes`).  A memory map did the same with
    page faults on first touch and an unmap per file: the headers and COADD of the 400
    copies ``benchmarks/read_speed.py --many 400`` reads cost 140–156 µs a file mapped,
    99–119 read (each file is seen once, so nothing is saved by mapping it).

    ``first``: walk only the first ``first`` HDUs (:attr:`complete` False when more follow)
    and skim the rest (:meth:`_skim`: their mandatory cards and END, for the file's extent
    alone).  Why: an SDSS spec file's spectrum and labels lie in its first HDUs (PRIMARY,
    COADD, SPECOBJ/SPALL, SPZLINE), and a BOSS file has one HDU per exposure after them
    (16–18 more, ~14 kB of cards each) that no reader uses; walking them was about half of
    what such a file cost.  A file cut short anywhere is still refused (RawFitsError);
    what goes unchecked is the other cards of the skimmed headers (names, table layouts,
    a second END).

    Raises :class:`RawFitsError` when the file is not one the fast path takes (see the module
    docstring); OSError when it cannot be opened at all."""

    #: bytes of a header read at first (SDSS/BOSS headers: 2–15 kB, a BOSS primary 39 kB); ×4 until END
    _FIRST_READ = 6 * BLOCK
    #: HDU number → bytes of the largest header met there (:meth:`_learn`): the first read
    #: of that HDU's header in the next file (a survey's files have their HDUs in one order,
    #: with headers of a few sizes).  Reading about the header's blocks instead of
    #: ``_FIRST_READ`` (or its ×4 growth: SPECOBJ's 8 blocks were read as 6 then 24, COADD's
    #: one as 6) copies and searches a fraction of the bytes; a hint too small costs one more
    #: read, and the walk is the same whatever the sizes read (tests/test_fits4_rawfits.py).
    #: ``_LEARN = False``: always ``_FIRST_READ``.
    _HINTS: dict[int, int] = {}
    _LEARN = True
    #: HDU number → the shortest header (bytes before END) met there in a file whose walk
    #: was checked: where the next file's END search starts (:meth:`_open`)
    _END_FROM: dict[int, int] = {}

    def __init__(self, path, first: int | None = None):
        self.path = path
        self._first = first
        #: whether every HDU of the file was walked (False: ``first`` stopped the walk)
        self.complete = True
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size < BLOCK:
                raise RawFitsError("shorter than one FITS block")
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Walk, name and check the HDUs.  The END search of each header starts at the
        shortest header met at that HDU before (a BOSS file's 18 exposure headers are ~14 kB
        of cards each, and searching them from their first card was a third of the walk);
        the walk is then taken only when no header read so holds an END card before the one
        found (:func:`.fitscards.names_and_layouts` looks at every card) — else, or on any
        error, the file is walked again from every header's first card, whose answer
        (HDUs or error) is the one given.  So the result is always that of the full search."""
        if self._LEARN and self._END_FROM:
            try:
                self.hdus = self._walk(speculate=True)
                if self._names_and_layouts():
                    self._remember_ends()
                    return
            except Exception:  # noqa: BLE001 - the full walk below gives the answer
                pass
        self.hdus = self._walk(speculate=False)
        self._names_and_layouts()
        if self._LEARN:
            self._remember_ends()

    def _remember_ends(self) -> None:
        for h in self.hdus[:64]:
            e = len(h._raw)
            if e < self._END_FROM.get(h.index, e + 1):
                self._END_FROM[h.index] = e

    def __enter__(self) -> "RawFits":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def _header_at(self, pos: int, k: int, speculate: bool = False) -> tuple[bytes, int]:
        """(bytes from ``pos`` on, read so far; position of the END card in them): END is
        the first card of exactly ``END_CARD`` at a card boundary within MAX_CARDS cards.
        ``speculate``: the search starts at :attr:`_END_FROM` (and ends with the first read:
        RawFitsError), for :meth:`_open` to check."""
        limit = min(self.size, pos + 80 * MAX_CARDS) - pos
        first = self._HINTS.get(k, self._FIRST_READ) if self._LEARN else self._FIRST_READ
        start = self._END_FROM.get(k, 0) if speculate else 0
        if speculate:   # at least the blocks of the remembered header and its END card: read
            # capped below them (hints stop at 4 × _FIRST_READ), the search would fail and
            # the walk run twice; below the cap the hint already covers them
            first = max(first, -(-(start + 80) // BLOCK) * BLOCK)
        n = min(first, limit)
        while True:
            buf = self._read(pos, n)
            if len(buf) < n:           # shorter than its size said (shrunk, still written)
                raise RawFitsError(f"HDU {k}: file truncated: {len(buf)} of {n} header bytes")
            end = find_end(buf, start)
            if speculate and end < 0:
                raise RawFitsError(f"HDU {k}: no END card after the shortest header met")
            if end >= 0:
                if self._LEARN and k < 64:
                    self._learn(k, end)
                return buf, end
            if len(buf) >= limit:
                raise RawFitsError(f"HDU {k}: no END card")
            start = max(len(buf) - 79, 0)        # an END may straddle the old read's end
            n = min(4 * n, limit)

    def _learn(self, k: int, end: int) -> None:
        """Keep the largest header met at HDU ``k`` (up to the old ×4 growth of
        ``_FIRST_READ``): files of two kinds mixed (SDSS SPECOBJ 8 blocks, BOSS SPALL 14)
        then read once, not twice."""
        blocks = -(-(end + 80) // BLOCK) * BLOCK
        if blocks > self._HINTS.get(k, 0):
            self._HINTS[k] = min(blocks, 4 * self._FIRST_READ)

    def _walk(self, speculate: bool = False) -> list[RawHDU]:
        """Header after header: END, the mandatory cards, the data size, the next header."""
        hdus, pos = [], 0
        self.complete = True
        while pos < self.size:
            k = len(hdus)
            if k == self._first:
                self.complete = False
                self._skim(pos, k)
                break
            buf, end = self._header_at(pos, k, speculate)
            is_table, dims, size = header_shape(buf, end, k)
            data = -(-(pos + end + 80) // BLOCK) * BLOCK
            span = (pos, pos + end)
            pos = data + -(-size // BLOCK) * BLOCK
            if pos > self.size:
                raise RawFitsError(f"HDU {k}: truncated")
            hdus.append(RawHDU(buf[:end], span, k, list(dims), data, size, is_table))
        return hdus

    def _skim(self, pos: int, k: int) -> None:
        """The HDUs from ``k`` on (header at ``pos``) that ``first`` leaves unwalked: each
        header's mandatory cards (the size of its data, :func:`.fitscards.header_shape`) and
        its END, for one thing only — that the file holds all the data they promise and
        nothing after (a file cut short while copied or downloaded, even at a block
        boundary: RawFitsError, and astropy's path names it truncated).  Nothing else of
        these headers is checked or kept.

        Two short reads a header: its first block and the cards between the shortest and
        the longest header met at that HDU (:attr:`_SPANS`), where END is looked for; where
        it is not there, the header is searched from its first card (:meth:`_header_at`),
        which widens the span.  Why not read each header whole: a BOSS file has 16–18 of
        them, ~14 kB each, and reading and searching them cost ~13 µs each, as much as the
        full walk's."""
        spans = self._SPANS if self._LEARN else {}
        while pos < self.size:
            head = self._read(pos, BLOCK)
            if len(head) < BLOCK:
                raise RawFitsError(f"HDU {k}: file truncated inside its header")
            span = spans.get(k)
            end = -1 if span is None else self._end_in_span(pos, span)
            if end < 0:
                head, end = self._header_at(pos, k)
                if self._LEARN and k < 64:
                    lo, hi = self._SPANS.get(k, (end, end))
                    self._SPANS[k] = (min(lo, end), max(hi, end))
            _, _, size = header_shape(head, end, k)
            pos = -(-(pos + end + 80) // BLOCK) * BLOCK + -(-size // BLOCK) * BLOCK
            if pos > self.size:
                raise RawFitsError(f"HDU {k}: truncated")
            k += 1

    def _end_in_span(self, pos: int, span: tuple[int, int]) -> int:
        """Where the END card of the header at ``pos`` lies between ``span``'s shortest and
        longest header (card-aligned, one read to the end of the longest one's block), or -1.

        A card found there is taken for END only where the rest of its block is blank, as
        FITS pads a header.  Why: a header shorter than any met before at this HDU ends before
        the span, which then lies in its padding (no END there: -1, and the search from the
        header's first card decides) or in its data, where a card-aligned ``END`` would be
        taken for the header's end; the blank padding after it is what data would not have."""
        stop = -(-(span[1] + 80) // BLOCK) * BLOCK
        buf = self._read(pos + span[0], stop - span[0])
        end = find_end(buf)
        if end < 0 or end + 80 > span[1] - span[0] + 80:
            return -1
        pad = (-(span[0] + end + 80)) % BLOCK
        if buf[end + 80:end + 80 + pad].strip(b" "):
            return -1
        return end + span[0]

    #: HDU number → (shortest, longest) header (bytes before END) that :meth:`_skim` met
    #: there by a search from the header's first card: where the next file's END is sought
    _SPANS: dict[int, tuple[int, int]] = {}

    def _names_and_layouts(self) -> bool:
        """Every HDU's EXTNAME and table layout key (:func:`.fitscards.names_and_layouts`),
        then every binary table's layout checked (:func:`layout`); False (nothing checked)
        when a header holds an END card before its end, which only a speculative walk
        (:meth:`_open`) can have taken for one."""
        names, keys, ends = names_and_layouts([h._raw for h in self.hdus])
        if ends:
            return False
        for hdu, name, key in zip(self.hdus, names, keys):
            if name:
                hdu.name = name
            if hdu.is_table:
                hdu._layout_key = key
                layout(hdu)
        return True

    def find(self, name: str) -> RawHDU | None:
        """The first HDU called ``name`` (as ``hdul[name]`` picks it), or None."""
        return next((h for h in self.hdus if h.name == name), None)

    def rows(self, hdu: RawHDU, dtype: np.dtype, count: int) -> np.ndarray:
        """The first ``count`` rows of a table HDU as a (read-only) structured array."""
        n = count * dtype.itemsize
        if n > hdu.data_size:
            raise RawFitsError(f"HDU {hdu.index}: fewer rows than asked for")
        data = self._read(hdu.data_offset, n)
        if len(data) < n:                        # the file shrank since the walk
            raise RawFitsError(f"HDU {hdu.index}: truncated")
        return np.frombuffer(data, dtype, count)

    def first_bytes(self, hdu: RawHDU, n: int) -> bytes:
        """The first ``n`` bytes of an HDU's data (a copy)."""
        if n > hdu.data_size:
            raise RawFitsError(f"HDU {hdu.index}: data shorter than {n} bytes")
        data = self._read(hdu.data_offset, n)
        if len(data) < n:
            raise RawFitsError(f"HDU {hdu.index}: truncated")
        return data
