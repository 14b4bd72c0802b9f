"""An SDSS spec file's first four HDUs walked, its per-exposure HDUs only skimmed
(io/rawfits.py ``RawFits(first=…)``, ``_skim``; io/sdss.py ``_walked``): the spectrum and its
labels are what the full walk gives, and a file cut short anywhere — at a block boundary
among the exposures too — is still refused by the quick path and named as truncated."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from specsift.flags import InputFlag
from specsift.io import iter_read, sdss
from specsift.io.rawfits import BLOCK, RawFits, RawFitsError
from specsift.io.sdss import quick

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

BOSS = "spec-6717-56397-0534.fits"           # PRIMARY, COADD, SPALL, SPZLINE, 16 exposures


def _same_native(a, b) -> None:
    assert np.array_equal(a.loglam, b.loglam) and np.array_equal(a.flux, b.flux)
    assert np.array_equal(a.ivar, b.ivar) and np.array_equal(a.mask, b.mask)
    assert a.bounds == b.bounds and a.lattice == b.lattice
    assert list(a.meta) == list(b.meta)
    for key in a.meta:
        assert np.asarray(a.meta[key]).dtype == np.asarray(b.meta[key]).dtype, key
        assert str(a.meta[key]) == str(b.meta[key]), key


def test_exposures_are_not_walked_and_the_spectrum_is_the_full_walks(shared_data,
                                                                      monkeypatch):
    for f in sorted((shared_data / "sdss").glob("spec-*.fits")):
        with RawFits(f) as full, sdss._walked(f) as short:
            assert [h.name for h in short.hdus] == [h.name for h in full.hdus[:4]]
            assert short.complete == (len(full.hdus) == 4)
            for a, b in zip(short.hdus, full.hdus):
                assert (a.data_offset, a.data_size, a.dims) == (b.data_offset, b.data_size,
                                                                 b.dims)
        got = quick(f)
        with monkeypatch.context() as m:
            m.setattr(sdss, "_walked", lambda p: RawFits(p))       # every HDU walked
            want = quick(f)
        _same_native(got, want)


def test_a_file_cut_among_its_exposures_is_refused_and_named(shared_data, tmp_path):
    data = (shared_data / "sdss" / BOSS).read_bytes()
    with RawFits(shared_data / "sdss" / BOSS) as raw:
        last = raw.hdus[-1]._span[0]                     # the last exposure's header
    cases = {"block": data[:-BLOCK],                     # its data short by a whole block
             "mid-block": data[:-1000],
             "header": data[:last + 1200]}               # inside the last header
    quick(shared_data / "sdss" / BOSS)                   # the spans of END learnt
    for name, content in cases.items():
        p = tmp_path / f"cut-{name}.fits"
        p.write_bytes(content)
        with pytest.raises(RawFitsError):
            RawFits(p, first=4)
        assert quick(p) is None, name
        b = next(iter_read([p]))
        assert b.meta["INPUT_FLAGS"][0] & InputFlag.READ_ERROR, name
        assert f"{p}: truncated FITS file" in b.meta["ERROR"][0], name
    p = tmp_path / "trailing.fits"                       # a block of zeros after the end
    p.write_bytes(data + b"\0" * BLOCK)
    with pytest.raises(RawFitsError):
        RawFits(p, first=4)
    assert quick(p) is None                              # astropy's path decides, as before


def _with_exposure_cards(src, dst, change: dict[int, int]) -> None:
    """``src`` rewritten with HDU k's header ``change[k]`` cards longer (HISTORY cards
    added) or shorter (its optional keywords removed)."""
    with fits.open(src) as hdul:
        for k, n in change.items():
            hdr = hdul[k].header
            for i in range(n):
                hdr.add_history(f"padding card {i}")
            optional = [key for key in hdr if key and not key.startswith(
                ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE",
                 "TFORM", "TUNIT", "TDIM", "TZERO", "TSCAL", "EXTNAME"))]
            for key in optional[:max(-n, 0)]:
                del hdr[key]
        hdul.writeto(dst)


def _full_walk_quick(monkeypatch, path):
    with monkeypatch.context() as m:
        m.setattr(sdss, "_walked", lambda p: RawFits(p))
        return quick(path)


def test_exposure_headers_longer_or_shorter_than_met_before(shared_data, tmp_path,
                                                            monkeypatch):
    """The END of a skimmed header is looked for between the shortest and longest header
    met at that HDU: a longer one (past the span) and a shorter one (the span in its
    data) are found by a search from the first card, and the file's extent is exact."""
    monkeypatch.setattr(RawFits, "_SPANS", {})
    f = shared_data / "sdss" / BOSS
    longer, shorter = tmp_path / "longer.fits", tmp_path / "shorter.fits"
    _with_exposure_cards(f, longer, {5: 80, 9: 40})
    _with_exposure_cards(f, shorter, {5: -60, 9: -100})
    with RawFits(f) as a, RawFits(longer) as b, RawFits(shorter) as c:
        ends = [len(x.hdus[5]._raw) for x in (c, a, b)]
    assert ends[0] < ends[1] < ends[2]
    for p in (f, longer, shorter, f, longer):
        with RawFits(p, first=4) as raw:
            assert not raw.complete
        _same_native(quick(p), _full_walk_quick(monkeypatch, p))
    assert RawFits._SPANS[5] == (ends[0], ends[2])        # both lengths met at HDU 5
    for p in (longer, shorter):
        cut = tmp_path / f"{p.stem}-cut.fits"
        cut.write_bytes(p.read_bytes()[:-BLOCK])
        assert quick(cut) is None


