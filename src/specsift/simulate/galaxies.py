"""Galaxies: BC03 population mixtures + dust + velocity dispersion + BPT-consistent lines.

``make_galaxies(rng, kind, z, grid)`` with kind in GALAXY (passive, weak/no lines),
STARFORMING, STARBURST (EW(Hα) > 50 Å rest, SDSS's rule), AGN (above Kewley 2001).
``make_galaxy_types`` draws the Kinney–Calzetti S0/Sa/Sb/Sc templates (galaxy-types set).
Both return the *true* observed-frame f_λ on ``grid`` before the instrument, in arbitrary
units (the survey scales them to a magnitude), plus a dict of generating parameters.
"""

from __future__ import annotations

import numpy as np

from ..spectra import LogGrid
from .instrument import add_gaussian_lines, calzetti_klambda, convolve_gaussian, redshift_rest
from .lines import C_KMS, LINES, galaxy_line_fluxes, sample_agn_ratios, sample_sf_ratios
from .templates import galaxy_templates

__all__ = ["make_galaxies", "make_galaxy_types", "galaxy_with_lines", "GALAXY_KINDS"]

GALAXY_KINDS = ("GALAXY", "STARFORMING", "STARBURST", "AGN")
_AGE_GROUPS = [[0, 1], [2, 3], [4, 5, 6, 7], [8, 9]]   # old, intermediate, young, very young
_GROUP_ALPHA = {"GALAXY": (8, 2, .3, .02), "AGN": (5, 3, 1, .15), "STARFORMING": (3, 2, 3, .8),
                "STARBURST": (1, 1, 3, 2.5)}


def _ssp_weights(rng, kinds):
    """Light fractions at 5500 Å over the 10 BC03 ages and the metallicity of each galaxy."""
    n = len(kinds)
    w = np.zeros((n, 20))
    metal_poor = np.zeros(n, bool)
    for k, alpha in _GROUP_ALPHA.items():
        sel = np.nonzero(kinds == k)[0]
        if not sel.size:
            continue
        g = rng.dirichlet(alpha, sel.size)
        mp = rng.random(sel.size) < {"STARBURST": 0.5, "STARFORMING": 0.3}.get(k, 0.05)
        metal_poor[sel] = mp
        for gi, ages in enumerate(_AGE_GROUPS):
            sub = rng.dirichlet(np.ones(len(ages)), sel.size) * g[:, gi:gi + 1]
            cols = np.array(ages)[None, :] + 10 * mp[:, None]
            w[sel[:, None], cols] = sub
    return w, metal_poor


def galaxy_with_lines(rng, grid: LogGrid, z, ssp_weights, ebv_gas, vdisp, line_names,
                      line_rel, ew_halpha, gas_sigma, info: dict | None = None):
    """Continuum from SSP weights, Calzetti dust (stars get 0.44 × the gas E(B−V)), stellar
    velocity dispersion, then narrow lines scaled so that the observed rest-frame EW(Hα)
    equals ``ew_halpha``.  Returns (true flux, observed line fluxes relative to Hα);
    ``info``, when given, receives the integrated Hα flux per galaxy (``F_HA``)."""
    t = galaxy_templates()
    rgrid = t["grid"]
    # only the rest-frame span these redshifts need (halves the work at galaxy redshifts)
    z = np.asarray(z, float)
    lo = max(int((grid.start - np.log10(1 + z.max()) - rgrid.start) / rgrid.step) - 4, 0)
    hi = min(int((grid.loglam[-1] - np.log10(1 + max(z.min(), -0.01)) - rgrid.start)
                 / rgrid.step) + 5, rgrid.size)
    hi = max(hi, int((np.log10(6700) - rgrid.start) / rgrid.step))
    rgrid = LogGrid(rgrid.start + lo * rgrid.step, rgrid.step, hi - lo)
    rest = (ssp_weights @ t["ssp"][:, lo:hi]).astype(np.float32)
    k_rest = calzetti_klambda(rgrid.wave).astype(np.float32)
    ebv_star = 0.44 * np.asarray(ebv_gas, float)
    rest *= 10 ** (-0.4 * ebv_star[:, None] * k_rest[None, :]).astype(np.float32)
    i_ha = int(round((np.log10(LINES["Halpha"]) - rgrid.start) / rgrid.step))
    cont_ha = rest[:, i_ha - 20:i_ha + 20].mean(axis=1)   # continuum under Hα (with absorption)
    flux = redshift_rest(rest, rgrid, z, grid)
    flux = convolve_gaussian(flux, np.asarray(vdisp) / (C_KMS * np.log(10) * grid.step))
    waves = np.array([LINES[k] for k in line_names])
    att = 10 ** (-0.4 * np.asarray(ebv_gas)[:, None] * calzetti_klambda(waves)[None, :])
    obs_rel = line_rel * att
    obs_rel = obs_rel / obs_rel[:, line_names.index("Halpha")][:, None]
    # rest EW × rest continuum = line flux; redshift_rest has divided the continuum by (1+z),
    # so this integral over observed Å gives observed EW = rest EW × (1+z), as it must.
    # (Unlike quasars.py, whose continuum keeps its rest amplitude and so needs the (1+z).)
    f_ha = np.asarray(ew_halpha) * cont_ha
    if info is not None:
        info["F_HA"] = f_ha
    add_gaussian_lines(flux, grid, z, waves, obs_rel * f_ha[:, None],
                       np.broadcast_to(np.asarray(gas_sigma)[:, None], obs_rel.shape))
    return flux, obs_rel


