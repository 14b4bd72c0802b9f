"""Two catalogs of the same spectra compared column by column, line columns in units of
their own errors: how far a change of the line stage moved its answers.

    PYTHONPATH=src .venv/bin/python benchmarks/lines_compare.py A.fits B.fits
    PYTHONPATH=src .venv/bin/python benchmarks/lines_compare.py --n-iter 30 -o B.fits ../shared/data/sdss

The first form prints: non-line columns that differ (should be none), the largest
|Δ| / σ of every line value column (σ from A's ``_IVAR``; VSHIFT in km/s), the largest
IVAR ratio, columns whose measured/not-measured pattern differs, and per SPECTYPE how many
rows' largest flux pull exceeds 0.01, 0.1 and 1 σ.  The second runs ``specsift predict
--threads 1`` with the line fit's Levenberg–Marquardt iteration count set to ``--n-iter``
(a tree with the fixed count, ≤ bc4aeb6: 5) or its cap (``max_iter``, default 50, with
``--tol`` its tolerances), to see how far the answers are from converged (docs/lines.md
"Convergence").  Columns only one catalog has (``LINES_NOCONV``) are listed, not compared.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

#: the line value columns compared in units of their errors (each has an ``_IVAR``)
VALUE_ENDS = ("_FLUX", "_EW", "_SIGMA")


def pulls(ref, other) -> dict:
    """{column: (N,) |Δ| / σ} of every flux, EW and σ column of ``ref`` with an ``_IVAR``
    (σ from ``ref``'s ivar; NaN where ``ref``'s ivar is 0 or either value unmeasured): the
    one error-scaled difference this script and ``lines_speed.py`` report."""
    out = {}
    for col in ref.colnames:
        if col.endswith(VALUE_ENDS) and col + "_IVAR" in ref.colnames:
            iv = np.asarray(ref[col + "_IVAR"], float)
            x, y = np.asarray(ref[col], float), np.asarray(other[col], float)
            m = (iv > 0) & np.isfinite(x) & np.isfinite(y)
            out[col] = np.where(m, np.abs(x - y) * np.sqrt(np.where(m, iv, 0.0)), np.nan)
    return out


def compare(path_a: str, path_b: str) -> None:
    from astropy.table import Table

    from specsift.lines.stage import STAGE_COLUMNS
    a, b = Table.read(path_a, hdu="REDSHIFTS"), Table.read(path_b, hdu="REDSHIFTS")
    if len(a) != len(b):
        raise SystemExit(f"{path_a} and {path_b}: different rows")
    only = sorted(set(a.colnames) ^ set(b.colnames))
    flag = next((np.asarray(t["LINES_NOCONV"]) for t in (b, a) if "LINES_NOCONV" in t.colnames),
                None)
    if only:                       # e.g. LINES_NOCONV against a tree without it
        print(f"columns in one catalog only (not compared): {only}")
    a, b = a[[c for c in a.colnames if c in b.colnames]], b[[c for c in a.colnames if c in b.colnames]]
    line = set(STAGE_COLUMNS)
    scaled = pulls(a, b)
    worst, other, measured, ivar, vshift = {}, [], [], 1.0, 0.0
    row_pull = np.zeros(len(a))
    for c in a.colnames:
        x, y = np.asarray(a[c]), np.asarray(b[c])
        if c not in line:
            if not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                other.append(c)
        elif c.endswith(VALUE_ENDS):
            if not np.array_equal(np.isfinite(x), np.isfinite(y)):
                measured.append(c)
            p = np.nan_to_num(scaled[c], nan=0.0)
            worst[c] = float(p.max()) if p.size else 0.0
            if c.endswith("_FLUX"):
                row_pull = np.maximum(row_pull, p)
        elif c.endswith("_IVAR"):
            m = (x > 0) & (y > 0)
            if m.any():
                ivar = max(ivar, float(np.exp(np.abs(np.log(x[m] / y[m])).max())))
        elif c.endswith("_VSHIFT"):
            m = np.isfinite(x) & np.isfinite(y)
            if m.any():
                vshift = max(vshift, float(np.abs(x[m] - y[m]).max()))
        elif not np.array_equal(x, y):
            other.append(c)
    print(f"{len(a)} rows; columns that differ outside the line values: {other or 'none'}")
    print(f"measured / not measured differs: {measured or 'none'}")
    print(f"largest |Δ|/σ of any line value: {max(worst.values(), default=0):.3g}; "
          f"largest IVAR ratio {ivar:.6f}; largest VSHIFT |Δ| {vshift:.3g} km/s")
    print("\n| column | max abs(Δ)/σ |\n|---|---|")
    for c, v in sorted(worst.items(), key=lambda kv: -kv[1])[:15]:
        print(f"| {c} | {v:.3g} |")
    st = np.char.strip(np.asarray(a["SPECTYPE"]).astype(str))
    if flag is not None:
        print(f"\nrows with LINES_NOCONV set (a fit at its iteration cap): {int((flag != 0).sum())}"
              f" (bits {sorted(set(int(v) for v in flag[flag != 0]))}); largest flux pull of"
              f" the other rows: {row_pull[flag == 0].max(initial=0):.3g}σ")
    print("\n| SPECTYPE | rows | largest flux pull > 0.01σ | > 0.1σ | > 1σ | median |\n"
          "|---|---|---|---|---|---|")
    for t in ("GALAXY", "QSO"):
        p = row_pull[st == t]
        if p.size:
            print(f"| {t} | {p.size} | {(p > 0.01).sum()} | {(p > 0.1).sum()} | "
                  f"{(p > 1).sum()} | {np.median(p):.3g} |")


def predict_with(n_iter: int, out: str, inputs: list[str], tol: float | None = None) -> None:
    import specsift.lines.fit as F
    code = F.fit_lines.__code__
    names = code.co_varnames[:code.co_argcount]
    defaults = list(F.fit_lines.__defaults__)
    fixed = "n_iter" in names              # a tree with the fixed iteration count
    name = "n_iter" if fixed else "max_iter"
    defaults[names.index(name) - (len(names) - len(defaults))] = n_iter
    if not fixed and tol is not None:       # this tree: its tolerances (negative: fixed count)
        for t in ("ftol", "xtol"):
            defaults[names.index(t) - (len(names) - len(defaults))] = tol
    F.fit_lines.__defaults__ = tuple(defaults)
    from specsift.cli import main as cli
    sys.argv = ["specsift", "predict", *inputs, "-o", out, "--threads", "1", "--overwrite"]
    cli()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", help="two catalogs, or (with --n-iter) the inputs")
    ap.add_argument("--n-iter", type=int, default=None)
    ap.add_argument("-o", "--out", default=None)
    ap.add_argument("--tol", type=float, default=None,
                    help="with --n-iter on a converging tree: ftol = xtol = TOL (negative: "
                         "every row runs --n-iter iterations)")
    a = ap.parse_args()
    if a.n_iter is not None:
        if not a.out:
            raise SystemExit("--n-iter needs -o OUT")
        predict_with(a.n_iter, a.out, a.paths, a.tol)
    elif len(a.paths) == 2:
        compare(*a.paths)
    else:
        raise SystemExit("give two catalogs, or --n-iter N -o OUT INPUTS")


if __name__ == "__main__":
    main()
