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
:mod:`specsift.verify.starcheck`, and where its advantage sits (the capped per-pixel χ² gap
summed in 12 blocks, :func:`specsift.verify.robust.robust_margin`).  Non-stars (galaxies,
quasars) that change class between the candidate sets are listed too.

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
    """Per row: (3-term Δχ² STAR − winner, line-driven Δχ², robust margin, share of the capped
    gap in the winner's best block, wavelength of that block)."""
    from specsift.verify.fit import prepare
    from specsift.verify.model_flux import model_flux
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.robust import block_sums
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
        out.append((float(other["CHI2"][rows[i]] - base["CHI2"][rows[i]]), float(line[i]),
                    float(-(tot - sums[i][k])),
                    float(sums[i][k] / tot) if tot > 0 else np.nan, f"{lo:.0f}-{hi:.0f}"))
    return out


def report(name, batch, cats, star, keys):
    st = {k: np.asarray(c["SPECTYPE"]).astype(str) for k, c in cats.items()}
    print(f"\n### {name}: {star.sum()} stars, {(~star).sum()} others\n")
    print("| candidates | stars not STAR | stars not STAR that are STAR with gasnet's "
          "| others changing class vs gasnet's |")
    print("|---|---|---|---|")
    for k in cats:
        lost = star & (st[k] != "STAR") & (st["gasnet"] == "STAR")
        moved = ~star & (st[k] != st["gasnet"])
        print(f"| {k} | {int((star & (st[k] != 'STAR')).sum())} | {int(lost.sum())} "
              f"| {int(moved.sum())} |")
    for k in cats:
        if k == "gasnet":
            continue
        rows = np.flatnonzero(star & (st[k] != "STAR") & (st["gasnet"] == "STAR"))
        if not len(rows):
            continue
        print(f"\n{name} stars lost with {k}'s candidates (id, S/N, winner, 3-term χ²(win) − "
              f"χ²(STAR), line-driven Δχ² (STAR better when > 0), robust margin (STAR better "
              f"when > 0), winner's share in its best block, that block Å):")
        for r, w in zip(rows, why(batch, cats["gasnet"], cats[k], rows)):
            print(f"  {keys[r]} | {st[k][r]} z {float(cats[k]['Z'][r]):.4f} | "
                  f"Δχ² {w[0]:.0f} | line {w[1]:.0f} | robust {w[2]:.0f} | "
                  f"share {w[3]:.2f} | {w[4]}")
        moved = np.flatnonzero(~star & (st[k] != st["gasnet"]))
        for r in moved:
            print(f"  non-star {keys[r]}: gasnet's {st['gasnet'][r]} → {st[k][r]}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surveys", nargs="+", default=["LAMOST"])
    ap.add_argument("--split", choices=["train", "heldout", "all"], default="train")
    ap.add_argument("--cache", type=Path, default=None,
                    help="pickle of the models' proposals (recomputed when absent)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import real_surveys as RS
    for s in args.surveys:
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
        report(f"{s} ({args.split})" if s == "LAMOST" else s, b, variants(b, props), star,
               keys)


if __name__ == "__main__":
    main()
