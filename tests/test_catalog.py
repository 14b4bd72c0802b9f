"""The model catalog (specsift.catalog): the network's answer kept in *_NET by one owner."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from specsift.catalog import NET_COLUMNS, keep_net_answer, make_catalog
from specsift.lines import add_lines
from specsift.spectra import DEFAULT_GRID, SpectraBatch


def _model_catalog(n=3):
    probs = np.tile(np.array([[0.8, 0.1, 0.1]], np.float32), (n, 1))     # STAR first
    return make_catalog(Table({"TARGETID": np.arange(n)}), "three", probs,
                        np.zeros(n), np.full(n, 1e-4), "test")


def test_first_stage_that_changes_the_answer_owns_net_columns():
    cat = _model_catalog()
    first = cat.copy()
    keep_net_answer(first, cat)
    assert all(list(first[f"{c}_NET"]) == list(cat[c]) for c in NET_COLUMNS)
    first["Z"], first["CLASS_LABEL"] = 0.5, "QSO"             # the first stage's answer
    second = first.copy()
    keep_net_answer(second, first)                           # a later stage: no overwrite
    assert list(second["Z_NET"]) == [0.0] * 3 and list(second["CLASS_LABEL_NET"]) == ["STAR"] * 3


def test_lines_stage_keeps_the_verification_s_net_columns():
    n, p = 3, DEFAULT_GRID.size
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.ones((n, p), np.float32),
                         np.ones((n, p), np.float32))
    cat = _model_catalog(n)
    verified = cat.copy()
    keep_net_answer(verified, cat)
    verified["CLASS_LABEL_NET"] = "GALAXY"                   # as if the fit overruled it
    out = add_lines(batch, verified)
    assert list(out["CLASS_LABEL_NET"]) == ["GALAXY"] * 3
    bare = add_lines(batch, cat)                             # no verification: lines own them
    assert list(bare["CLASS_LABEL_NET"]) == ["STAR"] * 3 and "Z_NET" not in bare.colnames
    assert bare["SUBTYPE_NET"].dtype == np.dtype("U24")
