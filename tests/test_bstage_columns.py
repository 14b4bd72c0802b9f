"""put_columns makes the columns ``Table.__setitem__`` makes (order, names, dtypes, values,
units, descriptions), on one-row and many-row tables, and falls back where it must."""

import numpy as np
import pytest
from astropy.table import Column, Table

from specsift.catalog import put_columns


def _table(n):
    t = Table()
    t["A"] = Column(np.arange(n, dtype=np.float64), unit="km / s", description="old")
    t["S"] = np.array(["x"] * n, dtype="U6")
    return t


def _new_cols(n):
    return {"S": np.array(["GALAXY"] * n, dtype="U6"), "A": np.full(n, 2.5),
            "C": np.zeros((n, 3), np.float32), "M": Column(np.ones(n), unit="Angstrom"),
            "O": np.array(["a"] * n, dtype=object)}


def _same(a: Table, b: Table):
    assert a.colnames == b.colnames
    for k in a.colnames:
        ca, cb = a[k], b[k]
        assert type(ca) is type(cb) and ca.dtype == cb.dtype and ca.shape == cb.shape
        assert ca.unit == cb.unit and ca.description == cb.description and ca.name == k
        assert np.array_equal(np.asarray(ca), np.asarray(cb))
        assert ca.info.parent_table is a


@pytest.mark.parametrize("n", [1, 5])
def test_put_columns_as_setitem(n):
    ref, out = _table(n), _table(n)
    for k, v in _new_cols(n).items():
        ref[k] = v
    put_columns(out, _new_cols(n))
    _same(out, ref)
    # a table op on the result still works (the columns are the table's own)
    assert len(out[1:]) == n - 1 and out.colnames[:2] == ["A", "S"]


def test_put_columns_falls_back():
    masked = Table(_table(3), masked=True)
    put_columns(masked, {"A": np.zeros(3)})
    assert masked.masked and np.all(masked["A"] == 0)
    short = _table(3)
    with pytest.raises(ValueError):
        put_columns(short, {"B": np.zeros(2)})     # as __setitem__ says: wrong length


def test_add_lines_in_place_equals_the_copy_and_copy_keeps_the_input():
    from specsift.grid import DEFAULT_GRID as grid
    from specsift.lines import add_lines
    from specsift.spectra import SpectraBatch
    rng = np.random.default_rng(0)
    flux = (10 + rng.normal(0, 0.5, (2, grid.size))).astype(np.float32)
    ivar = np.full(flux.shape, 4.0, np.float32)
    batch = SpectraBatch(grid.loglam, flux, ivar)
    cat = Table({"Z": np.array([0.1, 1.2]), "SPECTYPE": np.array(["GALAXY", "QSO"]),
                 "SUBTYPE": np.array(["", ""]), "CLASS_LABEL": np.array(["GALAXY", "QSO"])})
    before = cat.colnames
    ref = add_lines(batch, cat)
    assert cat.colnames == before                  # the default leaves the input as it was
    same = add_lines(batch, cat, copy=False)
    assert same is cat and same.colnames == ref.colnames
    for k in ref.colnames:
        assert ref[k].dtype == same[k].dtype and ref[k].unit == same[k].unit
        assert np.array_equal(np.asarray(ref[k]), np.asarray(same[k]),
                              equal_nan=ref[k].dtype.kind == "f")
