"""What the labelling page overlays on a spectrum from a catalog of the same spectra
(``specsift label --catalog``): the redshift the lines are drawn at, the other solutions a
labeller may switch to, and the best-fit model curve.

The catalog is one that ``specsift predict`` wrote (any format :func:`read_catalog`
reads).  Rows are matched to pool spectra by (file name, ROW) when the catalog has ROW,
else by file name for single-spectrum files, else by TARGETID when that is unique in the
catalog.  Columns are optional and looked up by name, so a catalog from before the
verification stage (Z, SPECTYPE only) works and one with more shows more:

* ``Z``, ``ZERR``, ``ZWARN``, ``SPECTYPE``, ``SUBTYPE``, ``DELTACHI2`` — the answer;
* ``Z_NET``, ``SPECTYPE_NET`` — the network's own answer before verification;
* ``Z_2``/``Z2``/``Z_SECOND`` with ``SPECTYPE_2``/``SPECTYPE2``/``SPECTYPE_SECOND`` — the
  second solution of the verification fit;
* the best-fit model flux comes from ``specsift.verify.model_flux(loglam, rows)`` (templates
  at Z times COEFF, rebuilt from the catalog's columns) when the verification stage is
  installed and the row was verified; otherwise the page draws no model curve.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["CatalogOverlay", "solutions_from_row"]

_SECOND = (("Z_2", "SPECTYPE_2"), ("Z2", "SPECTYPE2"), ("Z_SECOND", "SPECTYPE_SECOND"))


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    return str(v).strip()


def solutions_from_row(row, names) -> list[dict]:
    """The redshift solutions a catalog row holds, best first (each {kind, z, spectype})."""
    out = []
    for kind, zc, tc in (("best", "Z", "SPECTYPE"), ("network", "Z_NET", "SPECTYPE_NET"),
                         *((("second", z2, t2) for z2, t2 in _SECOND))):
        if zc not in names:
            continue
        z = _num(row[zc])
        if z is None or z <= -0.5:               # Z = -1 marks "no data" rows; stars go < 0
            continue
        if any(abs(s["z"] - z) < 1e-5 for s in out):
            continue                             # the network agreed with the fit: once
        out.append({"kind": kind, "z": round(z, 6),
                    "spectype": _str(row[tc]) if tc in names else ""})
    return out


class CatalogOverlay:
    """Lookup of catalog rows by pool spectrum (see the module docstring)."""

    def __init__(self, path):
        from ..io.catalog import read_catalog
        self.path = Path(path)
        self.table = read_catalog(self.path)
        self.names = set(self.table.colnames)
        if "Z" not in self.names:
            raise ValueError(f"{self.path}: catalog has no Z column")
        self._by_source: dict[tuple[str, int], int] = {}
        self._by_tid: dict[str, int] = {}
        sources = ([Path(_str(s)).name for s in self.table["SOURCE"]]
                   if "SOURCE" in self.names else None)
        rows = (np.asarray(self.table["ROW"], np.int64) if "ROW" in self.names else None)
        if sources is not None:
            seen: dict[str, int] = {}
            for i, s in enumerate(sources):
                seen[s] = seen.get(s, 0) + 1
                key_row = int(rows[i]) if rows is not None else 0
                if rows is not None or seen[s] == 1:
                    self._by_source[(s, key_row)] = i
            if rows is None:                     # a multi-spectrum file without ROW: ambiguous
                for s, k in seen.items():
                    if k > 1:
                        self._by_source.pop((s, 0), None)
        if "TARGETID" in self.names:
            tids = [_str(t) for t in self.table["TARGETID"]]
            counts: dict[str, int] = {}
            for t in tids:
                counts[t] = counts.get(t, 0) + 1
            self._by_tid = {t: i for i, t in enumerate(tids) if counts[t] == 1 and t not in ("", "0")}
        self._fit = _best_fit_function()

    def __len__(self) -> int:
        return len(self.table)

    def index_of(self, source: str, row: int, targetid: str | None) -> int | None:
        i = self._by_source.get((Path(source).name, int(row)))
        if i is None and targetid:
            i = self._by_tid.get(str(targetid))
        return i

    def describe(self, i: int) -> dict:
        r = self.table[i]
        out = {"solutions": solutions_from_row(r, self.names)}
        for c in ("ZERR", "ZWARN", "DELTACHI2", "SUBTYPE"):
            if c in self.names:
                v = r[c]
                out[c.lower()] = _str(v) if c == "SUBTYPE" else _num(v)
        return out

    def model_flux(self, i: int, loglam: np.ndarray) -> np.ndarray | None:
        """Best-fit model flux on the spectrum's own grid ``loglam`` (log10 Å), or None when
        there is no verification stage, the row was not verified or the grid does not suit
        its templates."""
        if self._fit is None:
            return None
        try:
            m = np.asarray(self._fit(np.asarray(loglam, float), self.table[i:i + 1]), float)
        except (ValueError, KeyError, IndexError, TypeError):
            return None                          # e.g. a linear-λ grid, a catalog without COEFF
        m = m.reshape(-1)
        return m if m.size == np.size(loglam) and np.isfinite(m).any() else None


def _best_fit_function():
    """``specsift.verify.model_flux`` when the verification stage is installed."""
    try:
        from ..verify import model_flux
    except ImportError:
        return None
    return model_flux