def test_layout_outside_the_data_model_is_walked_whole(shared_data, tmp_path):
    """HDUs 1 and 2 not COADD and SPECOBJ/SPALL: every HDU is walked, as before, and the
    labels come from wherever SPECOBJ is."""
    f = shared_data / "sdss" / "spec-0332-52367-0639.fits"
    p = tmp_path / "moved.fits"
    with fits.open(f) as hdul:
        hdus = [hdul[0], hdul[1], *hdul[3:], hdul[2]]    # SPECOBJ last
        fits.HDUList([h.copy() for h in hdus]).writeto(p)
    with sdss._walked(p) as raw:
        assert raw.complete and raw.hdus[-1].name == "SPECOBJ"
    got, want = quick(p), quick(f)
    _same_native(got, want)


def test_a_broken_exposure_header_no_longer_costs_the_spectrum(shared_data, tmp_path):
    """A junk TFORM in a per-exposure table (which nothing reads) used to send the file to
    astropy's path, which refuses the whole file; the spectrum is now read (SPZLINE,
    walked, still refuses it: tests/test_io_quick.py)."""
    f = shared_data / "sdss" / BOSS
    raw = bytearray(f.read_bytes())
    with RawFits(f) as walk:
        at = raw.index(b"TFORM2  = ", walk.hdus[6]._span[0])
    raw[at + 10:at + 80] = b"'E' junk".ljust(70)
    p = tmp_path / "junk-exposure.fits"
    p.write_bytes(bytes(raw))
    with pytest.raises(RawFitsError):
        RawFits(p)
    _same_native(quick(p), quick(f))


def test_shapes_remembered_but_rows_check_naxis2_as_the_standard_form(shared_data):
    """:func:`header_shape` remembers a header's mandatory cards but NAXIS2, whose card it
    then checks on its own: on every variant of that card it answers (or refuses) as the
    regex over all the cards (:func:`_shape`) does, with the memos warm."""
    from specsift.io import fitscards
    with RawFits(shared_data / "sdss" / BOSS) as raw:
        h = raw.hdus[1]                                   # COADD
        head = raw._read(h._span[0], BLOCK)
        end = len(h._raw)
    assert head[320:330] == b"NAXIS2  = "
    fitscards.header_shape(head, end, 1)                  # both memos warm
    variants = [b"NAXIS2  = %20d" % v for v in (0, 1, 17, 4597, 10**9)]
    variants += [b"NAXIS2  = %20d / rows" % 12, b"NAXIS2  = %20d/rows" % 12,
                 b"NAXIS2  = %20d   x" % 12, b"NAXIS2  = %20d" % -3,
                 b"NAXIS2  = " + b"12".rjust(19) + b"x", b"NAXIS2  = " + b"1-2".rjust(20),
                 b"NAXIS2 = " + b"12".rjust(21), b"NAXIS2  = %20d / \x01" % 12,
                 b"NAXIS3  = %20d" % 12]
    for card in variants:
        buf = head[:320] + card.ljust(80) + head[400:]
        try:
            want = fitscards._shape(buf, end, 1, 2)
        except (RawFitsError, ValueError) as exc:
            with pytest.raises(type(exc)):
                fitscards.header_shape(buf, end, 1)
            continue
        assert fitscards.header_shape(buf, end, 1) == want, card
        assert want[2] == 32 * want[1][1]


def test_span_end_search_takes_only_an_end_padded_as_a_header_is(tmp_path):
    """The skim's END search in a learned span (``RawFits._end_in_span``) takes a card for END
    only where the rest of its block is blank: a header shorter than the span ends before it,
    and a card-aligned ``END`` in its data is not taken for its end (-1: the search from the
    header's first card decides); a real END in the span is found."""
    from specsift.io.fitscards import END_CARD
    card = lambda s: s.encode().ljust(80)                       # noqa: E731
    head = card("XTENSION= 'IMAGE   '") + END_CARD              # a 2-card header
    head += b" " * (BLOCK - len(head))
    data = b"x" * 80 * 10 + END_CARD + b"y" * (BLOCK - 80 * 11)  # a false END at card 10
    short = tmp_path / "short.bin"
    short.write_bytes(head + data)
    r = RawFits.__new__(RawFits)
    import os
    r._fd = os.open(short, os.O_RDONLY)
    try:
        # a span learned from longer headers (8 to 12 blocks' cards from the header's start)
        # lies in this header's data: the false END there is refused
        assert r._end_in_span(0, (BLOCK + 80 * 8, BLOCK + 80 * 12)) == -1
        # the real END inside the span, blank to its block's end: found
        assert r._end_in_span(0, (0, 160)) == 80
    finally:
        os.close(r._fd)
