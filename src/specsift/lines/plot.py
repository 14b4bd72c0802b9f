"""Draw the fitted emission lines of a catalog row over its spectrum (matplotlib).

Built from the catalog columns alone (flux, σ, velocity shift, Z), so a figure can be made
from any catalog row and its spectrum, by `specsift explain`, the demo report or a user.
Each line is drawn as one Gaussian (a quasar's two-component broad line with its second-
moment σ): the picture shows what was measured, not the fit's exact profile.
"""

from __future__ import annotations

import numpy as np

from .measure import QSO_BROAD_NAMES, line_names, sdss_sigma_inst
from .models import BROAD_LINES, NARROW_LINES
from .table import C_KMS, WAVE

__all__ = ["line_model", "draw_lines"]

_KEY = dict(NARROW_LINES) | {QSO_BROAD_NAMES[col]: key for col, key in BROAD_LINES}


def _get(row, name, default=np.nan) -> float:
    try:
        v = row[name]
    except (KeyError, IndexError, ValueError):
        return default
    if np.ma.is_masked(v):
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def measured(row, min_snr: float = 0.0) -> list[tuple[str, float, float]]:
    """(name, observed centre Å, S/N) of the lines ``row`` has a measurement for."""
    z = _get(row, "Z")
    out = []
    for name in line_names():
        f, iv = _get(row, f"{name}_FLUX"), _get(row, f"{name}_FLUX_IVAR", 0.0)
        if not (np.isfinite(f) and iv > 0 and np.isfinite(z)):
            continue
        snr = f * np.sqrt(iv)
        if snr < min_snr:
            continue
        v = _get(row, f"{name}_VSHIFT", 0.0)
        v = v if np.isfinite(v) else 0.0
        out.append((name, WAVE[_KEY[name]] * (1 + z) * (1 + v / C_KMS), snr))
    return out


def line_model(row, loglam, sigma_inst=None) -> np.ndarray:
    """The measured lines of ``row`` as a spectrum (flux density, the catalog's units / Å)
    on the log10-λ grid ``loglam``; zeros where the row has no line measurement."""
    loglam = np.asarray(loglam, float)
    wave = 10.0 ** loglam
    inst = sdss_sigma_inst(loglam) if sigma_inst is None else \
        np.broadcast_to(np.asarray(sigma_inst, float), loglam.shape)
    model = np.zeros(wave.size)
    for name, centre, _ in measured(row):
        f = _get(row, f"{name}_FLUX")
        sig = _get(row, f"{name}_SIGMA", 0.0)
        sig = sig if np.isfinite(sig) else 0.0
        s_inst = float(np.interp(np.log10(centre), loglam, inst))
        s_l = centre * np.hypot(sig, s_inst) / C_KMS                 # σ in Å
        model += f / (np.sqrt(2 * np.pi) * s_l) * np.exp(-0.5 * ((wave - centre) / s_l) ** 2)
    return model


def draw_lines(ax, row, loglam, flux=None, continuum=None, sigma_inst=None,
               color: str = "tab:red", min_snr: float = 3.0, label: bool = True,
               base_px: int = 151):
    """Draw ``row``'s fitted lines on ``ax`` (x: observed Å) on top of ``continuum``; when
    none is given and ``flux`` is, the base is a running median of flux − lines over
    ``base_px`` pixels (an approximate continuum for display).  Lines detected at
    ≥ ``min_snr`` are named.  Returns the drawn model (continuum + lines)."""
    from scipy.ndimage import median_filter

    loglam = np.asarray(loglam, float)
    wave = 10.0 ** loglam
    model = line_model(row, loglam, sigma_inst)
    if continuum is not None:
        base = np.asarray(continuum, float)
    elif flux is not None:
        resid = np.nan_to_num(np.asarray(flux, float) - model)
        base = median_filter(resid, size=base_px, mode="nearest")
    else:
        base = np.zeros_like(model)
    near = model > 1e-3 * max(float(np.max(np.abs(model))), 1e-30)
    total = np.where(near, base + model, np.nan)
    ax.plot(wave, total, color=color, lw=0.9, alpha=0.9,
            label="fitted lines" if label else None)
    if label:
        for name, centre, snr in measured(row, min_snr):
            if wave[0] <= centre <= wave[-1]:
                ax.text(centre, 0.02, name.replace("_", " ").lower(), rotation=90, fontsize=5,
                        color=color, transform=ax.get_xaxis_transform(), ha="right",
                        va="bottom")
    return base + model
