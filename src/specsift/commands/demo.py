"""`specsift demo -o OUTDIR` (interim main job, until a trained model exists): read the
bundled real SDSS spectra, resample them to the default grid, print the `info` summary
and draw a few spectra with their SDSS labels and main lines (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Main lines to mark (vacuum rest wavelength, Å).
DEMO_LINES = (("Lyα", 1215.67), ("C IV", 1549.06), ("C III]", 1908.73), ("Mg II", 2799.12),
              ("[O II]", 3728.48), ("Ca K", 3934.78), ("Ca H", 3969.59), ("Hδ", 4102.89),
              ("Hγ", 4341.68), ("Hβ", 4862.68), ("[O III]", 5008.24), ("Mg b", 5176.7),
              ("Na D", 5895.6), ("Hα", 6564.61), ("[S II]", 6718.29))


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.add_argument("-o", "--outdir", default="out/demo", help="where to write the plot")
    p.add_argument("--n-plot", type=int, default=6, help="spectra to draw")
    p.set_defaults(func=run)


def plot_spectra(batch, path: Path, n: int = 6) -> Path:
    """PNG of up to ``n`` spectra (smoothed for display), labels and lines at their z."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import uniform_filter1d

    n = min(n, len(batch))
    fig, axes = plt.subplots(n, 1, figsize=(11, 2.1 * n), sharex=True, squeeze=False)
    wave = batch.wave
    for k, ax in enumerate(axes[:, 0]):
        good = ~batch.mask[k]
        f = np.where(good, batch.flux[k], np.nan)
        wsum = uniform_filter1d(good.astype(float), 5)
        smooth = uniform_filter1d(np.where(good, batch.flux[k], 0.0), 5) / np.maximum(wsum, 1e-9)
        ax.plot(wave, np.where(good, smooth, np.nan), lw=0.6, color="0.2")
        ax.plot(wave[~good], np.zeros((~good).sum()), ",", color="tab:red", alpha=0.3)
        m = batch.meta[k]
        z = float(m["Z"]) if "Z" in m.colnames else np.nan
        label = f"{m['CLASS'] if 'CLASS' in m.colnames else '?'} {m['SUBCLASS'] if 'SUBCLASS' in m.colnames else ''}".strip()
        src = Path(str(m["SOURCE"])).name
        ax.set_title(f"{src}  TARGETID {m['TARGETID']}   SDSS: {label}, z = {z:.4f}",
                     fontsize=8, loc="left")
        if np.isfinite(z):
            for name, rest in DEMO_LINES:
                obs = rest * (1 + z)
                if wave[0] < obs < wave[-1]:
                    ax.axvline(obs, color="tab:blue", lw=0.5, alpha=0.5)
                    ax.text(obs, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=6,
                            rotation=90, va="top", ha="right", color="tab:blue")
        lo, hi = np.nanpercentile(f, [1, 99]) if good.any() else (0, 1)
        ax.set_ylim(min(lo, 0) - 0.1 * (hi - lo), hi + 0.35 * (hi - lo))
        ax.set_ylabel("flux", fontsize=7)
    axes[-1, 0].set_xlabel("vacuum wavelength (Å)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args) -> int:
    import warnings

    from ..data import demo_files
    from ..io import read
    from .info import summarise

    files = demo_files()
    print(f"specsift demo: {len(files)} bundled SDSS files (see specsift/data/PROVENANCE.md)\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            print("\n".join(summarise(f).lines()))
        batch = read(files)
    print(f"\nresampled onto the default grid: {batch}")
    # one spectrum per file first (the spec files), then the labelled table's variety
    order = list(range(len(batch)))
    spec_rows = [i for i, s in enumerate(batch.meta["SOURCE"]) if Path(str(s)).name.startswith("spec-")]
    table_rows = [i for i in order if i not in spec_rows]
    pick = spec_rows[:max(1, args.n_plot - 2)]
    seen = set(batch.meta["CLASS"][pick])
    for i in table_rows:
        if len(pick) >= args.n_plot:
            break
        key = batch.meta["CLASS"][i]
        if key not in seen:
            pick.append(i)
            seen.add(key)
    for i in table_rows:                 # then fill up with other subclasses
        if len(pick) >= args.n_plot:
            break
        key = (batch.meta["CLASS"][i], batch.meta["SUBCLASS"][i])
        if i not in pick and key not in seen:
            pick.append(i)
            seen.add(key)
    out = plot_spectra(batch[pick], Path(args.outdir) / "demo_spectra.png", args.n_plot)
    print(f"plot: {out}")
    return 0
