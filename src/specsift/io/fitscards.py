"""FITS header cards read straight from bytes (FITS 4.0 §4): value fields, a header's value
cards, and the per-header facts :mod:`.rawfits` walks a file for.

Why a module of its own: the walk over an SDSS/BOSS spec file meets 4–22 headers (a BOSS file
has one per exposure), and what it needs of each — the mandatory cards that size the data,
EXTNAME, the column cards that key a table's layout — is what one file costs.  Each is found
here from a view of the cards as integers (their first 8 or 4 bytes: one numpy comparison
over all of a file's headers joined, :func:`names_and_layouts`, not a string search or a
regex over each), and the mandatory cards, which the standard fixes byte by byte, are parsed
once per distinct byte string (:func:`header_shape`): a survey's tables of one kind share
them except NAXIS2, so that memo holds one entry per table kind and row count.
"""

from __future__ import annotations

import bisect
import math
import re

import numpy as np

__all__ = ["END_CARD", "RawFitsError", "RawHeader", "find_end", "parse_value", "header_shape",
           "names_and_layouts"]

_INT = re.compile(rb"[+-]?\d+\Z")
_FLOAT = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?\Z")
#: the first 8 bytes of a card as one native integer, for the keywords looked for by number
_EXTNAME8 = np.frombuffer(b"EXTNAME ", "=u8")[0]
_END8 = np.frombuffer(b"END     ", "=u8")[0]
#: the END card (FITS 4.0 §4.4.1.2): END and 77 blanks
END_CARD = b"END" + b" " * 77


def find_end(buf: bytes, start: int = 0) -> int:
    """Where the first END card of ``buf`` at a card boundary lies (searched from ``start``;
    positions count from ``buf``'s first byte, a card's), or -1: an ``END`` and 77 blanks
    inside a card's value is not the header's end."""
    end = buf.find(END_CARD, start)
    while end >= 0 and end % 80:
        end = buf.find(END_CARD, end + 1)
    return end
#: first 4 bytes of the cards that describe a table's columns (see :func:`names_and_layouts`)
_LAYOUT_HEADS = (b"TFIE", b"TTYP", b"TFOR", b"TZER", b"TSCA", b"TDIM")
_LUT: list = []


def _layout_lut() -> tuple[int, np.ndarray]:
    """(smallest head as a big-endian integer, table of which integers from there on are
    heads, False past them): a card is a column card when ``table[head − smallest]`` —
    one look-up a card, where a sorted search and a compare cost ~3× as much.  1.4 MB,
    built on first use."""
    if not _LUT:
        values = [int(np.frombuffer(h, ">u4")[0]) for h in _LAYOUT_HEADS]
        table = np.zeros(max(values) - min(values) + 2, bool)    # the last: False, for clip
        table[[v - min(values) for v in values]] = True
        _LUT.append((min(values), table))
    return _LUT[0]


class RawFitsError(ValueError):
    """Not a file for the fast path (read it with astropy instead)."""


def parse_value(field: bytes):
    """The value of a card's value field (bytes 11–80) as astropy gives it: str (trailing
    blanks dropped, '' → '), bool, int or float; anything else raises RawFitsError."""
    s = field.lstrip()
    if s[:1] == b"'":
        parts, i = [], 1
        while True:
            j = s.find(b"'", i)
            if j < 0:
                raise RawFitsError("unterminated string value")
            if s[j + 1:j + 2] == b"'":
                parts.append(s[i:j + 1])
                i = j + 2
                continue
            parts.append(s[i:j])
            rest = s[j + 1:]
            break
        try:
            value = b"".join(parts).decode("ascii").rstrip()
        except UnicodeDecodeError:
            raise RawFitsError("non-ASCII string value") from None
    else:
        k = s.find(b"/")
        tok, rest = (s, b"") if k < 0 else (s[:k], s[k:])
        tok = tok.strip()
        if tok == b"T" or tok == b"F":
            value = tok == b"T"
        elif _INT.match(tok):
            value = int(tok)
        elif _FLOAT.match(tok):
            value = float(tok.replace(b"D", b"E").replace(b"d", b"e"))
        else:
            raise RawFitsError(f"value {tok[:20]!r} is not a plain number or logical")
    rest = rest.strip()
    if rest and rest[:1] != b"/":
        raise RawFitsError("text after a value that is not a comment")
    return value


