"""Galaxy and quasar subclasses from measured lines, with the SDSS pipeline's own rules.

Source: idlspec2d ``pro/spec1d/spreduce1d.pro`` (sdss/idlspec2d on GitHub), the block
"Classify galaxies and QSO's based upon emission lines", documented for DR9+ on the SDSS-III
page ``dr9/spectro/catalogs.php#objects`` (Bolton et al. 2012, AJ 144, 144):

* **q_good**: [O III] 5007, Hβ, Hα and [N II] 6584 each measured (error > 0) and detected
  at > 3σ (``linearea > 3 * linearea_err``).  LINEAREA_ERR is MPFIT's PERROR in
  ``linebackfit.pro``: the formal error from ivar alone, not rescaled by χ²/dof, with the
  widths and the redshift free and no local background under a galaxy's lines (its only
  background term is the velocity-dispersion model, ``speclinefit.pro``); the stage
  applies these rules to errors made the same way (``measure_lines(white=True)``);
* **AGN** if q_good and  F(5007) · F(6584)^1.2 > 10^0.22 · F(Hβ) · F(Hα)^1.2, i.e.
  log([O III]/Hβ) > 0.7 − 1.2 (log([N II]/Hα) + 0.4) (the SDSS line, not Kauffmann 2003 or
  Kewley 2001, which the simulator uses to keep its pure classes away from composites);
* **STARFORMING** if q_good and not AGN and not strong Hα; **STARBURST** if q_good, not AGN
  and EW(Hα) > 50 Å with EW > 3 σ_EW.  SDSS's ``lineew`` is linearea / continuum level in
  the observed frame, so the 50 Å threshold applies to the observed-frame EW (rest × (1+z));
* **BROADLINE** appended (galaxies and quasars) if, over every line but Lyα detected at
  > 10σ with a width error > 0, max(σ − 5 σ_err) > 200 km/s.  SDSS's ``linesigma`` is the
  width of the Gaussian fitted to the observed spectrum, instrument included (linebackfit.pro:
  ``linesigma = lfit[2] * alog(10) * cspeed``, the log-λ σ of the profile), so the test
  is on σ_tot = √(σ² + σ_inst²) and its error σ_err · σ / σ_tot (our σ is intrinsic; the
  rules' table carries σ_inst at each line as ``*_SIGMA_INST``).

These are applied to GALAXY and QSO rows only, as ``q_obj`` does there.
"""

from __future__ import annotations

import numpy as np

from .measure import QSO_BROAD_NAMES, line_names

__all__ = ["sdss_subclass", "bpt_subclass", "is_agn_sdss", "BROAD_SIGMA_KMS", "STARBURST_EW"]

BROAD_SIGMA_KMS = 200.0
STARBURST_EW = 50.0
_BPT = ("OIII_5007", "HBETA", "HALPHA", "NII_6584")


def _col(t, name):
    return np.asarray(t[name], float)


def _err(t, name):
    iv = _col(t, name + "_IVAR")
    with np.errstate(divide="ignore"):
        return np.where(iv > 0, 1.0 / np.sqrt(np.where(iv > 0, iv, 1.0)), 0.0)


def _total_width(t, name):
    """(σ ⊕ σ_inst, its error) of one line: SDSS's width, instrument included."""
    s, se = _col(t, f"{name}_SIGMA"), _err(t, f"{name}_SIGMA")
    key = f"{name}_SIGMA_INST"
    if key not in (t.colnames if hasattr(t, "colnames") else t):
        return s, se
    inst = np.nan_to_num(_col(t, key), nan=0.0)
    tot = np.hypot(s, inst)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tot, np.where(tot > 0, se * np.abs(s) / np.where(tot > 0, tot, 1.0), se)


def is_agn_sdss(oiii, hbeta, halpha, nii):
    """SDSS's AGN test on four line fluxes (spreduce1d: 5007·6583^1.2 > 10^0.22·Hβ·Hα^1.2)."""
    oiii, hbeta, halpha, nii = (np.asarray(v, float) for v in (oiii, hbeta, halpha, nii))
    with np.errstate(invalid="ignore"):
        return oiii * np.abs(nii) ** 1.2 > 10 ** 0.22 * hbeta * np.abs(halpha) ** 1.2


def bpt_subclass(flux: dict, err: dict, ew_obs, ew_err):
    """(AGN / STARFORMING / STARBURST / "", measured) from the four BPT lines' fluxes and
    errors (name → array) and the observed-frame EW(Hα) with its error: SDSS's q_good, AGN
    line and starburst test of the module docstring.  The one copy of those rules, for a
    measured catalog (:func:`sdss_subclass`) and for the simulator's labels."""
    measured = np.all([err[k] > 0 for k in _BPT], axis=0)
    with np.errstate(invalid="ignore"):
        good = measured & np.all([flux[k] > 3 * err[k] for k in _BPT], axis=0)
        strong = (ew_obs > STARBURST_EW) & (ew_err > 0) & (ew_obs > 3 * ew_err)
    agn = good & is_agn_sdss(flux["OIII_5007"], flux["HBETA"], flux["HALPHA"], flux["NII_6584"])
    sub = np.where(agn, "AGN", np.where(good, np.where(strong, "STARBURST", "STARFORMING"), ""))
    return sub.astype("U24"), measured


def sdss_subclass(lines, spectype, z):
    """(SUBCLASS strings as SDSS writes them, e.g. 'STARBURST BROADLINE', bpt_decided,
    broad_decided) for each row of a :func:`measure_lines` table.

    ``bpt_decided``: the four BPT lines were all measurable (covered by good pixels), so the
    rules — detections or not — settle the AGN / STARFORMING / STARBURST part.
    ``broad_decided``: at least one line's width was measured, so BROADLINE is settled.
    """
    spectype = np.char.strip(np.asarray(spectype).astype(str))
    z = np.asarray(z, float)
    n = len(spectype)
    obj = (spectype == "GALAXY") | (spectype == "QSO")
    if not obj.any():      # rules for galaxies and quasars only: ~1 ms a batch of stars
        return np.full(n, "", "U24"), np.zeros(n, bool), np.zeros(n, bool)
    flux = {k: _col(lines, f"{k}_FLUX") for k in _BPT}
    err = {k: _err(lines, f"{k}_FLUX") for k in _BPT}
    bpt, measured = bpt_subclass(flux, err, _col(lines, "HALPHA_EW") * (1 + z),
                                 _err(lines, "HALPHA_EW") * (1 + z))
    maxsig, any_width = np.zeros(n), np.zeros(n, bool)
    for name in line_names():
        if name == QSO_BROAD_NAMES["LYALPHA_BROAD"]:
            continue                                  # SDSS leaves Lyα out of the test
        f, fe = _col(lines, f"{name}_FLUX"), _err(lines, f"{name}_FLUX")
        s, se = _total_width(lines, name)
        any_width |= se > 0
        with np.errstate(invalid="ignore"):
            ok = (fe > 0) & (f > 10 * fe) & (se > 0)
        maxsig = np.where(ok, np.maximum(maxsig, np.nan_to_num(s - 5 * se, nan=0.0)), maxsig)
    sub = np.where(obj, bpt, "")
    broad = obj & (maxsig > BROAD_SIGMA_KMS)
    sub = np.char.strip(np.char.add(sub, np.where(broad, " BROADLINE", "")))
    return sub.astype("U24"), obj & measured, obj & any_width
