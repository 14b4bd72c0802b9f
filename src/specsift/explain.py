"""Where a network looks: integrated-gradients saliency along wavelength, drawn against
known lines at the observed wavelength, and a per-class summary in the rest frame.

Integrated gradients (Sundararajan et al. 2017): attribution of pixel i =
(x_i − x0_i)·mean over α∈(0,1] of ∂F(x0 + α(x − x0))/∂x_i with baseline x0: the flux
channel at 0 (an empty spectrum after normalisation), any other input channel (gasnet's
per-pixel S/N) kept as it is; F the logit of the predicted class.  Implemented here in a
few lines (no captum needed); works for any model with a ``net`` (torch module whose output,
its first element or its ``cls`` entry is class logits) and a ``make_inputs(batch)`` method:
gasnet, speccznet and vgg1d.  χ² models (eigen) explain themselves: ``EigenModel.explain``
(best and runner-up fits, each pixel's χ² gap) drawn by :func:`plot_chi2_explanation`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .lines import LINES, MAJOR_LINES, lines_in_range
from .spectra import SpectraBatch

__all__ = ["integrated_gradients", "plot_explanation", "line_attention", "plot_class_attention",
           "plot_chi2_explanation"]


def _logits(out):
    """Class logits from a network's output: a tensor, a (logits, …) tuple (speccznet,
    vgg1d) or a dict with ``cls`` (gasnet)."""
    if isinstance(out, dict):
        return out["cls"]
    return out[0] if isinstance(out, (tuple, list)) else out


def _baseline(x: torch.Tensor) -> torch.Tensor:
    """The flux channel at 0 (an empty spectrum), other channels as they are.

    Why not all channels at 0: gasnet's second channel is the per-pixel S/N, positive at
    every good pixel; integrating it from 0 credits the whole spectrum with "being there",
    which buries the pixels whose flux decides the class: on a flat spectrum with one strong
    line, gasnet's |attribution| then peaks up to 2856 Å away from the line; with this
    baseline the peak is at the line (tests/test_explain.py)."""
    if x.dim() < 3 or x.shape[1] == 1:
        return torch.zeros_like(x)
    base = x.clone()
    base[:, 0] = 0.0
    return base


def integrated_gradients(model, batch: SpectraBatch, target: np.ndarray | None = None,
                         steps: int = 32, chunk: int = 16, baseline: str = "flux") -> np.ndarray:
    """(N, P) signed attribution of each pixel to the target class logit (default: the
    predicted class).  Needs ``model.net`` and ``model.make_inputs``.  ``baseline``:
    'flux' (see :func:`_baseline`) or 'zero' (every channel at 0, for comparison)."""
    net, make_inputs = getattr(model, "net", None), getattr(model, "make_inputs", None)
    if net is None or make_inputs is None:
        raise ValueError(f"model {getattr(model, 'name', model)!r} exposes no network to explain")
    batch = model.check_batch(batch) if hasattr(model, "check_batch") else batch
    net.eval()
    x_all = make_inputs(batch).float()
    if x_all.shape[-1] != batch.npix:
        raise ValueError("explain draws saliency over the model's grid; this model's input "
                         f"has {x_all.shape[-1]} px, not the {batch.npix} of the grid")
    out = np.zeros((x_all.shape[0], x_all.shape[-1]), np.float32)
    alphas = (torch.arange(steps, dtype=torch.float32) + 1) / steps
    for lo in range(0, x_all.shape[0], chunk):
        x = x_all[lo:lo + chunk]
        with torch.no_grad():
            tgt = (_logits(net(x)).argmax(1) if target is None
                   else torch.as_tensor(np.asarray(target)[lo:lo + chunk], dtype=torch.long))
        base = _baseline(x) if baseline == "flux" else torch.zeros_like(x)
        grads = torch.zeros_like(x)
        for a in alphas:
            xi = (base + a * (x - base)).requires_grad_(True)
            sel = _logits(net(xi)).gather(1, tgt[:, None]).sum()
            (g,) = torch.autograd.grad(sel, xi)
            grads += g
        attr = (x - base) * grads / steps
        out[lo:lo + chunk] = (attr.sum(dim=1) if x.dim() == 3 else attr).detach().numpy()
    out[batch.mask] = 0.0
    return out


def plot_explanation(batch: SpectraBatch, k: int, saliency: np.ndarray, z: float, label: str,
                     path, title: str = "", line_row=None) -> Path:
    """Spectrum ``k`` with |saliency| shaded beneath and the lines marked at (1+z)·λ_rest;
    with ``line_row`` (a catalog row with the emission-line stage's columns) the fitted line
    model is drawn over the spectrum too, so a reader sees which measured lines the network
    looked at."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wave = batch.wave
    flux = np.where(batch.mask[k], np.nan, batch.flux[k])
    sal = np.abs(saliency[k])
    sal = sal / sal.max() if sal.max() > 0 else sal
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(wave, flux, lw=0.5, color="k")
    lo, hi = np.nanpercentile(flux, [1, 99.5]) if np.isfinite(flux).any() else (0, 1)
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.25 * (hi - lo))
    ax2.fill_between(wave, 0, sal, color="tab:red", lw=0)
    ax2.set_ylabel("|IG| (norm.)")
    for ln, w in lines_in_range(z, wave[0], wave[-1], LINES if z < 0.8 else MAJOR_LINES):
        for a in (ax, ax2):
            a.axvline(w, color="tab:blue", lw=0.6, alpha=0.6, ls="--" if not ln.major else "-")
        if ln.major or z < 0.8:
            ax.text(w, ax.get_ylim()[1], ln.name, rotation=90, va="top", ha="right", fontsize=7,
                    color="tab:blue")
    if line_row is not None:
        from .lines.plot import draw_lines
        draw_lines(ax, line_row, batch.loglam, flux=batch.flux[k])
    ax.set_ylabel("flux")
    ax2.set_xlabel("observed wavelength (Å)")
    ax.set_title(title or f"{label}  z = {z:.4f}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def line_attention(saliency: np.ndarray, loglam: np.ndarray, z: np.ndarray, top: int = 20,
                   window: float = 15.0) -> dict:
    """Where attention peaks relative to lines, in the rest frame.

    For every spectrum the ``top`` pixels of |saliency| are moved to the rest frame
    (λ/(1+z)).  Returns their rest wavelengths (flattened) and, per major line, the fraction
    of top pixels within ±``window`` Å of it (only spectra where the line is observed count).
    """
    wave = 10.0 ** np.asarray(loglam)
    rest_all, near = [], {ln.name: [0, 0] for ln in MAJOR_LINES}
    for k in range(saliency.shape[0]):
        if not np.isfinite(z[k]) or z[k] < -0.01:
            continue
        s = np.abs(saliency[k])
        if not s.any():
            continue
        idx = np.argsort(s)[-top:]
        rest = wave[idx] / (1 + z[k])
        rest_all.append(rest)
        lo, hi = wave[0] / (1 + z[k]), wave[-1] / (1 + z[k])
        for ln in MAJOR_LINES:
            if lo + window <= ln.wave <= hi - window:
                near[ln.name][0] += int(np.sum(np.abs(rest - ln.wave) <= window))
                near[ln.name][1] += top
    return {"rest_wave": np.concatenate(rest_all).tolist() if rest_all else [],
            "near_line_fraction": {n: (a / b if b else None) for n, (a, b) in near.items()},
            "window_A": window, "top_pixels": top}


