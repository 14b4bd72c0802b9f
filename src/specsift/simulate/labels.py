"""Galaxy and quasar subclass labels made as SDSS makes them: by its line rules, on a
measurement of the simulated spectrum's lines with the noise that spectrum carries.

Why: SDSS's SUBCLASS (STARFORMING, STARBURST, AGN, BROADLINE) is not a population label;
the pipeline measures the lines and applies published rules (:mod:`specsift.lines.rules`),
so a star-forming galaxy whose Hβ is below 3σ is plain GALAXY, and a quasar whose broad
lines are below 10σ is plain QSO.  The simulator drew its subclass from the population
(STARFORMING however faint its lines), which no measurement could reproduce.

The galaxies' measurement: for each BPT line the optimal (matched-filter) flux estimate at
the true profile — the generator's true flux plus the filtered *actual* noise of the
spectrum, ``F̂ = F + Σ w g n / Σ w g²`` with ``n`` = observed − noiseless flux, ``w`` = ivar
and ``g`` the line's unit profile through the instrument — and its ivar-only error
``1 / √Σ w g²`` (SDSS's errors are ivar-only; our rule stage uses such errors too).  The
quasars' is the package's own broad-line fit (:func:`quasar_subclass_fit`, see
:func:`rule_labels` for why).  Where a rule line has no good pixel (outside the spectrum,
masked), the rules cannot decide and the population label stays, as
:mod:`specsift.lines.stage` then keeps the network's answer.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from ..classes import map_sdss
from ..constants import C_KMS
from ..lines.rules import bpt_subclass
from ..spectra import LogGrid

__all__ = ["matched_flux", "galaxy_subclass", "quasar_subclass_fit", "rule_labels"]


def matched_flux(noise, ivar, grid: LogGrid, centre_aa, components, true_flux, sigma_inst):
    """(F̂, err) of one line in each row: ``centre_aa`` (N,) observed Å, ``components`` a list
    of (fraction, intrinsic σ km/s (N,)), ``true_flux`` (N,), ``sigma_inst`` (P,) km/s;
    err = 0 where no good pixel sees the line."""
    n, p = noise.shape
    kms_pix = C_KMS * np.log(10) * grid.step
    c = (np.log10(np.maximum(centre_aa, 1.0)) - grid.start) / grid.step          # (N,)
    ci = np.clip(np.rint(c).astype(np.int64), 0, p - 1)
    s_inst = np.asarray(sigma_inst, float)[ci] / kms_pix
    sig = [np.sqrt((np.asarray(s, float) / kms_pix) ** 2 + s_inst ** 2) for _, s in components]
    half = int(np.ceil(6 * max(float(np.max(s)) for s in sig))) + 2
    idx = np.rint(c).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (idx >= 0) & (idx < p)
    ic = np.clip(idx, 0, p - 1)
    g = np.zeros(idx.shape)
    for (frac, _), s in zip(components, sig):
        e = idx - 0.5 - c[:, None]
        g += frac * 0.5 * (erf((e + 1) / (np.sqrt(2) * s[:, None])) - erf(e / (np.sqrt(2) * s[:, None])))
    lam = 10 ** (grid.start + grid.step * ic)
    g /= lam * np.log(10) * grid.step                         # per Å: flux density of unit flux
    rows = np.arange(n)[:, None]
    w = np.where(inside, ivar[rows, ic], 0.0)
    den = (w * g * g).sum(1)
    num = (w * g * np.where(inside, noise[rows, ic], 0.0)).sum(1)
    ok = den > 0
    est = np.where(ok, true_flux + num / np.where(ok, den, 1.0), np.nan)
    err = np.where(ok, 1.0 / np.sqrt(np.where(ok, den, 1.0)), 0.0)
    return est, err


def galaxy_subclass(lines: dict, z, ew_rest_halpha):
    """(SDSS subclass, decided) from ``lines``: name → (F̂, err, true F) for HBETA,
    OIII_5007, HALPHA, NII_6584, with SDSS's rules (:mod:`specsift.lines.rules`)."""
    f = {k: v[0] for k, v in lines.items()}
    e = {k: v[1] for k, v in lines.items()}
    # continuum under Hα from the generator: observed EW = rest EW × (1 + z) at the true flux
    f_ha, e_ha, t_ha = lines["HALPHA"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cont = t_ha / (np.asarray(ew_rest_halpha, float) * (1 + np.asarray(z, float)))
        ew, ew_err = f_ha / cont, e_ha / cont
    return bpt_subclass(f, e, ew, ew_err)


def _sigma_inst(name: str, resolution, grid: LogGrid) -> np.ndarray:
    """Instrumental σ (km/s, per pixel) of instrument ``name`` (or the override)."""
    from .instrument import Resolution
    from .instruments import get
    if resolution is not None:
        return Resolution.parse(resolution).sigma_kms(grid.loglam)
    return get(name).resolution().sigma_kms(grid.loglam)


def rule_labels(rule_lines: dict, flux, noiseless, ivar, grid: LogGrid, scale, z, meta, label,
                subclass, class_set: str, inst, resolution=None):
    """(CLASS_LABEL, SDSS SUBCLASS) of one block with the galaxy and quasar rows relabelled
    by the rules; ``rule_lines``: generator → (rows, the generator's ``_RULE_LINES``:
    the galaxies' lines; None for "qso", whose lines are fitted);
    ``flux``, ``noiseless``: the observed and the noise-free spectra; ``scale``: the
    survey's flux scale of each row (the generators' units → the spectrum's).

    Galaxies: the matched-filter measurement above.  Quasars: the package's own broad-line
    fit (:func:`specsift.lines.measure.line_columns` at the true redshift, ivar-only errors):
    an ideal filter at the true two-Gaussian profile found 10σ broad lines in a third more
    quasars than any fit with a free background and free widths can (SDSS's included), so
    the BROADLINE bit is what a real fit of that spectrum gives."""
    label = np.asarray(label).astype("U24")
    subclass = np.asarray(subclass).astype("U24")
    spectype = np.asarray(meta["SPECTYPE"]).astype(str)
    for gen, (rows, lines) in rule_lines.items():
        for name in np.unique(inst[rows]):
            r = rows[inst[rows] == name]
            loc = np.searchsorted(rows, r)
            s_inst = _sigma_inst(name, resolution, grid)
            if gen == "galaxy":
                noise = flux[r] - noiseless[r]
                got = {}
                for k, (c, comps, f) in lines.items():
                    comps_r = [(fr, np.broadcast_to(sg, rows.shape)[loc]) for fr, sg in comps]
                    got[k] = matched_flux(noise, ivar[r], grid, c[loc], comps_r,
                                          f[loc] * scale[r], s_inst) + (f[loc] * scale[r],)
                sub, ok = galaxy_subclass(got, z[r], np.asarray(meta["EW_HA"])[r])
            else:
                sub, ok = quasar_subclass_fit(flux[r], ivar[r], grid, z[r], s_inst)
            rule = map_sdss(spectype[r], sub, class_set)
            # where the class set has no label for the rules' answer, both stay as drawn
            moved = ok & (rule != "")
            label[r] = np.where(moved, rule, label[r])
            subclass[r] = np.where(moved, sub, subclass[r])
    return label, subclass


def quasar_subclass_fit(flux, ivar, grid: LogGrid, z, sigma_inst):
    """(subclass, decided) of quasars from the package's line fit and SDSS's rules."""
    from ..lines.measure import line_columns
    from ..lines.rules import sdss_subclass
    spectype = np.full(len(z), "QSO")
    cols, white, _ = line_columns(grid.loglam, flux, ivar, z, spectype, sigma_inst=sigma_inst)
    sub, _, decided = sdss_subclass({**cols, **white}, spectype, z)
    return sub, decided
