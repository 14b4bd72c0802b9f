"""The verify stage of this checkout against another revision, on the store and on spec files.

    .venv/bin/python benchmarks/verify_ab.py --base 690f0c2 [--n 2000] [--fits 400] [--reps 3]

``benchmarks/predict_ab.py --verify-only`` times the two revisions' verify stage in one
process, alternating batch by batch on the same proposals, but only on the simulated store.
Why this script: the spec-file path (one spectrum a file, ``--fits`` copies of the 8 real SDSS
spec files in ``../shared/data/sdss``, one 400-spectrum batch) meets other parts of the stage
(bright quasars: the template-error refit, the STAR check) than the simulated store, and its
target is the one furthest off (docs/speed.md).  Prints, per input, whether the two
revisions' verified catalogs are the same bit for bit (and by how much they differ where not)
and the median µs a spectrum of each over ``--reps`` paired passes with the median ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402
from predict_ab import Version, extract, verify_pairs  # noqa: E402
from predict_speed import fits_copies  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--n", type=int, default=2000, help="simulated spectra (0: no store)")
    ap.add_argument("--fits", type=int, default=400, help="SDSS spec files (0: none)")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        extract(a.base, tmp)
        sys.path.insert(0, str(tmp))
        v = {"base": Version("specsift_base"), "this": Version("specsift")}
        if a.n:
            print(f"-- simulated store, {a.n} spectra")
            verify_pairs(v, sim_store(a.n), a.reps, a.base)
        if a.fits:
            print(f"-- {a.fits} SDSS spec files (copies of the 8 real ones; not simulated)")
            verify_pairs(v, fits_copies(tmp / "fits", a.fits, "spec-*.fits"), a.reps, a.base)


if __name__ == "__main__":
    main()
