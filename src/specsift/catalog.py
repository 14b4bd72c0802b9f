"""The catalog every model returns: Redrock-compatible columns first, then ours.

Columns: TARGETID, SOURCE, Z, ZERR, ZWARN, SPECTYPE, SUBTYPE, DELTACHI2, CLASS_LABEL,
PROB_<label> for each label of the model's class set, ANOMALY_SCORE, MODEL, then the
input's identifiers the meta has (ROW, RA, DEC, PLATE/MJD/FIBERID, OBSID …; see
:mod:`specsift.io.catalog_schema`).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Column, Table

from .classes import labels, spectype_of, subtype_of
from .flags import ZWARN, zwarn_from_input
from .io.catalog_schema import identifier_columns

__all__ = ["make_catalog", "keep_net_answer", "put_columns", "CATALOG_COLUMNS", "NET_COLUMNS",
           "LOW_CONFIDENCE"]

CATALOG_COLUMNS = ("TARGETID", "SOURCE", "Z", "ZERR", "ZWARN", "SPECTYPE", "SUBTYPE",
                   "DELTACHI2", "CLASS_LABEL")

#: The answer columns a stage after the model may change; the network's own values stay in
#: ``<name>_NET`` (:func:`keep_net_answer`).
NET_COLUMNS = ("Z", "ZERR", "SPECTYPE", "SUBTYPE", "CLASS_LABEL")

#: Highest class probability below which ZWARN bit 17 (LOW_CLASS_CONFIDENCE) is set.
LOW_CONFIDENCE = 0.6


def make_catalog(meta: Table, class_set: str, probs: np.ndarray, z: np.ndarray,
                 zerr: np.ndarray, model: str, zwarn: np.ndarray | None = None,
                 deltachi2: np.ndarray | None = None,
                 anomaly_score: np.ndarray | None = None) -> Table:
    """Assemble the standard catalog from a model's raw outputs.

    ``probs`` is (N, K) over ``labels(class_set)``.  ZWARN combines the model's own bits
    with those implied by the input flags in ``meta`` and the class confidence; spectra
    with no usable data (NODATA: no good pixel, or an unreadable file's placeholder row) get
    Z = ZERR = -1 and CLASS_LABEL '' but keep their row.  A spectrum whose NaN/inf flux or
    negative ivar pixels were masked (BAD_INPUT without NODATA) keeps the answer of its good
    pixels, as Redrock answers for a spectrum with masked pixels: the ZWARN bit tells the
    reader, and a catalog cut on ZWARN == 0 still drops it.
    """
    names = labels(class_set)
    n = len(meta)
    probs = np.asarray(probs, dtype=np.float32).reshape(n, len(names))
    best = probs.argmax(axis=1) if n else np.zeros(0, int)
    # label, SPECTYPE and SUBTYPE looked up per class, not computed per row: the same values
    label = np.array(names, dtype="U24")[best]
    zw = np.zeros(n, np.int64) if zwarn is None else np.asarray(zwarn, np.int64).copy()
    if "INPUT_FLAGS" in meta.colnames:
        zw |= zwarn_from_input(meta["INPUT_FLAGS"])
    zw[probs.max(axis=1, initial=0) < LOW_CONFIDENCE] |= ZWARN.LOW_CLASS_CONFIDENCE
    nodata = (zw & ZWARN.NODATA) != 0
    z = np.where(nodata, -1.0, np.asarray(z, np.float64))
    zerr = np.where(nodata, -1.0, np.asarray(zerr, np.float64))
    label[nodata] = ""
    out = Table()
    out["TARGETID"] = (np.asarray(meta["TARGETID"], np.int64) if "TARGETID" in meta.colnames
                       else np.arange(n, dtype=np.int64))
    out["SOURCE"] = (np.asarray(meta["SOURCE"], dtype=str) if "SOURCE" in meta.colnames
                     else np.full(n, "", dtype="U1"))
    out["Z"] = z
    out["ZERR"] = zerr
    out["ZWARN"] = zw
    out["SPECTYPE"] = np.where(nodata, "", np.array([spectype_of(s) for s in names], "U6")[best])
    out["SUBTYPE"] = np.where(nodata, "", np.array([subtype_of(s) for s in names], "U20")[best])
    out["DELTACHI2"] = (np.full(n, np.nan) if deltachi2 is None
                        else np.asarray(deltachi2, np.float64))
    out["CLASS_LABEL"] = label
    for k, name in enumerate(names):
        out[f"PROB_{name}"] = probs[:, k]
    out["ANOMALY_SCORE"] = (np.full(n, np.nan, np.float32) if anomaly_score is None
                            else np.asarray(anomaly_score, np.float32))
    out["MODEL"] = np.full(n, model, dtype=f"U{max(len(model), 1)}")
    for name, values in identifier_columns(meta, n).items():   # RA, DEC, ROW, PLATE …
        out[name] = values
    return out


def keep_net_answer(out: Table, catalog: Table, names=NET_COLUMNS, dtype=None) -> None:
    """Keep the network's answer before a stage changes columns ``names`` of ``out``.

    Copies each column of ``catalog`` (the stage's input) into ``<name>_NET`` of ``out``
    unless that column is already there: the first stage that changes an answer owns its
    ``_NET`` copy (the verification, else the lines stage), so a later stage never overwrites
    the network's answer with an earlier stage's.  ``dtype``: cast the copies (e.g. to one
    string width)."""
    put_columns(out, {f"{name}_NET": (catalog[name] if dtype is None
                                      else np.asarray(catalog[name]).astype(dtype))
                      for name in names if f"{name}_NET" not in out.colnames})


def put_columns(out: Table, cols: dict, units: dict | None = None) -> None:
    """``out[name] = value`` for each item of ``cols``, without astropy's per-item overhead;
    ``units``: {name: unit} of the columns that have one (the line stage's 119 columns).

    A stage sets a dozen columns of fresh arrays that nothing else holds; ``Table.__setitem__``
    copies each, broadcasts a one-row table's, and replaces an existing column through
    warning checks (~60 µs each, the fixed cost of a one-spectrum batch).  Here each plain
    (N, ...) ndarray becomes one Column sharing its data, put where ``__setitem__`` puts it
    (a new name appended, an existing one replaced in place, parent table set): the same
    column as ``__setitem__`` makes (name, dtype, values; no unit, as ``replace_column``
    keeps none).  Anything else (a Column, a masked or subclassed table, an indexed column,
    a length mismatch) goes through ``__setitem__``."""
    n = len(out)
    direct = (type(out) is Table and not out.masked and len(out.columns) > 0
              and out.ColumnClass is Column)
    for name, value in cols.items():
        old = out.columns.get(name)
        if (direct and type(value) is np.ndarray and value.ndim >= 1 and len(value) == n
                and value.dtype.kind in "biufcU" and (old is None or not old.info.indices)):
            col = Column(value, name=name, unit=(units or {}).get(name), copy=False)
            col.parent_table = out
            out.columns.__setitem__(name, col, validated=True)
        else:
            out[name] = value
            if units and units.get(name) is not None:
                out[name].unit = units[name]
