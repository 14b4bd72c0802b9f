"""What a catalog's columns mean: which HDU they go to, their units, and the provenance
keywords every catalog carries.

Why one table of units keyed by column name (and name patterns): models and later stages
(verification, emission lines) add their own columns; they only have to pick a name that
follows the conventions (``*_FLUX``, ``*_EW``, ``Z_*`` …) for the writer to give it a unit,
in every format, without the writer knowing the stage.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import shlex
import sys
from pathlib import Path

import astropy.units as u
import numpy as np

__all__ = ["FIBERMAP_COLUMNS", "IDENTIFIER_DTYPES", "unit_for", "canonical_order",
           "provenance", "model_identity", "identifier_columns"]

#: Per-spectrum identifiers taken from the input's metadata into the catalog (FITS: the
#: FIBERMAP HDU) with the dtype they get there, so that parts from different surveys agree.
IDENTIFIER_DTYPES: dict[str, str] = {
    "ROW": "i8", "RA": "f8", "DEC": "f8", "PLATE": "i8", "MJD": "i8", "FIBERID": "i8",
    "OBSID": "i8", "SPECOBJID": "U24", "LMJD": "i8", "SPID": "i8", "TILEID": "i8",
    "FIBER": "i8", "EXPID": "i8", "NIGHT": "i8", "SURVEY": "U16", "DESIG": "U32",
}
#: Columns of the FIBERMAP HDU (TARGETID is in both HDUs, as in Redrock's files).
FIBERMAP_COLUMNS = ("TARGETID", "SOURCE", *IDENTIFIER_DTYPES)

_FLUX = u.Unit("1e-17 erg / (s cm2 Angstrom)")
_LINE_FLUX = u.Unit("1e-17 erg / (s cm2)")
_ONE = u.dimensionless_unscaled
_KMS = u.km / u.s

#: Exact column names → unit.
_UNITS: dict[str, u.UnitBase] = {
    "Z": _ONE, "ZERR": _ONE, "Z_NET": _ONE, "ZERR_NET": _ONE, "Z_SECOND": _ONE,
    "RA": u.deg, "DEC": u.deg, "CHI2": _ONE, "DELTACHI2": _ONE, "CHI2_MIN": _ONE,
    "ANOMALY_SCORE": _ONE, "VDISP": _KMS, "FLUX": _FLUX, "IVAR": _FLUX ** -2,
}
#: Name endings → unit (longest first wins), for columns added by later stages.
_SUFFIX_UNITS: tuple[tuple[str, u.UnitBase], ...] = (
    ("_FLUX_IVAR", _LINE_FLUX ** -2), ("_FLUX_ERR", _LINE_FLUX), ("_FLUX", _LINE_FLUX),
    ("_EW_IVAR", u.AA ** -2), ("_EW_ERR", u.AA), ("_EW", u.AA),
    ("_CONT", _FLUX), ("_AMP", _FLUX), ("_WAVE", u.AA),
    ("_SIGMA_IVAR", _KMS ** -2), ("_SIGMA", _KMS), ("_VSHIFT", _KMS), ("_ZERR", _ONE),
    ("_DCHI2", _ONE),
)
#: Name beginnings → unit.
_PREFIX_UNITS: tuple[tuple[str, u.UnitBase], ...] = (
    ("PROB_", _ONE), ("CHI2_", _ONE), ("Z_", _ONE), ("FLUX_", _FLUX),
)


def unit_for(name: str) -> u.UnitBase | None:
    """The unit of catalog column ``name`` (None: no unit, e.g. ids, flags, labels)."""
    if name in _UNITS:
        return _UNITS[name]
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    for prefix, unit in _PREFIX_UNITS:
        if name.startswith(prefix):
            return unit
    return None


def canonical_order(names) -> list[str]:
    """TARGETID, SOURCE, the model's columns in the given order, then the identifiers:
    the order every format writes and reads back (a FITS file splits the columns over two
    HDUs; reading re-joins them in this order)."""
    names = list(names)
    head = [n for n in ("TARGETID", "SOURCE") if n in names]
    ids = [n for n in names if n in FIBERMAP_COLUMNS and n not in head]
    return head + [n for n in names if n not in head and n not in ids] + ids


def identifier_columns(meta, n: int) -> dict[str, np.ndarray]:
    """The identifier columns ``meta`` has (RA, DEC, PLATE/MJD/FIBERID, OBSID, ROW …),
    cast to :data:`IDENTIFIER_DTYPES`; masked values become NaN / -1 / ''."""
    out = {}
    for name, dtype in IDENTIFIER_DTYPES.items():
        if name not in meta.colnames:
            continue
        col = meta[name]
        fill = np.nan if dtype == "f8" else ("" if dtype.startswith("U") else -1)
        values = col.filled(fill) if hasattr(col, "filled") else col
        try:
            out[name] = np.asarray(values).astype(dtype).reshape(n)
        except (TypeError, ValueError):       # a survey id that is not a number: skip it
            continue
    return out


def model_identity(model) -> tuple[str, str]:
    """(tag, sha256 of the weights) of a model.

    A model loaded from a file carries the file's hash (set by ``load_model``); a model
    built in memory is hashed from its saved state, so two different weight sets never
    share an identity."""
    sha = getattr(model, "file_sha256", None)
    if not sha:
        import torch
        buf = io.BytesIO()
        torch.save(model.get_state(), buf)
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
    return model.tag, sha


def provenance(model, n_input: int, command: list[str] | None = None) -> dict:
    """FITS-style provenance keywords (≤ 8 characters) for a catalog made by ``model``."""
    from .. import __version__
    tag, sha = model_identity(model)
    argv = list(sys.argv if command is None else command)
    if argv and Path(argv[0]).name in ("cli.py", "__main__.py"):   # python -m specsift.cli
        argv[0] = "specsift"
    out = {"SPECSIFT": __version__, "MODEL": tag, "MODELSHA": sha,
           "DATE": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
           "NINPUT": int(n_input),
           "COMMAND": " ".join(shlex.quote(a) for a in [Path(argv[0]).name, *argv[1:]])
           if argv else ""}
    path = getattr(model, "file_path", None)
    if path:
        out["MODELFIL"] = Path(path).name
    return out
