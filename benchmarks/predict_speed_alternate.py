"""``predict_speed.py`` of this checkout and of another revision, run alternately, ``--runs``
times each, with the medians side by side.

    .venv/bin/python benchmarks/predict_speed_alternate.py --base 690f0c2 [--runs 6]
                                                         [--fits 400] [--fits-table 4]

Why: on this shared virtual machine two runs of the same code differ by up to ±30 % (the
host's load, not ours), and the drift lasts minutes — a "before" measured in one session
and an "after" in another compare two machines.  Alternating the two trees run by run puts
both under the same drift; each run is a fresh ``predict_speed.py`` process (CPU time of the
whole process, one torch thread, ``--n 2000 --precision fp32``), so the numbers are the same
kind as its own table's.  The base tree is a detached ``git worktree`` of ``--base`` made beside this
checkout (its ``../shared`` is the same; removed at the end) and reads this checkout's cached
simulated store (:func:`base_tree`), so both time the same spectra.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ROW = re.compile(r"^\| (HDF5 store|\d+ SDSS spec files|\d+ × sdss-labelled-50\.fits "
                  r"\(\d+ spectra\)) \| fp32 \| (yes|no) \| (\d+) \|")


def one_run(tree: Path, args: list[str]) -> dict[tuple[str, str], int]:
    """{(input, verify): end-to-end spectra per CPU-second} of one predict_speed.py run."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    run = subprocess.run([sys.executable, str(tree / "benchmarks" / "predict_speed.py"), *args],
                         cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{tree}: predict_speed.py failed:\n{run.stderr[-3000:]}")
    out = run.stdout
    return {(m[1], m[2]): int(m[3]) for m in map(_ROW.match, out.splitlines()) if m}


def base_tree(rev: str, store: Path) -> Path:
    """A detached worktree of ``rev`` beside this checkout (so that its ``../shared`` is
    this one's) whose benchmark cache holds this checkout's simulated ``store``, under its
    own name and under the name of the revisions before the cache was named by the
    simulator's source (``sim-thirteen-2000-s11-raw.h5``, which such a base reads whatever
    its simulator: the same spectra, the truth labels of this one's); a newer base whose
    simulator differs names its store otherwise and builds its own."""
    tree = Path(tempfile.mkdtemp(prefix=f".speed-base-{rev}-", dir=ROOT.parent))
    tree.rmdir()
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree),
                    rev], check=True)
    cache = tree / "out" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    for name in {store.name, "sim-thirteen-2000-s11-raw.h5"}:
        os.symlink(store, cache / name)
    return tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to alternate with")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--fits", type=int, default=400)
    ap.add_argument("--fits-table", type=int, default=4)
    a = ap.parse_args()
    args = ["--n", "2000", "--precision", "fp32", "--fits", str(a.fits),
            "--fits-table", str(a.fits_table)]
    runs: dict[str, list[dict]] = {"base": [], "this": []}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _predict_common import machine, sim_store
    base = base_tree(a.base, sim_store(2000))     # made here first: both trees read it
    try:
        for i in range(a.runs):
            for name, tree in (("base", base), ("this", ROOT)):
                runs[name].append(one_run(tree, args))
                print(f"run {i + 1} {name}: " + ", ".join(
                    f"{k[0]} {'verified' if k[1] == 'yes' else 'no-verify'} {v}"
                    for k, v in runs[name][-1].items()), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False)
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{a.runs} alternating runs of `predict_speed.py {' '.join(args)}`, spectra per "
          f"CPU-second of the whole process; base = {a.base}; machine: {machine()}\n")
    print("| input | verify | base runs | base median | this runs | this median | ratio |")
    print("|---|---|---|---|---|---|---|")
    for key in runs["this"][0]:
        b = [r[key] for r in runs["base"] if key in r]
        t = [r[key] for r in runs["this"]]
        mb, mt = statistics.median(b), statistics.median(t)
        print(f"| {key[0]} | {key[1]} | {' '.join(map(str, b))} | {mb:.0f} | "
              f"{' '.join(map(str, t))} | **{mt:.0f}** | {mt / mb:.2f} |")


if __name__ == "__main__":
    main()
