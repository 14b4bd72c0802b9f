"""Do the simulated Hα profiles look like real LAMOST ones?  A figure for docs/.

Real side: the LAMOST spectra of the Ondřejov cross-matched pairs, grouped by the Ondřejov
label of the same star (0 emission, 1 absorption, 3 emission inside absorption — our
reading of the Ondřejov dataset's codes, checked by eye; 2 double-peak has no LAMOST
spectrum here), and the Ondřejov spectra (R ≈ 13 000, air wavelengths) degraded to
R = 1800 next to the LAMOST spectrum of the same star.  Simulated side:
:func:`specsift.simulate.emission_stars.simulate_emission_stars`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["halpha_comparison"]

_HA = 6564.61
_CODES = {"0": "EMISSION", "1": "ABSORPTION", "3": "EMISSION"}


def _norm(wave, flux):
    side = ((wave > 6470) & (wave < 6510)) | ((wave > 6620) & (wave < 6660))
    c = np.nanmedian(flux[side]) if side.sum() > 3 else np.nanmedian(flux)
    return flux / c


def _degrade(wave, flux, R=1800.0):
    """Gaussian LSF of resolution R on a fine linear grid (the Ondřejov pixel ≈ 0.26 Å)."""
    from scipy.ndimage import gaussian_filter1d
    step = np.median(np.diff(wave))
    sigma_px = (_HA / R / 2.3548) / step
    return gaussian_filter1d(flux, sigma_px, mode="nearest")


def halpha_comparison(shared_data, out_png, n_sim: int = 12, seed: int = 0) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import read
    from ..io._common import air_to_vacuum
    from ..simulate.emission_stars import simulate_emission_stars

    pairs_dir = Path(shared_data) / "lamost" / "ondrejov-pairs"
    labels = {r["id"].rsplit("/", 1)[-1]: r["label"]
              for r in csv.DictReader(open(pairs_dir / "ondrejov-dataset.csv"))}
    pairs = []
    for ond, lam in csv.reader(open(pairs_dir / "cross-matched.csv")):
        key = Path(ond).stem
        pairs.append((pairs_dir / "cross-matched" / "ondrejov" / Path(ond).name,
                      pairs_dir / "cross-matched" / "lamost" / Path(lam).name, labels.get(key)))
    sim = simulate_emission_stars(600, rare_fraction=0.5, seed=seed)
    slab = np.asarray(sim.meta["LABEL"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), sharey=False)
    win = (6500, 6630)
    for ax, cls in zip(axes[:2], ("ABSORPTION", "EMISSION")):
        first = True
        for ond, lam, code in pairs:
            if _CODES.get(code) != cls:
                continue
            b = read(lam, grid=None)
            m = (b.wave > win[0]) & (b.wave < win[1])
            ax.plot(b.wave[m], _norm(b.wave, b.flux[0])[m], color="k", lw=0.9, alpha=0.7,
                    label="real LAMOST (Ondřejov-labelled)" if first else None)
            first = False
        idx = np.flatnonzero(slab == cls)[:n_sim]
        for j, i in enumerate(idx):
            m = (sim.wave > win[0]) & (sim.wave < win[1])
            ax.plot(sim.wave[m], _norm(sim.wave, sim.flux[i])[m], color="C0", lw=0.8, alpha=0.5,
                    label="simulated" if j == 0 else None)
        ax.set_title(f"{cls.lower()} stars at LAMOST resolution")
    ax = axes[2]
    idx = np.flatnonzero(slab == "DOUBLE_PEAK")[:n_sim]
    m = (sim.wave > win[0]) & (sim.wave < win[1])
    for j, i in enumerate(idx):
        ax.plot(sim.wave[m], _norm(sim.wave, sim.flux[i])[m], color="C4", lw=0.8, alpha=0.6,
                label="simulated double-peak" if j == 0 else None)
    g = read(pairs_dir / "gamma-cas-emission.fits", grid=None)
    gw = air_to_vacuum(g.wave)
    gm = (gw > win[0]) & (gw < win[1])
    ax.plot(gw[gm], _norm(gw, _degrade(gw, g.flux[0]))[gm], color="k", lw=1.2,
            label="γ Cas (Ondřejov) at R=1800")
    ax.set_title("double-peaked (Be-star discs)")
    # Ondřejov spectrum degraded to R = 1800 against the LAMOST spectrum of the same star
    ax = axes[3]
    shown = 0
    for ond, lam, code in pairs:
        if _CODES.get(code) != "EMISSION" or shown >= 2:
            continue
        o, b = read(ond, grid=None), read(lam, grid=None)
        ow = air_to_vacuum(o.wave)
        om = (ow > win[0]) & (ow < win[1])
        lm = (b.wave > win[0]) & (b.wave < win[1])
        off = 1.5 * shown
        ax.plot(b.wave[lm], _norm(b.wave, b.flux[0])[lm] + off, color="k", lw=1,
                label="LAMOST" if shown == 0 else None)
        ax.plot(ow[om], _norm(ow, _degrade(ow, o.flux[0]))[om] + off, color="C1", lw=1,
                label="Ondřejov → R=1800" if shown == 0 else None)
        ax.plot(ow[om], _norm(ow, o.flux[0])[om] + off, color="C1", lw=0.5, alpha=0.35,
                label="Ondřejov R≈13 000" if shown == 0 else None)
        shown += 1
    ax.set_title("same star: Ondřejov degraded vs LAMOST")
    for ax in axes:
        ax.axvline(_HA, color="r", ls=":", lw=0.8)
        ax.set_xlabel("vacuum wavelength [Å]")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("flux / continuum")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
