"""`specsift info PATH...`: per file, the number of spectra, wavelength range, median S/N,
input flags and the labels found; for several files one table with a row per file and a
TOTAL row (``--long``: the per-file blocks).  Streams each file, so it works on any size."""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..flags import InputFlag
from ._args import positive_int


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="spectra files, directories (searched recursively) or glob patterns")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="spectra read at a time")
    p.add_argument("--long", action="store_true",
                   help="a block of lines per file even for several files")
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

    def label_text(self) -> str:
        """CLASS counts and the z range, short (table cell)."""
        parts = []
        if self.classes:
            parts.append(", ".join(f"{k} {v}" for k, v in self.classes.most_common()))
        z = np.concatenate(self.z) if self.z else np.zeros(0)
        z = z[np.isfinite(z)]
        if z.size:
            parts.append(f"z {z.min():.4f}" + (f"–{z.max():.4f}" if z.max() > z.min() else ""))
        return "; ".join(parts) or "none"

    def row(self) -> list[str]:
        snr = np.concatenate(self.snr) if self.snr else np.zeros(0)
        return [str(self.path), self.kind, str(self.n),
                f"{self.full[0]:.0f}–{self.full[1]:.0f}" if self.n else "–",
                f"{np.median(snr):.2f}" if snr.size else "–", self.label_text(),
                ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "–"]

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
    spectra do not share one).  Raises an error naming the file."""
    from ..io import detect_format
    from ..io.registry import read_file
    from ..spectra import DEFAULT_GRID

    kind = detect_format(path)
    try:
        s = FileSummary(path, kind)
        for b in read_file(path, None, batch_size):
            s.add(b)
    except ValueError as exc:
        if "different" not in str(exc) and "give a grid" not in str(exc):
            raise
        s = FileSummary(path, kind + ", resampled to the default grid")
        for b in read_file(path, DEFAULT_GRID, batch_size):
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


_HEADER = ["FILE", "FORMAT", "SPECTRA", "λ (Å)", "MEDIAN S/N", "LABELS", "INPUT FLAGS"]


class _Other:
    """A Redrock or catalog file in the table: rows but no spectra."""

    def __init__(self, path, kind: str, lines: list[str]):
        self.path, self.kind, self.block = path, kind, lines

    def lines(self) -> list[str]:
        return self.block

    def row(self) -> list[str]:
        rows = next((ln.split(":", 1)[1].strip() for ln in self.block if "rows:" in ln), "?")
        cells = [ln.strip() for ln in self.block[2:]]
        labels = "; ".join(c.split(":", 1)[1].strip() if c.startswith("labels:") else c
                           for c in cells if c.startswith(("labels:", "z ")))
        return [str(self.path), self.kind, f"({rows} rows)", "–", "–", labels or "–", "–"]


def _totals(items: list, failed: int) -> list[str]:
    """The TOTAL row: files, spectra, overall λ range, median S/N of all spectra, classes."""
    spectra = [s for s in items if isinstance(s, FileSummary)]
    n = sum(s.n for s in spectra)
    snr = np.concatenate([x for s in spectra for x in s.snr]) if spectra else np.zeros(0)
    lo = min((s.full[0] for s in spectra if s.n), default=np.nan)
    hi = max((s.full[1] for s in spectra if s.n), default=np.nan)
    classes: Counter = Counter()
    flags: Counter = Counter()
    for s in spectra:
        classes.update(s.classes)
        flags.update(s.flags)
    files = f"TOTAL: {len(items)} file(s)" + (f", {failed} unreadable" if failed else "")
    return [files, "", str(n), f"{lo:.0f}–{hi:.0f}" if n else "–",
            f"{np.median(snr):.2f}" if snr.size else "–",
            ", ".join(f"{k} {v}" for k, v in classes.most_common()) or "none",
            ", ".join(f"{k} {v}" for k, v in sorted(flags.items())) or "–"]


def format_table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned; a rule under the header
    and above the last (TOTAL) row."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    right = {2, 4}

    def fmt(r):
        return "  ".join(c.rjust(w) if k in right else c.ljust(w)
                         for k, (c, w) in enumerate(zip(r, widths))).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(rows[0]), rule, *map(fmt, rows[1:-1]), rule, fmt(rows[-1])])


def _summary(path: Path, batch_size: int):
    """A FileSummary, or for a Redrock / catalog file its rows and labels."""
    from ..io import NotSpectraError
    try:
        return summarise(path, batch_size)
    except NotSpectraError:
        return _Other(path, "redrock", _redrock_lines(path))
    except ValueError:
        if path.suffix.lower() in (".csv", ".parquet", ".ecsv"):
            return _Other(path, "catalog", _catalog_lines(path))
        raise


def _error_line(path, exc: BaseException) -> str:
    """One line naming the file and the problem, whatever was raised (astropy's
    VerifyError, KeyError('NAXIS3'), TypeError …): a bare 'recformat' helps nobody."""
    from ..io import named_error

    err = named_error(Path(path), exc) if path is not None else exc
    return str(err).strip() or type(exc).__name__


def run(args) -> int:
    """Every file summarised (a table for several) or named in one error line (exit 2);
    never a traceback, and a bad file or pattern never stops the files after it."""
    from ..io import expand_inputs
    from ..term import printable

    failed, items = 0, []
    for arg in args.paths:
        try:
            paths = expand_inputs([arg])
        except Exception as exc:  # noqa: BLE001 - a bad pattern costs only itself
            print(f"specsift info: error: {printable(_error_line(None, exc), limit=600)}",
                  file=sys.stderr)
            failed += 1
            continue
        for path, _explicit in paths:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # flags are reported in the summary
                    item = _summary(path, args.batch_size)
            except Exception as exc:  # noqa: BLE001 - one line per bad file, then go on
                if getattr(args, "debug", False):
                    raise
                print(f"specsift info: error: {printable(_error_line(path, exc), limit=600)}",
                      file=sys.stderr)
                failed += 1
                continue
            if args.long:
                print("\n".join(printable(line) for line in item.lines()))
            else:
                items.append(item)
    if len(items) == 1:                                  # one file: its block of lines
        print("\n".join(printable(line) for line in items[0].lines()))
    elif items:
        rows = [i.row() for i in items]
        top = os.path.commonpath([str(Path(r[0]).parent) for r in rows]) if rows else ""
        for r in rows:                                   # paths under their common folder
            r[0] = os.path.relpath(r[0], top) if top else r[0]
        header = [f"FILE (in {top or '.'})", *_HEADER[1:]]
        table = [header, *rows, _totals(items, failed)]
        print(format_table([[printable(c) for c in r] for r in table]))
    return 2 if failed else 0
