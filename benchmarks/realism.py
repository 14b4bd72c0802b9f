"""Realism check: simulated vs real spectra per survey (figures for docs/realism.md + AUCs).

    .venv/bin/python benchmarks/realism.py [--shared ../shared/data] [--out docs/figures]
        [--surveys sdss,lamost,desi] [--n-lamost 150]

SDSS: every real labelled spectrum in ../shared/data/sdss (sdss-labelled-50 + sdss-qso-10)
gets simulated twins with the same thirteen-set label, the same z (stars: their own RV) and the
same median S/N; realism_spectra.png and realism_distributions.png are drawn from them.
LAMOST: up to ``--n-lamost`` spectra per folder of ../shared/data/lamost-real that the
package readers read (files they cannot read are counted and left out), twinned by the SDSS
simulator (today's baseline) and by the LAMOST instrument model.  DESI: the real DESI spectra
with at least half their pixels good, twinned by the SDSS and the DESI models (unlabelled ones
get a label drawn from the natural class mix and a prior redshift).  For each pair a
classifier is trained to tell real from simulated (stratified 5-fold CV, repeated): an AUC of
0.5 means indistinguishable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from specsift.classes import map_sdss  # noqa: E402
from specsift.simulate import LABEL_SPECS, simulate_like  # noqa: E402
from specsift.spectra import DEFAULT_GRID, median_snr  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import SHARED  # noqa: E402


def load_real(shared: Path):
    rows = []
    for name in ("sdss-labelled-50.fits", "sdss-qso-10.fits"):
        t = Table.read(shared / "sdss" / name, hdu=1)
        for r in t:
            rows.append((np.asarray(r["flux"], np.float32), np.asarray(r["ivar"], np.float32),
                         str(r["CLASS"]).strip(), str(r["SUBCLASS"]).strip()
                         if not np.ma.is_masked(r["SUBCLASS"]) else "", float(r["Z"]),
                         float(r["SN_MEDIAN_ALL"])))
    flux = np.array([r[0] for r in rows])
    ivar = np.array([r[1] for r in rows])
    cls = np.array([r[2] for r in rows])
    sub = np.array([r[3] for r in rows])
    lab = map_sdss(cls, sub, "thirteen")
    return dict(flux=flux, ivar=ivar, label=lab, z=np.array([r[4] for r in rows]),
                snr=np.array([r[5] for r in rows]))


def simulate_twins(real, per=3, seed=0, instrument="sdss", sdss1=None):
    """For real spectrum i: ``per`` simulations with its label, z and S/N through
    ``instrument``; ``sdss1`` (SDSS only): SDSS-I coverage per spectrum (default: the real
    one's era, from whether its first 150 pixels are empty)."""
    keep = np.nonzero(real["label"] != "")[0]
    if sdss1 is None:
        sdss1 = real["ivar"][:, :150].max(axis=1) == 0
    src = np.repeat(keep, per)
    lab = real["label"][src]
    z = np.where([l.startswith("STAR") for l in lab], 0.0, np.maximum(real["z"][src], 0.0))
    z = np.where(np.isfinite(real["z"][src]), z, np.nan)
    b = simulate_like(lab, z, np.maximum(real["snr"][src], 0.5), seed=seed,
                      instrument=instrument, sdss1=np.asarray(sdss1)[src])
    return dict(flux=b.flux, ivar=b.ivar, label=lab, src=src)


def smooth(f, ivar, k=9):
    w = (ivar > 0).astype(float)
    ker = np.ones(k) / k
    num = np.apply_along_axis(lambda r: np.convolve(r, ker, "same"), 1, f * w)
    den = np.apply_along_axis(lambda r: np.convolve(r, ker, "same"), 1, w)
    return np.where(den > 0.3, num / np.maximum(den, 1e-9), np.nan)


def features(flux, ivar, nbins=60):
    """Normalised, smoothed spectrum in nbins bins + colour + noise summaries."""
    lam = DEFAULT_GRID.wave
    good = ivar > 0
    f = np.where(good, flux, np.nan)
    norm = np.nanmedian(f, axis=1)
    norm = np.where(np.abs(norm) > 0, np.abs(norm), 1.0)
    edges = np.linspace(0, flux.shape[1], nbins + 1).astype(int)
    with np.errstate(all="ignore"):
        import warnings
        warnings.simplefilter("ignore")
        binned = np.array([np.nanmedian(f[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:])]).T
        binned = np.nan_to_num(binned / norm[:, None])
        blue = np.nanmedian(np.where((lam > 4000) & (lam < 5000), f, np.nan), axis=1)
        red = np.nanmedian(np.where((lam > 6500) & (lam < 7500), f, np.nan), axis=1)
        colour = np.nan_to_num(np.log10(np.clip(red / blue, 1e-2, 1e2)))
        # noise: scatter of pixel-to-pixel differences in units of the quoted error
        d = np.diff(flux, axis=1) / np.sqrt(1 / np.where(good[:, 1:], ivar[:, 1:], np.inf)
                                            + 1 / np.where(good[:, :-1], ivar[:, :-1], np.inf))
        d = np.where(good[:, 1:] & good[:, :-1], d, np.nan)
        chi = 1.4826 * np.nanmedian(np.abs(d - np.nanmedian(d, axis=1)[:, None]), axis=1)
        masked = 1 - good.mean(axis=1)
        relnoise = np.nanmedian(np.where(good, 1 / np.sqrt(np.where(good, ivar, 1)), np.nan), axis=1) / norm
    return np.column_stack([binned, colour, np.nan_to_num(chi), masked, np.nan_to_num(relnoise)]), \
        dict(colour=colour, chi=chi, masked=masked)


def auc_real_vs_sim(Xr, Xs, repeats=10, seed=0):
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X = np.vstack([Xr, Xs])
    y = np.r_[np.ones(len(Xr)), np.zeros(len(Xs))]
    res = {}
    for name, mk in (("logistic", lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))),
                     ("gboost", lambda: GradientBoostingClassifier(n_estimators=100, max_depth=2, random_state=0))):
        aucs = []
        for r in range(repeats):
            p = np.zeros(len(y))
            for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed + r).split(X, y):
                m = mk().fit(X[tr], y[tr])
                p[te] = m.predict_proba(X[te])[:, 1]
            aucs.append(roc_auc_score(y, p))
        res[name] = (float(np.mean(aucs)), float(np.std(aucs)))
    return res


