"""What the cheaper reading of SDSS spec files must not change: the exact-grid pieces
(grid.step_products, grid.lattice_offset) give arange's and grid_offset's answers; the header
facts of io/fitscards (names, layout keys, header shapes) are the ones card-by-card lookups
give, and their memos never hide a damaged header; layout caches looked up by a short tag
tell apart keys that share it; the plain-number record of RowDecoder gives astropy's values
and types; a spectrum prepared at decoding (io/assemble.prepared) assembles as the raw one,
flags and warnings included."""

from __future__ import annotations

import importlib
import random
import warnings

import numpy as np
import pytest
from astropy.io import fits
from test_fits4_rawfits import _walk

from specsift import grid
from specsift.grid import LogGrid, grid_offset, lattice_offset, step_products
from specsift.io import fitscards, rawfits, sdss
from specsift.io.assemble import Native, assemble, prepared
from specsift.io.rawfits import BLOCK, RawFits, RawFitsError, RawHDU, layout
from specsift.spectra import DEFAULT_GRID, sanitise

#: the module (``specsift.io.assemble`` is the function of that name on the package)
ASSEMBLE = importlib.import_module("specsift.io.assemble")


def _spec_files(shared_data):
    return sorted((shared_data / "sdss").glob("spec-*.fits"))


def test_step_products_are_arange_products():
    rng = random.Random(1)
    for _ in range(500):
        step = rng.choice([1e-4, DEFAULT_GRID.step, 2.5e-5, 0.000123])
        k, n = rng.randint(-6000, 60000), rng.randint(1, 7000)
        got = step_products(step, k, n)
        assert got.tobytes() == (step * np.arange(k, k + n, dtype=np.float64)).tobytes()
        assert not got.flags.writeable
    wide = step_products(1e-4, 0, (1 << 20) + 1)      # too wide to cache: read-only still
    assert not wide.flags.writeable and wide[-1] == 1e-4 * (1 << 20)
    for i in range(3 * grid._MAX_STEPS):              # many steps: the cache stays small
        assert step_products(1e-4 + i * 1e-9, 5, 3).size == 3
    assert len(grid._PRODUCTS) <= grid._MAX_STEPS


def test_lattice_offset_is_grid_offset_of_the_snapped_grid():
    grids = [DEFAULT_GRID, LogGrid(start=3.55635, step=1e-4, size=4000),
             LogGrid(start=3.5, step=1e-4, size=7000), LogGrid(start=3.6, step=2e-4, size=900)]
    rng = random.Random(2)
    answers = set()
    for _ in range(600):
        g, k, n = rng.choice(grids), rng.randint(34000, 37000), rng.randint(2, 6000)
        want = grid_offset(sdss._exact_grid(k, n, 1e-4), g)
        assert lattice_offset(k, 1e-4, n, g) == want, (k, n, g)
        answers.add(want is None)
    assert answers == {True, False}                    # both kinds of answer were tested
    wide = LogGrid(start=3.4, step=1e-4, size=30000)    # longer than first worked out: extended
    for n in (100, 9000, 20000, 25000):
        assert lattice_offset(34123, 1e-4, n, wide) == grid_offset(
            sdss._exact_grid(34123, n, 1e-4), wide), n
    assert lattice_offset(35797, 1e-4, 1, DEFAULT_GRID) is None


def _reference_names_and_keys(raw: RawFits):
    """Names and layout keys card by card, as the standard's lookups give them."""
    names, keys = [], []
    for h in raw.hdus:
        cards = [h._raw[i:i + 80] for i in range(0, len(h._raw), 80)]
        ext = next((c for c in cards if c[:10] == b"EXTNAME = "), None)
        value = None if ext is None else rawfits.parse_value(ext[10:])
        names.append(str(value).strip().upper() if value else ("PRIMARY" if not h.index else ""))
        keys.append(b"".join(c for c in cards if c[:4] in fitscards._LAYOUT_HEADS)
                    if h.is_table else b"")
    return names, keys


