"""The LAMOST star letter model (verify/star_letter.py): the plain-array trees walk as
scikit-learn's do, the features are the rest-frame ones at any pixel shift, the shipped model
matches the shipped library, and the stage uses it only where it ships."""

from __future__ import annotations

import numpy as np
import pytest

from specsift.spectra import DEFAULT_GRID, SpectraBatch
from specsift.verify import star_letter as SLT
from specsift.verify.fit import prepare
from specsift.verify.subtype import letter_inputs, star_subtypes
from specsift.verify.templates import bases_for


def test_plain_array_trees_predict_as_sklearn(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = np.array(list("AFGKM"))[np.digitize(X[:, 0] + 0.5 * X[:, 1] ** 2, [-1, 0, 0.7, 1.5])]
    m = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=7, random_state=0).fit(X, y)
    trees = SLT.from_sklearn(m, ["T0", "T1"])
    Xt = rng.normal(size=(200, 6))
    assert np.allclose(trees.predict_raw(Xt), m._raw_predict(Xt))
    assert (trees.predict(Xt) == m.predict(Xt)).all()
    trees.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as f:     # plain arrays, no pickle
        again = SLT.LetterTrees({k: f[k] for k in f.files})
    assert (again.predict(Xt) == m.predict(Xt)).all()


def test_features_are_the_rest_frame_ones_at_any_shift():
    """A star moved by k pixels and read at shift k has the features of the unmoved star at
    shift 0 (indices and colours in its rest frame); a deeper Hβ gives a larger Hβ index."""
    b = bases_for(DEFAULT_GRID.loglam)["STAR"]
    temps, names = b.survey_named["LAMOST"]
    t = temps[list(names).index("G2")].astype(np.float64)
    p = np.arange(DEFAULT_GRID.size)
    f0 = np.interp(p + b.offset, np.arange(t.size), t)
    wave = 10.0 ** DEFAULT_GRID.loglam
    k = 7
    f1 = np.zeros_like(f0)
    f1[k:] = f0[:-k]
    good0, good1 = f0 > 0, f1 > 0
    good0[-k:] = False                          # the same pixels in both frames
    f0, f1 = f0 * good0, f1 * good1             # flux 0 where not good, as the stage's f/w
    chi2 = np.array([[5.0, 3.0, 9.0]])
    nm = ("F5", "G2", "K1")
    x0 = SLT.letter_features(wave, f0[None], good0[None], [0], chi2, nm, [100], [False])
    x1 = SLT.letter_features(wave, f1[None], good1[None], [k], chi2, nm, [100], [False])
    assert np.allclose(x0, x1)
    hb = 3 + 5 + 4                              # Δχ² (3), letter weights (5), Hβ is index 4
    deep = f0 * np.where(np.abs(wave - 4861) < 10, 0.5, 1.0)
    x2 = SLT.letter_features(wave, deep[None], good0[None], [0], chi2, nm, [100], [False])
    assert x2[0, hb] > x0[0, hb] + 0.05
    assert x0[0, 1] == 0.0 and x0[0, 3 + 2] == 1.0      # best template: Δ 0, its letter G


def test_shipped_model_matches_the_shipped_library():
    trees = SLT.letter_trees_for("LAMOST")
    assert trees is not None and SLT.letter_trees_for("SDSS") is None
    _, names = bases_for(DEFAULT_GRID.loglam)["STAR"].survey_named["LAMOST"]
    assert trees.names == tuple(names)           # else the stage would fall back to the vote
    assert set(trees.classes) == set("AFGKM")
    assert float(trees.a["meta_cv_letter"]) > 0.9


def _star(name, survey):
    b = bases_for(DEFAULT_GRID.loglam)["STAR"]
    temps, names = b.survey_named["LAMOST"]
    t = temps[list(names).index(name)].astype(np.float64)
    p = np.arange(DEFAULT_GRID.size, dtype=float)
    flux = 10 * np.interp(p + b.offset - 2.0, np.arange(t.size), t)
    ivar = np.where(flux > 0, 1.0 / (np.abs(flux) / 30 + 1e-3) ** 2, 0.0)
    rng = np.random.default_rng(len(name))
    flux = flux + rng.normal(0, 1, flux.size) / np.sqrt(np.maximum(ivar, 1e-12)) * (ivar > 0)
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux[None].astype(np.float32),
                         ivar[None].astype(np.float32))
    batch.meta["SURVEY"] = [survey]
    return batch, b


@pytest.mark.parametrize("name", ["A5", "F5", "G5", "K5", "M0"])
def test_library_templates_keep_their_letter_with_the_trees(name):
    batch, b = _star(name, "LAMOST")
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    got = star_subtypes(batch, b, [0], [2.0], prep)[0]
    assert got[0] == name[0]
    X, names = letter_inputs(batch, b, [0], [2.0], prep)
    assert X.shape == (1, len(names) + 5 + len(SLT.LINE_INDICES) + len(SLT.COLOURS) + 1)
    assert np.isfinite(X).all()
    # SDSS spectra never meet the LAMOST trees: spEigenStar names them as before
    sd, b = _star(name, "SDSS")
    assert star_subtypes(sd, b, [0], [2.0], prepare(sd.flux, sd.ivar, sd.mask))[0] in \
        {s.split()[0] for s in b.star_names}
