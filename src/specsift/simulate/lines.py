"""Emission lines: vacuum rest wavelengths, BPT demarcations and line-ratio samplers.

Label rules follow SDSS (spec1d) with the standard BPT curves:
  * Kauffmann et al. 2003:  log([OIII]/Hβ) = 0.61 / (log([NII]/Hα) − 0.05) + 1.3
  * Kewley et al. 2001:     log([OIII]/Hβ) = 0.61 / (log([NII]/Hα) − 0.47) + 1.19
  * SDSS's own AGN line:    log([OIII]/Hβ) = 0.7 − 1.2 (log([NII]/Hα) + 0.4)
Star-forming galaxies are drawn strictly below Kauffmann (which implies below the SDSS line),
AGN strictly above both Kewley and the SDSS line, so the simulated label is what SDSS would
assign and composites (between the curves) are never given a pure label.
"""

from __future__ import annotations

import numpy as np

from ..constants import C_KMS  # re-exported: the simulator's modules import it from here
from ..lines.table import WAVE as _WAVE

__all__ = ["LINES", "kauffmann03", "kewley01", "sdss_agn_line", "sample_sf_ratios",
           "sample_agn_ratios", "galaxy_line_fluxes", "C_KMS"]

#: the lines the simulator draws (keys of the line table)
_SIM_KEYS = ("OII_3726", "OII_3729", "NeIII_3869", "Heps", "Hdelta", "Hgamma", "HeII_4686",
             "Hbeta", "OIII_4959", "OIII_5007", "HeI_5876", "OI_6300", "OI_6363", "NII_6548",
             "Halpha", "NII_6584", "SII_6717", "SII_6731", "ArIII_7135", "SIII_9069",
             "NeV_3426", "MgII", "CIII", "CIV", "Lyalpha", "NV", "SiIV", "HeII_1640", "OVI",
             "Lybeta", "CII_1335", "AlIII", "CII_2326")
#: vacuum rest wavelengths (Å) by key: the package's one line table (specsift.lines.table)
LINES = {k: _WAVE[k] for k in _SIM_KEYS}


def kauffmann03(x):
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        return np.where(x < 0.05, 0.61 / (x - 0.05) + 1.3, -np.inf)


def kewley01(x):
    x = np.asarray(x, float)
    with np.errstate(divide="ignore"):
        return np.where(x < 0.47, 0.61 / (x - 0.47) + 1.19, -np.inf)


def sdss_agn_line(x):
    return 0.7 - 1.2 * (np.asarray(x, float) + 0.4)


def sample_sf_ratios(rng, n, starburst=None):
    """(log [NII]/Hα, log [OIII]/Hβ) along the SDSS star-forming sequence, below Kauffmann.

    High-EW (starburst) galaxies are younger and metal-poorer: lower [NII]/Hα, higher
    [OIII]/Hβ, as on the upper-left branch of the SDSS BPT diagram.
    """
    sb = np.zeros(n, bool) if starburst is None else np.asarray(starburst, bool)
    x = np.where(sb, rng.normal(-0.85, 0.22, n), rng.normal(-0.50, 0.18, n))
    x = np.clip(x, -1.6, -0.22)
    # distance below the Kauffmann curve: the SF locus lies ~0.15–0.3 dex under it
    y = kauffmann03(x) - np.abs(rng.normal(0.2, 0.12, n)) - 0.05
    return x, np.clip(y, -1.2, 1.0)


def sample_agn_ratios(rng, n):
    """Seyfert + LINER-like ratios strictly above Kewley 2001 and the SDSS line."""
    x = rng.uniform(-0.35, 0.45, n)
    floor = np.maximum(np.maximum(kewley01(x), sdss_agn_line(x)), -0.3)
    y = floor + 0.08 + np.abs(rng.normal(0.0, 0.35, n))
    return x, np.clip(y, floor + 0.05, 1.3)


def galaxy_line_fluxes(rng, log_nii_ha, log_oiii_hb, agn):
    """All narrow-line fluxes relative to intrinsic Hα = 1 (before dust).

    Case-B Balmer ratios (Hα/Hβ = 2.86, Hγ/Hβ = 0.468, Hδ/Hβ = 0.259, Hε/Hβ = 0.159), fixed
    atomic doublet ratios ([OIII] 3.0, [NII] 3.05, [OI] 3.0), density-sensitive [SII] and
    [OII] near the low-density limit, and SF/AGN-dependent [OII], [SII], [OI], [NeIII].
    Returns (names, (n, L) array).
    """
    n = len(log_nii_ha)
    agn = np.asarray(agn, bool)
    hb = np.full(n, 1 / 2.86)
    oiii = hb * 10 ** np.asarray(log_oiii_hb)
    nii = 10 ** np.asarray(log_nii_ha)
    oii = hb * 10 ** np.where(agn, rng.normal(0.45, 0.2, n), rng.normal(0.35, 0.15, n))
    sii = 10 ** np.where(agn, rng.normal(-0.35, 0.15, n), rng.normal(-0.55, 0.12, n))
    oi = 10 ** np.where(agn, rng.normal(-1.0, 0.25, n), rng.normal(-1.6, 0.2, n))
    sii_r = rng.uniform(1.2, 1.45, n)                     # 6717/6731, low density
    oii_r = rng.uniform(1.3, 1.5, n)                      # 3729/3726
    out = {
        "Halpha": np.ones(n), "Hbeta": hb, "Hgamma": 0.468 * hb, "Hdelta": 0.259 * hb,
        "Heps": 0.159 * hb, "OIII_5007": oiii, "OIII_4959": oiii / 2.98,
        "NII_6584": nii, "NII_6548": nii / 3.05,
        "OII_3726": oii / (1 + oii_r), "OII_3729": oii * oii_r / (1 + oii_r),
        "SII_6717": sii * sii_r / (1 + sii_r), "SII_6731": sii / (1 + sii_r),
        "OI_6300": oi, "OI_6363": oi / 3.0, "HeI_5876": 0.105 * hb,
        "NeIII_3869": oiii * np.where(agn, rng.uniform(0.08, 0.15, n), rng.uniform(0.03, 0.1, n)),
        "ArIII_7135": 0.03 * oiii + 0.01,
        "NeV_3426": np.where(agn, oiii * rng.uniform(0.0, 0.12, n), 0.0),
        "HeII_4686": np.where(agn, hb * rng.uniform(0.1, 0.3, n), 0.0),
    }
    names = list(out)
    return names, np.stack([out[k] for k in names], axis=1)
