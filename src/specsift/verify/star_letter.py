"""A survey's star letter (A/F/G/K/M) from its library fit and a few line indices: small trees.

Why: LAMOST's letter is what its own template match says, and near the type borders that is
not a temperature (its F9 stars have a median LASP Teff 5620 K and [Fe/H] −0.04, its G0 5820 K
and −0.56, its G3 5620 K and −0.34: docs/verify.md, "Letter").  The vote of the library's
near-best templates (:func:`.subtype.letter_vote`) reads the χ² alone; what separates
LAMOST's F9 from its G, and its A9 from its F0, at a given χ² is partly in line strengths
and in the continuum colour that the fit's additive polynomial takes out.  A gradient-boosted
tree ensemble (scikit-learn's ``HistGradientBoostingClassifier``; 200 rounds, 15 leaves,
learning rate 0.05, L2 1) on, per star:

* Δχ²_j / (χ²_min / N) of every library template j (clipped at 50), the fit the vote reads;
* the vote's per-letter weight max_j exp(−Δ_j / 400);
* 12 line indices (Hδ, Hγ+G band, G band, Ca 4227, Hβ, Mg b, Fe 5270, Na D, Ca K, Fe 4531,
  Hα, TiO 7100): 1 − ⟨band⟩ / mean(⟨blue side⟩, ⟨red side⟩), means over good pixels;
* 6 colours ln(⟨f⟩ over 500 Å from 4000, 4500, 5500, 6000, 6500, 7500 Å / ⟨f⟩ 5000–5500 Å);
* whether the spectrum's pipeline version is one whose labels the best template follows
  (:data:`.subtype.BEST_ONLY_VERSIONS`: LAMOST v2.6),

all in the star's rest frame at its integer pixel shift, from the stage's cleaned weights.
The line bands are Lick-style air wavelengths read on the (vacuum) log-λ grid, ≈ 1.5 Å off:
harmless, as the trees were trained on the same bands, and so they stay (moving them would
move every threshold).  A band that the grid does not reach (Ca II K on a grid from 4000 Å) has no pixel, as a band
whose pixels are all masked: its mean 0 (an index 1 − 0/continuum, or 0 without continuum; a
colour at the floor).
Trained on the training split of ``lamost-real`` only (features of each star from the library
built without its fold: ``benchmarks/build_lamost_templates.py --letter-model``); CV inside
the training split (folds by observing plan) 0.899 → 0.917, held-out (scored once, at
LAMOST's z) 0.882 → 0.909.  What ships (``data/templates/lamost_letter.npz``) is the trees
as plain arrays (no pickle); :meth:`LetterTrees.predict_raw` walks them in numpy, all trees
at once.  The file also holds the digest of the library its Δχ² features were made with
(:func:`library_digest` of ``lamost_stars.npz``), its feature count and the scikit-learn
version that fitted it: :func:`usable_trees` checks the first two against the library that
ships, as trees on another library read other features.
"""

from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from importlib import resources

import numpy as np

from .templates import SURVEY_LIBRARIES

__all__ = ["LetterTrees", "letter_features", "letter_trees_for", "usable_trees",
           "SURVEY_LETTER_MODELS", "LINE_INDICES", "COLOURS", "from_sklearn", "library_digest",
           "n_features", "relative_dchi2"]

#: survey → its letter model in ``data/templates/`` (built by build_lamost_templates.py)
SURVEY_LETTER_MODELS = {"LAMOST": "lamost_letter.npz"}
#: (blue side, band, red side) rest Å of the line indices
LINE_INDICES = (
    ((4030, 4060), (4080, 4120), (4130, 4160)),     # Hδ
    ((4283, 4319), (4319, 4363), (4367, 4419)),     # Hγ and the G band's red half
    ((4268, 4283), (4281, 4316), (4318, 4336)),     # G band
    ((4211, 4219), (4222, 4234), (4241, 4251)),     # Ca I 4227
    ((4828, 4848), (4848, 4877), (4877, 4892)),     # Hβ
    ((5142, 5161), (5161, 5194), (5192, 5206)),     # Mg b
    ((5233, 5248), (5245, 5286), (5285, 5318)),     # Fe 5270
    ((5860, 5875), (5876, 5909), (5922, 5948)),     # Na D
    ((3900, 3920), (3920, 3945), (3990, 4010)),     # Ca II K
    ((4450, 4474), (4500, 4530), (4560, 4579)),     # Fe 4531
    ((6500, 6540), (6550, 6575), (6585, 6620)),     # Hα
    ((7000, 7050), (7050, 7150), (7150, 7200)),     # TiO 7100
)
#: colour windows: 500 Å from each start, against 5000–5500 Å
COLOURS = (4000, 4500, 5500, 6000, 6500, 7500)
COLOUR_REF = (5000, 5500)
#: Δχ² (in units of χ²_min per pixel, :func:`relative_dchi2`) clip and the per-letter
#: weight's scale: 400 = 2·τ of the vote (``subtype.LIBRARY_VOTE``, τ = 200) when the trees
#: were trained, frozen by that training (their thresholds are on these weights), so it does
#: not follow a later change of τ
DCHI2_CLIP = 50.0
WEIGHT_SCALE = 400.0
LETTERS = "AFGKM"