def plot_class_attention(per_class: dict, path) -> Path:
    """Histogram of the rest wavelength of each class's top-saliency pixels, lines marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, d in per_class.items() if d["rest_wave"]]
    fig, axes = plt.subplots(max(1, len(names)), 1, figsize=(11, 1.8 * max(1, len(names)) + 0.6),
                             sharex=True, squeeze=False)
    allw = np.concatenate([per_class[n]["rest_wave"] for n in names]) if names else np.array([1e3, 1e4])
    bins = np.geomspace(max(900.0, allw.min()), allw.max(), 300)
    for ax, name in zip(axes[:, 0], names):
        ax.hist(per_class[name]["rest_wave"], bins=bins, color="tab:red", alpha=0.8)
        for ln in MAJOR_LINES:
            if bins[0] <= ln.wave <= bins[-1]:
                ax.axvline(ln.wave, color="tab:blue", lw=0.7, alpha=0.7)
                ax.text(ln.wave, ax.get_ylim()[1], ln.name, rotation=90, va="top", ha="right",
                        fontsize=6, color="tab:blue")
        ax.set_xscale("log")
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("rest wavelength (Å) of the top-saliency pixels")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_chi2_explanation(info: dict, k: int, path, title: str = "") -> Path:
    """A χ²-scan model's own explanation of spectrum ``k`` (``EigenModel.explain`` output):
    data and best-fit reconstruction, residual in σ units, and χ²(z) of every class
    (penalty included, relative to the best) with the chosen minimum, the next-best
    minimum > 1000 km/s away and DELTACHI2 marked; the next-best fit overlaid and each
    pixel's χ² contribution to the gap between the two (the χ² model's saliency: where
    the data prefer the chosen redshift)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cat = info["catalog"]
    wave = 10.0 ** np.asarray(info["loglam"])
    bad = np.asarray(info["mask"][k]) | (np.asarray(info["ivar"][k]) <= 0)
    flux = np.where(bad, np.nan, info["flux"][k])
    model = np.where(bad, np.nan, info["model"][k])
    resid = np.where(bad, np.nan, info["residual"][k])
    z, dchi2 = float(cat["Z"][k]), float(cat["DELTACHI2"][k])
    z2, c2 = float(info["z_second"][k]), str(info["class_second"][k])
    fig, (ax, ax2, ax4, ax3) = plt.subplots(4, 1, figsize=(11, 9.5),
                                            gridspec_kw={"height_ratios": [3, 1.2, 1.2, 2.2]})
    ax.plot(wave, flux, lw=0.5, color="k", label="data")
    ax.plot(wave, model, lw=0.9, color="tab:red", label="best fit")
    if "model_second" in info and c2:
        ax.plot(wave, np.where(bad, np.nan, info["model_second"][k]), lw=0.7,
                color="tab:blue", alpha=0.7, label=f"next: {c2} z = {z2:.4f}")
        gap = np.asarray(info["chi2_pixel_gap"][k])
        ax4.fill_between(wave, 0, np.where(bad, 0.0, gap), color="tab:purple", lw=0, step="mid")
        ax4.axhline(0, color="0.5", lw=0.5)
        ax4.set_ylabel("χ²₂ − χ²₁\nper pixel", fontsize=8)
        ax4.text(0.01, 0.9, f"Σ = {gap.sum():.1f} (> 0: pixels favouring the best z)",
                 transform=ax4.transAxes, va="top", fontsize=8)
        ax4.sharex(ax)
    else:
        ax4.set_visible(False)
    if np.isfinite(flux).any():
        lo, hi = np.nanpercentile(flux, [1, 99.5])
        ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.2 * (hi - lo))
    ax.set_ylabel("flux")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or f"{cat['CLASS_LABEL'][k]}  z = {z:.4f}")
    ax2.plot(wave, resid, lw=0.4, color="0.3")
    ax2.axhline(0, color="tab:red", lw=0.6)
    ax2.set_ylim(-6, 6)
    ax2.set_ylabel("residual (σ)")
    ax2.set_xlabel("observed wavelength (Å)")
    ax2.sharex(ax)
    curves = {lab: (zs, cur[k] + info["penalty"].get(lab, 0.0))
              for lab, (zs, cur) in info["chi2"].items()}
    best = min(np.nanmin(c) for _, c in curves.values() if np.isfinite(c).any()) \
        if any(np.isfinite(c).any() for _, c in curves.values()) else 0.0
    for lab, (zs, c) in curves.items():
        ax3.plot(np.log10(1 + zs), c - best, lw=0.6, label=lab)
    ax3.set_yscale("symlog", linthresh=10.0)
    ax3.axvline(np.log10(1 + z), color="k", lw=0.9, label=f"best z = {z:.4f}")
    if c2 and np.isfinite(z2):
        ax3.axvline(np.log10(1 + z2), color="k", lw=0.9, ls="--",
                    label=f"next {c2} z = {z2:.4f}")
    ax3.text(0.01, 0.95, f"DELTACHI2 = {dchi2:.1f}", transform=ax3.transAxes, va="top",
             fontsize=9)
    ax3.set_xlabel("log10(1 + z)")
    ax3.set_ylabel("χ² − χ²_best")
    ax3.legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