def make_galaxies(rng: np.random.Generator, kind, z, grid: LogGrid):
    kind = np.asarray(kind).astype("U16")
    n = kind.size
    bad = set(np.unique(kind)) - set(GALAXY_KINDS)
    if bad:
        raise ValueError(f"unknown galaxy kind(s) {sorted(bad)}; choose from {GALAXY_KINDS}")
    z = np.broadcast_to(np.asarray(z, float), (n,))
    sb, sf, agn, pas = (kind == "STARBURST"), (kind == "STARFORMING"), (kind == "AGN"), (kind == "GALAXY")
    x, y = sample_sf_ratios(rng, n, starburst=sb)
    xa, ya = sample_agn_ratios(rng, n)
    x, y = np.where(agn, xa, x), np.where(agn, ya, y)
    # passive galaxies: whatever faint lines they have are LINER-like or SF-like at random
    names, rel = galaxy_line_fluxes(rng, x, y, agn | (pas & (rng.random(n) < 0.5)))
    ew = np.select([sb, sf, agn],
                   [10 ** (np.log10(52.0) + np.abs(rng.normal(0, 0.3, n))),
                    np.clip(10 ** rng.normal(1.1, 0.3, n), 3.0, 48.0),
                    np.clip(10 ** rng.normal(0.9, 0.35, n), 2.0, 120.0)],
                   rng.uniform(0.0, 1.5, n))
    ebv = np.clip(np.select([sb, sf, agn], [rng.lognormal(np.log(0.2), 0.6, n),
                                            rng.lognormal(np.log(0.3), 0.6, n),
                                            rng.lognormal(np.log(0.35), 0.5, n)],
                            rng.uniform(0, 0.15, n)), 0, 1.0)
    vdisp = np.clip(np.select([pas, agn], [rng.lognormal(np.log(190), 0.25, n),
                                           rng.lognormal(np.log(160), 0.3, n)],
                              rng.lognormal(np.log(80), 0.35, n)), 30, 400)
    gas = np.clip(np.where(agn, rng.lognormal(np.log(150), 0.15, n),
                           rng.lognormal(np.log(60), 0.3, n)), 20, 190)
    w, mp = _ssp_weights(rng, kind)
    info: dict = {}
    flux, obs_rel = galaxy_with_lines(rng, grid, z, w, ebv, vdisp, names, rel, ew, gas, info)
    idx = {k: names.index(k) for k in ("Halpha", "Hbeta", "NII_6584", "OIII_5007")}
    ages = np.array([11, 5, 2.5, 1.4, .9, .64, .29, .1, .025, .005])
    lw_age = (w[:, :10] + w[:, 10:]) @ np.log10(ages * 1e9)
    params = {
        "TEMPLATE": np.where(mp, "BC03-SSP-Z0.008", "BC03-SSP-Z0.02"),
        "EW_HA": ew,
        "LOG_NII_HA": np.log10(obs_rel[:, idx["NII_6584"]] / obs_rel[:, idx["Halpha"]]),
        "LOG_OIII_HB": np.log10(obs_rel[:, idx["OIII_5007"]] / obs_rel[:, idx["Hbeta"]]),
        "EBV": ebv, "VDISP": vdisp, "LINE_SIGMA": gas, "LOG_AGE": lw_age,
    }
    # EW([OIII]) needs the continuum at 5007 relative to Hα: measure it on the rest templates
    t = galaxy_templates()
    rg = t["grid"]
    i5 = int(round((np.log10(5008.24) - rg.start) / rg.step))
    i6 = int(round((np.log10(6564.61) - rg.start) / rg.step))
    kk = calzetti_klambda(np.array([5008.24, 6564.61]))
    c5 = (w @ t["ssp"][:, i5 - 20:i5 + 20].mean(axis=1)) * 10 ** (-0.4 * 0.44 * ebv * kk[0])
    c6 = (w @ t["ssp"][:, i6 - 20:i6 + 20].mean(axis=1)) * 10 ** (-0.4 * 0.44 * ebv * kk[1])
    params["EW_OIII"] = ew * obs_rel[:, idx["OIII_5007"]] * c6 / np.maximum(c5, 1e-12)
    # what the SDSS rules need (simulate/labels.py): the BPT lines' observed centres, flux
    # (integrated, these units) and intrinsic σ; popped by the survey before meta
    params["_RULE_LINES"] = {
        col: (LINES[key] * (1 + z), [(1.0, gas)], obs_rel[:, idx[key]] * info["F_HA"])
        for col, key in (("HBETA", "Hbeta"), ("OIII_5007", "OIII_5007"),
                         ("HALPHA", "Halpha"), ("NII_6584", "NII_6584"))}
    return flux, params


def make_galaxy_types(rng: np.random.Generator, kind, z, grid: LogGrid):
    """Kinney–Calzetti S0/Sa/Sb/Sc with small dust and velocity-dispersion variations."""
    t = galaxy_templates()
    names = list(t["kc_names"])
    kind = np.asarray(kind).astype("U4")
    try:
        rows = np.array([names.index(k) for k in kind])
    except ValueError:
        raise ValueError(f"unknown galaxy type in {sorted(set(kind))}; choose from {names}") from None
    n = kind.size
    z = np.broadcast_to(np.asarray(z, float), (n,))
    debv = rng.normal(0.0, 0.05, n)                      # ± reddening around the template
    rest = t["kc"][rows] * 10 ** (-0.4 * debv[:, None] * calzetti_klambda(t["grid"].wave)[None, :])
    flux = redshift_rest(rest.astype(np.float32), t["grid"], z, grid)
    vdisp = np.clip(rng.lognormal(np.log(150), 0.3, n), 50, 350)
    flux = convolve_gaussian(flux, vdisp / (C_KMS * np.log(10) * grid.step))
    return flux, {"TEMPLATE": np.char.add("KC96-", kind), "EBV": debv, "VDISP": vdisp}
