"""`specsift simulate`: write a labelled SDSS-like simulated survey to a chunked HDF5 store.

    specsift simulate --classes five --n 10000 --seed 1 -o sim.h5
"""

from __future__ import annotations

import time


def _range(text: str):
    """'0.1' → 0.1, '0.1,0.5' or '0.1:0.5' → (0.1, 0.5)."""
    parts = text.replace(":", ",").split(",")
    try:
        vals = [float(p) for p in parts if p.strip()]
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a number or a 'min,max' range") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return tuple(vals)
    raise ValueError(f"{text!r}: give one number or 'min,max'")


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=__doc__.splitlines()[0])
    p.add_argument("--classes", default="five",
                   choices=["five", "thirteen", "galaxy-types", "three"], help="class set")
    p.add_argument("--n", type=int, default=10000, help="number of spectra")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed → same file)")
    p.add_argument("-o", "--output", required=True, help="output store (.h5)")
    p.add_argument("--z", type=_range, default=None,
                   help="redshift: a value or 'min,max' (default: SDSS priors per class)")
    p.add_argument("--snr", type=_range, default=None,
                   help="median S/N: a value or 'min,max' (default: SDSS catalogue mix)")
    bal = p.add_mutually_exclusive_group()
    bal.add_argument("--balanced", dest="balanced", action="store_true", default=True,
                     help="equal numbers per class (default)")
    bal.add_argument("--natural", dest="balanced", action="store_false",
                     help="SDSS-like class frequencies instead of balanced")
    p.add_argument("--resolution", default=None,
                   help="'sdss' (measured SDSS LSF, default) or a resolving power R, e.g. 1800")
    p.add_argument("--instrument", default="sdss", choices=["sdss", "lamost", "desi", "mix"],
                   help="spectrograph model: SDSS (default), LAMOST LRS, DESI, or a mix "
                        "per spectrum (40/40/20 %%); meta column INSTRUMENT says which")
    p.add_argument("--chunk", type=int, default=1024, help="spectra written per chunk")
    p.add_argument("--bal-fraction", type=float, default=0.1,
                   help="fraction of z>1.5 quasars with BAL troughs")
    p.add_argument("--boss-fraction", type=float, default=0.0,
                   help="fraction of galaxies at BOSS/eBOSS redshifts 0.4–1.0 (S/N 1.5–10); "
                        "the SDSS-I/II catalogue priors have almost none above z = 0.45")
    p.add_argument("--no-bad-pixels", action="store_true", help="no random bad-pixel runs")
    p.add_argument("--resume", action="store_true", help="continue a partial output file")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


#: Measured store bytes per spectrum and pixel (flux, ivar float32 + mask byte, LZF-compressed
#: noisy spectra: 0.90 of raw): `specsift simulate --classes thirteen --n 2000 -o x.h5` is
#: 65.8 MB (estimate 66.0); small stores are larger per spectrum (whole HDF5 chunks).
BYTES_PER_PIXEL = 8.1


def expected_size(n: int) -> str:
    """The store's size before it is written, e.g. '3.3 GB' for 100 000 spectra."""
    from ..spectra import DEFAULT_GRID
    size = n * DEFAULT_GRID.size * BYTES_PER_PIXEL
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def run(args) -> int:
    from pathlib import Path

    from ..simulate import simulate_to_store
    if args.n <= 0:
        raise ValueError("--n must be positive")
    out = Path(args.output)
    if out.exists() and not (args.overwrite or args.resume):
        raise ValueError(f"{out}: exists; pass --overwrite to replace it or --resume to "
                         f"continue it")
    print(f"simulating {args.n} spectra ({args.classes}) into {out}: about "
          f"{expected_size(args.n)} on disk", flush=True)
    t0 = time.perf_counter()
    simulate_to_store(args.output, n=args.n, class_set=args.classes, seed=args.seed,
                      chunk=args.chunk, progress=not args.quiet, resume=args.resume, z=args.z,
                      snr=args.snr, balanced=args.balanced, resolution=args.resolution,
                      bad_pixels=not args.no_bad_pixels, bal_fraction=args.bal_fraction,
                      boss_fraction=args.boss_fraction,
                      **({"instrument": args.instrument} if args.instrument != "sdss" else {}))
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} spectra ({args.classes}) to {args.output} in {dt:.1f} s "
          f"({args.n / dt:.0f} spectra/s)")
    return 0