def test_names_and_layout_keys_are_the_card_lookups(shared_data, tmp_path):
    files = _spec_files(shared_data)
    data = files[0].read_bytes()
    at = data.index(b"EXTNAME = 'COADD")
    odd = tmp_path / "odd-names.fits"            # a non-value EXTNAME card, then two value ones
    odd.write_bytes(data[:at] + b"EXTNAME   'NOPE'".ljust(80) + data[at + 80:])
    raw = bytearray(odd.read_bytes())
    spz = raw.index(b"EXTNAME = 'SPZLINE")
    raw[spz + 80:spz + 160] = raw[spz:spz + 80]               # over the COMMENT after it
    raw[spz:spz + 80] = b"EXTNAME = 'FIRST   '".ljust(80)      # the first EXTNAME counts
    odd2 = tmp_path / "two-names.fits"
    odd2.write_bytes(bytes(raw))
    for f in [*files, odd, odd2]:
        with RawFits(f) as walk:                 # every one walks (a raise fails the test)
            names, keys = _reference_names_and_keys(walk)
            assert [h.name for h in walk.hdus] == names, f
            assert [h.layout_key for h in walk.hdus] == keys, f
    with RawFits(odd2) as walk:
        assert walk.hdus[3].name == "FIRST" and walk.hdus[1].name == ""


def test_remembered_header_shapes_do_not_hide_damaged_headers(shared_data, tmp_path):
    f = _spec_files(shared_data)[0]
    with RawFits(f) as walk:                       # fills the memo with these headers
        primary = walk.hdus[0]._raw
    data = f.read_bytes()
    second = data.index(b"XTENSION= 'BINTABLE'")
    cases = {
        # an extension whose first cards are the primary's (SIMPLE = T …): not an extension
        "simple-ext": data[:second] + primary[:BLOCK].ljust(BLOCK)[:80 * 5]
        + data[second + 80 * 5:],
        "pcount": data.replace(b"PCOUNT  =                    0", b"PCOUNT  =                    8", 1),
    }
    for name, content in cases.items():
        p = tmp_path / f"{name}.fits"
        p.write_bytes(content)
        with pytest.raises(RawFitsError):
            RawFits(p)
        assert sdss.quick(p) is None


def _header(cards) -> bytes:
    return b"".join(c.ljust(80) for c in cards)


def test_layout_caches_tell_apart_keys_with_one_tag(monkeypatch):
    """Two tables whose column cards differ only in the middle: same short tag, each its
    own layout (and plan)."""
    monkeypatch.setattr(rawfits, "_LAYOUTS", {})
    monkeypatch.setattr(sdss, "_PLANS", {})

    def hdu(form5: bytes):
        cards = [b"TFIELDS =                   12"]
        for i in range(1, 13):
            form = form5 if i == 5 else b"'E'"
            cards += [(b"TTYPE%d" % i).ljust(8) + b"= 'C%02d'" % i,
                      (b"TFORM%d" % i).ljust(8) + b"= " + form]
        h = RawHDU(_header(cards), (0, 0), 1, [0, 1], 0, 0, True)
        h._layout_key = fitscards.names_and_layouts([h._raw])[1][0]
        h.dims = [rawfits.table_fields(h.header)[1], 1]
        return h

    a, b = hdu(b"'E'"), hdu(b"'D'")
    assert a.layout_tag == b.layout_tag and a.layout_key != b.layout_key
    for _ in range(2):
        assert layout(a)[1] == 48 and layout(b)[1] == 52
        assert sdss._planned("k", a, lambda h: "a") == "a"
        assert sdss._planned("k", b, lambda h: "b") == "b"


