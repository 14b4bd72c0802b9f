"""Write N distinct-looking SDSS spec files into a folder: copies of the 8 real ones in
../shared/data/sdss, each with its own pixels and identity.

    python benchmarks/make_distinct_sdss.py DIR [--n 400] [--seed 0]

Why: ``read_speed.py --many`` reads copies, on which every per-grid, per-length and
per-header memo of the reader hits after the first 8 files; a survey's files differ.  Here
file k is real file k mod 8 with COADD (and each per-exposure table: every table with a
loglam column) cut by 0–29 rows at each end — so each file has its own first pixel and
length, and its headers their own NAXIS2 — and PLATEID/PLATE, MJD, FIBERID (primary
header and the SPECOBJ/SPALL row) drawn anew.  Written with astropy (which rewrites the
changed NAXIS2); nothing is written into the repository, only into DIR (made if absent;
files already there are overwritten).  Use: ``read_speed.py --many 400 --folder DIR
[--against REV]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sdss_files  # noqa: E402

#: identity columns of SPECOBJ (SDSS) / SPALL (BOSS) and primary-header keys set anew
_ID_COLUMNS = {"PLATEID": "plate", "PLATE": "plate", "MJD": "mjd", "FIBERID": "fiber"}


def distinct(src: Path, dst: Path, rng: np.random.Generator) -> None:
    """``src`` → ``dst`` with its own cuts and identity (see the module docstring)."""
    ids = {"plate": int(rng.integers(266, 12000)), "mjd": int(rng.integers(51000, 59500)),
           "fiber": int(rng.integers(1, 1001))}
    with fits.open(src) as hdul:
        out = [fits.PrimaryHDU(header=hdul[0].header.copy())]
        for key in ("PLATEID", "MJD", "FIBERID"):
            if key in out[0].header:
                out[0].header[key] = ids[_ID_COLUMNS[key]]
        for hdu in hdul[1:]:
            data = hdu.data
            names = [c.upper() for c in hdu.columns.names] if hasattr(hdu, "columns") else []
            if "LOGLAM" in names and len(data) > 60:
                a, b = rng.integers(0, 30, 2)
                data = data[a:len(data) - b]
            elif hdu.name in ("SPECOBJ", "SPALL"):
                data = data.copy()
                for name in hdu.columns.names:
                    if name.upper() in _ID_COLUMNS:
                        data[name][:] = ids[_ID_COLUMNS[name.upper()]]
            out.append(fits.BinTableHDU(data=data, header=hdu.header.copy()))
        fits.HDUList(out).writeto(dst, overwrite=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = sdss_files("spec-*.fits")
    if not src:
        sys.exit("no SDSS spec files in ../shared/data/sdss")
    args.folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for k in range(args.n):
        f = src[k % len(src)]
        distinct(f, args.folder / f"{k:05d}-{f.name}", rng)
    print(f"{args.n} files written to {args.folder}")


if __name__ == "__main__":
    main()
