"""Milliseconds to read one file of each real format in ../shared/data (open, parse, labels,
resample onto the default grid), CPU time, one thread; best of three rounds of ``--repeats``
reads.

    python benchmarks/read_speed.py [--repeats 10] [--many 400 [--folder DIR] [--against REV]
                                    [--in-stages]]

Per-file cost is what bounds a survey of one-spectrum files (SDSS DR17: ≈ 5 M spec files).
``--many N`` adds the case that matters for them: N copies of the 8 SDSS spec files (SDSS-I,
with per-exposure HDUs, BOSS) streamed by ``iter_read`` in batches of 1024, as ``predict``
reads them — CPU ms per file, best of three rounds.  One file read alone pays for a batch of
its own; many files share one (``specsift.io.assemble``).  ``--folder DIR``: the first N
files of DIR instead of the copies (e.g. distinct files from
``benchmarks/make_distinct_sdss.py``).  ``--against REV`` times the ``--many`` files for
this checkout and git
revision REV in one process, 50 files at a time in alternation (separate runs on a shared
machine differ by up to 30 %), and checks that both give the same batches (pixels, masks,
meta), as ``benchmarks/predict_ab.py`` does for predict; it exits 1 where they differ.
``--in-stages`` times the ``--many`` files as ``predict_speed.py``'s stage table reads them,
as ``iter_unit`` alone and as ``iter_read``, interleaved in one process (their figures part
by the machine's load, not by the code)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED as DATA  # noqa: E402
from _common import sdss_files  # noqa: E402

FILES = ["sdss/spec-0266-51602-0013.fits", "sdss/spec-0332-52367-0639.fits",
         "sdss/spec-6717-56397-0534.fits", "sdss/sdss-labelled-50.fits",
         "lamost/spec-55916-B5591606_sp01-001.fits", "desi/coadd-sv3-dark-26065.fits"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--many", type=int, default=0, metavar="N")
    ap.add_argument("--against", default=None, metavar="REV",
                    help="with --many: also time git revision REV, alternated, same batches")
    ap.add_argument("--folder", default=None, metavar="DIR",
                    help="with --many or --against: the first N .fits files of DIR instead of "
                         "copies (e.g. distinct files, where per-layout and per-grid memos "
                         "hit less)")
    ap.add_argument("--in-stages", action="store_true",
                    help="with --many: the read of predict_speed's stage loop, iter_unit alone "
                         "and iter_read, interleaved in one process (where their numbers part)")
    args = ap.parse_args()
    if args.folder and args.in_stages:
        ap.error("--folder goes with --many or --against, not --in-stages (it reads copies)")
    if args.folder and not (args.many or args.against):
        ap.error("--folder needs --many N or --against REV")
    if args.in_stages:
        _in_stages(args.many or 400)
        return
    if args.against:
        if not _against(args.against, args.many or 400, folder=args.folder):
            sys.exit(1)                               # a speed change must not change batches
        return
    from specsift import io
    warnings.simplefilter("ignore", UserWarning)     # the DESI file's flagged spectra
    print("| file | spectra | CPU ms per file | CPU ms per spectrum |\n|---|---|---|---|")
    for name in FILES:
        path = DATA / name
        if not path.exists():
            continue
        n = len(io.read(path))                       # warm-up (imports, caches)
        best = min(_timed(io.read, path, args.repeats) for _ in range(3))
        print(f"| {name} | {n} | {best * 1e3:.1f} | {best * 1e3 / n:.2f} |")
    if args.many:
        _many(io, args.many, args.folder)


def _copies(tmp: str, n: int) -> list[Path]:
    """``n`` copies of the 8 SDSS spec files in ``tmp``/files, in order
    (:func:`predict_speed.fits_copies`)."""
    from predict_speed import fits_copies
    return sorted(fits_copies(Path(tmp) / "files", n, "spec-*.fits").glob("*.fits"))


def _many(io, n: int, folder: str | None = None) -> None:
    import tempfile
    src = sdss_files("spec-*.fits")
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(Path(folder).glob("*.fits"))[:n] if folder else _copies(tmp, n)
        n = len(files)
        best = float("inf")
        for _ in range(3):
            t = time.process_time()
            rows = sum(len(b) for b in io.iter_read(files, batch_size=1024))
            best = min(best, time.process_time() - t)
    what = f"files of {folder}" if folder else f"SDSS spec files (copies of {len(src)})"
    print(f"| {n} {what}, iter_read | {rows} | "
          f"{best * 1e3 / n:.2f} | {best * 1e3 / rows:.2f} |")


def _against(rev: str, n: int, rounds: int = 7, folder: str | None = None) -> bool:
    """CPU ms a file of this checkout's ``iter_read`` and ``rev``'s over the same N files
    (copies of the 8 SDSS spec files, or the first N of ``folder``), alternated 50 files at
    a time (batches of 50: a little more per file than one batch of 1024, the same for
    both); the batches must be equal (returned: whether they are)."""
    import importlib
    import tempfile

    import numpy as np
    from predict_ab import extract
    with tempfile.TemporaryDirectory() as tmp:
        extract(rev, Path(tmp))
        sys.path.insert(0, tmp)
        pkgs = {"base": importlib.import_module("specsift_base.io"),
                "this": importlib.import_module("specsift.io")}
        grid = importlib.import_module("specsift.models.base").load_model("gasnet").grid
        files = sorted(Path(folder).glob("*.fits"))[:n] if folder else _copies(tmp, n)
        n = len(files)
        out, ms = {}, {k: [] for k in pkgs}
        for r in range(rounds + 1):                   # the first round: imports, caches
            cpu = dict.fromkeys(pkgs, 0.0)
            got = {k: [] for k in pkgs}
            for c in range(0, n, 50):                 # alternated 50 files at a time
                for k in (("base", "this") if (r + c // 50) % 2 else ("this", "base")):
                    t = time.process_time()
                    got[k] += pkgs[k].iter_read(files[c:c + 50], batch_size=1024, grid=grid,
                                                files=True)
                    cpu[k] += time.process_time() - t
            for k in pkgs:
                out[k] = got[k]
                if r:
                    ms[k].append(cpu[k] * 1e3 / n)
        same = len(out["base"]) == len(out["this"]) and all(
            np.array_equal(a.flux, b.flux) and np.array_equal(a.ivar, b.ivar)
            and np.array_equal(a.mask, b.mask) and np.array_equal(a.loglam, b.loglam)
            and a.meta.colnames == b.meta.colnames
            and all(np.array_equal(a.meta[c], b.meta[c]) and a.meta[c].dtype == b.meta[c].dtype
                    for c in a.meta.colnames if c != "SOURCE")
            for a, b in zip(out["base"], out["this"]))
    what = f"files of {folder}" if folder else "SDSS spec files"
    print(f"| {n} {what}, iter_read on the model grid, CPU ms a file | {rev} | this |")
    print("|---|---|---|")
    print(f"| median of {rounds} alternated rounds | {np.median(ms['base']):.3f} | "
          f"{np.median(ms['this']):.3f} |")
    print(f"| best | {min(ms['base']):.3f} | {min(ms['this']):.3f} |")
    print(f"\nsame batches (pixels, masks, meta): {same}")
    return same


def _in_stages(n: int, rounds: int = 5) -> None:
    """µs a file of the same N copies read three ways, alternated round by round in one
    process with the model loaded: as predict_speed's stage table times "read" (its stage
    loop over one unit, the other stages running between reads), ``iter_unit`` alone, and
    ``iter_read`` as ``--many`` times it — so that a difference between the two scripts'
    figures can be told from the machine's load."""
    import tempfile

    import numpy as np
    import torch
    from _predict_common import stage_seconds

    from specsift import io, load_model
    from specsift.lines import add_lines
    from specsift.pipeline.parts import table_to_arrow
    from specsift.pipeline.units import iter_unit, plan_units
    from specsift.verify import verify_catalog
    torch.set_num_threads(1)
    model = load_model("gasnet").prepare("cpu", 1)
    fns = {"plan_units": plan_units, "iter_unit": iter_unit, "verify_catalog": verify_catalog,
           "add_lines": add_lines, "table_to_arrow": table_to_arrow}
    with tempfile.TemporaryDirectory() as tmp:
        files = _copies(tmp, n)
        folder = files[0].parent
        units = plan_units([folder], 1024)

        def stage_loop():
            s = stage_seconds(model, folder, 1024, fns, Path(tmp))
            return s["read"] / s["n"]

        def unit_alone():
            t = time.process_time()
            rows = sum(len(b) for u in units for _, b in iter_unit(u, 1024, model.grid))
            return (time.process_time() - t) / rows

        def read_alone():
            t = time.process_time()
            rows = sum(len(b) for b in io.iter_read(files, batch_size=1024))
            return (time.process_time() - t) / rows

        ways = {"stage loop's read": stage_loop, "iter_unit alone": unit_alone,
                "iter_read (--many)": read_alone}
        stage_loop()                                   # warm: caches, the model's first batch
        got = {k: [] for k in ways}
        for r in range(rounds):
            for k in (list(ways) if r % 2 else list(ways)[::-1]):
                got[k].append(1e6 * ways[k]())
    print(f"| {n} SDSS spec files, µs a file, {rounds} alternated rounds | median | best |")
    print("|---|---|---|")
    for k, v in got.items():
        print(f"| {k} | {np.median(v):.0f} | {min(v):.0f} |")


def _timed(read, path, repeats) -> float:
    """CPU seconds per read (process time: other jobs on a shared machine do not count)."""
    t = time.process_time()
    for _ in range(repeats):
        read(path)
    return (time.process_time() - t) / repeats


if __name__ == "__main__":
    main()
