"""Build ``src/specsift/data/templates/lamost_stars.npz``, the LAMOST star library, from the
training split of ``../shared/data/lamost-real`` only; ``--cv`` first scores the fit settings
by a 5-fold cross-validation inside that split.

    nice -n 10 .venv/bin/python benchmarks/build_lamost_templates.py [--cv [--quick]
                                    [--folds star|plan]] [--out PATH]

Which spectra: every lamost-real file whose CLASS is STAR (LAMOST's label) and that is *not*
in the held-out split of ``_lamost_real.heldout_mask`` (computed on the full label tables, as
``benchmarks/lamost_finetune.py`` and ``benchmarks/_lamost_survey.py`` compute it) — held-out
files are never opened.  Each is read with ``specsift.io.read`` onto the default grid, shifted
to the rest frame by LAMOST's own Z and averaged per subclass by
:func:`specsift.verify.star_library.build_library` (why and how: its module docstring).  What
ships is those means (float16) with their names, star counts and the list of files used: no
individual spectrum.

``--cv``: stars are split into 5 folds by a hash of their DESIG (repeat visits stay together;
``--folds plan``: of the held-out split's unit, the observing plan, :func:`folds`);
for each fold the library is built from the other four and the fold's stars with S/N_g ≥ 10
are named by :func:`specsift.verify.subtype.star_subtypes` — the code the verification stage
runs, each file's VERSPIPE included — at LAMOST's z, for a grid of polynomial terms, fit
ranges and letter rules (the best template; the vote of the k best,
:func:`specsift.verify.subtype.letter_vote`, for every pipeline version or all but v2.6);
printed: the A/F/G/K/M letter agreement with LAMOST per setting, and per folder for the
shipped one.  ``--quick``: only the 4–8 terms × 2 ranges × letter-rule grid (≈ 4 CPU-min).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _lamost_survey as LS  # noqa: E402
from _common import SHARED  # noqa: E402

from specsift.spectra import DEFAULT_GRID  # noqa: E402
from specsift.verify import star_library as SL  # noqa: E402

OUT = ROOT / "src" / "specsift" / "data" / "templates" / "lamost_stars.npz"
LETTER_OUT = OUT.with_name("lamost_letter.npz")
#: the letter model's trees (specsift.verify.star_letter), chosen by the --cv of letter3
TREE_PARAMS = dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                   random_state=0)


def train_rows(root: Path = SHARED / "lamost-real"):
    """Label rows (path → row) of the lamost-real STAR files outside the held-out split,
    sorted by path (the library does not depend on the order the folders are listed in)."""
    lab = LS.labels(root)
    rows = [r for p, r in sorted(lab.items())
            if not r["HELDOUT"] and str(r["CLASS"]).strip().upper() == "STAR"
            and np.isfinite(float(r["Z"])) and abs(float(r["Z"])) < 0.01]
    return rows


def read_rows(rows, with_versions: bool = False):
    """(flux, ivar with masked pixels 0) (N, P) on the default grid, one file at a time
    (``with_versions``: and each file's VERSPIPE, the LAMOST pipeline version that typed it,
    from the reader's meta)."""
    from specsift.io import read
    flux = np.zeros((len(rows), DEFAULT_GRID.size), np.float32)
    ivar = np.zeros_like(flux)
    versions = np.zeros(len(rows), "U16")
    for i, r in enumerate(rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = read(r["PATH"], grid=DEFAULT_GRID)
        flux[i] = b.flux[0]
        ivar[i] = np.where(b.mask[0], 0.0, b.ivar[0])
        if "VERSPIPE" in b.meta.colnames:
            versions[i] = str(b.meta["VERSPIPE"][0])
    return (flux, ivar, versions) if with_versions else (flux, ivar)


def build(rows, flux, ivar, min_stars: int = SL.MIN_STARS):
    z = np.array([float(r["Z"]) for r in rows])
    sub = [str(r["SUBCLASS"]) for r in rows]
    return SL.build_library(DEFAULT_GRID.loglam, flux, ivar, z, sub, min_stars)


def save(out: Path, rows, names, temps, counts, root: Path = SHARED / "lamost-real") -> None:
    files = np.array([str(Path(r["PATH"]).relative_to(root)) for r in rows])
    np.savez_compressed(
        out, names=names, flux=temps.astype(np.float16), nstars=counts,
        loglam0=DEFAULT_GRID.start, step=DEFAULT_GRID.step, files=files,
        split="lamost-real, CLASS STAR, outside benchmarks/_lamost_real.heldout_mask",
        min_stars=SL.MIN_STARS)


def _fold(desig: str, k: int = 5) -> int:
    return int(hashlib.sha1(desig.encode()).hexdigest()[:8], 16) % k


def folds(rows, by: str = "star", k: int = 5) -> np.ndarray:
    """(N,) fold of each row: by a hash of its DESIG (``by="star"``) or of the unit the
    held-out split holds out (``"plan"``: ``_lamost_real.split_keys``, the observing plan
    where it is small, else the star), every visit of a star in the fold of its first one.
    Why "plan": the held-out split keeps whole plans out, so a plan's calibration and
    observing conditions are never in the library that names its stars; folds by star put
    stars of one plan on both sides, which flatters the CV (0.909 by star, 0.902 by plan,
    against 0.879 held-out for what ships)."""
    if by == "star":
        return np.array([_fold(str(r["DESIG"]), k) for r in rows])
    if by != "plan":
        raise ValueError(f"folds: by must be 'star' or 'plan', not {by!r}")
    out, first = np.zeros(len(rows), int), {}
    for i, r in enumerate(rows):
        out[i] = first.setdefault(str(r["DESIG"]), _fold(str(r["SPLIT_KEY"]), k))
    return out


def _knn(rows, flux, ivar):
    """The kNN variant: every star its own template, named by its subclass."""
    z = np.array([float(r["Z"]) for r in rows])
    keys = np.array([SL.subclass_key(r["SUBCLASS"]) for r in rows])
    kept, X = SL.rest_normalised(DEFAULT_GRID.loglam, flux, ivar, z, np.flatnonzero(keys != ""))
    return keys[kept], np.stack([SL._fill(x) for x in X])


#: library variants --cv scores: name → (rows, flux, ivar) → (names, templates)
VARIANTS = {
    "median per subclass (ships)": lambda r, f, i: build(r, f, i)[:2],
    "3σ-clipped mean per subclass": lambda r, f, i: SL.build_library(
        DEFAULT_GRID.loglam, f, i, [float(x["Z"]) for x in r], [str(x["SUBCLASS"]) for x in r],
        center="clipped mean")[:2],
    "kNN: every training star a template": _knn,
}


def cross_validate(rows, flux, ivar, runs, k: int = 5, versions=None, by: str = "star"):
    """Letter agreement of each run (variant, npoly, lo, hi, vote[, best-only versions]) and
    its predicted letters (vote: (k, τ) of :func:`specsift.verify.subtype.letter_vote`, or
    None: the best template; best-only versions: VERSPIPE prefixes named by the best template
    anyway, default the stage's; ``versions``: each row's VERSPIPE; ``by``: the folds,
    :func:`folds`)."""
    from specsift.spectra import SpectraBatch
    from specsift.verify import subtype as ST
    from specsift.verify.fit import prepare
    from specsift.verify.templates import bases_for
    fold = folds(rows, by, k)
    truth = np.array([LS.letter(r["SUBCLASS"]) for r in rows])
    test = (np.array([float(r["SN"]) for r in rows]) >= 10) & (truth != "-")
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux, ivar)
    batch.meta["SURVEY"] = ["LAMOST"] * len(rows)
    if versions is not None:
        batch.meta["VERSPIPE"] = versions
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    star = bases_for(batch.loglam)["STAR"]
    shift = star.shift_of(np.array([float(r["Z"]) for r in rows]))
    q = np.arange(star.vectors.shape[1])
    src = np.arange(DEFAULT_GRID.size) + star.offset          # library pixel p → STAR index
    pred = {s: np.full(len(rows), "-", "U1") for s in runs}
    for f in range(k):
        tr = np.flatnonzero(fold != f)
        te = np.flatnonzero(test & (fold == f))
        for v in dict.fromkeys(s[0] for s in runs):
            names, temps = VARIANTS[v]([rows[i] for i in tr], flux[tr], ivar[tr])
            on = np.stack([np.interp(q, src, t, left=0, right=0) for t in temps])
            basis = replace(star, survey_named={"LAMOST": (on.astype(np.float32), tuple(names))})
            for s in (s for s in runs if s[0] == v):
                got = ST.star_subtypes(batch, basis, te, shift[te], prep, library_npoly=s[1],
                                       letter_trees=False,
                                       library_range=(s[2], s[3]), library_vote=s[4],
                                       best_only_versions=({"LAMOST": s[5]} if len(s) > 5
                                                           else ST.BEST_ONLY_VERSIONS))
                pred[s][te] = [g[:1] for g in got]
    return {s: float((pred[s][test] == truth[test]).mean()) for s in runs}, pred, truth, test


def letter_training(rows, flux, ivar, versions, names_all, by: str = "plan", k: int = 5):
    """(X, truth, used, fold): the letter model's features (:func:`specsift.verify.subtype.
    letter_inputs`, the stage's own: its sky mask, the shipped fit) of every training star
    with S/N_g ≥ 10 and a letter, each from the library built without its fold (folds by
    ``by``, as --cv), the Δχ² columns in the order of the full library's ``names_all``
    (a template a fold's library lacks: the clip value)."""
    from specsift.spectra import SpectraBatch
    from specsift.verify import star_letter as SLT
    from specsift.verify import subtype as ST
    from specsift.verify.fit import prepare
    from specsift.verify.stage import sky_mask
    from specsift.verify.templates import bases_for
    fold = folds(rows, by, k)
    truth = np.array([LS.letter(r["SUBCLASS"]) for r in rows])
    used = (np.array([float(r["SN"]) for r in rows]) >= 10) & (truth != "-")
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux, ivar)
    batch.meta["SURVEY"] = ["LAMOST"] * len(rows)
    batch.meta["VERSPIPE"] = versions
    prep = prepare(batch.flux, batch.ivar, batch.mask | sky_mask(batch.loglam))
    star = bases_for(batch.loglam)["STAR"]
    shift = star.shift_of(np.array([float(r["Z"]) for r in rows]))
    q = np.arange(star.vectors.shape[1])
    src = np.arange(DEFAULT_GRID.size) + star.offset
    J = len(names_all)
    X = None
    for f in range(k):
        tr = np.flatnonzero(fold != f)
        te = np.flatnonzero(used & (fold == f))
        names, temps = build([rows[i] for i in tr], flux[tr], ivar[tr])[:2]
        on = np.stack([np.interp(q, src, t, left=0, right=0) for t in temps])
        basis = replace(star, survey_named={"LAMOST": (on.astype(np.float32), tuple(names))})
        Xf, nm = ST.letter_inputs(batch, basis, te, shift[te], prep)
        if X is None:
            X = np.zeros((len(rows), J + Xf.shape[1] - len(nm)))
        X[te, :J] = SLT.DCHI2_CLIP
        X[np.ix_(te, [list(names_all).index(n) for n in nm])] = Xf[:, :len(nm)]
        X[te, J:] = Xf[:, len(nm):]
    return X, truth, used, fold