def test_label_record_gives_astropys_values_and_types(shared_data):
    for f in _spec_files(shared_data):
        with RawFits(f) as raw:
            hdu = raw.find("SPECOBJ") or raw.find("SPALL")
            dec = sdss._label_decoder(hdu)
            assert dec.plain is not None                 # the record path is taken
            got = dec(raw.first_bytes(hdu, dec.width))
        with fits.open(f) as h:
            row = h[hdu.name].data[0]
            for name, v in got.items():
                want = row[name]
                if isinstance(want, str):
                    assert v == want.rstrip(), (f, name)
                    continue
                assert np.asarray(v).dtype == np.asarray(want).dtype.newbyteorder("="), name
                assert np.array_equal(np.asarray(v), np.asarray(want), equal_nan=True), name


def _raw_native(nat: Native, flux, ivar, mask) -> Native:
    return Native(nat.path, nat.loglam, flux, ivar, mask, dict(nat.meta), lattice=nat.lattice)


@pytest.mark.parametrize("damage", ["none", "nan-flux", "inf-ivar", "neg-ivar", "all-masked",
                                    "zero-ivar", "no-mask"])
def test_prepared_spectrum_assembles_as_the_raw_one(shared_data, damage, monkeypatch):
    """The raw arrays sanitised (the reference: assemble's own ``prepared`` made a no-op,
    so every spectrum takes :func:`~specsift.spectra.sanitise`) and the ones prepared at
    decoding give one batch, flags and warnings."""
    for f in _spec_files(shared_data)[::3]:
        with RawFits(f) as raw:
            cols = sdss._raw_coadd(raw, raw.find("COADD"))
            flux = np.asarray(cols["flux"], np.float32).copy()
            ivar = np.asarray(cols["ivar"], np.float32).copy()
            mask = (np.asarray(cols["and_mask"]).astype(np.int64) & sdss.BAD_AND_MASK) != 0
        if damage == "nan-flux":
            flux[100:104] = np.nan
        elif damage == "inf-ivar":
            ivar[7] = np.inf
        elif damage == "neg-ivar":
            ivar[200:300] = -1
        elif damage == "all-masked":
            mask[:] = True
        elif damage == "zero-ivar":
            ivar[:] = 0
        nat = sdss.quick(f)
        m = None if damage == "no-mask" else mask
        batches, caught = [], []
        for reference in (True, False):
            with monkeypatch.context() as mp, warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                if reference:
                    mp.setattr(ASSEMBLE, "prepared", lambda native: native)
                    native = _raw_native(nat, flux, ivar, m)
                else:
                    native = prepared(_raw_native(nat, flux, ivar, m))
                batches.append(assemble([native], DEFAULT_GRID))
            caught.append([str(x.message) for x in w])
        a, b = batches
        assert caught[0] == caught[1]
        for k in ("flux", "ivar", "mask"):
            assert getattr(a, k).tobytes() == getattr(b, k).tobytes(), (f, damage, k)
        assert list(a.meta["INPUT_FLAGS"]) == list(b.meta["INPUT_FLAGS"])
        clean = damage not in ("nan-flux", "inf-ivar", "neg-ivar")
        assert (prepared(_raw_native(nat, flux, ivar, m)).bounds is not None) == clean


def test_prepared_arrays_are_what_sanitise_makes():
    rng = np.random.default_rng(3)
    flux = rng.normal(size=50).astype(np.float32)
    ivar = rng.uniform(0, 2, 50).astype(np.float32)
    ivar[[3, 9]] = 0
    ivar[11] = -0.0
    mask = np.zeros(50, bool)
    mask[20:25] = True
    nat = prepared(Native(None, np.arange(50.0), flux, ivar.copy(), mask))
    flags = np.zeros(1, np.int32)
    f2, iv2, m2, _ = sanitise(flux[None], ivar[None], mask[None], flags)
    assert nat.ivar.tobytes() == iv2[0].tobytes() and np.array_equal(nat.mask, m2[0])
    assert nat.bounds == (False, 0, 49)