def letter_features(wave, f, good, shift, chi2, names, ngood, best_only) -> np.ndarray:
    """(R, :func:`n_features`) features (module docstring) of R spectra: ``f`` (R, P) flux
    (any scale, 0 where not ``good``: the stage's f = x/w is) and ``good`` (R, P) on a grid of
    rest wavelengths ``wave`` (P,), each seen at integer pixel ``shift`` (R,) (rest pixel q is
    observed pixel q + shift); ``chi2`` (R, J) of the library templates ``names`` with
    ``ngood`` (R,) fitted pixels; ``best_only`` (R,) True for a pipeline version in
    BEST_ONLY_VERSIONS."""
    d = relative_dchi2(chi2, ngood)
    w = np.exp(-d / WEIGHT_SCALE)
    onehot = letter_columns(names if isinstance(names, tuple) else tuple(map(str, names)))
    vw = (w[:, :, None] * onehot).max(axis=1)          # per letter max_j w_j (0: no template)
    means = _band_means(np.asarray(wave, np.float64), f, good, np.asarray(shift, np.int64))
    nl = len(LINE_INDICES)
    blue, mid, red = means[:, 0:3 * nl:3], means[:, 1:3 * nl:3], means[:, 2:3 * nl:3]
    cont = (blue + red) / 2
    ref = np.maximum(means[:, -1:], 1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        li = 1.0 - mid / np.where(cont > 0, cont, np.nan)
        co = np.log(np.maximum(means[:, 3 * nl:-1], 1e-6) / ref)
    extra = np.nan_to_num(np.hstack([li, co]), nan=0.0, posinf=0.0, neginf=0.0)
    return np.hstack([np.minimum(d, DCHI2_CLIP), vw, extra,
                      np.asarray(best_only, float)[:, None]])


def n_features(n_templates: int) -> int:
    """The feature count of :func:`letter_features` with a library of ``n_templates``."""
    return n_templates + len(LETTERS) + len(LINE_INDICES) + len(COLOURS) + 1


def relative_dchi2(chi2, ngood) -> np.ndarray:
    """(R, J) Δχ²_j / (χ²_min / N): each template's χ² above the row's best, in units of the
    best fit's χ² per fitted pixel (``ngood``: N), so that it follows the residuals' own level,
    template mismatch included, not the noise alone (the letter vote's and the trees' scale)."""
    chi2 = np.asarray(chi2, np.float64)
    best = chi2.min(axis=1, keepdims=True)
    per_pixel = np.maximum(best, 1e-30) / np.maximum(np.asarray(ngood, np.float64), 1.0)[:, None]
    return (chi2 - best) / per_pixel


@lru_cache(maxsize=16)
def letter_columns(names: tuple) -> np.ndarray:
    """(J, 5) 1.0 where template j's name starts with letter l of :data:`LETTERS`, cached
    (read-only): a run meets the same library in every batch."""
    out = np.array([[float(n[:1] == a) for a in LETTERS] for n in names]).reshape(-1, 5)
    out.flags.writeable = False
    return out


def _band_means(wave, f, good, shift) -> np.ndarray:
    """(R, B) mean of ``f`` (0 where not ``good``) over the good pixels of each band of
    :func:`_bands` (0 where none), from per-row cumulative sums (float64, as far as the last
    band's edge) read at the bands' observed pixel edges (rest edge + shift), flux and pixel
    count sums side by side so that one gather reads all four edges."""
    npix = f.shape[1]
    lo, hi = _bands(wave)
    lo = np.clip(lo[None] + shift[:, None], 0, npix)
    hi = np.clip(hi[None] + shift[:, None], 0, npix)
    m = int(hi.max()) if hi.size else 0
    rows = len(f)
    cs = np.zeros((rows, 2, m + 1))
    np.cumsum(f[:, :m], axis=1, dtype=np.float64, out=cs[:, 0, 1:])
    np.cumsum(good[:, :m], axis=1, dtype=np.float64, out=cs[:, 1, 1:])
    nb = lo.shape[1]
    at = np.concatenate([hi, lo, hi + (m + 1), lo + (m + 1)], axis=1)
    e = np.take_along_axis(cs.reshape(rows, -1), at, 1)
    n = e[:, 2 * nb:3 * nb] - e[:, 3 * nb:]
    return (e[:, :nb] - e[:, nb:2 * nb]) / np.maximum(n, 1)


def _bands(wave):
    """(lo, hi) rest pixel edges (B,) of the bands on the grid ``wave``, in the order the
    features read them: per line index its blue side, band and red side; the colour windows;
    the colour reference.  Cached per grid (its ends and size): the pixel search over the grid
    for 43 bands was most of the features' time for a batch of one."""
    key = (float(wave[0]), float(wave[-1]), len(wave))
    if key not in _BANDS:
        bands = [b for trio in LINE_INDICES for b in trio]
        bands += [(a, a + 500) for a in COLOURS] + [COLOUR_REF]
        lo, hi = [], []
        for a, b in bands:
            idx = np.flatnonzero((wave > a) & (wave < b))
            # a band off the grid (Ca K on a grid from 4000 Å): no pixel, as if masked
            lo.append(idx[0] if idx.size else 0)
            hi.append(idx[-1] + 1 if idx.size else 0)
        _BANDS[key] = (np.array(lo, np.int64), np.array(hi, np.int64))
    return _BANDS[key]


_BANDS: dict = {}


class LetterTrees:
    """A multi-class gradient-boosted tree ensemble as plain arrays: per node ``feature``,
    ``threshold`` (go left where x ≤ it), ``missing_left`` (where x is NaN: go left),
    ``left``/``right`` (global node indices), ``leaf``, ``value``; ``roots`` (T,) with
    ``klass`` (T,) the class each tree adds to; ``baseline`` (C,); ``classes`` (C,) the
    letters; ``names`` the library template order of the Δχ² features; ``n_features`` the
    width of the rows it reads; ``library_digest`` (:func:`library_digest` of the library it
    was trained on, '' unknown); ``sklearn_version`` that fitted it."""

    def __init__(self, arrays: dict):
        self.a = {k: np.asarray(v) for k, v in arrays.items()}
        missing = {"n_features", "missing_left"} - set(self.a)
        if missing:
            raise ValueError(f"letter trees without {sorted(missing)}: a model from before "
                             "they were stored; rebuild it (build_lamost_templates.py "
                             "--letter-model)")
        self.classes = np.asarray(self.a["classes"]).astype(str)
        self.names = tuple(np.asarray(self.a["names"]).astype(str))
        self.depth = int(self.a["max_depth"])
        self.n_features = int(self.a["n_features"])
        self.library_digest = str(self.a.get("library_digest", ""))
        self.a["leaf"] = self.a["leaf"].astype(bool)
        self.a["missing_left"] = self.a["missing_left"].astype(bool)
        #: (T, C) 1 where tree t adds to class c
        self._onehot = np.eye(len(self.classes))[self.a["klass"]]

    def predict_raw(self, X) -> np.ndarray:
        """(R, C) raw scores: the baseline plus each tree's leaf value.  Every (row, tree)
        pair walks at once, and each step moves only the pairs not yet at a leaf (most
        reach one in 3–6 of the ≤ 13 levels), so the cost follows the paths' mean length.
        A NaN feature goes where scikit-learn sends it (``missing_left``).  Rows of another
        width than the trees were fitted on are an error, not another row's features."""
        a = self.a
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"letter trees: rows of {self.n_features} features expected, "
                             f"not an array of shape {X.shape}")
        n, t = len(X), len(a["roots"])
        node = np.tile(a["roots"], n)                      # pair i = (row i // t, tree i % t)
        base = np.repeat(np.arange(n) * X.shape[1], t)     # row offsets into X.ravel()
        flat = X.ravel()
        nan = bool(np.isnan(flat).any())
        live = np.flatnonzero(~a["leaf"][node])
        while live.size:
            nd = node[live]
            x = flat[base[live] + a["feature"][nd]]
            left = x <= a["threshold"][nd]
            if nan:
                left |= np.isnan(x) & a["missing_left"][nd]
            node[live] = np.where(left, a["left"][nd], a["right"][nd])
            live = live[~a["leaf"][node[live]]]
        return a["baseline"][None] + a["value"][node].reshape(n, t) @ self._onehot

    def predict(self, X) -> np.ndarray:
        return self.classes[np.argmax(self.predict_raw(X), axis=1)]

    def save(self, path) -> None:
        np.savez_compressed(path, **self.a)


