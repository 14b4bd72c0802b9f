"""Shared by the predict benchmarks: a model to time, simulated stores, child-process runs.

Model: ``--model NAME|PATH``; default: the bundled default model (gasnet when shipped).
When no weights are bundled yet, an *untrained* gasnet of the default architecture is
saved (seed 0) so timing and memory can still be measured; accuracy columns then say so.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "out" / "bench"

CHILD = """
import resource, sys, time
from specsift.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(f"RESULT {rc} {dt:.3f} {ru.ru_utime + ru.ru_stime:.3f} {ru.ru_maxrss}")
"""


def machine() -> str:
    """The CPU the numbers were taken on, whether it has AVX-512 (numpy's transcendental
    loops and OpenBLAS's kernels differ between the two), and :func:`reference`: a number
    against issue 17's targets means little without them (docs/speed.md)."""
    name, flags = "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    isa = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "no AVX2"
    return f"{name} ({isa}, {os.cpu_count()} cores); reference: {reference()}"


def reference() -> str:
    """CPU ms of three fixed workloads, best of three: a pure-Python loop of 10⁶ steps,
    30 000 numpy calls on 64-element arrays, and ten float32 GEMMs (1024 × 4000 by
    4000 × 40, on the BLAS threads the process has: CPU time, so about the same on one).

    Why: two virtual machines that report the same CPU model have run the same code at
    speeds 1.9× apart (docs/speed.md, twelfth round) — the host's other guests share the
    cores' caches and memory bandwidth, and their time is not the guest's steal time — so
    a number against issue 17's targets needs the machine's own speed beside it, measured
    by the same process a moment before."""
    import numpy as np

    def python():
        acc = 0
        for i in range(1_000_000):
            acc += i % 7
        return acc

    small = np.linspace(0.0, 1.0, 64)

    def calls():
        x = small
        for _ in range(5000):
            x = np.sqrt(np.abs(x * 0.5 + 0.25)) - np.minimum(x, 0.1)
        return x

    a = np.random.default_rng(0).standard_normal((1024, 4000)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((4000, 40)).astype(np.float32)

    def gemm():
        for _ in range(10):
            a @ b

    return ", ".join(f"{label} {fastest(fn, 3) * 1e3:.0f} ms" for label, fn in
                     (("python", python), ("numpy calls", calls), ("GEMM", gemm)))


def fastest(f, reps: int) -> float:
    """CPU seconds (``time.process_time``) of the fastest of ``reps`` calls of ``f``: on a
    shared machine the fastest call is the least disturbed one."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        f()
        best = min(best, time.process_time() - t0)
    return best


def model_for_bench(name_or_path: str | None) -> tuple[str, str]:
    """(model reference, description)."""
    from specsift.pipeline import default_model_name
    if name_or_path:
        return name_or_path, name_or_path
    try:
        name = default_model_name()
        return name, f"{name} (bundled)"
    except FileNotFoundError:
        import torch

        from specsift.models.gasnet import GaSNet
        path = CACHE / "gasnet-untrained.pt"
        if not path.exists():
            torch.manual_seed(0)
            m = GaSNet()
            m._build()
            m.save(path)
        return str(path), "gasnet architecture, UNTRAINED weights (no bundled model yet: timing only)"


def sim_store(n: int, seed: int = 11, class_set: str = "thirteen") -> Path:
    """A simulated store of ``n`` spectra (cached under out/bench/; "-raw": written since
    stores keep flux and ivar uncompressed, so that an older LZF copy is not timed).

    The cache file is named by a digest of the simulator's source (:func:`_simulator_digest`):
    a store cached before a change to how the simulator draws or labels its spectra is not
    reused (one cached before a label-rule change kept 3 of 2000 truth labels that a fresh
    clone's store no longer has, and the benchmarks' class accuracy with them)."""
    from specsift.simulate import simulate_to_store
    path = CACHE / f"sim-{class_set}-{n}-s{seed}-raw-{_simulator_digest()}.h5"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.h5")
        simulate_to_store(tmp, n=n, class_set=class_set, seed=seed, progress=True)
        os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=None)
def _simulator_digest() -> str:
    """sha256 (12 hex digits) of the source of every specsift module that importing the
    simulator loads (its spectra and labels can depend on no other: the labels come from
    the line stage's fits and SDSS's rules), listed by a fresh interpreter so that what this
    process imported before does not change the name; once a process (the interpreter's
    start is ≈ 1 s, and a benchmark asks for several stores)."""
    import hashlib
    listing = ("import sys, specsift.simulate\n"
               "for m in sorted(sys.modules):\n"
               "    f = getattr(sys.modules[m], '__file__', None)\n"
               "    if (m == 'specsift' or m.startswith('specsift.')) and f:\n"
               "        print(m, f)\n")
    out = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src"))).stdout
    h = hashlib.sha256()
    for line in out.splitlines():
        name, f = line.split(" ", 1)
        h.update(name.encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:12]


def _first_core() -> None:                               # pragma: no cover - in the child
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def run_child(args: list[str], threads: int | None = None, one_core: bool = False) -> dict:
    """`specsift ARGS` in a fresh process: wall seconds, CPU seconds, peak RSS (MB);
    ``one_core`` pins the child to one CPU (where the OS can) so wall time is one core's."""
    env = dict(os.environ)
    if threads:
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(threads)
    pin = _first_core if one_core and hasattr(os, "sched_setaffinity") else None
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], env=env,
                       capture_output=True, text=True, preexec_fn=pin)
    wall = time.perf_counter() - t
    line = next((s for s in p.stdout.splitlines() if s.startswith("RESULT")), None)
    if p.returncode or line is None:
        raise RuntimeError(f"specsift {' '.join(map(str, args))} failed:\n{p.stderr[-2000:]}")
    _, rc, dt, cpu, rss = line.split()
    return {"rc": int(rc), "seconds": float(dt), "process_seconds": wall, "cpu": float(cpu),
            "rss_mb": int(rss) / 1024, "stdout": p.stdout, "stderr": p.stderr}


