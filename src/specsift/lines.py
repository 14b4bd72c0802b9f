"""Rest-frame spectral lines (vacuum Å) with display names: for plots and explanations.

Emission-line wavelengths come from the simulator's table
(:data:`specsift.simulate.lines.LINES`, vacuum, as SDSS uses) so that the lines drawn on a
plot are exactly those the simulator puts in spectra; the absorption features it does not
need (Ca H/K, G band, Mg b, Na D, Ca II triplet) are added here (vacuum, NIST/SDSS).
``kind`` is 'emission', 'absorption' or 'both'; ``major`` marks the lines worth labelling
on a plot of any spectrum.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .simulate.lines import LINES as _SIM

__all__ = ["Line", "LINES", "lines_in_range", "observed", "MAJOR_LINES"]


class Line(NamedTuple):
    name: str
    wave: float          # vacuum rest wavelength, Å
    kind: str            # emission / absorption / both
    major: bool = False


LINES: tuple[Line, ...] = (
    Line("Lyβ", _SIM["Lybeta"], "emission"),
    Line("Lyα", _SIM["Lyalpha"], "emission", True),
    Line("N V", _SIM["NV"], "emission"),
    Line("Si IV", _SIM["SiIV"], "emission"),
    Line("C IV", _SIM["CIV"], "emission", True),
    Line("He II 1640", _SIM["HeII_1640"], "emission"),
    Line("C III]", _SIM["CIII"], "emission", True),
    Line("Mg II", _SIM["MgII"], "both", True),
    Line("[Ne V]", _SIM["NeV_3426"], "emission"),
    Line("[O II]", 0.5 * (_SIM["OII_3726"] + _SIM["OII_3729"]), "emission", True),  # blend
    Line("[Ne III]", _SIM["NeIII_3869"], "emission"),
    Line("Ca K", 3934.78, "absorption", True),
    Line("Ca H", 3969.59, "absorption"),
    Line("Hδ", _SIM["Hdelta"], "both"),
    Line("G band", 4305.61, "absorption"),
    Line("Hγ", _SIM["Hgamma"], "both"),
    Line("Hβ", _SIM["Hbeta"], "both", True),
    Line("[O III] 4960", _SIM["OIII_4959"], "emission"),
    Line("[O III]", _SIM["OIII_5007"], "emission", True),
    Line("Mg b", 5176.70, "absorption"),
    Line("Na D", 5895.60, "absorption"),
    Line("[O I]", _SIM["OI_6300"], "emission"),
    Line("[N II] 6550", _SIM["NII_6548"], "emission"),
    Line("Hα", _SIM["Halpha"], "both", True),
    Line("[N II]", _SIM["NII_6584"], "emission"),
    Line("[S II]", _SIM["SII_6717"], "emission"),
    Line("[S II] 6733", _SIM["SII_6731"], "emission"),
    Line("Ca II 8500", 8500.36, "absorption"),
    Line("Ca II 8544", 8544.44, "absorption"),
    Line("Ca II 8665", 8664.52, "absorption"),
)

MAJOR_LINES: tuple[Line, ...] = tuple(ln for ln in LINES if ln.major)


def observed(z: float, lines=LINES) -> np.ndarray:
    """Observed wavelengths (Å) of ``lines`` at redshift ``z``."""
    return np.array([ln.wave for ln in lines]) * (1.0 + float(z))


def lines_in_range(z: float, wmin: float, wmax: float, lines=LINES) -> list[tuple[Line, float]]:
    """(line, observed λ) for the lines that fall in [wmin, wmax] Å at redshift ``z``."""
    return [(ln, w) for ln, w in zip(lines, observed(z, lines)) if wmin <= w <= wmax]
