"""Quasars: power-law continuum, Balmer continuum, Fe II, broad + narrow lines, host galaxy,
SMC-like dust, Lyα/Lyβ forest and Lyman-limit absorption, optional BAL troughs.

Everything is evaluated analytically at the rest wavelengths of the observed grid, so any
z in 0–5 and any grid works.  Broad lines are two Gaussians (65 % in a 0.8σ core, 35 % in 2.2σ wings) with
rest EWs scattered log-normally around SDSS composite values (Vanden Berk et al. 2001).
"""

from __future__ import annotations

import numpy as np

from ..spectra import LogGrid
from .instrument import add_gaussian_lines, convolve_gaussian
from .lines import C_KMS, LINES
from .templates import galaxy_templates, gather_many

__all__ = ["make_quasars", "lya_forest_transmission"]

# name: (rest EW Å, FWHM factor relative to the MgII/Hβ width, uses the high-ionisation blueshift)
_BROAD = {
    "Lybeta": (9, 1.0, True), "OVI": (12, 1.0, True), "Lyalpha": (75, 1.0, True),
    "NV": (15, 1.0, True), "CII_1335": (2, 1.0, True), "SiIV": (9, 1.0, True),
    "CIV": (28, 1.1, True), "HeII_1640": (3, 1.0, True), "AlIII": (3, 1.0, False),
    "CIII": (20, 1.2, False), "CII_2326": (3, 1.0, False), "MgII": (30, 1.0, False),
    "Hdelta": (6, 1.0, False), "Hgamma": (14, 1.0, False), "HeII_4686": (3, 1.3, False),
    "Hbeta": (50, 1.0, False), "HeI_5876": (6, 1.0, False), "Halpha": (190, 0.9, False),
}
# narrow lines: (rest EW Å, log-normal scatter dex)
_NARROW = {"NeV_3426": (1.5, .4), "OII_3729": (2.5, .4), "NeIII_3869": (1.5, .4),
           "OIII_5007": (14, .45), "OIII_4959": (14 / 2.98, .45), "Hbeta": (3, .4),
           "Halpha": (12, .4), "NII_6584": (6, .4), "SII_6717": (2, .4), "SII_6731": (2, .4)}


def _gh_table(sigma=1.4, npts=60):
    """Mean transmission ⟨exp(−A·e^{σg−σ²/2})⟩ over g ~ N(0,1) as a function of A."""
    x, wts = np.polynomial.hermite_e.hermegauss(npts)
    wts = wts / wts.sum()
    A = np.logspace(-4, 3, 400)
    F = (np.exp(-A[:, None] * np.exp(sigma * x[None, :] - sigma ** 2 / 2)) * wts).sum(axis=1)
    return A, F


_GH = _gh_table()


def lya_forest_transmission(rng, z, grid: LogGrid, sigma=1.4, smooth_px=1.2):
    """Transmission exp(−τ) blueward of Lyα (and Lyβ), log-normal τ field whose mean
    transmitted flux follows τ_eff(z) = 0.0018 (1+z)^3.92 (Faucher-Giguère et al. 2008),
    plus a Lyman-limit break below 912 Å with a random optical depth."""
    z = np.atleast_1d(np.asarray(z, float))
    lam = grid.wave[None, :]
    T = np.ones((z.size, grid.size), np.float32)
    A_tab, F_tab = _GH
    need = (lam / (1 + z[:, None]) < LINES["Lyalpha"]).any(axis=1)
    rows = np.nonzero(need)[0]
    if not rows.size:
        return T
    g = rng.standard_normal((rows.size, grid.size)).astype(np.float32)
    g = convolve_gaussian(g, smooth_px) / np.float32(np.sqrt(1 / (2 * np.sqrt(np.pi) * smooth_px)))
    tau = np.zeros((rows.size, grid.size), np.float32)
    for line, ratio, shift in (("Lyalpha", 1.0, 0), ("Lybeta", 0.16, 37)):
        l0 = LINES[line]
        zabs = lam / l0 - 1
        inside = (zabs < z[rows, None]) & (zabs > 0)
        teff = ratio * 0.0018 * (1 + np.clip(zabs, 0, None)) ** 3.92
        # invert F(A) = exp(−τ_eff) for the log-normal amplitude A
        A = np.interp(-np.exp(-teff), -F_tab, A_tab)
        gg = np.roll(g, shift, axis=1)
        tau += np.where(inside, A * np.exp(sigma * gg - sigma ** 2 / 2), 0).astype(np.float32)
    lrest = lam / (1 + z[rows, None])
    tau_ll = rng.exponential(1.0, rows.size) * ((1 + z[rows]) / 4) ** 2
    tau += np.where(lrest < 912.0, tau_ll[:, None] * (lrest / 912.0) ** 3, 0).astype(np.float32)
    T[rows] = np.exp(-tau)
    return T


