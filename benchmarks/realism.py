"""Realism check: simulated vs real SDSS spectra (figures for docs/realism.md + the AUC).

    .venv/bin/python benchmarks/realism.py [--shared ../shared/data] [--out docs/figures]

Every real labelled spectrum in ../shared/data/sdss (sdss-labelled-50 + sdss-qso-10) gets
simulated twins with the same thirteen-set label, the same z (stars: their own RV) and the
same median S/N.  Writes realism_spectra.png, realism_distributions.png and prints a table
with a real-vs-simulated classifier AUC (stratified 5-fold CV, repeated 10×).
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
from specsift.simulate import LABEL_SPECS, simulate_batch  # noqa: E402
from specsift.spectra import DEFAULT_GRID  # noqa: E402

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


def simulate_twins(real, per=3, seed=0):
    """For real spectrum i: ``per`` simulations with its label, z and S/N."""
    labs = list(LABEL_SPECS)
    out_f, out_i, out_lab, out_src = [], [], [], []
    for i, (lab, z, snr) in enumerate(zip(real["label"], real["z"], real["snr"])):
        if not lab:
            continue
        zz = None if lab.startswith("STAR") else max(z, 0.0)
        got = 0
        k = 0
        while got < per:
            # same coverage era as the real one (SDSS-I starts at ~3800 Å, BOSS at 3600 Å)
            s1 = float(real["ivar"][i][:150].max() == 0)
            b = simulate_batch(n=13, class_set="thirteen", seed=seed * 100000 + i * 10 + k,
                               z=zz, snr=max(snr, 0.5), sdss1_fraction=s1)
            k += 1
            sel = np.nonzero(np.asarray(b.meta["CLASS_LABEL"]) == lab)[0][:per - got]
            for j in sel:
                out_f.append(b.flux[j]); out_i.append(b.ivar[j])
                out_lab.append(lab); out_src.append(i)
                got += 1
    del labs
    return dict(flux=np.array(out_f), ivar=np.array(out_i), label=np.array(out_lab),
                src=np.array(out_src))


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(SHARED))
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    real = load_real(Path(a.shared))
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
    # ---- two-sample test ---------------------------------------------------------------
    one = np.array([np.nonzero(sim["src"] == i)[0][0] for i in range(len(real["label"]))
                    if (sim["src"] == i).any()])
    res = auc_real_vs_sim(Xr, Xs[one])
    print(f"real spectra: {len(real['label'])}, simulated twins: {len(sim['label'])}")
    print("| classifier (real vs simulated, 1:1 matched, 5-fold CV ×10) | AUC | ± std |")
    print("| --- | --- | --- |")
    for k, (m, s) in res.items():
        print(f"| {k} on {Xr.shape[1]} features | {m:.3f} | {s:.3f} |")
    print(f"median noise χ (real / sim): {np.nanmedian(fr['chi']):.3f} / {np.nanmedian(fs['chi']):.3f}")
    print(f"median masked fraction (real / sim): {np.median(fr['masked']):.3f} / {np.median(fs['masked']):.3f}")
    print(f"median EW(Hα+[NII]) galaxies (real / sim): {np.nanmedian(ewr):.1f} / {np.nanmedian(ews):.1f}")


if __name__ == "__main__":
    main()
