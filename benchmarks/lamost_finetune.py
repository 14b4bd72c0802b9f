"""Fine-tuning data for a model that serves every survey, and its LAMOST validation.

    # training/validation stores: thirteen-class simulations through the mixed instruments
    # (40 % SDSS, 40 % LAMOST, 20 % DESI), interleaved with the real LAMOST spectra of the
    # training split (each repeated --repeat times; the network's augmentations make copies differ)
    python benchmarks/lamost_finetune.py prepare --out RUN --n-sim 49152 --seed 41 --repeat 6
    # (--n-sdss N adds N SDSS-only simulations, interleaved)
    specsift train --model gasnet --data RUN/train.h5 --val RUN/val.h5 -o RUN/gasnet.pt \\
        --init src/specsift/data/models/gasnet.pt --checkpoint-dir RUN/ckpt ...
    # held-out LAMOST stars (never trained on): STAR rate, type letter, |Δv| ≤ 20 km/s
    # (``model.predict``: STAR rows carry the star-velocity head's Z, models/star_head.py,
    # trained by benchmarks/train_star_rv.py — the fine-tune here changes only the network)
    python benchmarks/lamost_finetune.py evaluate --model RUN/gasnet.pt [--model gasnet]
    # thirteen-class accuracy / GF on simulated test stores of each instrument
    python benchmarks/lamost_finetune.py simtest --model M.pt --data test.h5 --data test-lamost.h5
    # speccznet (five classes): the same data with --class-set five, then its one ZERR factor
    # refitted on simulated SDSS validation spectra
    python benchmarks/lamost_finetune.py prepare --out RUN --class-set five --boss-fraction 0.3 ...
    python benchmarks/lamost_finetune.py recalibrate-zerr --model RUN/m.pt --val val.h5 --save m.pt

The split is :func:`_lamost_real.heldout_mask` (whole plans, or stars where one plan is a
whole folder; every visit of a held-out star is held out).  Real files the package readers
cannot read yet (DR5/DR7/DR8 ``EXTEN0`` layouts) are read by the plain fallback reader of
``_lamost_real`` for training and for evaluation, so the held-out set is the same whatever
the readers' state; ``evaluate`` prints how many came from each.

Labels of real LAMOST spectra for the ``thirteen`` set: STAR → the nearest SDSS subtype of the
set (A0, F5, F9, G2, K1, K3, K5; M stars → K5, the set has no M), GALAXY → GALAXY; Z is the
LAMOST pipeline's (a star's radial velocity / c); QSO and Unknown are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tools"))
import _lamost_real as LR  # noqa: E402

from specsift.constants import C_KMS  # noqa: E402
from specsift.spectra import SpectraBatch  # noqa: E402


def thirteen_label(cls: str, sub: str) -> str:
    from measure_instruments import nearest_subtype
    if cls == "STAR":
        return "STAR_" + nearest_subtype(sub)
    if cls == "GALAXY":
        return "GALAXY"
    return ""


def five_label(cls: str, sub: str) -> str:
    """``five`` set: STAR → STAR; LAMOST galaxies carry no AGN/starburst/star-forming
    subclass (SUBCLASS "Non"), so they get no label and are left out of training."""
    return "STAR" if cls == "STAR" else ""


LABELLERS = {"thirteen": thirteen_label, "five": five_label}


def real_split(fallback=True, class_set="thirteen"):
    flux, ivar, lab, counts = LR.load(fallback=fallback)
    held = LR.heldout_mask(lab)
    lab["HELDOUT"] = held
    label = LABELLERS[class_set]
    lab["CLASS_LABEL"] = [label(c, s) for c, s in zip(lab["CLASS"], lab["SUBCLASS"])]
    return flux, ivar, lab, counts


def _real_batch(flux, ivar, lab, idx, tid0):
    from specsift.spectra import DEFAULT_GRID, median_snr
    b = object.__new__(SpectraBatch)
    b.loglam = DEFAULT_GRID.loglam
    b.flux, b.ivar = flux[idx], ivar[idx]
    b.mask = ivar[idx] <= 0
    t = Table()
    t["TARGETID"] = np.arange(tid0, tid0 + len(idx), dtype=np.int64)
    t["CLASS_LABEL"] = np.asarray(lab["CLASS_LABEL"])[idx].astype("U24")
    t["SPECTYPE"] = np.asarray(lab["CLASS"])[idx].astype("U8")
    t["CLASS"] = t["SPECTYPE"]
    t["SUBCLASS"] = np.asarray(lab["SUBCLASS"])[idx].astype("U24")
    t["Z"] = np.asarray(lab["Z"], float)[idx]
    t["SNR"] = median_snr(b.flux, b.ivar, b.ivar > 0)
    t["SOURCE"] = np.full(len(idx), "lamost-real", "U16")
    t["INSTRUMENT"] = np.full(len(idx), "lamost", "U8")
    # what the LAMOST reader puts in meta and the stages read: the survey (LAMOST star
    # library and letter trees, not SDSS's naming) and the pipeline version (the v2.6 rule)
    t["SURVEY"] = np.full(len(idx), "LAMOST", "U8")
    t["VERSPIPE"] = np.asarray(lab["VERSPIPE"])[idx].astype("U16")
    t["INPUT_FLAGS"] = np.zeros(len(idx), np.int32)
    b.meta = t
    return b


#: the SDSS-only simulations of ``--n-sdss`` use seed + this (never the mixed ones' draws)
SDSS_SEED_OFFSET = 1000


def _interleave(*iterators):
    """Pieces of several generators in turn (round robin) until all are spent, so the
    training stream mixes them however its chunks are shuffled."""
    its = [iter(i) for i in iterators]
    while its:
        for it in list(its):
            try:
                yield next(it)
            except StopIteration:
                its.remove(it)


def prepare(a):
    from specsift.io.store import SpectralStore
    from specsift.simulate import iter_blocks, simulate_to_store
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    flux, ivar, lab, counts = real_split(class_set=a.class_set)
    lab.write(out / "split.csv", overwrite=True)
    train = np.nonzero(~np.asarray(lab["HELDOUT"]) & (np.asarray(lab["CLASS_LABEL"]) != ""))[0]
    rng = np.random.default_rng(a.seed)
    reps = np.concatenate([rng.permutation(train) for _ in range(a.repeat)])
    print(f"real LAMOST: {len(lab)} read {counts}; train {train.size} × {a.repeat}, "
          f"held out {int(np.sum(lab['HELDOUT']))}")
    per = int(np.ceil(reps.size / max((a.n_sim + a.n_sdss) // 1024, 1)))
    k = 0
    with SpectralStore(out / "train.h5", "w") as st:
        st.attrs["made_by"] = (f"benchmarks/lamost_finetune.py prepare --n-sim {a.n_sim} "
                               f"--n-sdss {a.n_sdss} --seed {a.seed} --repeat {a.repeat} "
                               f"--class-set {a.class_set} --boss-fraction {a.boss_fraction}")
        buf = []
        for piece in _interleave(iter_blocks(a.n_sim, a.class_set, a.seed, instrument="mix",
                                             boss_fraction=a.boss_fraction),
                                 iter_blocks(a.n_sdss, a.class_set, a.seed + SDSS_SEED_OFFSET,
                                             instrument="sdss", boss_fraction=a.boss_fraction)):
            buf.append(piece)
            if sum(len(p) for p in buf) >= 1024:
                sim = SpectraBatch.concatenate(buf)
                buf = []
                st.append(sim)
                if k < reps.size:
                    st.append(_real_batch(flux, ivar, lab, reps[k:k + per], 10 ** 9 + k))
                    k += per
        if buf:
            st.append(SpectraBatch.concatenate(buf))
        if k < reps.size:
            st.append(_real_batch(flux, ivar, lab, reps[k:], 10 ** 9 + k))
    simulate_to_store(out / "val.h5", n=a.n_val, class_set=a.class_set, seed=a.seed + 1,
                      progress=False, instrument="mix")
    print("wrote", out / "train.h5", out / "val.h5")


def evaluate_model(model, flux, ivar, lab, sel):
    from specsift.spectra import DEFAULT_GRID
    b = _real_batch(flux, ivar, lab, sel, 0)
    b.loglam = DEFAULT_GRID.loglam
    cat = model.predict(b)
    cls = np.asarray(lab["CLASS"])[sel]
    sub = np.asarray(lab["SUBCLASS"])[sel]
    zt = np.asarray(lab["Z"], float)[sel]
    st = np.asarray(cat["SPECTYPE"]).astype(str)
    subp = np.asarray(cat["SUBTYPE"]).astype(str)
    zp = np.asarray(cat["Z"], float)
    star = cls == "STAR"
    res = {"n_star": int(star.sum()),
           "called_STAR": float(np.mean(st[star] == "STAR")),
           "letter_agree": float(np.mean([p[:1] == s[:1] for p, s, c in
                                          zip(subp[star], sub[star], st[star])])),
           "dv_le_20": float(np.mean(np.abs(zp[star] - zt[star]) * C_KMS <= 20)),
           "dv_median_abs": float(np.median(np.abs(zp[star] - zt[star]) * C_KMS))}
    afgk = star & np.isin(np.char.upper(np.asarray([s[:1] for s in sub])), list("AFGK"))
    res["letter_agree_AFGK"] = float(np.mean([p[:1] == s[:1] for p, s in
                                              zip(subp[afgk], sub[afgk])])) if afgk.any() else np.nan
    res["n_AFGK"] = int(afgk.sum())
    gal = cls == "GALAXY"
    if gal.any():
        res["galaxies"] = {"n": int(gal.sum()), "called_GALAXY": float(np.mean(st[gal] == "GALAXY")),
                           "GF_0.003": float(np.mean(np.abs(zp[gal] - zt[gal]) / (1 + zt[gal]) < 0.003))}
    return res


def evaluate(a):
    import torch

    from specsift.models.base import load_model
    torch.set_num_threads(1)
    flux, ivar, lab, counts = real_split()
    snr = np.asarray(lab["SNR_G"], float)
    held = np.asarray(lab["HELDOUT"])
    folders = np.asarray(lab["folder"])
    print(f"real LAMOST read: {counts}")
    rows = {}
    for m in a.model:
        model = load_model(m)
        sets = {"held-out, S/N_g ≥ 10": np.nonzero(held & (snr >= 10))[0],
                "held-out, all S/N": np.nonzero(held)[0]}
        for f in LR.FOLDERS:
            sets[f"held-out {f}, S/N_g ≥ 10"] = np.nonzero(held & (snr >= 10) & (folders == f))[0]
        rows[m] = {k: evaluate_model(model, flux, ivar, lab, v) for k, v in sets.items() if v.size}
    print("| model | set | n stars | called STAR | letter A/F/G/K/M | letter (AFGK only) | "
          "abs dv <= 20 km/s | median abs dv |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m, sets in rows.items():
        for k, r in sets.items():
            print(f"| {Path(m).name} | {k} | {r['n_star']} | {r['called_STAR']:.3f} | "
                  f"{r['letter_agree']:.3f} | {r['letter_agree_AFGK']:.3f} | {r['dv_le_20']:.3f} | "
                  f"{r['dv_median_abs']:.1f} |")
            if "galaxies" in r:
                g = r["galaxies"]
                print(f"|   galaxies | {k} | {g['n']} | called GALAXY {g['called_GALAXY']:.2f} "
                      f"| GF(0.003) {g['GF_0.003']:.2f} | | | |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


def simtest(a):
    """Class accuracy and GF(0.003) per type on simulated stores (any instrument): gasnet's
    thirteen-class average accuracy from its raw heads, other models from their catalog."""
    import torch
    from gasnet import _sim_part

    from specsift.classes import labels
    from specsift.io.store import SpectralStore
    from specsift.models.base import load_model
    torch.set_num_threads(1)
    print("| model | store | n | average accuracy | three-class | GF(0.003) gal / qso / star |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in a.model:
        model = load_model(m)
        for path in a.data:
            with SpectralStore(path, "r") as st:
                data = st.read(slice(0, len(st)))
            if model.name == "gasnet":
                r = _sim_part(model, data, list(labels("thirteen")))
                h = r["heads"][getattr(model, "z_head_", None) or model.config["z_head"]]
                gf = [h[t]["GF_0.003"] for t in ("GALAXY", "QSO", "STAR")]
            else:
                r = _catalog_part(model, data)
                gf = [r["GF"][t] for t in ("GALAXY", "QSO", "STAR")]
            print(f"| {Path(m).name} | {Path(path).name} | {r['n']} | {r['average_accuracy']:.3f} | "
                  f"{r['three_class_accuracy']:.3f} | {gf[0]:.3f} / {gf[1]:.3f} / {gf[2]:.3f} |")


def _catalog_part(model, data) -> dict:
    """Average per-class accuracy in the model's own class set, three-class accuracy and
    GF(0.003) per true SPECTYPE, from ``model.predict``."""
    from specsift.classes import spectype_of
    from specsift.metrics import truth_labels
    cat = model.predict(data)
    truth = truth_labels(data.meta, model.class_set)
    pred = np.asarray(cat["CLASS_LABEL"]).astype(str)
    have = truth != ""
    per = [np.mean(pred[have & (truth == c)] == c) for c in np.unique(truth[have])]
    st_t = np.array([spectype_of(c) for c in np.asarray(data.meta["CLASS_LABEL"]).astype(str)])
    st_p = np.asarray(cat["SPECTYPE"]).astype(str)
    zt, zp = np.asarray(data.meta["Z"], float), np.asarray(cat["Z"], float)
    ok = np.abs(zp - zt) / (1 + zt) < 0.003
    return {"n": len(cat), "average_accuracy": float(np.mean(per)),
            "three_class_accuracy": float(np.mean(st_p == st_t)),
            "GF": {t: float(np.mean(ok[st_t == t])) if (st_t == t).any() else np.nan
                   for t in ("GALAXY", "QSO", "STAR")}}


def recalibrate_zerr(a):
    """speccznet: refit the one ZERR factor on a (simulated SDSS) validation store and save;
    ``fit`` fitted it on the mixed-instrument validation set of ``prepare``."""
    import torch

    from specsift.io.store import SpectralStore
    from specsift.models.base import load_model
    torch.set_num_threads(1)
    model = load_model(a.model)
    before = float(model.zerr_scale_)
    with SpectralStore(a.val, "r") as st:
        after = model.calibrate_zerr(st.read(slice(0, len(st))))
    model.training["zerr_calibration"] = {
        "data": str(a.val), "before": before, "after": after,
        "command": f"python benchmarks/lamost_finetune.py recalibrate-zerr --model {a.model} "
                   f"--val {a.val} --save {a.save}"}
    print(f"ZERR scale {before:.4f} → {after:.4f}; saved {model.save(a.save)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--n-sim", type=int, default=49152)
    p.add_argument("--n-sdss", type=int, default=0,
                   help="extra thirteen-class simulations through the SDSS instrument only "
                        "(seed + 1000): the simulated test sets the model cards quote are SDSS")
    p.add_argument("--n-val", type=int, default=4096)
    p.add_argument("--seed", type=int, default=41)
    p.add_argument("--repeat", type=int, default=6)
    p.add_argument("--class-set", default="thirteen", choices=sorted(LABELLERS),
                   help="thirteen (gasnet) or five (speccznet)")
    p.add_argument("--boss-fraction", type=float, default=0.0,
                   help="share of simulated galaxies at BOSS z/S/N (speccznet's last stage: 0.3)")
    p.set_defaults(func=prepare)
    e = sub.add_parser("evaluate")
    e.add_argument("--model", action="append", required=True)
    e.add_argument("--json")
    e.set_defaults(func=evaluate)
    t = sub.add_parser("simtest")
    t.add_argument("--model", action="append", required=True)
    t.add_argument("--data", action="append", required=True)
    t.set_defaults(func=simtest)
    r = sub.add_parser("recalibrate-zerr")
    r.add_argument("--model", required=True)
    r.add_argument("--val", required=True)
    r.add_argument("--save", required=True)
    r.set_defaults(func=recalibrate_zerr)
    a = ap.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