def train_letter_model(X, truth, used, fold, names_all, out: Path, library: str = ""):
    """Fit the trees on every used training star, save them as plain arrays (checked
    against scikit-learn's own predictions) with ``library``, the digest of the library they
    were trained on (:func:`specsift.verify.star_letter.library_digest`: the stage uses them
    only with that library), and print their CV inside the training split (trees refitted
    without each fold, on the same out-of-fold features)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from specsift.verify.star_letter import from_sklearn
    pred = np.full(len(truth), "-", "U1")
    for f in np.unique(fold):
        trn, te = used & (fold != f), used & (fold == f)
        m = HistGradientBoostingClassifier(**TREE_PARAMS).fit(X[trn], truth[trn])
        pred[te] = m.predict(X[te])
    acc = float((pred[used] == truth[used]).mean())
    m = HistGradientBoostingClassifier(**TREE_PARAMS).fit(X[used], truth[used])
    trees = from_sklearn(m, names_all, library, {"cv_letter": acc, "nstars": int(used.sum()),
                                                 "params": str(TREE_PARAMS)})
    if not (trees.predict(X[used]) == m.predict(X[used])).all():
        raise RuntimeError("letter trees: the plain-array walk disagrees with scikit-learn")
    trees.save(out)
    print(f"letter trees: CV inside the training split {acc:.4f} ({int(used.sum())} stars); "
          f"{out}: {out.stat().st_size / 1e3:.0f} kB")
    return acc


def cv_runs(ship, quick: bool = False):
    """The settings ``--cv`` scores: (library variant, terms, lo, hi, vote)."""
    from specsift.verify import subtype as ST
    v0, k0, lo0, hi0, vote0 = ship[:5]
    votes = [None, (3, 100.0), (5, 50.0), (5, 100.0), (5, 200.0), (8, 100.0), (30, 100.0)]
    runs = [(v0, k, lo0, hi, v, bo) for k in (4, 5, 6, 8) for hi in (6000.0, hi0)
            for v in votes for bo in ((),) + ((ST.BEST_ONLY_VERSIONS["LAMOST"],) if v else ())]
    if quick:
        return list(dict.fromkeys(runs))
    means = [v for v in VARIANTS if "per subclass" in v]
    runs += [(v, k, 3800.0, hi, None) for v in means for k in (4, 6, 8, 10, 12)
             for hi in (5800.0, 6000.0, 6500.0)]
    runs += [(v, k, 3800.0, 9100.0, vo) for v in means for k in (4, 6, 10)
             for vo in (None, vote0)]
    runs += [(v, k0, lo0, hi0, vo) for v in VARIANTS if v not in means for vo in (None, vote0)]
    return list(dict.fromkeys(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv", action="store_true", help="cross-validate fit settings first")
    ap.add_argument("--quick", action="store_true",
                    help="with --cv: only the letter-vote grid around what ships")
    ap.add_argument("--folds", choices=("star", "plan"), default="star",
                    help="with --cv: folds by star (DESIG) or by the held-out split's unit "
                         "(observing plan)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--letter-model", action="store_true",
                    help="also train the letter trees (features from plan-wise folds); "
                         "without it, trees of another library are reported stale")
    ap.add_argument("--letter-out", type=Path, default=LETTER_OUT)
    args = ap.parse_args()
    rows = train_rows()
    flux, ivar, versions = read_rows(rows, with_versions=True)
    print(f"{len(rows)} training-split LAMOST stars read", file=sys.stderr)
    if args.cv:
        from specsift.verify import subtype as ST
        ship = ("median per subclass (ships)", ST.LIBRARY_NPOLY, *ST.LIBRARY_RANGE,
                ST.LIBRARY_VOTE, ST.BEST_ONLY_VERSIONS["LAMOST"])
        acc, pred, truth, test = cross_validate(rows, flux, ivar, cv_runs(ship, args.quick),
                                             versions=versions, by=args.folds)
        print(f"\n5-fold CV (folds by {args.folds}) inside the training split: "
              f"{int(test.sum())} stars with S/N_g ≥ 10\n")
        print("| library | polynomial terms | rest range (Å) | letter | letter = LAMOST |\n"
              "|---|---|---|---|---|")
        for s, a in acc.items():
            how = "best template" if s[4] is None else f"vote k={s[4][0]}, τ={s[4][1]:g}"
            if s[4] is not None and len(s) > 5:
                how += ", every version" if not s[5] else f", best for {s[5]}"
            print(f"| {s[0]} | {s[1]} | {s[2]:.0f}–{s[3]:.0f} | {how} | {a:.4f} |")
        folder = np.array([str(r["folder"]) for r in rows])
        print(f"\nshipped {ship}, per folder:")
        for fo in np.unique(folder[test]):
            s = test & (folder == fo)
            print(f"  {fo}: {(pred[ship][s] == truth[s]).mean():.3f} (n = {int(s.sum())})")
    names, temps, counts = build(rows, flux, ivar)
    save(args.out, rows, names, temps, counts)
    print(f"{args.out}: {len(names)} templates ({', '.join(names)}), "
          f"{args.out.stat().st_size / 1e3:.0f} kB")
    digest = saved_digest(args.out)
    if args.letter_model:
        train_letter_model(*letter_training(rows, flux, ivar, versions, names), names,
                           args.letter_out, digest)
    else:
        warn_stale_letter_model(args.letter_out, digest)


def saved_digest(path: Path) -> str:
    """The letter model's digest of the library saved at ``path`` (as the stage reads it)."""
    from specsift.verify.star_letter import library_digest
    with np.load(path, allow_pickle=False) as f:
        return library_digest(f["names"], f["flux"])


def warn_stale_letter_model(path: Path, digest: str) -> None:
    """Say so where the letter model at ``path`` was trained on another library than the one
    just built (the stage then warns and names letters by the vote until it is retrained)."""
    if not path.is_file():
        return
    with np.load(path, allow_pickle=False) as f:
        old = str(f["library_digest"]) if "library_digest" in f.files else ""
    if old != digest:
        print(f"WARNING: {path} was trained on another library ({old[:12] or 'no digest'} ≠ "
              f"{digest[:12]}): the stage will use the letter vote until it is rebuilt with "
              "--letter-model", file=sys.stderr)


if __name__ == "__main__":
    main()
