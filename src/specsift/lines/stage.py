"""The pipeline stage: line columns and rule-based subclasses added to a catalog.

After the model (and the verification stage, whose best-fit continuum it can take), every
GALAXY and QSO row gets its line measurements, and its SUBTYPE / CLASS_LABEL are set from
SDSS's rules (:mod:`.rules`) wherever the lines decide: for a galaxy when the four BPT lines
were measurable, for a quasar when a broad-line width was.  Elsewhere (a line outside the
spectrum, a star, a class set with no label for the rule's answer) the network's answer
stays.  The network's own answer is kept in CLASS_LABEL_NET / SUBTYPE_NET, and
SUBTYPE_FROM_LINES says which rows the rules decided.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..catalog import keep_net_answer, put_columns
from ..classes import CLASS_SETS, map_sdss, subtype_of
from .measure import LINE_COLUMNS, add_line_columns, line_columns, line_names, not_converged
from .rules import sdss_subclass

__all__ = ["add_lines", "class_set_of", "STAGE_COLUMNS"]

#: the columns :func:`add_lines` appends to a catalog, in order
STAGE_COLUMNS = tuple(f"{name}_{col}" for name in line_names() for col in LINE_COLUMNS) + (
    "SUBCLASS_LINES", "CLASS_LABEL_NET", "SUBTYPE_NET", "SUBTYPE_FROM_LINES", "LINES_NOCONV")


def class_set_of(catalog: Table) -> str | None:
    """The class set whose labels are the catalog's PROB_ columns (None if none matches)."""
    names = tuple(c[5:] for c in catalog.colnames if c.startswith("PROB_"))
    for name, labs in CLASS_SETS.items():
        if set(labs) == set(names):
            return name
    return None


def add_lines(batch, catalog: Table, continuum=None, sigma_inst=None, *,
              copy: bool = True) -> Table:
    """``catalog`` (one row per spectrum of ``batch``, with Z and SPECTYPE) plus line
    columns, SUBCLASS_LINES (the SDSS-style subclass the rules give), CLASS_LABEL /
    SUBTYPE from the rules where they decide, the network's in *_NET, SUBTYPE_FROM_LINES,
    LINES_NOCONV (which fits stopped unconverged at the iteration cap).

    ``continuum`` (N, P), optional: an emission-line-free continuum model of each spectrum
    (e.g. the verification fit); galaxies without one get the BC03 fit of
    :mod:`.continuum`.

    ``copy=False``: the columns go into ``catalog`` itself, which is returned (a caller that
    drops its catalog: :func:`~specsift.pipeline.local.predict_batch`; the shallow copy of
    ~40 columns was ~1.5 ms of a one-spectrum batch)."""
    if len(catalog) != len(batch):
        raise ValueError(f"catalog has {len(catalog)} rows for {len(batch)} spectra")
    z = np.asarray(catalog["Z"], float)
    spectype = np.char.strip(np.asarray(catalog["SPECTYPE"]).astype(str))
    cols, white, fits = line_columns(batch.loglam, batch.flux, batch.ivar, z, spectype,
                                  continuum=continuum, sigma_inst=sigma_inst)
    # SDSS's detection thresholds were set on its ivar-only (white-noise) errors
    sub, bpt_ok, broad_ok = sdss_subclass({**cols, **white}, spectype, z)
    # the catalog's columns are not copied: every column below replaces, never writes into,
    # one of them (a copy and an hstack were a tenth of the stage)
    out = catalog.copy(copy_data=False) if copy else catalog
    add_line_columns(out, cols)
    put_columns(out, {"SUBCLASS_LINES": sub})
    label_net = np.asarray(catalog["CLASS_LABEL"]).astype("U24")
    keep_net_answer(out, catalog, ("CLASS_LABEL", "SUBTYPE"), dtype="U24")
    decided = np.zeros(len(out), bool)
    cset = class_set_of(catalog)
    if cset is not None:
        labs = set(CLASS_SETS[cset])
        rule = _map_unique(spectype, sub, cset)
        gal = (spectype == "GALAXY") & bpt_ok
        qso = (spectype == "QSO") & broad_ok
        decided = (gal | qso) & np.isin(rule, list(labs)) & (rule != "")
        label = np.where(decided, rule, label_net)
        put_columns(out, {"CLASS_LABEL": label})
        label = label.astype(str)
        sub_of = _per_distinct(label, lambda i: np.array([subtype_of(x) for x in label[i]],
                                                         dtype=str))
        put_columns(out, {"SUBTYPE": np.where(
            decided, sub_of, np.asarray(catalog["SUBTYPE"]).astype("U24"))})
    # 1 = the rules set SUBTYPE/CLASS_LABEL (an integer: CSV writers disagree on booleans);
    # LINES_NOCONV: bits of the fits that hit the iteration cap unconverged
    # (measure.NOCONV_BITS)
    put_columns(out, {"SUBTYPE_FROM_LINES": decided.astype(np.int16),
                      "LINES_NOCONV": not_converged(fits, len(out))})
    return out


def _map_unique(spectype, sub, cset):
    """``map_sdss(spectype, sub, cset)`` made once per distinct (SPECTYPE, subclass) pair."""
    spectype = np.asarray(spectype).astype(str)
    sub = np.asarray(sub).astype(str)
    keys = np.char.add(np.char.add(spectype, "\x00"), sub)
    return _per_distinct(keys, lambda i: map_sdss(spectype[i], sub[i], cset))


def _per_distinct(keys: np.ndarray, fn) -> np.ndarray:
    """``fn(first)`` — per-row Python work on the rows ``first``, one for each distinct value
    of ``keys`` — spread back to every row: a batch has a handful of distinct labels, and
    the per-row string work was ~1 ms a batch."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return np.asarray(fn(np.zeros(0, np.int64)))
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    return np.asarray(fn(first))[inv.ravel()]
