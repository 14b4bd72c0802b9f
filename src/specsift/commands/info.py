"""`specsift info PATH...`: per file, the number of spectra, wavelength range, median S/N,
input flags and the labels found.  Streams each file, so it works on any size."""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..flags import InputFlag


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spectra files, directories (searched recursively) or glob patterns")
    p.add_argument("--batch-size", type=int, default=1024, help="spectra read at a time")
    p.set_defaults(func=run)


class FileSummary:
    """Running summary of one file's spectra (constant memory: counters and one S/N list
    of N floats)."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self.n = 0
        self.npix: set[int] = set()
        self.wmin, self.wmax = np.inf, -np.inf
        self.full = (np.inf, -np.inf)
        self.snr: list[np.ndarray] = []
        self.classes: Counter = Counter()
        self.subclasses: Counter = Counter()
        self.z: list[np.ndarray] = []
        self.flags: Counter = Counter()
        self.errors: list[str] = []

    def add(self, batch) -> None:
        self.n += len(batch)
        self.npix.add(batch.npix)
        good = ~batch.mask
        self.full = (min(self.full[0], float(batch.wave[0])), max(self.full[1], float(batch.wave[-1])))
        if good.any():
            cols = np.flatnonzero(good.any(axis=0))
            self.wmin = min(self.wmin, float(batch.wave[cols[0]]))
            self.wmax = max(self.wmax, float(batch.wave[cols[-1]]))
        self.snr.append(batch.median_snr())
        m = batch.meta
        if "CLASS" in m.colnames:
            self.classes.update(str(c) or "(none)" for c in m["CLASS"])
        if "SUBCLASS" in m.colnames:
            self.subclasses.update(str(c) or "(none)" for c in m["SUBCLASS"])
        if "Z" in m.colnames:
            self.z.append(np.asarray(m["Z"], np.float64))
        for f in np.asarray(m["INPUT_FLAGS"]):
            for bit in InputFlag:
                if int(f) & bit:
                    self.flags[bit.name] += 1
        if "ERROR" in m.colnames:
            self.errors.extend(str(e) for e in m["ERROR"] if str(e))

    def lines(self) -> list[str]:
        out = [f"{self.path}  [{self.kind}]", f"  spectra: {self.n}"]
        px = "/".join(str(p) for p in sorted(self.npix))
        if self.n:
            good = (f"good pixels {self.wmin:.1f}–{self.wmax:.1f} Å" if np.isfinite(self.wmin)
                    else "no good pixels")
            out.append(f"  wavelength: {self.full[0]:.1f}–{self.full[1]:.1f} Å ({px} px; {good})")
        snr = np.concatenate(self.snr) if self.snr else np.zeros(0)
        if snr.size:
            out.append(f"  median S/N: {np.median(snr):.2f} (per-spectrum median of flux·√ivar;"
                       f" range {snr.min():.2f}–{snr.max():.2f})")
        labels = []
        if self.classes:
            labels.append("CLASS " + ", ".join(f"{k} {v}" for k, v in self.classes.most_common()))
        if self.subclasses:
            labels.append("SUBCLASS " + ", ".join(f"{k} {v}"
                                                   for k, v in self.subclasses.most_common()))
        z = np.concatenate(self.z) if self.z else np.zeros(0)
        z = z[np.isfinite(z)]
        if z.size:
            labels.append(f"z {z.min():.4f}–{z.max():.4f} (median {np.median(z):.4f}, "
                          f"{z.size} known)")
        out.append("  labels: " + ("; ".join(labels) if labels else "none"))
        if self.flags:
            out.append("  input flags: " + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(self.flags.items())))
        return out


def summarise(path: Path, batch_size: int = 1024) -> FileSummary:
    """Summary of one spectra file read on its native grid (or the default grid when its
    spectra do not share one).  Raises ValueError/OSError naming the file."""
    from ..io import _read_one, detect_format
    from ..spectra import DEFAULT_GRID

    kind = detect_format(path)
    try:
        s = FileSummary(path, kind)
        for b in _read_one(path, None, batch_size):
            s.add(b)
    except ValueError as exc:
        if "different" not in str(exc) and "give a grid" not in str(exc):
            raise
        s = FileSummary(path, kind + ", resampled to the default grid")
        for b in _read_one(path, DEFAULT_GRID, batch_size):
            s.add(b)
    return s


def _redrock_lines(path: Path) -> list[str]:
    from ..io.desi import read_redrock

    t = read_redrock(path)
    out = [f"{path}  [redrock: redshift catalogue, no spectra]", f"  rows: {len(t)}"]
    if "CLASS" in t.colnames:
        out.append("  labels: CLASS " + ", ".join(f"{k} {v}" for k, v in
                                                   Counter(str(c) for c in t["CLASS"]).most_common()))
    if "Z" in t.colnames and len(t):
        z = np.asarray(t["Z"], float)
        out.append(f"  z {z.min():.4f}–{z.max():.4f}")
    return out


def _catalog_lines(path: Path) -> list[str]:
    from ..io import read_catalog

    t = read_catalog(path)
    out = [f"{path}  [catalog table, no spectra]", f"  rows: {len(t)}",
           f"  columns: {', '.join(t.colnames[:20])}{' …' if len(t.colnames) > 20 else ''}"]
    if "CLASS" in t.colnames:
        out.append("  labels: CLASS " + ", ".join(f"{k} {v}" for k, v in
                                                   Counter(str(c) for c in t["CLASS"]).most_common()))
    return out


def run(args) -> int:
    from ..io import NotSpectraError, _expand
    from ..term import printable

    failed = 0
    for path, _explicit in _expand(args.paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # flags are reported in the summary
                try:
                    lines = summarise(path, args.batch_size).lines()
                except NotSpectraError:
                    lines = _redrock_lines(path)
                except ValueError:
                    if path.suffix.lower() in (".csv", ".parquet", ".ecsv"):
                        lines = _catalog_lines(path)
                    else:
                        raise
        except (ValueError, OSError, KeyError) as exc:
            if getattr(args, "debug", False):
                raise
            msg = printable(str(exc).strip() or type(exc).__name__, limit=600)
            print(f"specsift info: error: {msg}", file=sys.stderr)
            failed += 1
            continue
        print("\n".join(printable(line) for line in lines))
    return 2 if failed else 0
