"""CPU milliseconds a batch costs to read from an HDF5 store as ``predict`` reads it
(:func:`specsift.io.arrays.store_batch` on the default grid): a one-spectrum store (open,
check, one batch, close: what a ``predict`` on a small store pays) and the 2000-spectrum
store of ``predict_speed.py`` in batches of 1024 (its fixed part is what a batch costs
beyond its pixels).  Median of ``--reps`` passes, one thread.

    python benchmarks/store_read_cost.py [--reps 15] [--stores ONE BIG] [--dump FILE]
    python benchmarks/store_read_cost.py --compare A.pkl B.pkl

``--dump`` pickles every batch (flux, ivar, mask, resolution, meta columns with dtype,
unit and order) so that two checkouts' batches can be compared with ``--compare`` (exit 1
where they differ): run it with ``PYTHONPATH=<checkout>/src`` for each.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _pass(path, batch_size: int):
    """One read of the whole store as ``pipeline.units._iter_store`` does it."""
    from specsift.io.arrays import check_store, store_batch
    from specsift.io.store import SpectralStore
    from specsift.spectra import DEFAULT_GRID

    with SpectralStore(path) as store:
        check_store(store)
        n = len(store)
        return [store_batch(store, lo, min(lo + batch_size, n), DEFAULT_GRID)
                for lo in range(0, n, batch_size)]


def _batch_record(b) -> dict:
    return {"loglam": b.loglam, "flux": b.flux, "ivar": b.ivar, "mask": b.mask,
            "resolution": b.resolution, "colnames": list(b.meta.colnames),
            "cols": {c: (np.asarray(b.meta[c]), str(b.meta[c].dtype), b.meta[c].unit)
                     for c in b.meta.colnames}, "tablemeta": dict(b.meta.meta)}


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=(
            a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def compare(a: str, b: str) -> int:
    ra, rb = (pickle.loads(Path(p).read_bytes()) for p in (a, b))
    bad = [(k, i) for k in ra for i, (x, y) in enumerate(zip(ra[k], rb.get(k, [])))
           if not _same(x, y)] + [k for k in ra if len(ra[k]) != len(rb.get(k, []))]
    print("identical batches" if not bad else f"DIFFERENT: {bad}")
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--stores", nargs=2, metavar=("ONE", "BIG"),
                    help="a one-spectrum and a 2000-spectrum store (default: the simulated "
                         "ones of _predict_common.sim_store)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--dump", help="pickle every batch here (for --compare)")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    import torch
    torch.set_num_threads(1)
    if args.stores:
        one, big = args.stores
    else:
        from _predict_common import sim_store
        one, big = sim_store(1), sim_store(2000)
    import specsift
    print(f"specsift from {Path(specsift.__file__).parent}")
    record = {}
    print(f"{'store':<48} {'rows':>5} {'batches':>7} {'ms/batch':>9} {'µs/spectrum':>12}")
    for path in (one, big):
        batches = _pass(path, args.batch_size)               # warm: imports, page cache
        record[str(path)] = [_batch_record(b) for b in batches]
        ts = []
        for _ in range(args.reps):
            t0 = time.thread_time()
            _pass(path, args.batch_size)
            ts.append(time.thread_time() - t0)
        t = float(np.median(ts))
        n = sum(len(b) for b in batches)
        print(f"{Path(path).name:<48} {n:>5} {len(batches):>7} {t / len(batches) * 1e3:>9.2f} "
              f"{t / n * 1e6:>12.1f}")
    if args.dump:
        Path(args.dump).write_bytes(pickle.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
