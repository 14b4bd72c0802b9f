"""LAMOST scoring for ``benchmarks/real_surveys.py``: stars (all and held-out), galaxies, repeat visits.

Why a separate module: the LAMOST validation of issues 17/18 has three parts (stars with the
fine-tuning split, the 10 galaxies, the dr8-ccf repeat visits) and would double the size of the
benchmark script. Labels come from each folder's ``labels.csv`` (the LAMOST pipeline's CLASS,
SUBCLASS, Z, Z_ERR); the held-out split is :func:`_lamost_real.heldout_mask` computed on the
full label tables, exactly as ``benchmarks/lamost_finetune.py`` computes it, so that "held-out"
here means spectra gasnet's LAMOST fine-tuning never saw.
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import _lamost_real as LR
import numpy as np
from astropy.table import Table, vstack

from specsift.constants import C_KMS

LETTERS = set("AFGKM")


def labels(root: Path):
    """path → label dict for every lamost-real file, with HELDOUT from the fine-tuning split."""
    tabs = []
    for f in LR.FOLDERS:
        t = Table.read(root / f / "labels.csv", format="ascii.csv")
        t["folder"] = f
        t["PATH"] = [str(root / f / p) for p in t["file"]]
        keep = ["PATH", "folder", "file", "CLASS", "SUBCLASS", "Z", "Z_ERR", "PLANID", "DESIG"]
        t["SN"] = [LR.snr_g(r) for r in t]
        tabs.append(t[keep + ["SN"]])
    lab = vstack(tabs, metadata_conflicts="silent")
    for c in ("PLANID", "DESIG", "CLASS", "SUBCLASS", "file", "folder"):
        lab[c] = np.asarray(lab[c]).astype(str)
    lab["HELDOUT"] = LR.heldout_mask(lab)
    lab["SPLIT_KEY"] = LR.split_keys(lab)
    return {r["PATH"]: r for r in lab}


def letter(sub) -> str:
    """A/F/G/K/M of a SUBTYPE: 'K1' (spEigenStar), 'STAR_K3' (network), 'F5V', 'dM0', 'gM0',
    'sdM1' (LAMOST dwarf/giant/subdwarf M); '-' for anything else (WD, CV, carbon, L/T…)."""
    s = str(sub).strip().upper()
    if s.startswith("STAR_"):
        s = s[5:]
    for pre in ("SDM", "DM", "GM"):
        if s.startswith(pre):
            s = s[len(pre) - 1:]
    return s[:1] if s[:1] in LETTERS else "-"


def _ms(sec, n):
    return 1e3 * sec / max(n, 1)


def star_scores(meta, cat, sel):
    """The issue 17/18 star numbers on the rows ``sel``."""
    zt = np.asarray(meta["Z"], float)[sel]
    st = np.asarray(cat["SPECTYPE"]).astype(str)[sel]
    dv = (np.asarray(cat["Z"], float)[sel] - zt) * C_KMS
    zw = np.asarray(cat["ZWARN"])[sel]
    lt = np.array([letter(s) for s in np.asarray(meta["SUBCLASS"])[sel]])
    lo = np.array([letter(s) if t == "STAR" else "x" for s, t in
                   zip(np.asarray(cat["SUBTYPE"])[sel], st)])
    has = lt != "-"
    wrong = st != "STAR"
    return {"n": int(sel.sum()), "STAR": (~wrong).mean(),
            "letter": (lo[has] == lt[has]).mean(), "n letter": int(has.sum()),
            "|dv|<=20": (np.abs(dv) <= 20).mean(), "median |dv|": float(np.median(np.abs(dv))),
            "median dv": float(np.median(dv)), "wrong & ZWARN 0": int((wrong & (zw == 0)).sum())}


def repeat_pairs(meta, root: Path):
    """Index pairs (i, j) of the dr8-ccf repeat visits that were read."""
    where = {}
    for i, (f, p) in enumerate(zip(meta["folder"], meta["PATH"])):
        if f == "dr8-ccf":
            where[Path(p).name] = i
    groups = {}
    for r in csv.DictReader(open(root / "dr8-ccf" / "repeat-groups.csv")):
        i = where.get(Path(r["combined_file"]).name)
        if i is not None:
            groups.setdefault(r["GroupID"], []).append(i)
    return [p for g in groups.values() for p in itertools.combinations(sorted(g), 2)]


def pull_stats(z, zerr, pairs):
    i, j = (np.array(x, int) for x in zip(*pairs)) if pairs else (np.zeros(0, int),) * 2
    s = np.sqrt(zerr[i] ** 2 + zerr[j] ** 2)
    ok = np.isfinite(s) & (s > 0) & np.isfinite(z[i]) & np.isfinite(z[j])
    p = (z[i] - z[j])[ok] / s[ok]
    if p.size == 0:
        return 0, np.nan, np.nan
    return int(p.size), float(1.4826 * np.median(np.abs(p - np.median(p)))), float(p.std())


def report(meta, runs, root: Path, n_read: int, n_bad: int):
    """Print the LAMOST tables. ``runs``: list of (model, verify, catalog, CPU seconds)."""
    cls = np.array([str(c).strip().upper() for c in meta["CLASS"]])
    sn = np.asarray(meta["SN_G"], float)
    held = np.asarray(meta["HELDOUT"], bool)
    stars = (cls == "STAR") & (sn >= 10)
    subsets = [("all stars S/N_g ≥ 10", stars), ("held-out only", stars & held)]
    print(f"\n### LAMOST: {n_read} spectra read ({n_bad} files unreadable); stars with S/N_g ≥ 10\n")
    print("gasnet and speccznet were fine-tuned on the lamost-real spectra outside the held-out "
          "split (benchmarks/_lamost_real.heldout_mask): for them only the held-out row is "
          "honest; eigen's LAMOST STAR basis, variance boost and star floor were fitted on the "
          "same training split (benchmarks/eigen_real_stars.py), and the LAMOST star library "
          "that names verified LAMOST stars was built from it (benchmarks/"
          "build_lamost_templates.py), so only the held-out row is honest, for every model.\n")
    print("| model | verify | stars | n | called STAR | letter = LAMOST (n) | \\|Δv\\| ≤ 20 km/s "
          "| median \\|Δv\\| (km/s) | median Δv | wrong class & ZWARN 0 | CPU ms/spectrum |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, ver, cat, sec in runs:
        for name, sel in subsets:
            s = star_scores(meta, cat, sel)
            tag = name + (" (honest for gasnet)" if m == "gasnet" and sel is not stars else "")
            print(f"| {m} | {'yes' if ver else 'no'} | {tag} | {s['n']} | {s['STAR']:.4f} | "
                  f"{s['letter']:.3f} ({s['n letter']}) | {s['|dv|<=20']:.3f} | "
                  f"{s['median |dv|']:.1f} | {s['median dv']:.1f} | {s['wrong & ZWARN 0']} | "
                  f"{_ms(sec, len(cls)):.2f} |")
    _galaxies(meta, runs, cls)
    _repeats(meta, runs, root, cls)


def _galaxies(meta, runs, cls):
    gal = np.nonzero(cls == "GALAXY")[0]
    zt = np.asarray(meta["Z"], float)[gal]
    print(f"\n### LAMOST galaxies (dr7-sbc and dr5, n = {len(gal)})\n")
    print("| model | verify | class GALAXY | GF(0.003) | answers (LAMOST z → SPECTYPE z) |")
    print("|---|---|---|---|---|")
    for m, ver, cat, _ in runs:
        st = np.asarray(cat["SPECTYPE"]).astype(str)[gal]
        z = np.asarray(cat["Z"], float)[gal]
        gf = np.abs(z - zt) / (1 + zt) < 0.003
        rows = "; ".join(f"{a:.4f} → {s} {b:.4f}" for a, s, b in zip(zt, st, z))
        print(f"| {m} | {'yes' if ver else 'no'} | {(st == 'GALAXY').mean():.2f} | "
              f"{gf.mean():.2f} | {rows} |")


def _repeats(meta, runs, root, cls):
    pairs = repeat_pairs(meta, root)
    print(f"\n### LAMOST dr8-ccf repeat visits ({len(pairs)} pairs of visits read)\n")
    print("Pull = (v1 − v2)/√(ZERR1² + ZERR2²) over the pairs both called STAR; width = "
          "1.4826·MAD (robust) and std. Same letter: the A/F/G/K/M of both visits' SUBTYPE "
          "(LAMOST: SUBCLASS) agree, over the pairs LAMOST gives a letter in both — how well "
          "LAMOST's own letter repeats bounds how well any other can agree with it. The "
          "LAMOST pipeline's own Z/Z_ERR for reference.\n")
    print("| model | verify | same class | same letter | pulls (n) | pull width 1.4826·MAD "
          "| pull std |")
    print("|---|---|---|---|---|---|---|")
    zt, zte = np.asarray(meta["Z"], float), np.asarray(meta["Z_ERR"], float)
    lt = np.array([letter(s) for s in np.asarray(meta["SUBCLASS"])])
    lettered = [(i, j) for i, j in pairs if lt[i] != "-" and lt[j] != "-"]
    star = [(i, j) for i, j in pairs if cls[i] == cls[j] == "STAR"]
    n, w, sd = pull_stats(zt, zte, star)
    same = np.mean([cls[i] == cls[j] for i, j in pairs]) if pairs else np.nan
    print(f"| LAMOST pipeline | – | {same:.3f} | {_same(lt, lettered):.3f} | {n} | {w:.2f} "
          f"| {sd:.2f} |")
    for m, ver, cat, _ in runs:
        st = np.asarray(cat["SPECTYPE"]).astype(str)
        z, ze = np.asarray(cat["Z"], float), np.asarray(cat["ZERR"], float)
        lo = np.array([letter(s) if t == "STAR" else "x" for s, t in
                       zip(np.asarray(cat["SUBTYPE"]), st)])
        same = np.mean([st[i] == st[j] for i, j in pairs]) if pairs else np.nan
        both = [(i, j) for i, j in pairs if st[i] == st[j] == "STAR"]
        n, w, sd = pull_stats(z, ze, both)
        print(f"| {m} | {'yes' if ver else 'no'} | {same:.3f} | {_same(lo, lettered):.3f} | {n} "
              f"| {w:.2f} | {sd:.2f} |")


def _same(lt, pairs) -> float:
    """Share of ``pairs`` whose two letters agree (a non-star answer never agrees)."""
    ok = [lt[i] == lt[j] and lt[i] in LETTERS for i, j in pairs]
    return float(np.mean(ok)) if ok else np.nan