def from_sklearn(model, names, library: str = "", meta: dict | None = None) -> LetterTrees:
    """:class:`LetterTrees` of a fitted ``HistGradientBoostingClassifier`` of three or more
    classes on numerical features (no categorical ones: their bitset splits are not walked
    here), its nodes' own thresholds and missing-value directions; ``library``: the
    :func:`library_digest` of the library whose Δχ² the Δχ² features are."""
    import sklearn
    if getattr(model, "is_categorical_", None) is not None:
        raise ValueError("from_sklearn: categorical features are not supported")
    k = len(model.classes_)
    if not k > 2 or model.n_trees_per_iteration_ != k:
        raise ValueError(f"from_sklearn: one tree per class and round of ≥ 3 classes expected, "
                         f"not {model.n_trees_per_iteration_} trees for {k} classes")
    feat, thr, mleft, left, right, leaf, value, roots, klass = ([] for _ in range(9))
    off, depth = 0, 0
    for it in model._predictors:
        for c, tree in enumerate(it):
            nd = tree.nodes
            roots.append(off)
            klass.append(c)
            feat.append(nd["feature_idx"])
            thr.append(nd["num_threshold"])
            mleft.append(nd["missing_go_to_left"].astype(bool))
            left.append(nd["left"].astype(np.int64) + off)
            right.append(nd["right"].astype(np.int64) + off)
            leaf.append(nd["is_leaf"].astype(bool))
            value.append(nd["value"])
            depth = max(depth, int(nd["depth"].max()))
            off += len(nd)
    base = np.asarray(model._baseline_prediction, np.float64).reshape(-1)
    arrays = dict(feature=np.concatenate(feat).astype(np.int64),
                  threshold=np.concatenate(thr).astype(np.float64),
                  missing_left=np.concatenate(mleft),
                  left=np.concatenate(left), right=np.concatenate(right),
                  leaf=np.concatenate(leaf), value=np.concatenate(value).astype(np.float64),
                  roots=np.array(roots, np.int64), klass=np.array(klass, np.int64),
                  baseline=np.broadcast_to(base, (k,)).copy(),
                  classes=np.asarray(model.classes_).astype(str),
                  names=np.asarray(names).astype(str), max_depth=depth,
                  n_features=int(model.n_features_in_), library_digest=str(library),
                  sklearn_version=str(sklearn.__version__))
    for key, v in (meta or {}).items():
        arrays[f"meta_{key}"] = np.asarray(v)
    return LetterTrees(arrays)