class RawHeader:
    """One header's cards (bytes up to END), with ``get``/``in``/``[]`` like astropy's Header
    for value cards; the first card of a repeated keyword wins, as in astropy.  A lookup is
    one comparison over the cards' keywords; :meth:`index` makes many lookups cheap."""

    __slots__ = ("raw", "ncards", "_index")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.ncards = len(raw) // 80
        self._index: dict[bytes, int] | None = None

    def index(self) -> dict[bytes, int]:
        """{keyword: first value card} (built once)."""
        if self._index is None:
            cards = np.frombuffer(self.raw, dtype=[("k", "S8"), ("e", "S2"), ("v", "V70")])
            keys, eq = cards["k"].tolist(), (cards["e"] == b"= ").tolist()
            index: dict[bytes, int] = {}
            for i in range(len(keys) - 1, -1, -1):     # backwards: the first card wins
                if eq[i]:
                    index[keys[i].rstrip()] = i
            self._index = index
        return self._index

    def _find(self, key: bytes) -> int | None:
        if self._index is not None:
            return self._index.get(key)
        if len(key) > 8:
            return None
        # the cards' first 8 bytes as integers: one compare a card, where comparing
        # 10-byte strings cost ~3× as much (an SDSS primary header has 120–140 cards)
        keys = np.frombuffer(self.raw, "=u8", 10 * self.ncards)[::10]
        raw = self.raw
        for i in np.flatnonzero(keys == np.frombuffer(key.ljust(8), "=u8")[0]).tolist():
            if raw[80 * i + 8:80 * i + 10] == b"= ":
                return i
        return None

    def __contains__(self, key: str) -> bool:
        return self._find(key.encode("ascii")) is not None

    def get(self, key: str, default=None):
        i = self._find(key.encode("ascii"))
        return default if i is None else parse_value(self.raw[80 * i + 10:80 * i + 80])

    def __getitem__(self, key: str):
        i = self._find(key.encode("ascii"))
        if i is None:
            raise KeyError(key)
        return parse_value(self.raw[80 * i + 10:80 * i + 80])


def _rest(width: int) -> bytes:
    """Regex for the ``width`` bytes after a value: blanks, or blanks, '/' and a comment."""
    return b"(?: {%d}|" % width + b"|".join(b" {%d}/[ -~]{%d}" % (k, width - 1 - k)
                                            for k in range(width)) + b")"


_INT_CARD = b"= ([ +\\d-]{20})" + _rest(50)
_MANDATORY: dict[tuple[bool, int], re.Pattern] = {}


def _mandatory(ext: bool, naxis: int) -> re.Pattern:
    """The header's first cards, which the standard fixes (§4.4.1): SIMPLE or XTENSION,
    BITPIX, NAXIS, NAXISn (and PCOUNT, GCOUNT for an extension), each in fixed format."""
    pat = _MANDATORY.get((ext, naxis))
    if pat is None:
        keys = [b"BITPIX", b"NAXIS"] + [b"NAXIS%d" % (i + 1) for i in range(naxis)]
        keys += [b"PCOUNT", b"GCOUNT"] if ext else []
        first = (b"XTENSION= '(BINTABLE|IMAGE   |TABLE   )'" + _rest(60) if ext
                 else b"SIMPLE  = {20}T()" + _rest(50))
        pat = re.compile(first + b"".join(k.ljust(8) + _INT_CARD for k in keys), re.DOTALL)
        _MANDATORY[(ext, naxis)] = pat
    return pat


#: (extension?, mandatory cards' bytes) → :func:`header_shape`'s answer; bounded
_SHAPES: dict[tuple[bool, bytes], tuple[bool, tuple[int, ...], int]] = {}
#: (extension?, mandatory cards' bytes but NAXIS2's) → (binary table?, NAXISn with NAXIS2
#: 0, data bytes per unit of NAXIS2); bounded
_SHAPES_BUT_ROWS: dict[tuple[bool, bytes], tuple[bool, tuple[int, ...], int]] = {}
_BITPIX = (8, 16, 32, 64, -32, -64)
_DIGITS = b" +-0123456789"
_PRINTABLE = bytes(range(0x20, 0x7F))


def _naxis2(card: bytes) -> int | None:
    """NAXIS2 of a card (80 bytes) in the form :func:`_mandatory` requires — ``NAXIS2  = ``,
    20 bytes of blanks, signs and digits, then blanks or blanks, '/' and printable text —
    or None.  Byte tests, not its regex (~5 µs a card, for the 50 alternatives of
    :func:`_rest`)."""
    if card[:10] != b"NAXIS2  = " or card[10:30].translate(None, _DIGITS):
        return None
    rest = card[30:80].lstrip(b" ")
    if rest and (rest[:1] != b"/" or rest.translate(None, _PRINTABLE)):
        return None
    return int(card[10:30])


