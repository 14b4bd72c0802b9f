"""What numpy's transcendental ufuncs cost inside one default ``predict`` call, and against
torch's kernels, on this machine.

    PYTHONPATH=src .venv/bin/python benchmarks/ufunc_costs.py [--n 2000] [--top 15]

Why: numpy vectorises some float32/float64 loops (``log1p``, float64 ``exp`` …) only with
AVX-512 (SVML) and runs scalar libm loops on AVX2 machines; the same code then costs several
times more per element there (docs/speed.md, "Eleventh round").  Part 1 times each function
on a 1024 × 4076 float32 (and float64) batch, numpy against torch, in CPU µs a spectrum
(the fastest of 5, ``_predict_common.fastest``).  Part 2
wraps ``np.exp``, ``np.log`` … (module attributes, so every ``np.<name>(...)`` call of the
package goes through the wrapper; operators such as ``**`` do not) and prints the calls of
one warm ``predict`` call on the simulated store (one thread, verification and lines) by
total wall time, with the calling line: what to move to torch if a machine makes one slow.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import fastest, machine, model_for_bench, sim_store  # noqa: E402

NAMES = ("exp", "log", "log10", "log1p", "expm1", "power", "sin", "cos", "tanh", "arctan",
         "exp2", "log2", "cbrt", "sqrt")


def micro() -> None:
    import torch
    rng = np.random.default_rng(0)
    print("| function | dtype | numpy µs a spectrum | torch µs a spectrum |")
    print("|---|---|---|---|")
    for dt in (np.float32, np.float64):
        x = rng.uniform(0.01, 50, (1024, 4076)).astype(dt)
        o = np.empty_like(x)
        to = torch.from_numpy(o)
        for name in ("log1p", "log", "exp", "sqrt"):
            arg = -x if name == "exp" else x
            targ = torch.from_numpy(arg)
            a = 1e6 * fastest(lambda: getattr(np, name)(arg, out=o), 5) / len(x)
            b = 1e6 * fastest(lambda: getattr(torch, name)(targ, out=to), 5) / len(x)
            print(f"| {name} | {np.dtype(dt).name} | {a:.1f} | {b:.1f} |")


def wrapped_call(n: int, top: int) -> None:
    from specsift.pipeline import predict
    ref, _ = model_for_bench(None)
    store = sim_store(n)
    stats: dict = defaultdict(lambda: [0, 0.0, 0])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        predict([store], tmp / "warm.parquet", model=ref, batch_size=1024, threads=1,
                progress=False)
        orig = {name: getattr(np, name) for name in NAMES}

        def wrap(name, u):
            def w(*a, **k):
                t = time.perf_counter()
                r = u(*a, **k)
                dt = time.perf_counter() - t
                fr = traceback.extract_stack(limit=2)[0]
                key = (name, str(getattr(a[0], "dtype", type(a[0]).__name__)),
                       f"{Path(fr.filename).name}:{fr.lineno}")
                s = stats[key]
                s[0], s[1], s[2] = s[0] + 1, s[1] + dt, s[2] + int(np.size(r))
                return r
            return w

        for name, u in orig.items():
            setattr(np, name, wrap(name, u))
        try:
            c = time.process_time()
            predict([store], tmp / "timed.parquet", model=ref, batch_size=1024, threads=1,
                    progress=False)
            cpu = time.process_time() - c
        finally:
            for name, u in orig.items():
                setattr(np, name, u)
    print(f"\none predict call, {n} spectra, {cpu:.2f} CPU-s with the wrappers\n")
    print("| ufunc | dtype | caller | calls | elements | ms | ns an element |")
    print("|---|---|---|---|---|---|---|")
    for (name, dt, where), (k, sec, el) in sorted(stats.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"| {name} | {dt} | {where} | {k} | {el} | {1e3 * sec:.1f} | "
              f"{1e9 * sec / max(el, 1):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)                     # both parts: one thread, as predict runs
    print(f"machine: {machine()}\n")
    micro()
    wrapped_call(a.n, a.top)


if __name__ == "__main__":
    main()
