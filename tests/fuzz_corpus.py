"""A seeded corpus of broken and odd inputs, made at test time from the real files in
``../shared/data`` (nothing of it is committed): byte flips, truncations, header-card
edits, swapped and dropped HDUs, odd HDF5/NPZ files, compression and odd paths.

Why generated, not stored: the cases must follow the readers' real inputs (a new seed file
gives new cases for free) and the repository must not hold copies of survey data.
``make_corpus(root, shared, seed)`` always gives the same cases for the same seed.
Each :class:`Case` says whether it must read exactly as its seed file does (``same``:
gzip, fpack, odd but valid paths) or may fail (then as flagged rows naming the file).
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: (name, path under ../shared/data): one real file per layout the readers know
SEEDS = {
    "sdss": "sdss/spec-0266-51602-0013.fits",
    "boss": "sdss/spec-6717-56397-0534.fits",
    "table": "sdss/sdss-qso-10.fits",
    "desi1": "desi/fastspecfit/coadd-4-80613-thru20210324.fits",
    "desi5": "desi/coadd-5-169-thru20210419.fits",
    "lamost-dr2": "lamost/spec-55916-B5591606_sp01-001.fits",
    "lamost-dr1": "lamost-real/dr1-b6212/spectra/spec-55862-B6212_sp06-003.fits",
    "lamost-dr7": "lamost-real/dr7-sbc/spectra/101008.fits",
    "lamost-dr8": "lamost-real/dr8-ccf/spectra/spec-55859-F5902_sp03-232.fits.gz",
    "lamost-dr10": "lamost-real/dr10-afg/spectra/spec-59522-EG224840N075042B03_sp03-013.fits.gz",
    "wcs1d": "lamost/oe270005.fits",
}
#: seeds whose every byte is worth flipping often (small files, one spectrum)
_SMALL = ("sdss", "desi1", "lamost-dr2", "lamost-dr1", "lamost-dr7", "wcs1d")

_CARD_EDITS = [
    ("NAXIS1", "0"), ("NAXIS1", "-1"), ("NAXIS1", "99999999"), ("NAXIS1", "'abc'"),
    ("NAXIS2", "2147483647"), ("NAXIS2", "0"), ("NAXIS", "3"), ("NAXIS", "0"),
    ("BITPIX", "7"), ("BITPIX", "'x'"), ("BITPIX", "64"),
    ("TFORM1", "'1J'"), ("TFORM2", "'6A'"), ("TFORM2", "'QQ'"), ("TFORM2", "'1E' junk"),
    ("TFORM3", "'1K'"), ("TTYPE2", "'FLUX'"), ("TTYPE1", "''"),
    ("EXTEN0", "''"), ("EXTEN0", "'garbage words'"), ("CRVAL1", "'nan'"), ("CRVAL1", "-5"),
    ("CD1_1", "0"), ("CD1_1", "-0.0001"), ("COEFF1", "0"), ("XTENSION", "'FOOBAR'"),
    ("EXTNAME", "'COADD'"), ("EXTNAME", "'B_FLUX'"), ("PCOUNT", "1000000000000"),
    ("GCOUNT", "2"), ("CLASS", "12345"), ("Z", "'abc'"), ("PLATEID", "1099511627776"),
    ("OBSID", "'x'"), ("VACUUM", "F"), ("TDIM2", "'(7,9)'"), ("TZERO1", "'q'"),
    ("SIMPLE", "F"), ("ZNAXIS1", "2147483647"),
]


@dataclass
class Case:
    path: Path
    family: str
    seed: str
    same: bool = False          # must read exactly as the seed file


def _seed_paths(shared: Path) -> dict[str, Path]:
    return {k: shared / v for k, v in SEEDS.items() if (shared / v).is_file()}


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _header_spans(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) byte spans of every FITS header (up to and including its END card)."""
    spans, pos = [], 0
    while pos + 2880 <= len(raw):
        end = None
        for off in range(pos, len(raw), 80):
            if raw[off:off + 8] == b"END     ":
                end = off + 80
                break
        if end is None:
            break
        spans.append((pos, end))
        hdr = raw[pos:end].decode("ascii", "replace")
        dims = [int(v) for k, v in re.findall(r"(NAXIS\d)\s*=\s*(\d+)", hdr)]
        bitpix = abs(int((re.search(r"BITPIX\s*=\s*(-?\d+)", hdr) or [0, 8])[1]))
        pcount = int((re.search(r"PCOUNT\s*=\s*(\d+)", hdr) or [0, 0])[1])
        size = (int(np.prod(dims)) if dims else 0) * bitpix // 8 + pcount
        pos = -(-end // 2880) * 2880 + -(-size // 2880) * 2880
    return spans


def _edit_card(raw: bytes, key: str, value: str, nth: int = 0) -> bytes | None:
    """``raw`` with the ``nth`` card named ``key`` given ``value`` (None if absent)."""
    hits = []
    for start, end in _header_spans(raw):
        for off in range(start, end, 80):
            if raw[off:off + 8].rstrip() == key.encode() and raw[off + 8:off + 10] == b"= ":
                hits.append(off)
    if not hits:
        return None
    off = hits[min(nth, len(hits) - 1)]
    card = f"{key:<8}= {value:>20}".encode("ascii")[:80].ljust(80)
    return raw[:off] + card + raw[off + 80:]


def _hdu_variants(seed: Path, out: Path, name: str) -> list[Case]:
    """Dropped, swapped, duplicated and renamed HDUs (astropy writes them)."""
    import warnings

    from astropy.io import fits

    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(seed) as hdul:
            hdus = [h.copy() for h in hdul]
        n = len(hdus)
        variants = []
        for k in range(1, min(n, 5)):
            variants.append((f"drop{k}", hdus[:k] + hdus[k + 1:]))
        if n > 2:
            variants.append(("swap12", [hdus[0], hdus[2], hdus[1]] + hdus[3:]))
            variants.append(("dup1", hdus[:2] + [hdus[1].copy()] + hdus[2:]))
            h = hdus[1].copy()
            h.name = hdus[2].name or "X"
            variants.append(("rename1", [hdus[0], h] + hdus[2:]))
        variants.append(("primary-only", [fits.PrimaryHDU(header=hdus[0].header)]))
        if n == 1 and hdus[0].data is not None:
            variants.append(("as-ext", [fits.PrimaryHDU(), fits.ImageHDU(hdus[0].data,
                                                                          hdus[0].header)]))
        for tag, lst in variants:
            p = out / f"{name}-hdu-{tag}.fits"
            try:
                lst = [fits.PrimaryHDU(data=lst[0].data, header=lst[0].header)
                       if i == 0 and not isinstance(h, fits.PrimaryHDU) and
                       isinstance(h, fits.ImageHDU) else h for i, h in enumerate(lst)]
                if not isinstance(lst[0], fits.PrimaryHDU):
                    lst = [fits.PrimaryHDU()] + lst
                fits.HDUList(lst).writeto(p, output_verify="silentfix", overwrite=True)
                cases.append(Case(p, "hdu", name))
            except Exception:  # noqa: BLE001 - astropy refuses some orders; skip those
                p.unlink(missing_ok=True)
    return cases


def _arrays_cases(out: Path, rng) -> list[Case]:
    """Odd HDF5 and NPZ files: groups, wrong shapes/types, huge declared sizes, NaN ids."""
    import h5py

    loglam = 3.5563 + 1e-4 * np.arange(500)
    flux = rng.normal(1, 0.1, (4, 500)).astype("f4")
    cases = []

    def h5(name, fill):
        p = out / f"h5-{name}.h5"
        with h5py.File(p, "w") as f:
            fill(f)
        cases.append(Case(p, "hdf5", "generated"))

    h5("flux-group", lambda f: (f.create_group("flux"), f.create_dataset("loglam", data=loglam)))
    h5("flux-3d", lambda f: (f.create_dataset("flux", data=flux[None]),
                             f.create_dataset("loglam", data=loglam)))
    h5("huge-pixels", lambda f: (f.create_dataset("flux", shape=(1, 2**31), dtype="f4",
                                                  chunks=(1, 2**16)),
                                 f.create_dataset("loglam", shape=(2**31,), dtype="f8",
                                                  chunks=(2**16,))))
    h5("huge-rows", lambda f: (f.create_dataset("flux", shape=(20_000_000, 500), dtype="f4",
                                                chunks=(64, 500)),
                               f.create_dataset("loglam", data=loglam)))
    h5("nan-targetid", lambda f: (f.create_dataset("flux", data=flux),
                                  f.create_dataset("loglam", data=loglam),
                                  f.create_dataset("targetid", data=[1.0, np.nan, 3.0, 4.0])))
    h5("string-flux", lambda f: f.create_dataset("flux", data=np.array([b"a", b"b"])))
    h5("no-grid", lambda f: f.create_dataset("flux", data=flux))
    h5("decreasing", lambda f: (f.create_dataset("flux", data=flux),
                                f.create_dataset("loglam", data=loglam[::-1])))
    h5("mask-shape", lambda f: (f.create_dataset("flux", data=flux),
                                f.create_dataset("loglam", data=loglam),
                                f.create_dataset("mask", data=np.zeros((3, 500)))))
    h5("empty", lambda f: None)
    h5("zero-rows", lambda f: (f.create_dataset("flux", shape=(0, 500), dtype="f4"),
                               f.create_dataset("loglam", data=loglam)))
    h5("fake-store", lambda f: (f.attrs.__setitem__("format", "specsift-store-1"),
                                f.create_dataset("flux", data=flux)))
    h5("store-meta-short", lambda f: (f.attrs.__setitem__("format", "specsift-store-1"),
                                      f.create_dataset("flux", data=flux),
                                      f.create_dataset("ivar", data=flux),
                                      f.create_dataset("mask", data=flux > 9),
                                      f.create_dataset("loglam", data=loglam),
                                      f.create_group("meta").create_dataset(
                                          "TARGETID", data=[1, 2])))

    def npz(name, compressed=False, **arrays):
        p = out / f"npz-{name}.npz"
        (np.savez_compressed if compressed else np.savez)(p, **arrays)
        cases.append(Case(p, "npz", "generated"))

    npz("object", flux=np.array([object()], dtype=object), loglam=loglam)
    npz("no-flux", ivar=flux, loglam=loglam)
    npz("flux-1d-bad-grid", flux=flux[0], loglam=loglam[:10])
    npz("nan-targetid", flux=flux, loglam=loglam, targetid=np.array([1.0, np.nan, 3, 4]))
    npz("zeros-big", compressed=True, flux=np.zeros((1500, 2000), "f4"), loglam=3 + 1e-4 *
        np.arange(2000))
    npz("complex", flux=flux.astype(complex), loglam=loglam)
    p = out / "npz-single.npz"
    np.save(p.with_suffix(".npy"), flux)
    p.with_suffix(".npy").rename(p)
    cases.append(Case(p, "npz", "generated"))
    p = out / "npz-zip-not-npz.npz"
    import zipfile
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    cases.append(Case(p, "npz", "generated"))
    return cases


def _compression_cases(seeds: dict[str, Path], out: Path, rng) -> list[Case]:
    import warnings

    from astropy.io import fits

    cases = []
    for name in ("sdss", "lamost-dr7", "desi1", "table"):
        if name not in seeds:
            continue
        raw = _raw(seeds[name])
        gz = gzip.compress(raw, mtime=0)
        keep = out / f"gz-{name}"             # the seed's own name: a DESI coadd's Redrock
        keep.mkdir()                          # file is found beside it by name
        p = keep / (seeds[name].name.removesuffix(".gz") + ".gz")
        p.write_bytes(gz)
        cases.append(Case(p, "compression", name, same=True))
        rr = seeds[name].with_name(seeds[name].name.replace("coadd-", "redrock-"))
        if rr != seeds[name] and rr.is_file():
            (keep / (rr.name + ".gz")).write_bytes(gzip.compress(rr.read_bytes(), mtime=0))
        p = out / f"{name}-gz-truncated.fits.gz"
        p.write_bytes(gz[: len(gz) // 2])
        cases.append(Case(p, "compression", name))
        p = out / f"{name}-gz-flipped.fits.gz"
        b = bytearray(gz)
        for i in rng.integers(20, len(b), 5):
            b[i] ^= 0xFF
        p.write_bytes(bytes(b))
        cases.append(Case(p, "compression", name))
        p = out / f"{name}-double-gz.fits.gz"
        p.write_bytes(gzip.compress(gz, mtime=0))
        cases.append(Case(p, "compression", name))
        p = out / f"{name}-bz2.fits"
        p.write_bytes(bz2.compress(raw))
        cases.append(Case(p, "compression", name))
    for name in ("lamost-dr7", "lamost-dr1", "lamost-dr2"):
        if name not in seeds:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(seeds[name]) as hdul:
                comp = fits.CompImageHDU(np.asarray(hdul[0].data), hdul[0].header,
                                         compression_type="GZIP_2", quantize_level=0.0)
                p = out / f"{name}-tile.fits.fz"
                fits.HDUList([fits.PrimaryHDU(), comp]).writeto(p, overwrite=True)
        cases.append(Case(p, "compression", name, same=True))
        b = bytearray(p.read_bytes())
        for i in rng.integers(2880 * 2, len(b), 20):
            b[i] ^= 0xFF
        q = out / f"{name}-tile-flipped.fits.fz"
        q.write_bytes(bytes(b))
        cases.append(Case(q, "compression", name))
        r = _edit_card(bytes(b), "ZNAXIS1", "2147483647")
        if r is not None:
            q = out / f"{name}-tile-huge.fits.fz"
            q.write_bytes(r)
            cases.append(Case(q, "compression", name))
    return cases


def _path_cases(seeds: dict[str, Path], out: Path) -> list[Case]:
    src = seeds.get("sdss") or next(iter(seeds.values()))
    name = "sdss" if "sdss" in seeds else next(iter(seeds))
    cases = []
    odd = out / "odd paths"
    odd.mkdir()
    for fname in ("spëc-ü-データ.fits", "with space.fits", "-dash.fits", "x" * 200 + ".fits",
                  "UPPER.FITS", "tab\tname.fits"):
        p = odd / fname
        shutil.copyfile(src, p)
        cases.append(Case(p, "path", name, same=True))
    link = odd / "link.fits"
    link.symlink_to(src)
    cases.append(Case(link, "path", name, same=True))
    dangling = odd / "dangling.fits"
    dangling.symlink_to(odd / "nowhere.fits")
    cases.append(Case(dangling, "path", name))
    loop = odd / "loop.fits"
    loop.symlink_to(loop)
    cases.append(Case(loop, "path", name))
    d = odd / "dir.fits"
    d.mkdir()
    cases.append(Case(d, "path", name))
    empty = odd / "empty.fits"
    empty.write_bytes(b"")
    cases.append(Case(empty, "path", name))
    return cases


def make_corpus(root: Path, shared: Path, seed: int = 0) -> list[Case]:
    """All cases under ``root`` (created), the same ones for the same ``seed``."""
    rng = np.random.default_rng(seed)
    seeds = _seed_paths(shared)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    for name, path in seeds.items():
        raw = _raw(path)
        spans = _header_spans(raw)
        hdr_end = spans[-1][1] if spans else 2880
        n_flips = 10 if name in _SMALL else 3
        for k in range(n_flips):                        # byte flips: headers, then data
            b = bytearray(raw)
            where = (rng.integers(0, hdr_end, 4) if k % 2 == 0
                     else rng.integers(0, len(b), 50))
            for i in where:
                b[i] = int(rng.integers(0, 256))
            p = root / f"{name}-flip{k}.fits"
            p.write_bytes(bytes(b))
            cases.append(Case(p, "flip", name))
        cuts = [1, 79, 2880, hdr_end - 1, hdr_end + 7, len(raw) // 2, len(raw) - 1]
        for k, cut in enumerate(cuts if name in _SMALL else cuts[2::2]):
            p = root / f"{name}-trunc{k}.fits"
            p.write_bytes(raw[:max(1, min(cut, len(raw) - 1))])
            cases.append(Case(p, "truncate", name))
        for k, (key, value) in enumerate(_CARD_EDITS):
            if name not in _SMALL and k % 3:          # big seeds: a third of the edits
                continue
            edited = _edit_card(raw, key, value, nth=k % 2)
            if edited is None or edited == raw:
                continue
            p = root / f"{name}-card{k}-{key}.fits"
            p.write_bytes(edited)
            cases.append(Case(p, "card", name))
        if name in ("sdss", "desi1", "desi5", "lamost-dr10", "table"):
            cases.extend(_hdu_variants(path, root, name))
    cases.extend(_arrays_cases(root, rng))
    cases.extend(_compression_cases(seeds, root, rng))
    cases.extend(_path_cases(seeds, root))
    return cases


def seed_file(shared: Path, name: str) -> Path:
    return shared / SEEDS[name]


def cleanup(root: Path) -> None:
    if root.exists():
        for p in root.rglob("*"):
            if p.is_symlink():
                p.unlink()
        shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