def header_shape(buf: bytes, end: int, k: int) -> tuple[bool, tuple[int, ...], int]:
    """(binary table?, NAXISn, data bytes before padding) of HDU ``k``'s header ``buf`` (END
    card at ``end``) from its mandatory cards (§4.4.1, :func:`_mandatory`); RawFitsError
    where they are not in the standard's form or describe what the fast path leaves to
    astropy (a heap, groups, an odd BITPIX).  The answer depends on the first ``3 + NAXIS
    (+ 2)`` cards alone, so it is remembered per those bytes (the regex costs ~4 µs a
    header), and per those bytes but the NAXIS2 card, which is then checked on its own
    (:func:`_naxis2`): a table's rows differ from file to file — a spectrum's pixels, an
    exposure's — and the rest of its mandatory cards do not.  Each card of
    :func:`_mandatory`'s pattern is 80 bytes of its own, so cards checked apart are
    checked as the whole pattern checks them."""
    naxis = buf[170:190].strip()
    if not naxis.isdigit() or int(naxis) > 999:
        raise RawFitsError(f"HDU {k}: NAXIS {naxis[:20]!r}")
    n = int(naxis)
    ext = k > 0
    size = 80 * (3 + n + (2 if ext else 0))
    if size > end:
        return _shape(buf, end, k, n)
    key = (ext, buf[:size])
    hit = _SHAPES.get(key)
    if hit is not None:
        return hit
    rows = _naxis2(buf[320:400]) if n >= 2 else None
    if rows is not None and rows >= 0:
        key2 = (ext, buf[:320] + buf[400:size])
        part = _SHAPES_BUT_ROWS.get(key2)
        if part is None:
            hit = _shape(buf, end, k, n)
            dims = hit[1]
            part = (hit[0], dims[:1] + (0,) + dims[2:],
                    hit[2] // rows if rows else _bytes_without_rows(buf, dims))
            _remember(_SHAPES_BUT_ROWS, key2, part)
        else:
            dims = part[1]
            hit = part[0], dims[:1] + (rows,) + dims[2:], part[2] * rows
    else:
        hit = _shape(buf, end, k, n)
    _remember(_SHAPES, key, hit)
    return hit


def _remember(memo: dict, key, value, limit: int = 1024) -> None:
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value


def _bytes_without_rows(buf: bytes, dims: tuple[int, ...]) -> int:
    """Data bytes per unit of NAXIS2 of a header whose NAXIS2 is 0 (:func:`_shape` checked
    its cards): |BITPIX|/8 times the other NAXISn."""
    return abs(int(buf[90:110])) // 8 * math.prod(dims[:1] + dims[2:])


def _shape(buf: bytes, end: int, k: int, naxis: int) -> tuple[bool, tuple[int, ...], int]:
    m = _mandatory(k > 0, naxis).match(buf, 0, end)
    if m is None:
        raise RawFitsError(f"HDU {k}: mandatory keywords not in the standard's form")
    xtension, bitpix, _, *dims = m.groups()
    bitpix, dims = int(bitpix), list(map(int, dims))
    if k:
        if dims[-2:] != [0, 1]:             # a heap or groups: astropy's job
            raise RawFitsError(f"HDU {k}: PCOUNT / GCOUNT {dims[-2:]}")
        del dims[-2:]
    elif dims and dims[0] == 0:
        raise RawFitsError("random groups")
    if bitpix not in _BITPIX or (dims and min(dims) < 0):
        raise RawFitsError(f"HDU {k}: BITPIX {bitpix} / NAXISn {dims}")
    return (xtension == b"BINTABLE", tuple(dims),
            abs(bitpix) // 8 * math.prod(dims) if dims else 0)


#: EXTNAME value fields → the HDU names they give (exposure HDUs repeat across a plate's files)
_NAMES_SEEN: dict[bytes, str] = {}


def names_and_layouts(raws: list[bytes]) -> tuple[list[str], list[bytes], bool]:
    """Of each header (its cards up to END): the EXTNAME as the walk names HDUs (the first
    ``EXTNAME = `` card, its value stripped and upper-cased; '' when none or empty) and the
    exact bytes of its column cards (TFIELDS, TTYPEn, TFORMn, TZEROn, TSCALn, TDIMn, known by
    their first 4 bytes) in order, which a table's layout depends on alone
    (:func:`specsift.io.rawfits.layout` caches by them); and whether any header holds an END
    card (``END`` and 77 blanks), which a header read up to its first END cannot.

    One pass over all headers joined, the cards' first bytes compared as integers: a BOSS
    file has 22 headers, and numpy's cost per call, paid once per header, was the larger
    part (header by header ~15 µs each, joined ~4)."""
    joined = b"".join(raws)
    starts = [0]
    for r in raws:
        starts.append(starts[-1] + len(r) // 80)
    keys8 = np.frombuffer(joined, "=u8")[::10]
    ends = any(joined[80 * i:80 * i + 80] == END_CARD
               for i in np.flatnonzero(keys8 == _END8).tolist())
    names: list = [None] * len(raws)                  # None: no EXTNAME card yet
    for i in np.flatnonzero(keys8 == _EXTNAME8).tolist():
        k = bisect.bisect_right(starts, i) - 1
        if names[k] is not None or joined[80 * i + 8:80 * i + 10] != b"= ":
            continue                                  # the first EXTNAME card counts
        field = joined[80 * i + 10:80 * i + 80]
        name = _NAMES_SEEN.get(field)
        if name is None:
            value = parse_value(field)
            name = str(value).strip().upper() if value else ""
            if len(_NAMES_SEEN) >= 4096:
                _NAMES_SEEN.clear()
            _NAMES_SEEN[field] = name
        names[k] = name
    names = [n or "" for n in names]
    base, table = _layout_lut()
    heads = np.frombuffer(joined, ">u4")[::20] - np.uint32(base)   # below base: wraps, past it
    cards = np.flatnonzero(table.take(heads, mode="clip"))
    picked = np.frombuffer(joined, "V80")[cards].tobytes()
    bounds = cards.searchsorted(starts).tolist()
    return names, [picked[80 * bounds[k]:80 * bounds[k + 1]] for k in range(len(raws))], ends