def library_digest(names, flux) -> str:
    """SHA-256 of a library's template names and its stored (float16) flux: what a letter
    model's Δχ² features were made with."""
    h = hashlib.sha256("\n".join(map(str, names)).encode())
    h.update(np.ascontiguousarray(np.asarray(flux, np.float16)).tobytes())
    return h.hexdigest()


@lru_cache(maxsize=4)
def shipped_library_digest(survey: str) -> str:
    """:func:`library_digest` of the library ``survey`` ships (``.templates.SURVEY_LIBRARIES``),
    '' where it has none."""
    name = SURVEY_LIBRARIES.get(str(survey).strip().upper())
    path = resources.files("specsift") / "data" / "templates" / str(name)
    if name is None or not path.is_file():
        return ""
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
        return library_digest(f["names"], f["flux"])


@lru_cache(maxsize=4)
def letter_trees_for(survey: str) -> LetterTrees | None:
    """The shipped letter model of ``survey`` (:data:`SURVEY_LETTER_MODELS`), or None where
    it has none or this install lacks the file."""
    name = SURVEY_LETTER_MODELS.get(str(survey).strip().upper())
    if name is None:
        return None
    path = resources.files("specsift") / "data" / "templates" / name
    if not path.is_file():
        return None
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
        return LetterTrees({k: f[k] for k in f.files})


@lru_cache(maxsize=16)
def usable_trees(survey: str, names: tuple) -> LetterTrees | None:
    """The survey's letter model where it was trained on the library that ships with these
    template ``names`` (same names, same flux digest, as many features), else None — the
    stage then picks the letter by the vote — with a warning, once (cached), where a model
    ships but does not fit: ``lamost_stars.npz`` rebuilt without ``--letter-model`` leaves
    trees whose Δχ² features are of another library.  A basis carrying a library of its own
    (the builder's cross-validation) passes ``letter_trees=False`` instead."""
    trees = letter_trees_for(survey)
    if trees is None:
        return None
    why = []
    if trees.names != tuple(map(str, names)):
        why.append("its templates are not the library's")
    digest = shipped_library_digest(survey)
    if not trees.library_digest or trees.library_digest != digest:
        why.append("it was trained on another library (flux digest "
                   f"{trees.library_digest[:12] or 'none'} ≠ {digest[:12] or 'none'})")
    if trees.n_features != n_features(len(names)):
        why.append(f"it reads {trees.n_features} features, not {n_features(len(names))}")
    if why:
        warnings.warn(f"{survey} letter model {SURVEY_LETTER_MODELS.get(survey)} not used: "
                      f"{'; '.join(why)} — rebuild it with build_lamost_templates.py "
                      "--letter-model; letters by the vote", RuntimeWarning, stacklevel=3)
        return None
    return trees
