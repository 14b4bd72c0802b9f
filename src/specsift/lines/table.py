"""The one table of spectral lines: vacuum rest wavelengths, names, kinds and fit ties.

Every wavelength is in vacuum Å, as SDSS, DESI and LAMOST spectra are.  The emission lines
are NIST Atomic Spectra Database air wavelengths converted to vacuum with the IAU standard
(Morton 2000; the formula of ``specutils``' ``air_to_vac``, which ``tests/test_lines_table.py``
checks these values against); for lines ≥ 2000 Å, SDSS's own list
(idlspec2d ``etc/emlines.par``: air, converted by ``airtovac``) gives the same values to
0.02 Å.  Below 2000 Å (Lyα, N V, C IV, C III]) the wavelengths are vacuum already; Mg II
(2796.35 + 2803.53 Å vacuum, unresolved in quasars) is SDSS's blend value 2799.49 Å.

Values that earlier copies disagreed on, resolved here:

* Na D: the doublet is D2 5889.950 and D1 5895.924 Å in air (NIST), 5891.58 and 5897.56 Å
  in vacuum; the old plot table's 5895.60 was neither.  Both members are listed, and the
  plot label "Na D" sits at the vacuum mean 5894.57 Å.
* Hγ: 4340.47 Å air → 4341.68 Å vacuum (an older copy rounded it to 4341.69).

``kind`` says how a line shows in a spectrum: ``narrow`` emission (H II regions and the AGN
narrow-line region), ``broad`` (quasar broad-line region; measured only for quasars),
``absorption`` (stellar), or combinations such as ``narrow+broad+absorption`` for Balmer
lines.  ``tie`` names the group whose members share width and velocity in the line fit
(SDSS ties all narrow lines but Lyα; we give the Balmer series its own width as the DR9
idlspec2d did), and ``ratio`` fixes a doublet member's flux to ``ratio`` × its partner's
(atomic physics: [O III] 4959 = 5007 / 2.98, [N II] 6548 = 6584 / 3.05, [O I] 6363 = 6300 / 3.0;
Storey & Zeippen 2000).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..constants import C_KMS

__all__ = ["Line", "TABLE", "WAVE", "LINES", "MAJOR_LINES", "C_KMS", "observed",
           "lines_in_range", "by_key"]

class Line(NamedTuple):
    """One spectral line; ``name`` is the label shown on plots."""
    name: str
    wave: float                  # vacuum rest wavelength, Å
    kind: str                    # narrow / broad / absorption, '+'-joined
    major: bool = False          # worth labelling on a plot of any spectrum
    key: str = ""                # identifier used in code and catalog columns
    tie: str = ""                # kinematic group in the narrow-line fit
    partner: str = ""            # key of the line this one's flux is tied to
    ratio: float = 0.0           # flux = ratio × partner's flux


_N, _B, _A = "narrow", "broad", "absorption"

#: every line, blue to red
TABLE: tuple[Line, ...] = (
    Line("Lyβ", 1025.72, _B, key="Lybeta"),
    Line("O VI", 1033.82, _B, key="OVI"),
    Line("Lyα", 1215.67, _B, True, key="Lyalpha"),
    Line("N V", 1240.14, _B, key="NV"),
    Line("C II 1335", 1335.31, _B, key="CII_1335"),
    Line("Si IV", 1397.61, _B, key="SiIV"),
    Line("C IV", 1549.06, _B, True, key="CIV"),
    Line("He II 1640", 1640.42, _B, key="HeII_1640"),
    Line("Al III", 1857.40, _B, key="AlIII"),
    Line("C III]", 1908.73, _B, True, key="CIII"),
    Line("C II] 2326", 2326.44, _B, key="CII_2326"),
    Line("Mg II", 2799.49, f"{_B}+{_A}", True, key="MgII"),
    Line("[Ne V]", 3426.84, _N, key="NeV_3426", tie="forbidden"),
    Line("[O II] 3726", 3727.09, _N, key="OII_3726", tie="forbidden"),
    Line("[O II] 3729", 3729.88, _N, key="OII_3729", tie="forbidden"),
    Line("[Ne III]", 3869.86, _N, key="NeIII_3869", tie="forbidden"),
    Line("Ca K", 3934.78, _A, True, key="CaK"),
    Line("Ca H", 3969.59, _A, key="CaH"),
    Line("Hε", 3971.20, f"{_N}+{_A}", key="Heps", tie="balmer"),
    Line("Hδ", 4102.89, f"{_N}+{_A}", key="Hdelta", tie="balmer"),
    Line("G band", 4305.61, _A, key="Gband"),
    Line("Hγ", 4341.68, f"{_N}+{_B}+{_A}", key="Hgamma", tie="balmer"),
    Line("He II 4686", 4687.02, _N, key="HeII_4686", tie="forbidden"),
    Line("Hβ", 4862.68, f"{_N}+{_B}+{_A}", True, key="Hbeta", tie="balmer"),
    Line("[O III] 4959", 4960.30, _N, key="OIII_4959", tie="forbidden",
         partner="OIII_5007", ratio=1 / 2.98),
    Line("[O III] 5007", 5008.24, _N, True, key="OIII_5007", tie="forbidden"),
    Line("Mg b", 5176.70, _A, key="Mgb"),
    Line("He I 5876", 5877.25, _N, key="HeI_5876", tie="balmer"),
    Line("Na D2", 5891.58, _A, key="NaD2"),
    Line("Na D1", 5897.56, _A, key="NaD1"),
    Line("[O I] 6300", 6302.05, _N, key="OI_6300", tie="forbidden"),
    Line("[O I] 6363", 6365.54, _N, key="OI_6363", tie="forbidden",
         partner="OI_6300", ratio=1 / 3.0),
    Line("[N II] 6548", 6549.86, _N, key="NII_6548", tie="forbidden",
         partner="NII_6584", ratio=1 / 3.05),
    Line("Hα", 6564.61, f"{_N}+{_B}+{_A}", True, key="Halpha", tie="balmer"),
    Line("[N II] 6584", 6585.27, _N, key="NII_6584", tie="forbidden"),
    Line("He I 6678", 6679.99, _N, key="HeI_6678", tie="balmer"),
    Line("[S II] 6716", 6718.29, _N, key="SII_6717", tie="forbidden"),
    Line("[S II] 6731", 6732.67, _N, key="SII_6731", tie="forbidden"),
    Line("[Ar III] 7135", 7137.77, _N, key="ArIII_7135", tie="forbidden"),
    Line("O I 7774", 7774.20, _A, key="OI_7774"),
    Line("Ca II 8500", 8500.36, _A, key="CaII_8500"),
    Line("Ca II 8544", 8544.44, _A, key="CaII_8544"),
    Line("Ca II 8665", 8664.52, _A, key="CaII_8665"),
    Line("[S III] 9069", 9071.10, _N, key="SIII_9069", tie="forbidden"),
)

#: key → vacuum rest wavelength (Å), for code that needs one number (the simulator)
WAVE: dict[str, float] = {ln.key: ln.wave for ln in TABLE}


def by_key(key: str) -> Line:
    """The table entry with identifier ``key`` (KeyError naming the known keys if none)."""
    for ln in TABLE:
        if ln.key == key:
            return ln
    raise KeyError(f"no line {key!r} in the line table; known: {', '.join(WAVE)}")


#: lines labelled on plots (the rest of the table is for fits and the simulator)
_PLOTTED = ("Lybeta", "Lyalpha", "NV", "SiIV", "CIV", "HeII_1640", "CIII", "MgII", "NeV_3426",
            "OII_3726", "NeIII_3869", "CaK", "CaH", "Hdelta", "Gband", "Hgamma", "Hbeta",
            "OIII_4959", "OIII_5007", "Mgb", "NaD2", "OI_6300", "NII_6548", "Halpha",
            "NII_6584", "SII_6717", "SII_6731", "CaII_8500", "CaII_8544", "CaII_8665")


#: how plots label some lines: doublets that blend at survey resolution drawn once at their
#: mean, the strong member of a forbidden pair by the ion alone
_PLOT_AS = {
    "OII_3726": {"name": "[O II]", "wave": 0.5 * (WAVE["OII_3726"] + WAVE["OII_3729"]),
                 "major": True},
    "NaD2": {"name": "Na D", "wave": 0.5 * (WAVE["NaD2"] + WAVE["NaD1"])},
    "OIII_5007": {"name": "[O III]"}, "OIII_4959": {"name": "[O III] 4960"},
    "NII_6584": {"name": "[N II]"}, "NII_6548": {"name": "[N II] 6550"},
    "SII_6717": {"name": "[S II]"}, "SII_6731": {"name": "[S II] 6733"},
    "OI_6300": {"name": "[O I]"},
}


def _plot_lines() -> tuple[Line, ...]:
    """Labels for plots: doublets that blend at survey resolution are drawn once."""
    return tuple(ln._replace(**_PLOT_AS.get(ln.key, {})) for ln in TABLE if ln.key in _PLOTTED)


#: lines to mark on plots and explanations (blended doublets once)
LINES: tuple[Line, ...] = _plot_lines()
MAJOR_LINES: tuple[Line, ...] = tuple(ln for ln in LINES if ln.major)



def observed(z: float, lines=LINES) -> np.ndarray:
    """Observed wavelengths (Å) of ``lines`` at redshift ``z``."""
    return np.array([ln.wave for ln in lines]) * (1.0 + float(z))


def lines_in_range(z: float, wmin: float, wmax: float, lines=LINES) -> list[tuple[Line, float]]:
    """(line, observed λ) for the lines that fall in [wmin, wmax] Å at redshift ``z``."""
    return [(ln, w) for ln, w in zip(lines, observed(z, lines)) if wmin <= w <= wmax]