def _smc_k(wave):
    """SMC-like extinction k(λ) ≈ 1.39 λ_µm^−1.2 (Prévot et al. 1984 shape), R_V ≈ 2.9."""
    return 1.39 * (np.asarray(wave, float) / 1e4) ** -1.2


def make_quasars(rng: np.random.Generator, z, grid: LogGrid, weak=None, bal_fraction=0.1):
    """True observed-frame f_λ of quasars at redshifts ``z`` (arbitrary units) + parameters.

    ``weak`` (bool per object) draws weaker, broader lines: the quasars SDSS leaves without
    the BROADLINE subclass are mostly low-S/N ones, and weak lines make that likelier.
    """
    z = np.atleast_1d(np.asarray(z, float))
    n = z.size
    weak = np.zeros(n, bool) if weak is None else np.broadcast_to(np.asarray(weak, bool), (n,))
    lrest = grid.wave[None, :] / (1 + z[:, None])             # (n, P)
    a_nu = rng.normal(-0.45, 0.3, n)                          # f_ν ∝ ν^α (blue of 5000 Å)
    a_nu_red = a_nu + rng.normal(-0.6, 0.4, n)                # steeper red side (hot dust onset)
    x = lrest / 5000.0
    cont = np.where(x < 1, x ** (-(2 + a_nu[:, None])), x ** (-(2 + a_nu_red[:, None])))
    # Balmer continuum (optically thin-ish), a few-% to 20 % bump below 3646 Å
    bc = rng.uniform(0.03, 0.2, n)
    bal_c = np.where(lrest < 3646, (lrest / 3646.0) ** 1.5 * (3000 / 5000) ** -(2 + a_nu[:, None]), 0)
    bal_c *= np.exp(-((3646 - lrest) / 1200) ** 2)
    flux = cont + bc[:, None] * bal_c
    # Fe II (Vestergaard & Wilkes UV + Boroson & Green optical), strengths vs continuum
    t = galaxy_templates()
    rg = t["grid"]
    ll_rest = grid.loglam[None, :] - np.log10(1 + z)[:, None]
    fe_uv, fe_opt, host = gather_many([t["feii_uv"], t["feii_opt"],
                                       t["ssp"][0] * 0.7 + t["ssp"][1] * 0.3], rg, ll_rest)
    c2500 = (2500 / 5000.0) ** (-(2 + a_nu))
    c4600 = (4600 / 5000.0) ** (-(2 + a_nu))
    s_uv, s_opt = rng.uniform(0.05, 0.35, n), rng.uniform(0.05, 0.5, n)
    fe = fe_uv * (s_uv * c2500)[:, None] + fe_opt * (s_opt * c4600)[:, None]
    fwhm = np.clip(rng.lognormal(np.log(np.where(weak, 5000, 4000)), 0.3), 1500, 15000)
    sig_b = fwhm / 2.3548
    # Fe II templates are I Zw 1 (FWHM ≈ 900 km/s): broaden to the broad-line width
    fe = convolve_gaussian(fe, np.sqrt(np.clip(sig_b ** 2 - (900 / 2.3548) ** 2, 0, None))
                           / (C_KMS * np.log(10) * grid.step))
    flux = flux + fe
    # host galaxy (old population) at low z: fraction of the 5100 Å light
    host_frac = np.clip(rng.uniform(0, 0.6, n) * (1 - z / 0.8), 0, None)
    i51 = int(round((np.log10(5100) - rg.start) / rg.step))
    h51 = float((t["ssp"][0] * 0.7 + t["ssp"][1] * 0.3)[i51])
    c5100 = (5100 / 5000.0) ** (-(2 + a_nu_red))
    flux = flux + host * (host_frac / (1 - np.minimum(host_frac, 0.9)) * c5100 / h51)[:, None]
    # broad lines: EW × continuum at the line (power law) → integrated flux
    strength = rng.lognormal(0, 0.25, n) * np.where(weak, rng.uniform(0.35, 0.8, n), 1.0)
    blueshift = np.abs(rng.normal(0, 800, n))                # high-ionisation lines, km/s
    names = list(_BROAD)
    w0 = np.array([LINES[k] for k in names])
    ew = np.array([_BROAD[k][0] for k in names])[None, :] * strength[:, None] \
        * rng.lognormal(0, 0.2, (n, len(names)))
    cl = np.where(w0[None, :] < 5000, (w0[None, :] / 5000) ** (-(2 + a_nu[:, None])),
                  (w0[None, :] / 5000) ** (-(2 + a_nu_red[:, None])))
    lf = ew * cl * (1 + z)[:, None]     # rest EW → integral over observed Å (see galaxies)
    fac = np.array([_BROAD[k][1] for k in names])[None, :]
    hi = np.array([_BROAD[k][2] for k in names])
    wc = w0[None, :] * np.where(hi[None, :], 1 - blueshift[:, None] / C_KMS, 1.0)
    fl = np.zeros_like(flux, dtype=np.float32)
    zl = (1 + z[:, None]) * wc / w0[None, :] - 1                # per-line redshift (blueshifts)
    for frac, wid in ((0.65, 0.8), (0.35, 2.2)):   # peaky core + broad wings
        add_gaussian_lines(fl, grid, zl, w0, frac * lf, sig_b[:, None] * fac * wid)
    # narrow lines (σ ~ 200–400 km/s unresolved-ish NLR)
    nn = list(_NARROW)
    nw = np.array([LINES[k] for k in nn])
    nrm = rng.lognormal(0, 0.45, n)
    new = np.array([_NARROW[k][0] for k in nn])[None, :] * nrm[:, None] \
        * rng.lognormal(0, 0.2, (n, len(nn)))
    new[:, nn.index("OIII_4959")] = new[:, nn.index("OIII_5007")] / 2.98
    ncl = np.where(nw[None, :] < 5000, (nw[None, :] / 5000) ** (-(2 + a_nu[:, None])),
                   (nw[None, :] / 5000) ** (-(2 + a_nu_red[:, None])))
    sig_n = rng.uniform(150, 350, (n, 1))
    add_gaussian_lines(fl, grid, z, nw, new * ncl * (1 + z)[:, None],
                       sig_n * np.ones((1, len(nn))))
    flux = flux + fl
    # intrinsic SMC dust
    ebv = np.clip(rng.exponential(0.03, n), 0, 0.3)
    flux *= 10 ** (-0.4 * ebv[:, None] * _smc_k(lrest))
    # BAL troughs (CIV, SiIV, NV, Lyα share one velocity structure; MgII for LoBALs)
    bal = (rng.random(n) < bal_fraction) & (z > 1.5)
    if bal.any():
        r = np.nonzero(bal)[0]
        vmin, width = rng.uniform(0, 10000, r.size), rng.uniform(2000, 15000, r.size)
        depth = rng.uniform(0.3, 0.95, r.size)
        lobal = rng.random(r.size) < 0.1
        T = np.ones((r.size, grid.size))
        for line, d in (("CIV", 1.0), ("SiIV", 0.7), ("NV", 0.9), ("Lyalpha", 0.5), ("MgII", 0.6)):
            v = C_KMS * (LINES[line] - lrest[r]) / LINES[line]
            prof = 0.5 * (np.tanh((v - vmin[:, None]) / 500) - np.tanh((v - vmin[:, None] - width[:, None]) / 500))
            dd = depth * d * (lobal if line == "MgII" else 1.0)
            T *= 1 - dd[:, None] * prof
        flux[r] *= T.astype(np.float32)
    flux *= lya_forest_transmission(rng, z, grid)
    flux = np.where(lrest < 500, 0.0, flux).astype(np.float32)
    params = {"TEMPLATE": np.full(n, "QSO-PL+LINES"), "EBV": ebv, "LINE_SIGMA": sig_b,
              "FWHM_BROAD": fwhm, "EW_HA": ew[:, names.index("Halpha")],
              "EW_CIV": ew[:, names.index("CIV")], "EW_MGII": ew[:, names.index("MgII")],
              "EW_OIII": new[:, nn.index("OIII_5007")], "ALPHA_NU": a_nu,
              "HOST_FRAC": host_frac, "BAL": bal.astype(np.int16)}
    return flux, params