def ew_halpha(flux, ivar, z):
    """Rest EW of Hα+[NII] (6540–6590 Å rest) against 6460–6530 / 6610–6680 Å side bands."""
    lam = DEFAULT_GRID.wave
    out = np.full(len(z), np.nan)
    for i in range(len(z)):
        lr = lam / (1 + z[i])
        g = ivar[i] > 0
        core = (lr > 6540) & (lr < 6590) & g
        side = (((lr > 6460) & (lr < 6530)) | ((lr > 6610) & (lr < 6680))) & g
        if core.sum() > 10 and side.sum() > 10:
            c = np.median(flux[i, side])
            if c > 0:
                out[i] = ((flux[i, core] - c) * np.gradient(lam)[core]).sum() / c / (1 + z[i])
    return out


def sdss_section(shared: Path, out: Path):
    """The SDSS twins, figures and AUC (the page's original content)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    real = load_real(shared)
    keep = real["label"] != ""
    real = {k: v[keep] for k, v in real.items()}
    sim = simulate_twins(real, per=3)
    lam = DEFAULT_GRID.wave
    # ---- figure 1: per class, real vs simulated twin ----------------------------------
    labs = [l for l in LABEL_SPECS if l in set(real["label"])]
    fig, axes = plt.subplots(len(labs), 1, figsize=(11, 2.0 * len(labs)), sharex=True)
    rs = smooth(real["flux"], real["ivar"], 5)
    ss = smooth(sim["flux"], sim["ivar"], 5)
    for ax, lab in zip(axes, labs):
        i = np.nonzero(real["label"] == lab)[0][0]
        j = np.nonzero(sim["src"] == i)[0][0]
        nr, ns = np.nanmedian(rs[i]), np.nanmedian(ss[j])
        ax.plot(lam, rs[i] / nr, "k", lw=0.6, label=f"real  z={real['z'][i]:.3f} S/N={real['snr'][i]:.1f}")
        ax.plot(lam, ss[j] / ns + 1.5, "C3", lw=0.6, label="simulated (+1.5)")
        ax.set_ylabel(lab, fontsize=8)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
        lo, hi = np.nanpercentile(np.r_[rs[i] / nr, ss[j] / ns + 1.5], [0.5, 99.5])
        ax.set_ylim(lo - 0.2, hi + 0.2)
    axes[-1].set_xlabel("observed wavelength (Å)")
    fig.suptitle("real SDSS (black) vs simulated twin (red): same label, z, median S/N", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "realism_spectra.png", dpi=110)
    plt.close(fig)
    # ---- figure 2: distributions -----------------------------------------------------
    Xr, fr = features(real["flux"], real["ivar"])
    Xs, fs = features(sim["flux"], sim["ivar"])
    groups = {"GALAXY*": lambda l: l.startswith("GALAXY"), "QSO*": lambda l: l.startswith("QSO"),
              "STAR*": lambda l: l.startswith("STAR")}
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (g, test) in zip(axes[0], groups.items()):
        mr = np.array([test(l) for l in real["label"]])
        ms = np.array([test(l) for l in sim["label"]])
        bins = np.linspace(-1, 1, 25)
        ax.hist(fr["colour"][mr], bins, density=True, histtype="step", color="k", label=f"real ({mr.sum()})")
        ax.hist(fs["colour"][ms], bins, density=True, histtype="step", color="C3", label=f"sim ({ms.sum()})")
        ax.set_xlabel("log f(6500–7500 Å)/f(4000–5000 Å)")
        ax.set_title(f"continuum colour, {g}", fontsize=9)
        ax.legend(fontsize=8)
    zr = real["z"]
    gr = np.array([l.startswith("GALAXY") for l in real["label"]]) & (zr < 0.38)
    gs = np.isin(sim["src"], np.nonzero(gr)[0])
    ewr = ew_halpha(real["flux"][gr], real["ivar"][gr], zr[gr])
    ews = ew_halpha(sim["flux"][gs], sim["ivar"][gs], zr[sim["src"][gs]])
    ax = axes[1, 0]
    ax.scatter(np.arange(gr.sum()), ewr, c="k", s=18, label="real")
    xs = np.searchsorted(np.nonzero(gr)[0], sim["src"][gs])
    ax.scatter(xs + 0.2, ews, c="C3", s=10, label="sim twins")
    ax.set_yscale("symlog", linthresh=5)
    ax.set_xticks(np.arange(gr.sum()))
    ax.set_xticklabels([l.replace("GALAXY_", "")[:5] for l in real["label"][gr]], rotation=90, fontsize=7)
    ax.set_ylabel("EW(Hα+[NII]) rest, Å")
    ax.set_title("measured line EW, galaxies z<0.38", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    bins = np.linspace(0.5, 1.6, 23)
    ax.hist(fr["chi"], bins, density=True, histtype="step", color="k", label="real")
    ax.hist(fs["chi"], bins, density=True, histtype="step", color="C3", label="sim")
    ax.set_xlabel("robust σ of Δflux / quoted error (pixel-to-pixel)")
    ax.set_title("noise vs quoted ivar", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    for f, iv, c, name in ((real["flux"], real["ivar"], "k", "real"), (sim["flux"], sim["ivar"], "C3", "sim")):
        with np.errstate(all="ignore"):
            err = np.where(iv > 0, 1 / np.sqrt(np.where(iv > 0, iv, 1)), np.nan)
            rel = err / np.nanmedian(err, axis=1)[:, None]
            ax.plot(lam, np.nanmedian(rel, axis=0), c, lw=0.6, label=name)
    ax.set_ylim(0, 4)
    ax.set_xlabel("observed wavelength (Å)")
    ax.set_ylabel("σ(λ) / median σ (median over spectra)")
    ax.set_title("noise vs wavelength (sky lines, throughput)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "realism_distributions.png", dpi=110)
    plt.close(fig)
    one = np.array([np.nonzero(sim["src"] == i)[0][0] for i in range(len(real["label"]))
                    if (sim["src"] == i).any()])
    res = auc_real_vs_sim(Xr, Xs[one])
    print(f"median noise χ (real / sim): {np.nanmedian(fr['chi']):.3f} / {np.nanmedian(fs['chi']):.3f}")
    print(f"median masked fraction (real / sim): {np.median(fr['masked']):.3f} / {np.median(fs['masked']):.3f}")
    print(f"median EW(Hα+[NII]) galaxies (real / sim): {np.nanmedian(ewr):.1f} / {np.nanmedian(ews):.1f}")
    return [("SDSS", len(real["label"]), "SDSS simulator", Xr.shape[1], res)]


def _auc_rows(survey, real, instruments, repeats):
    """AUC of real vs first twins for each simulator in ``instruments``."""
    Xr, fr = features(real["flux"], real["ivar"])
    rows = []
    for inst in instruments:
        sim = simulate_twins(real, per=1, instrument=inst,
                             sdss1=np.random.default_rng(3).random(len(real["label"])) < 0.5)
        idx = np.nonzero(real["label"] != "")[0]
        Xs, fs = features(sim["flux"], sim["ivar"])
        res = auc_real_vs_sim(Xr[idx], Xs, repeats=repeats)
        print(f"{survey} vs {inst} sim: χ real/sim {np.nanmedian(fr['chi'][idx]):.3f}/"
              f"{np.nanmedian(fs['chi']):.3f}, masked {np.median(fr['masked'][idx]):.3f}/"
              f"{np.median(fs['masked']):.3f}")
        rows.append((survey, len(idx), f"{inst.upper()} simulator", Xr.shape[1], res))
    return rows


def lamost_section(shared: Path, n_per_folder: int, repeats: int):
    import _lamost_real as LR
    from lamost_finetune import thirteen_label
    flux, ivar, lab, counts = LR.load(shared=shared, fallback=False, limit=n_per_folder)
    read = {f: c["package"] for f, c in counts.items()}
    unread = {f: c["unread"] for f, c in counts.items() if c["unread"]}
    print(f"LAMOST read by the package readers: {read}; not readable yet: {unread}")
    label = np.array([thirteen_label(c, s_) for c, s_ in zip(lab["CLASS"], lab["SUBCLASS"])])
    real = dict(flux=flux, ivar=ivar, label=label, z=np.asarray(lab["Z"], float),
                snr=median_snr(flux, ivar, ivar > 0))
    return _auc_rows("LAMOST", real, ("sdss", "lamost"), repeats)


def desi_section(shared: Path, repeats: int):
    import glob
    import warnings

    from specsift import io as sio
    from specsift.simulate.survey import natural_mix
    files = sorted(glob.glob(str(shared / "desi" / "*.fits"))
                   + glob.glob(str(shared / "desi" / "fastspecfit" / "coadd-*.fits"))
                   + glob.glob(str(shared / "desi" / "quasarnp" / "*.fits")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = sio.read(files)
    good = (~b.mask).mean(axis=1) > 0.5
    b = b[np.nonzero(good)[0]]
    m = b.meta
    labs = list(LABEL_SPECS)[:7]
    natural = np.random.default_rng(5).choice(labs, len(b), p=natural_mix(labs))
    cls = np.asarray(m["CLASS"]).astype(str) if "CLASS" in m.colnames else np.full(len(b), "")
    sub = np.asarray(m["SUBCLASS"]).astype(str) if "SUBCLASS" in m.colnames else np.full(len(b), "")
    mapped = map_sdss(cls, sub, "thirteen")
    label = np.where(mapped != "", mapped, natural)
    z = np.asarray(m["Z"], float) if "Z" in m.colnames else np.full(len(b), np.nan)
    z = np.where(mapped != "", z, np.nan)
    ivar = np.where(b.mask, 0, b.ivar)
    real = dict(flux=b.flux, ivar=ivar, label=label, z=z, snr=median_snr(b.flux, ivar, ivar > 0))
    print(f"DESI: {len(b)} spectra with ≥ 50 % good pixels ({int((mapped != '').sum())} labelled)")
    return _auc_rows("DESI", real, ("sdss", "desi"), repeats)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    ap.add_argument("--surveys", default="sdss,lamost,desi")
    ap.add_argument("--n-lamost", type=int, default=150, help="real spectra per lamost-real folder")
    ap.add_argument("--repeats", type=int, default=5, help="CV repeats for LAMOST/DESI")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    shared = Path(a.shared)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT / "tools"))
    rows = []
    surveys = a.surveys.split(",")
    if "sdss" in surveys:
        rows += sdss_section(shared, out)
    if "lamost" in surveys:
        rows += lamost_section(shared, a.n_lamost, a.repeats)
    if "desi" in surveys:
        rows += desi_section(shared, a.repeats)
    print("| survey (real spectra) | simulator | logistic AUC | gboost AUC |")
    print("| --- | --- | --- | --- |")
    for survey, n, sim, nf, res in rows:
        lo, gb = res["logistic"], res["gboost"]
        print(f"| {survey} ({n}) | {sim} | {lo[0]:.3f} ± {lo[1]:.3f} | {gb[0]:.3f} ± {gb[1]:.3f} |")
    print(f"(features: {rows[0][3] if rows else '?'}; real vs first twin, 1:1, 5-fold CV)")


if __name__ == "__main__":
    main()
