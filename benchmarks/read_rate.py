"""Share of the real spectra files in ../shared/data that read, and with labels, per folder.

    python benchmarks/read_rate.py

A file counts as read when the reader gives its spectra without a READ_ERROR placeholder,
and as labelled when every row has a CLASS (LAMOST header, SDSS SPECOBJ/SPALL, Redrock file
beside a DESI coadd).  Redrock files are label files, not spectra: listed apart.  Files with
no pipeline labels (Ondřejov spectra, DESI test files without a Redrock file) count as read.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FOLDERS = ("sdss", "desi", "lamost", "lamost-real")


def main() -> None:
    from specsift.flags import InputFlag
    from specsift.io import NotSpectraError, expand_paths
    from specsift.io.registry import read_file

    rows: dict[str, list] = {}
    errors = []
    t0 = time.perf_counter()
    for path in expand_paths([DATA / f for f in FOLDERS]):
        folder = str(path.parent.relative_to(DATA)).removesuffix("/spectra")
        r = rows.setdefault(folder, [0, 0, 0, 0])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                batches = list(read_file(path, None, 4096))
        except NotSpectraError:
            r[3] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - counted and listed
            r[0] += 1
            errors.append(f"{path}: {exc}")
            continue
        r[0] += 1
        if any((np.asarray(b.meta["INPUT_FLAGS"]) & InputFlag.READ_ERROR).any() for b in batches):
            continue
        r[1] += 1
        m = batches[0].meta
        r[2] += "CLASS" in m.colnames and all(str(c) for c in m["CLASS"])
    seconds = time.perf_counter() - t0
    print("| folder | spectra files | read | labelled | redrock files |\n|---|---|---|---|---|")
    for folder, (n, ok, lab, rr) in sorted(rows.items()):
        print(f"| {folder} | {n} | {ok} ({100 * ok / max(n, 1):.0f} %) | {lab} | {rr} |")
    n = sum(r[0] for r in rows.values())
    ok = sum(r[1] for r in rows.values())
    print(f"| **all** | {n} | {ok} ({100 * ok / max(n, 1):.1f} %) | "
          f"{sum(r[2] for r in rows.values())} | {sum(r[3] for r in rows.values())} |")
    print(f"\n{seconds:.0f} s for {n} files")
    for e in errors:
        print("error:", e)


if __name__ == "__main__":
    main()
