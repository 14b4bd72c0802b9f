"""io/rawfits.py reads each header with pread in growing pieces: whatever the first piece's
size (one card, a block, a block and a card, the default), the walk finds the same HDUs —
an END card cut by a piece's end, a header longer than the first piece (a BOSS primary is
39 kB) — and a header whose END card is broken is refused as before (the search runs on into
the next HDU, whose bytes are not a header)."""

from __future__ import annotations

import pytest

from specsift.io.rawfits import BLOCK, RawFits, RawFitsError


def _walk(path):
    with RawFits(path) as raw:
        return [(h.name, h._span, h.dims, h.data_offset, h.data_size, h.is_table,
                 h._layout_key, bytes(h._raw)) for h in raw.hdus]


@pytest.mark.parametrize("first", [80, 120, BLOCK, BLOCK + 80, 7 * BLOCK + 40])
def test_walk_is_the_same_whatever_the_first_read(shared_data, monkeypatch, first):
    files = sorted((shared_data / "sdss").glob("spec-*.fits"))
    want = {f: _walk(f) for f in files}
    assert max(h[1][1] - h[1][0] for f in files for h in want[f]) > 6 * BLOCK  # grows
    monkeypatch.setattr(RawFits, "_FIRST_READ", first)
    monkeypatch.setattr(RawFits, "_LEARN", False)     # every header read from _FIRST_READ
    for f in files:
        assert _walk(f) == want[f], f


def test_an_end_card_cut_by_the_first_read_is_found(shared_data, monkeypatch):
    f = shared_data / "sdss" / "spec-6717-56397-0534.fits"
    want = _walk(f)
    monkeypatch.setattr(RawFits, "_LEARN", False)     # every header read from _FIRST_READ
    for end in sorted({h[1][1] - h[1][0] for h in want}):
        monkeypatch.setattr(RawFits, "_FIRST_READ", end + 40)     # END half in, half out
        assert _walk(f) == want, end


def test_a_header_without_end_is_refused(shared_data, tmp_path, monkeypatch):
    data = (shared_data / "sdss" / "spec-0266-51602-0013.fits").read_bytes()
    at = data.index(b"END" + b" " * 77)
    p = tmp_path / "no-end.fits"
    p.write_bytes(data[:at] + b"XND" + data[at + 3:])
    monkeypatch.setattr(RawFits, "_FIRST_READ", 160)
    monkeypatch.setattr(RawFits, "_LEARN", False)
    with pytest.raises(RawFitsError, match="HDU 1: NAXIS"):     # what the mmap walk said
        RawFits(p)


def test_a_file_shorter_than_its_size_is_refused_not_a_hang(tmp_path, monkeypatch):
    """A file that shrinks after its size was read (still being written or synced), or a
    filesystem reporting a wrong size: the header reads come back short; the walk must raise
    (the reader then falls back to astropy, which names the file), not loop for ever."""
    import os
    p = tmp_path / "short.fits"
    p.write_bytes(b"SIMPLE  =                    T" + b" " * (BLOCK - 30))   # no END card
    real_fstat = os.fstat

    class _Big:
        def __init__(self, st):
            self.st_size = 10 * BLOCK
            self._st = st

    monkeypatch.setattr(os, "fstat", lambda fd: _Big(real_fstat(fd)))
    with pytest.raises(RawFitsError, match="truncated"):
        RawFits(p)
