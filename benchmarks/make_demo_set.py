"""Regenerate the bundled demo spectra in ``src/specsift/data/demo/`` from ../shared/data/sdss.

What is kept (see src/specsift/data/PROVENANCE.md):
* the 8 SDSS/BOSS ``spec-*.fits`` files with only PRIMARY, COADD (loglam, flux, ivar,
  and_mask, or_mask, wdisp, sky, model) and SPECOBJ/SPALL — per-exposure and SPZLINE HDUs
  are dropped, which takes the BOSS files from ~2 MB to ~0.3 MB;
* ``sdss-labelled-50.fits`` trimmed to the columns a reader needs (flux, ivar and the
  scalar labels CLASS, SUBCLASS, Z, Z_ERR, PLATE, MJD, FIBERID, SN_MEDIAN_ALL) plus its
  ``input_grid`` HDU; GaSNet-III's own outputs (model, χ² curves, reconstructions) go.

Run:  .venv/bin/python benchmarks/make_demo_set.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402
from _common import SDSS as SRC  # noqa: E402

DEST = ROOT / "src" / "specsift" / "data" / "demo"
TABLE_COLS = ("CLASS", "SUBCLASS", "PLATE", "MJD", "FIBERID", "Z", "Z_ERR", "SN_MEDIAN_ALL",
              "flux", "ivar")


def trim_spec(src: Path, dest: Path) -> None:
    with fits.open(src) as h:
        keep = [h[0].copy(), h["COADD"].copy()]
        for name in ("SPECOBJ", "SPALL"):
            if name in h:
                keep.append(h[name].copy())
        fits.HDUList(keep).writeto(dest, overwrite=True)


def trim_table(src: Path, dest: Path) -> None:
    with fits.open(src) as h:
        data = h[1].data
        cols = [c for c in h[1].columns if c.name in TABLE_COLS]
        table = fits.BinTableHDU.from_columns(fits.ColDefs(
            [fits.Column(name=c.name, format=c.format, array=data[c.name]) for c in cols]))
        grid = fits.BinTableHDU.from_columns([fits.Column(
            name="input_grid", format=h[2].columns["input_grid"].format,
            array=h[2].data["input_grid"])])
        fits.HDUList([fits.PrimaryHDU(), table, grid]).writeto(dest, overwrite=True)


def main() -> int:
    if not SRC.is_dir():
        print(f"{SRC}: not found (needs ../shared/data beside the repository)", file=sys.stderr)
        return 2
    DEST.mkdir(parents=True, exist_ok=True)
    for f in sorted(SRC.glob("spec-*.fits")):
        trim_spec(f, DEST / f.name)
    trim_table(SRC / "sdss-labelled-50.fits", DEST / "sdss-labelled-50-trimmed.fits")
    total = sum(p.stat().st_size for p in DEST.glob("*.fits"))
    for p in sorted(DEST.glob("*.fits")):
        print(f"{p.stat().st_size / 1e3:8.1f} kB  {p.name}")
    print(f"{total / 1e6:8.2f} MB  total in {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
