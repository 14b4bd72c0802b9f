"""Does a star's verified answer depend on which model proposed the candidates?

    nice -n 10 .venv/bin/python benchmarks/verify_proposers.py [--surveys LAMOST SDSS DESI]
                                                               [--split train] [--cache DIR]
                                                               [--sim SIM.h5] [--alternatives]

For every spectrum the verification stage (:func:`specsift.verify.verify_catalog`) is run with
gasnet's catalog and four candidate sets: gasnet's own; the union of gasnet's, speccznet's and
eigen's; the union plus the whole-z scan's minima (:func:`specsift.verify.zfind.full_range_candidates`
for every row, not only the rescued ones); and eigen's own (with eigen's catalog).  Printed:
how many stars (LAMOST: S/N_g ≥ 10, the ``--split`` of :func:`_lamost_real.heldout_mask`;
SDSS/DESI: the reference's STAR; ``SDSS-as-LAMOST``: the SDSS galaxies and quasars given
SURVEY = LAMOST, so that the survey-noise check looks at them) stop being STAR against
gasnet's candidates alone, and per such star the winner, its 3-term Δχ² over the STAR window, the line-driven Δχ² of
:mod:`specsift.verify.starcheck`, the survey-noise Δχ² (:mod:`specsift.verify.survey_noise`)
and where its advantage sits (the capped per-pixel χ² gap summed in 12 blocks as eigen's robust
star check does, :func:`specsift.models.eigen.robust.block_sums`; the pixels of largest gap).
Every candidate set is run with the survey-noise STAR check off and on; non-stars (galaxies,
quasars, LAMOST's UNKNOWN) are listed with their answers.  ``--sim STORE``: the same on
simulated LAMOST spectra (``specsift simulate --instrument lamost``) given SURVEY = LAMOST, and
the Δχ² the check sees on every row it looks at (``margins``).

Only the training split of LAMOST is looked at by default: the held-out split is for scoring
once (``benchmarks/real_surveys.py``), never for choosing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

MODELS = ("gasnet", "speccznet", "eigen")


def _models_digest() -> str:
    """SHA-256 of the model files (:func:`specsift.models.base.model_path`): a cache of
    their proposals is stale once any is retrained."""
    import hashlib

    from specsift.models.base import model_path
    h = hashlib.sha256()
    for m in MODELS:
        h.update(Path(model_path(m)).read_bytes())
    return h.hexdigest()


def _proposals(batch, cache: Path | None, key: str):
    """{model: (table, candidates)} for ``batch``, stored in the folder ``cache`` (an npz of
    plain arrays per data set and model files' digest: no pickle) once computed."""
    from astropy.table import Table

    from specsift.verify import Candidates
    path = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{key.replace(':', '-')}-{len(batch)}-{_models_digest()[:16]}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                out = {}
                for m in MODELS:
                    cols = [k for k in f.files if k.startswith(f"t|{m}|")]
                    tab = Table({k.split("|", 2)[2]: f[k] for k in cols})
                    reach = f[f"c|{m}|reach"] if f"c|{m}|reach" in f.files else None
                    out[m] = (tab, Candidates(f[f"c|{m}|z"], f[f"c|{m}|spectype"], reach))
                return out
    import torch

    from specsift import load_model
    from specsift.pipeline.local import prepare_model
    torch.set_num_threads(1)
    out = {}
    for m in MODELS:
        model = prepare_model(load_model(m), "cpu", 1)
        with torch.inference_mode():
            out[m] = model.propose(model.check_batch(batch))
    if path is not None:
        arrays = {}
        for m, (tab, c) in out.items():
            arrays.update({f"t|{m}|{k}": np.asarray(tab[k]) for k in tab.colnames})
            arrays.update({f"c|{m}|z": c.z, f"c|{m}|spectype": c.spectype})
            if c.reach is not None:
                arrays[f"c|{m}|reach"] = c.reach
        np.savez(path, **arrays)
    return out


def _scan_all(batch):
    """The whole-z scan's candidates for every row of ``batch``."""
    from specsift.verify.fit import prepare
    from specsift.verify.stage import VerifyOptions, sky_mask
    from specsift.verify.templates import bases_for
    from specsift.verify.zfind import full_range_candidates
    prep = prepare(batch.flux, batch.ivar, batch.mask | sky_mask(batch.loglam))
    n = len(batch)
    return full_range_candidates(prep, bases_for(batch.loglam), np.arange(n), n,
                                 VerifyOptions())


def variants(batch, props, options=None):
    """{name: verified catalog} for the candidate sets of the module docstring."""
    from specsift.verify import Candidates, verify_catalog
    tab_g, c_g = props["gasnet"]
    union = Candidates.concat([props[m][1] for m in MODELS])
    return {"gasnet": verify_catalog(batch, tab_g, c_g, options),
            "union": verify_catalog(batch, tab_g, union, options),
            "union+scan": verify_catalog(batch, tab_g,
                                         Candidates.concat([union, _scan_all(batch)]), options),
            "eigen": verify_catalog(batch, *props["eigen"], options)}


def why(batch, base, other, rows):
    """Per row: (3-term Δχ² STAR − winner, line-driven Δχ², survey-noise Δχ², eigen's robust margin, share of the capped
    gap in the winner's best block, wavelength of that block)."""
    from specsift.models.eigen.robust import block_sums
    from specsift.verify.fit import prepare
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.stage import VerifyOptions, sky_mask
    from specsift.verify.starcheck import catalog_models, pixel_gap, star_beats_winner
    from specsift.verify.survey_noise import survey_var_boost
    from specsift.verify.templates import bases_for
    opt = VerifyOptions()
    sub = batch[rows] if hasattr(batch, "__getitem__") else batch
    sig = extra_sigma_pix(sub)
    bad = sub.mask | sky_mask(sub.loglam)
    w = np.where(bad, 0.0, sub.ivar).astype(np.float64)
    f = np.nan_to_num(sub.flux.astype(np.float64))
    ms = catalog_models(sub.loglam, base[rows], f, w, sig)      # as the check draws them
    mw = catalog_models(sub.loglam, other[rows], f, w, sig)
    gap = -pixel_gap(f, w, ms, mw)                   # > 0: the winner fits the pixel better
    good = w > 0
    boost = survey_var_boost("LAMOST", sub.loglam)
    noise = pixel_gap(f, w / (1 + boost)[None, :], ms, mw).sum(1)
    sums = block_sums(gap, good, 25.0, 12)
    prep = prepare(sub.flux, sub.ivar, bad)
    bases = bases_for(sub.loglam)
    step = bases["STAR"].step
    shift = np.log10(1 + np.asarray(other["Z"][rows], float)) / step
    _, line = star_beats_winner(prep, bases, np.arange(len(rows)),
                                np.asarray(other["SPECTYPE"][rows]).astype(str), shift,
                                opt.star_halfwidth, opt.star_check_margin)
    wave = 10 ** sub.loglam
    out = []
    for i in range(len(rows)):
        rank = np.cumsum(good[i]) - 1
        blk = np.minimum(rank * 12 // max(good[i].sum(), 1), 11)
        k = int(np.argmax(sums[i]))            # gap = STAR − winner: the winner's best block
        lo, hi = wave[good[i] & (blk == k)][[0, -1]]
        tot = sums[i].sum()
        big = good[i] & (np.abs(gap[i]) > 25)
        top = np.argsort(-np.where(good[i], gap[i], -np.inf))[:5]
        out.append((float(other["CHI2"][rows[i]] - base["CHI2"][rows[i]]), float(line[i]),
                    float(noise[i]), float(-(tot - sums[i][k])),
                    float(sums[i][k] / tot) if tot > 0 else np.nan, f"{lo:.0f}-{hi:.0f}",
                    float(gap[i][big].sum() / gap[i][good[i]].sum()),
                    ",".join(f"{x:.0f}" for x in np.sort(wave[top]))))
    return out


def report(name, batch, runs, star, keys):
    """``runs``: {(candidate set, survey-noise check on?): verified catalog}."""
    st = {k: np.asarray(c["SPECTYPE"]).astype(str) for k, c in runs.items()}
    ref = st[("gasnet", False)]
    cls = np.char.upper(np.asarray(batch.meta["CLASS"]).astype(str))
    print(f"\n### {name}: {star.sum()} stars, {(~star).sum()} others\n")
    print("| candidates | survey-noise STAR check | stars not STAR | of them STAR with gasnet's "
          "(no survey-noise check) | others called STAR | others changing SPECTYPE vs gasnet's "
          "(no survey-noise check) |")
    print("|---|---|---|---|---|---|")
    for (k, rob), t in st.items():
        print(f"| {k} | {'on' if rob else 'off'} | {int((star & (t != 'STAR')).sum())} "
              f"| {int((star & (t != 'STAR') & (ref == 'STAR')).sum())} "
              f"| {int((~star & (t == 'STAR')).sum())} | {int((~star & (t != ref)).sum())} |")
    for (k, rob), t in st.items():
        rows = np.flatnonzero(star & (t != "STAR") & (ref == "STAR"))
        if rob or not len(rows):
            continue
        print(f"\n{name} stars lost with {k}'s candidates, no survey-noise check (file | winner | "
              f"3-term χ²(win) − χ²(STAR) | line-driven Δχ² (> 0: STAR better) | survey-noise "
              f"Δχ² (LAMOST α; > 0: STAR better) | eigen's robust margin (cap 25, 12 blocks, "
              f"> 0: STAR better) | winner's share of the capped gap in its best block | that "
              f"block (Å) | share of the uncapped gap in pixels beyond ±25 | the 5 pixels of "
              f"largest gap (Å)):")
        for r, w in zip(rows, why(batch, runs[("gasnet", False)], runs[(k, False)], rows)):
            print(f"  {keys[r]} | {t[r]} z {float(runs[(k, False)]['Z'][r]):.4f} | "
                  + " | ".join(f"{x:.2f}" if isinstance(x, float) and abs(x) < 10 else
                               f"{x:.0f}" if isinstance(x, float) else str(x) for x in w))
    other = np.flatnonzero(~star & np.any([t != ref for t in st.values()], axis=0))
    if len(other):
        print(f"\n{name} others whose SPECTYPE depends on the candidates (file | class, z | "
              f"answer per candidate set, survey-noise check off and on (+noise)):")
        for r in other:
            ans = "; ".join(f"{k}{'+noise' if rob else ''} {t[r]} {float(runs[(k, rob)]['Z'][r]):.4f}"
                            for (k, rob), t in st.items())
            print(f"  {keys[r]} | {cls[r]} {float(batch.meta['Z'][r]):.4f} | {ans}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surveys", nargs="+", default=["LAMOST"])
    ap.add_argument("--split", choices=["train", "heldout", "all"], default="train")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder for the models' proposals (npz per data set and model "
                         "files' digest; recomputed when absent)")
    ap.add_argument("--sim", type=Path, default=None,
                    help="also a simulated LAMOST store (specsift simulate --instrument lamost)")
    ap.add_argument("--alternatives", action="store_true",
                    help="also the comparisons tried instead (eigen's capped blocks, …) and, on "
                         "LAMOST, a 2-fold plan-wise cross-validation of α")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_surveys as RS
    for s in args.surveys if args.surveys != ["none"] else []:
        b, _ = {"LAMOST": RS.lamost, "SDSS": RS.sdss, "DESI": RS.desi,
                "SDSS-as-LAMOST": RS.sdss}[s]()
        m = b.meta
        if s == "SDSS-as-LAMOST":        # SDSS galaxies and quasars the survey-noise check
            b = b[np.flatnonzero(np.char.upper(np.asarray(m["CLASS"]).astype(str)) != "STAR")]
            b.meta["SURVEY"] = ["LAMOST"] * len(b)      # looks at as if they were LAMOST's
            m = b.meta
        if s == "LAMOST":
            keep = np.ones(len(b), bool) if args.split == "all" else \
                np.asarray(m["HELDOUT"], bool) == (args.split == "heldout")
            sn = np.asarray(m["SN_G"], float)
            cls = np.char.upper(np.asarray(m["CLASS"]).astype(str))
            keep &= (cls != "STAR") | (sn >= 10)
            keep &= np.asarray(m["folder"]).astype(str) != "lamost"
        else:
            keep = np.ones(len(b), bool)
        b = b[np.flatnonzero(keep)]
        if s == "DESI":
            star = np.char.upper(np.asarray(b.meta["RR_SPECTYPE"]).astype(str)) == "STAR" \
                if "RR_SPECTYPE" in b.meta.colnames else np.zeros(len(b), bool)
        else:
            star = np.char.upper(np.asarray(b.meta["CLASS"]).astype(str)) == "STAR"
        keys = [Path(str(p)).name for p in b.meta["PATH"]] if "PATH" in b.meta.colnames \
            else [str(i) for i in range(len(b))]
        props = _proposals(b, args.cache, f"{s}:{args.split}")
        from specsift.verify import VerifyOptions
        runs = {}
        for rob in (False, True):
            opt = VerifyOptions() if rob else VerifyOptions(noise_check_margin=None)
            runs.update({(k, rob): c for k, c in variants(b, props, opt).items()})
        report(f"{s} ({args.split})" if s == "LAMOST" else s, b, runs, star, keys)
        if s == "SDSS-as-LAMOST":
            for (k, rob), c in runs.items():
                t = np.asarray(c["SPECTYPE"]).astype(str)
                print(f"  {k}, check {'on' if rob else 'off'}: {int((t == 'STAR').sum())} of "
                      f"{len(t)} SDSS galaxies/quasars called STAR")
        margins(b, props, star)
        if args.alternatives and s == "LAMOST":
            alternatives(b, props, star, f"{s} ({args.split})", cv=True)
    if args.sim is not None:
        sim(args.sim, args.cache, args.alternatives)


def _checked(batch, props):
    """The rows the STAR check looks at with union+scan candidates, their STAR-window and
    winner models (at the whole pixel, :func:`specsift.verify.starcheck.catalog_models`),
    flux and pipeline weights."""
    from specsift.verify import VerifyOptions
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.stage import sky_mask
    from specsift.verify.starcheck import catalog_models
    off = variants(batch, props, VerifyOptions(noise_check_margin=None))["union+scan"]
    on = variants(batch, props, VerifyOptions(noise_check_margin=-np.inf))["union+scan"]
    t0, t1 = (np.asarray(c["SPECTYPE"]).astype(str) for c in (off, on))
    rows = np.flatnonzero((t0 != "STAR") & (t1 == "STAR"))
    sub = batch[rows]
    sig = extra_sigma_pix(sub)
    w = np.where(sub.mask | sky_mask(sub.loglam), 0, sub.ivar).astype(float)
    f = np.nan_to_num(sub.flux.astype(float))
    ms = catalog_models(sub.loglam, on[rows], f, w, sig)
    mw = catalog_models(sub.loglam, off[rows], f, w, sig)
    return rows, f, w, ms, mw


def _comparisons(f, w, ms, mw, alpha):
    """{name: (R,) Δχ² for STAR} of the comparisons tried: plain or with α, summed, capped
    at 25, capped in 12 blocks with the winner's best left out (eigen's), blocks alone."""
    from specsift.models.eigen.robust import block_sums
    from specsift.verify.starcheck import pixel_gap
    out = {}
    for name, a in (("pipeline ivar", 0.0), ("LAMOST α", alpha)):
        ww = w / (1 + a)
        gap = -pixel_gap(f, ww, ms, mw)
        ok = ww > 0
        capped, plain = block_sums(gap, ok, 25.0, 12), block_sums(gap, ok, np.inf, 12)
        out[f"{name}: sum"] = -gap.sum(1)
        out[f"{name}: capped 25"] = -capped.sum(1)
        out[f"{name}: capped, 12 blocks, best left out"] = -(capped.sum(1) - capped.max(1))
        out[f"{name}: 12 blocks, best left out"] = -(plain.sum(1) - plain.max(1))
    return out


def alternatives(batch, props, star, label, cv=False, margin=50.0):
    """How each comparison of :func:`_comparisons` would decide the rows the check looks at
    (union+scan candidates), and (``cv``) α from one half of the observing plans applied to
    the other (2 folds by a hash of the split key of :func:`_lamost_real.split_keys`, the unit the
    held-out split holds out)."""
    import hashlib

    import _lamost_survey as LS
    from _common import SHARED
    from build_lamost_var import residual_alpha

    from specsift.verify.survey_noise import survey_var_boost
    rows, f, w, ms, mw = _checked(batch, props)
    st = star[rows]
    print(f"\n{label}: comparisons on the {len(rows)} rows the check looks at ({int(st.sum())} "
          f"stars), union+scan candidates; STAR when Δχ² > {margin:g}\n")
    print("| comparison | stars to STAR | smallest Δχ² of those | non-stars to STAR "
          "| largest non-star Δχ² |\n|---|---|---|---|---|")
    for k, v in _comparisons(f, w, ms, mw, survey_var_boost("LAMOST", batch.loglam)).items():
        sv, ov = v[st], v[~st]
        print(f"| {k} | {int((sv > margin).sum())}/{len(sv)} | "
              f"{sv[sv > margin].min() if (sv > margin).any() else np.nan:.0f} | "
              f"{int((ov > margin).sum())}/{len(ov)} | {ov.max() if len(ov) else np.nan:.0f} |")
    if not cv:
        return
    lab = LS.labels(SHARED / "lamost-real")          # the split key over the full tables
    keys = [str(lab[str(p)]["SPLIT_KEY"]) for p in batch.meta["PATH"]]
    fold = np.array([int(hashlib.sha1(k.encode()).hexdigest()[:8], 16) % 2 for k in keys])
    print("\n| fold | stars in it | rescued (Δχ² > margin) | smallest rescued Δχ² "
          "| largest non-star Δχ² |\n|---|---|---|---|---|")
    for k in (0, 1):
        a, _ = residual_alpha(batch[np.flatnonzero(star & (fold != k))])
        v = _comparisons(f, w, ms, mw, a)["LAMOST α: sum"]
        here = fold[rows] == k
        sv, ov = v[here & st], v[here & ~st]
        print(f"| {k} | {len(sv)} | {int((sv > margin).sum())} | "
              f"{sv[sv > margin].min() if (sv > margin).any() else np.nan:.0f} | "
              f"{ov.max() if len(ov) else np.nan:.0f} |")


def _fmt(a, f) -> str:
    return f"{f(a):.0f}, {np.median(a):.0f}" if len(a) else "–"


def margins(batch, props, star):
    """The survey-noise Δχ² of every checked row (margin −∞: each row the check looks at
    turns STAR, its DELTACHI2 the Δχ²): how far from the margin the stars it rescues and the
    non-stars it must leave alone are, per candidate set."""
    from specsift.verify import VerifyOptions
    base = VerifyOptions(noise_check_margin=None)
    opt = VerifyOptions(noise_check_margin=-np.inf)
    off, on = variants(batch, props, base), variants(batch, props, opt)
    print("\nSurvey-noise Δχ² (> 0: STAR better) of the rows the check looks at\n")
    print("| candidates | stars checked | their Δχ² (min, median) | non-stars checked "
          "| their Δχ² (max, median) |\n|---|---|---|---|---|")
    for k in off:
        t0 = np.asarray(off[k]["SPECTYPE"]).astype(str)
        t1 = np.asarray(on[k]["SPECTYPE"]).astype(str)
        m = np.asarray(on[k]["DELTACHI2"], float)
        chk = (t0 != "STAR") & (t1 == "STAR")
        s, o = m[chk & star], m[chk & ~star]
        print(f"| {k} | {len(s)} | {_fmt(s, np.min)} | {len(o)} | {_fmt(o, np.max)} |")


def sim(path: Path, cache, alt: bool = False):
    """Simulated LAMOST spectra (``specsift simulate --instrument lamost``) given SURVEY =
    LAMOST, so that the survey-noise check runs on them: does it turn galaxies/quasars into stars?"""
    import warnings

    from specsift.classes import spectype_of
    from specsift.io import SpectralStore
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with SpectralStore(path) as st:
            b = st.read(slice(0, len(st)))
    b.meta["SURVEY"] = np.full(len(b), "LAMOST")
    true = np.array([spectype_of(x) for x in np.asarray(b.meta["CLASS_LABEL"]).astype(str)])
    props = _proposals(b, cache, f"sim:{path}")
    from specsift.verify import VerifyOptions
    runs = {}
    for rob in (False, True):
        opt = VerifyOptions() if rob else VerifyOptions(noise_check_margin=None)
        runs.update({(k, rob): c for k, c in variants(b, props, opt).items()})
    print(f"\n### simulated LAMOST ({path.name}, {len(b)}: {dict(zip(*np.unique(true, return_counts=True)))})\n")
    print("| candidates | survey-noise STAR check | called STAR: true STAR | true GALAXY | true QSO "
          "| SPECTYPE changed by the check |\n|---|---|---|---|---|---|")
    for (k, rob), c in runs.items():
        t = np.asarray(c["SPECTYPE"]).astype(str)
        ch = int((t != np.asarray(runs[(k, False)]["SPECTYPE"]).astype(str)).sum())
        print(f"| {k} | {'on' if rob else 'off'} | " + " | ".join(
            f"{int(((t == 'STAR') & (true == c_)).sum())}" for c_ in ("STAR", "GALAXY", "QSO"))
            + f" | {ch} |")
    margins(b, props, true == "STAR")
    if alt:
        alternatives(b, props, true == "STAR", "simulated LAMOST")


if __name__ == "__main__":
    main()
