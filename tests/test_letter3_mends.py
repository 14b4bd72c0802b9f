"""Review mends of the LAMOST letter trees (verify/star_letter.py, verify/subtype.py): stale
trees are not used, rows of the wrong width are refused, bands off the grid have no pixel,
the scikit-learn conversion keeps what it cannot walk out and NaN directions in, and the
letter model's version input does not follow the vote's settings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from specsift.spectra import DEFAULT_GRID, SpectraBatch
from specsift.verify import star_letter as SLT
from specsift.verify.fit import prepare
from specsift.verify.subtype import letter_inputs, star_subtypes, star_subtypes_at
from specsift.verify.templates import bases_for


def _star(name, loglam=DEFAULT_GRID.loglam, survey="LAMOST", version=None, seed=1):
    """A noisy LAMOST library template ``name`` on grid ``loglam``, 2 pixels redward."""
    b = bases_for(loglam)["STAR"]
    temps, names = b.survey_named["LAMOST"]
    t = temps[list(names).index(name)].astype(np.float64)
    p = np.arange(loglam.size, dtype=float)
    flux = 10 * np.interp(p + b.offset - 2.0, np.arange(t.size), t)
    ivar = np.where(flux > 0, 1.0 / (np.abs(flux) / 30 + 1e-3) ** 2, 0.0)
    rng = np.random.default_rng(seed)
    flux = flux + rng.normal(0, 1, flux.size) / np.sqrt(np.maximum(ivar, 1e-12)) * (ivar > 0)
    batch = SpectraBatch(loglam, flux[None].astype(np.float32), ivar[None].astype(np.float32))
    batch.meta["SURVEY"] = [survey]
    if version is not None:
        batch.meta["VERSPIPE"] = [version]
    return batch, b


@pytest.fixture
def fresh_checks():
    SLT.usable_trees.cache_clear()
    yield
    SLT.usable_trees.cache_clear()


def test_shipped_trees_carry_the_library_digest_and_are_used(fresh_checks):
    trees = SLT.letter_trees_for("LAMOST")
    assert trees.library_digest == SLT.shipped_library_digest("LAMOST") != ""
    assert trees.n_features == SLT.n_features(len(trees.names))
    assert str(trees.a["sklearn_version"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SLT.usable_trees("LAMOST", trees.names) is trees


def test_trees_of_another_library_warn_once_and_the_vote_names(monkeypatch, fresh_checks):
    """A library rebuilt without --letter-model (another flux digest): one warning, and every
    star is named as with the letter model off (the vote), not by trees reading features of
    another library."""
    batch, b = _star("F5", version="v2.9.8")
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    vote = star_subtypes(batch, b, [0], [2.0], prep, letter_trees=False)
    monkeypatch.setattr(SLT, "shipped_library_digest", lambda survey: "0" * 64)
    with pytest.warns(RuntimeWarning, match="another library"):
        got = star_subtypes(batch, b, [0], [2.0], prep)
    assert (got == vote).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # once: the check is cached
        assert (star_subtypes(batch, b, [0], [2.0], prep) == vote).all()


def test_trees_of_another_width_are_not_used(monkeypatch, fresh_checks):
    trees = SLT.letter_trees_for("LAMOST")
    narrow = SLT.LetterTrees({**trees.a, "n_features": trees.n_features - 1})
    monkeypatch.setattr(SLT, "letter_trees_for", lambda survey: narrow)
    with pytest.warns(RuntimeWarning, match="features"):
        assert SLT.usable_trees("LAMOST", trees.names) is None


def test_rows_of_the_wrong_width_are_an_error_not_another_rows_features():
    trees = SLT.letter_trees_for("LAMOST")
    X = np.zeros((3, trees.n_features))
    assert trees.predict(X).shape == (3,)
    for bad in (np.zeros((3, trees.n_features - 1)), np.zeros((3, trees.n_features + 1)),
                np.zeros(trees.n_features)):
        with pytest.raises(ValueError, match=f"{trees.n_features} features"):
            trees.predict_raw(bad)


def test_a_star_on_a_grid_without_ca_k_is_named_with_that_band_as_if_masked():
    """On a 4000–9000 Å grid Ca II K's bands (3900–3945 Å) have no pixel: the star is named
    (a library template; the trees never saw a star without Ca K, so not necessarily by its
    own letter) instead of an IndexError, and its line indices and colours are those of the
    same star on the full grid with the pixels below 4000 Å masked."""
    batch, b = _star("G5")
    wave = 10.0 ** DEFAULT_GRID.loglam
    cut = slice(int(np.searchsorted(wave, 4000.0)), int(np.searchsorted(wave, 9000.0)))
    short = SpectraBatch(DEFAULT_GRID.loglam[cut], batch.flux[:, cut], batch.ivar[:, cut])
    short.meta["SURVEY"] = ["LAMOST"]
    bs = bases_for(short.loglam)["STAR"]
    got = star_subtypes_at(short, [0], bs.z_of([2.0]))
    assert got[0] in bs.survey_named["LAMOST"][1]
    masked = SpectraBatch(DEFAULT_GRID.loglam, batch.flux,
                          np.where(wave < wave[cut][0], 0.0, batch.ivar).astype(np.float32))
    masked.meta["SURVEY"] = ["LAMOST"]
    x_short, names = letter_inputs(short, bs, [0], [2.0],
                                   prepare(short.flux, short.ivar, short.mask))
    x_mask, _ = letter_inputs(masked, b, [0], [2.0],
                              prepare(masked.flux, masked.ivar, masked.mask))
    lines = slice(len(names) + 5, -1)                      # line indices and colours
    assert np.allclose(x_short[0, lines], x_mask[0, lines], rtol=1e-5, atol=1e-6)
    assert np.isfinite(x_short).all()


def test_band_means_are_the_plain_means_of_good_pixels():
    rng = np.random.default_rng(2)
    wave = 10.0 ** DEFAULT_GRID.loglam
    good = rng.random((3, wave.size)) > 0.2
    f = np.where(good, rng.random((3, wave.size)), 0.0).astype(np.float32)
    shift = np.array([0, 5, -3])
    got = SLT._band_means(wave, f, good, shift)
    lo, hi = SLT._bands(wave)
    for r in range(3):
        for j in range(len(lo)):
            a, z = np.clip([lo[j] + shift[r], hi[j] + shift[r]], 0, wave.size)
            g = good[r, a:z]
            want = f[r, a:z][g].astype(np.float64).mean() if g.any() else 0.0
            assert got[r, j] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_from_sklearn_keeps_names_nan_directions_and_refuses_what_it_cannot_walk():
    from sklearn.ensemble import HistGradientBoostingClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = np.array(list("AFGKM"))[np.digitize(X[:, 0] + 0.5 * X[:, 1], [-1, 0, 0.7, 1.5])]
    X[rng.random(X.shape) < 0.15] = np.nan                # NaNs seen in training: learnt side
    m = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=7, random_state=0).fit(X, y)
    trees = SLT.from_sklearn(m, ["LONGNAME_12345", "T1"])
    assert trees.names == ("LONGNAME_12345", "T1")          # not cut at 8 characters
    Xt = rng.normal(size=(300, 4))
    Xt[rng.random(Xt.shape) < 0.3] = np.nan
    assert np.allclose(trees.predict_raw(Xt), m._raw_predict(Xt))
    two = HistGradientBoostingClassifier(max_iter=5).fit(X[:, :2], y == "G")
    with pytest.raises(ValueError, match="3 classes"):
        SLT.from_sklearn(two, ["T0"])
    cat = HistGradientBoostingClassifier(max_iter=5, categorical_features=[3]).fit(
        np.c_[np.nan_to_num(X[:, :3]), rng.integers(0, 3, len(X))], y)
    with pytest.raises(ValueError, match="categorical"):
        SLT.from_sklearn(cat, ["T0"])


def test_the_letter_models_version_input_does_not_follow_the_vote_settings(monkeypatch):
    """The trees' version input is always the stage's BEST_ONLY_VERSIONS: passing another
    best-only rule (the builder's CV does) leaves what the trees read, and so their answer,
    as it is; the builder's features are the stage's."""
    from specsift.verify.subtype import LIBRARY_NPOLY, LIBRARY_RANGE, _library_fit
    batch, b = _star("F9", version="v2.6.4")
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    seen = []
    walk = SLT.LetterTrees.predict_raw
    monkeypatch.setattr(SLT.LetterTrees, "predict_raw",
                        lambda self, X: seen.append(np.array(X)) or walk(self, X))
    ref = star_subtypes(batch, b, [0], [2.0], prep)
    assert (star_subtypes(batch, b, [0], [2.0], prep, best_only_versions={}) == ref).all()
    assert len(seen) == 2 and np.array_equal(seen[0], seen[1]) and seen[0][0, -1] == 1.0
    X, _ = letter_inputs(batch, b, [0], [2.0], prep)
    assert X[0, -1] == 1.0                                  # a v2.6 star
    fit = _library_fit(batch, b, "LAMOST", np.array([0]), np.array([0]), np.array([2.0]),
                       prep, LIBRARY_NPOLY, LIBRARY_RANGE)
    assert np.array_equal(fit.features(), X)
