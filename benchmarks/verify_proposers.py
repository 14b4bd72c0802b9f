"""Does a star's verified answer depend on which model proposed the candidates?

    nice -n 10 .venv/bin/python benchmarks/verify_proposers.py [--surveys LAMOST SDSS DESI]
                                                               [--split train] [--cache F]

For every spectrum the verification stage (:func:`specsift.verify.verify_catalog`) is run with
gasnet's catalog and four candidate sets: gasnet's own; the union of gasnet's, speccznet's and
eigen's; the union plus the whole-z scan's minima (:func:`specsift.verify.zfind.full_range_candidates`
for every row, not only the rescued ones); and eigen's own (with eigen's catalog).  Printed:
how many stars (LAMOST: S/N_g ≥ 10, the ``--split`` of :func:`_lamost_real.heldout_mask`;
SDSS/DESI: the reference's STAR) stop being STAR against gasnet's candidates alone, and per
such star the winner, its 3-term Δχ² over the STAR window, the line-driven Δχ² of
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
import pickle
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

MODELS = ("gasnet", "speccznet", "eigen")


def _proposals(batch, cache: Path | None, key: str):
    """{model: (table, candidates)} for ``batch`` (pickled to ``cache`` once computed)."""
    if cache is not None and cache.is_file():
        got = pickle.loads(cache.read_bytes())
        if key in got:
            return got[key]
    import torch

    from specsift import load_model
    from specsift.pipeline.local import prepare_model
    torch.set_num_threads(1)
    out = {}
    for m in MODELS:
        model = prepare_model(load_model(m), "cpu", 1)
        with torch.inference_mode():
            out[m] = model.propose(model.check_batch(batch))
    if cache is not None:
        got = pickle.loads(cache.read_bytes()) if cache.is_file() else {}
        got[key] = out
        cache.write_bytes(pickle.dumps(got))
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
    from specsift.verify.fit import prepare
    from specsift.verify.model_flux import model_flux
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.models.eigen.robust import block_sums
    from specsift.verify.survey_noise import survey_var_boost
    from specsift.verify.stage import VerifyOptions, sky_mask
    from specsift.verify.starcheck import star_beats_winner
    from specsift.verify.templates import bases_for
    opt = VerifyOptions()
    sub = batch[rows] if hasattr(batch, "__getitem__") else batch
    sig = extra_sigma_pix(sub)
    ms = model_flux(sub.loglam, base[rows], sig)
    mw = model_flux(sub.loglam, other[rows], sig)
    bad = sub.mask | sky_mask(sub.loglam)
    w = np.where(bad, 0.0, sub.ivar).astype(np.float64)
    f = np.nan_to_num(sub.flux.astype(np.float64))
    gap = w * ((f - ms) ** 2 - (f - mw) ** 2)
    good = w > 0
    boost = survey_var_boost("LAMOST", sub.loglam)
    noise = -(gap / (1 + boost)[None, :]).sum(1)
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
    other = np.flatnonzero(~star)
    if len(other):
        print(f"\n{name} others (file | class, z | answer per candidate set, survey-noise check off and on (+noise)):")
        for r in other:
            ans = "; ".join(f"{k}{'+noise' if rob else ''} {t[r]} {float(runs[(k, rob)]['Z'][r]):.4f}"
                            for (k, rob), t in st.items())
            print(f"  {keys[r]} | {cls[r]} {float(batch.meta['Z'][r]):.4f} | {ans}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surveys", nargs="+", default=["LAMOST"])
    ap.add_argument("--split", choices=["train", "heldout", "all"], default="train")
    ap.add_argument("--cache", type=Path, default=None,
                    help="pickle of the models' proposals (recomputed when absent)")
    ap.add_argument("--sim", type=Path, default=None,
                    help="also a simulated LAMOST store (specsift simulate --instrument lamost)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_surveys as RS
    for s in args.surveys if args.surveys != ["none"] else []:
        b, _ = {"LAMOST": RS.lamost, "SDSS": RS.sdss, "DESI": RS.desi}[s]()
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
        margins(b, props, star)
    if args.sim is not None:
        sim(args.sim, args.cache)


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
        fmt = (lambda a, f: f"{f(a):.0f}, {np.median(a):.0f}" if len(a) else "–")
        print(f"| {k} | {len(s)} | {fmt(s, np.min)} | {len(o)} | {fmt(o, np.max)} |")


def sim(path: Path, cache):
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


if __name__ == "__main__":
    main()
