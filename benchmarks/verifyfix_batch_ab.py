"""The verify stage of this checkout against another revision at several batch sizes, on the
same proposals (the simulated store of predict_speed.py, proposed in batches of 1024, then
verified in slices of B), alternating revision slice by slice.

    .venv/bin/python benchmarks/verifyfix_batch_ab.py --base main [--sizes 16 256 1024] [--reps 5]

Why: ``verify_ab.py`` times batches of 1024 only; the stage's per-batch fixed cost (calls
whose cost does not grow with the rows) shows in how the µs a spectrum grow as B shrinks.
Prints per B the median µs a spectrum of both and the median ratio of the paired passes,
and whether the two revisions' catalogs are the same in every column at every B.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402
from predict_ab import Version, _same_answers, extract, paired_verify, proposals  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare with")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 1024])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        extract(a.base, Path(tmp))
        sys.path.insert(0, tmp)
        v = {"base": Version("specsift_base"), "this": Version("specsift")}
        items = proposals(v, sim_store(a.n))
        for size in a.sizes:
            # a batch no larger than the size is timed as read (no slice: a sliced batch's
            # arrays are copies, laid out otherwise than the reader's)
            sl = [(b, t, c) if size >= len(b) else
                  (b[o:o + size], t[o:o + size], c.take(slice(o, o + size)))
                  for b, t, c in items for o in range(0, len(b), size)]
            print(f"B={size}:", _same_answers([v["base"].fns["verify_catalog"](*s) for s in sl],
                                              [v["this"].fns["verify_catalog"](*s) for s in sl],
                                              "verified catalogs"))
            us = paired_verify(v, sl, a.reps)
            r = np.array(us["this"]) / np.array(us["base"])
            print(f"B={size}: µs a spectrum median {np.median(us['base']):.0f} (base) / "
                  f"{np.median(us['this']):.0f} (this); ratio median {np.median(r):.3f}, "
                  f"quartiles {np.percentile(r, 25):.3f}–{np.percentile(r, 75):.3f}; "
                  f"ms a batch (this) {1e-3 * np.median(us['this']) * size:.1f}")


if __name__ == "__main__":
    main()