def _walk_or_error(path):
    try:
        return _walk(path)
    except (RawFitsError, ValueError) as exc:
        return type(exc), str(exc)


def _counting_walks(monkeypatch) -> list[bool]:
    """The ``speculate`` flag of every :meth:`RawFits._walk` from now on."""
    calls: list[bool] = []
    walk = RawFits._walk

    def counted(self, speculate=False):
        calls.append(speculate)
        return walk(self, speculate)

    monkeypatch.setattr(RawFits, "_walk", counted)
    return calls


def test_end_search_from_the_shortest_header_gives_the_full_searchs_walk(
        shared_data, tmp_path, monkeypatch):
    """The END search starts where the shortest header met at that HDU ended; a file with a
    shorter header (the search finds no END there), or with an END card inside a header
    (before where the search starts), falls back to the full search and is walked as it
    walks it; the real files are walked by the shortcut alone, as a full search does."""
    files = _spec_files(shared_data)
    f = files[0]
    with fits.open(f) as h:
        h = fits.HDUList([x.copy() for x in h])
        for key in list(h[0].header)[-40:]:          # a primary header of fewer blocks
            if key not in ("", "COMMENT", "HISTORY", "END"):
                h[0].header.remove(key, ignore_missing=True)
        short = tmp_path / "short-primary.fits"
        h.writeto(short)
    data = bytearray(f.read_bytes())
    with RawFits(f) as raw:
        spec = raw.find("SPECOBJ")._span[0]
    data[spec + 80 * 20:spec + 80 * 21] = b"END".ljust(80)       # an END card inside a header
    inner = tmp_path / "inner-end.fits"
    inner.write_bytes(bytes(data))
    want = {}
    for p in (short, inner, *files):                 # full searches only: nothing remembered
        monkeypatch.setattr(RawFits, "_END_FROM", {})
        want[p] = _walk_or_error(p)
    assert not isinstance(want[short][0], type) and len(want[short][0][-1]) < 80 * 120
    monkeypatch.setattr(RawFits, "_END_FROM", {})
    for p in files:
        _walk(p)                                                 # learn where headers end
    assert RawFits._END_FROM[0] > len(want[short][0][-1])        # short's primary: shorter
    assert RawFits._END_FROM[2] > 80 * 21                        # inner's END: before it
    calls = _counting_walks(monkeypatch)
    for p in (short, inner, *files):
        calls.clear()
        assert _walk_or_error(p) == want[p], p
        assert calls == ([True, False] if p in (short, inner) else [True]), p
    assert sdss.quick(short) is not None


def test_a_header_longer_than_the_first_read_is_walked_once(shared_data, tmp_path,
                                                            monkeypatch):
    """A primary header past the longest first read (hints stop at 4 × _FIRST_READ):
    the shortcut reads as far as the remembered header, so each file is walked once."""
    with fits.open(_spec_files(shared_data)[0]) as h:
        h = fits.HDUList([x.copy() for x in h])
        for _ in range(1000):
            h[0].header.add_comment("x" * 60)
        big = tmp_path / "big-primary.fits"
        h.writeto(big)
    monkeypatch.setattr(RawFits, "_END_FROM", {})
    monkeypatch.setattr(RawFits, "_HINTS", {})
    calls = _counting_walks(monkeypatch)
    want = _walk(big)
    assert calls == [False] and len(want[0][-1]) > 4 * RawFits._FIRST_READ
    for _ in range(3):
        calls.clear()
        assert _walk(big) == want
        assert calls == [True]


def test_prepared_leaves_a_spectrum_without_pixels_as_it_was():
    """No pixels: nothing to prepare (the min/max of nothing would raise); assemble's long
    way then decides."""
    empty = np.zeros(0, np.float32)
    for mask in (None, np.zeros(0, bool)):
        nat = Native(None, np.zeros(0), empty, empty.copy(), mask)
        assert prepared(nat) is nat and nat.bounds is None and nat.mask is mask