#: the stage table's rows (``forward`` and ``predict_rest`` split ``predict``)
STAGES = ("read", "forward", "predict_rest", "verify", "lines", "write")


def stage_seconds(model, store: Path, batch_size: int, fns: dict, tmp: Path) -> dict:
    """CPU seconds of each stage of :data:`STAGES` (and ``predict``) over the whole store and
    the spectrum count ``n``, single thread; the network's forward pass is timed by hooks held
    only for this loop.  ``fns`` holds the package's ``plan_units``, ``iter_unit``,
    ``verify_catalog``, ``add_lines`` and ``table_to_arrow``: this checkout's (predict_speed)
    or another revision's (predict_ab), timed by the same loop."""
    net = getattr(model, "net", None)
    fwd = {"t": 0.0}
    hooks = [] if net is None else [
        net.register_forward_pre_hook(lambda *a: fwd.__setitem__("t0", time.process_time())),
        net.register_forward_hook(lambda *a: fwd.__setitem__(
            "t", fwd["t"] + time.process_time() - fwd["t0"]))]
    try:
        t = _stage_loop(model, store, batch_size, fns, tmp)
    finally:
        for h in hooks:
            h.remove()
    t["forward"], t["predict_rest"] = fwd["t"], t["predict"] - fwd["t"]
    return t


def _write_part(fns: dict, at, tmp: Path) -> None:
    """A part as the revision's pipeline writes it: its Arrow IPC bytes (``fns["part_bytes"]``,
    since callfix) or, for a revision before, a Parquet file."""
    if fns.get("part_bytes") is not None:
        (tmp / "p.arrow").write_bytes(fns["part_bytes"](at))
    else:
        import pyarrow.parquet as pq
        pq.write_table(at, tmp / "p.parquet")


def _stage_loop(model, store: Path, batch_size: int, fns: dict, tmp: Path) -> dict:
    import torch
    t = dict.fromkeys(("read", "predict", "verify", "lines", "write"), 0.0)
    n = 0
    for unit in fns["plan_units"]([store], batch_size):
        it = fns["iter_unit"](unit, batch_size, model.grid)
        while True:
            t0 = time.process_time()
            nxt = next(it, None)
            t["read"] += time.process_time() - t0
            if nxt is None:
                break
            batch = nxt[1]
            t0 = time.process_time()
            with torch.inference_mode():
                cat, cands = model.propose(model.check_batch(batch))
            t["predict"] += time.process_time() - t0
            t0 = time.process_time()
            cat = fns["verify_catalog"](model.check_batch(batch), cat, cands)
            t["verify"] += time.process_time() - t0
            t0 = time.process_time()
            cat = fns["add_lines"](batch, cat)
            t["lines"] += time.process_time() - t0
            t0 = time.process_time()
            _write_part(fns, fns["table_to_arrow"](cat), Path(tmp))
            t["write"] += time.process_time() - t0
            n += len(batch)
    t["n"] = n
    return t
