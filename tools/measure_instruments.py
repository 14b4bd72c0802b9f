"""Measure the LAMOST LRS and DESI instrument models from the real files in ../shared/data.

    PYTHONPATH=src .venv/bin/python tools/measure_instruments.py [--out src/specsift/data/templates/instruments.npz]

Writes only derived numbers (curves on a log10-λ grid, a few scalars), never a spectrum:

* noise model per pixel, fitted jointly to the real ivar arrays: the variance of pixel p of
  spectrum j is v_jp = a_j·f_jp·α_p + b_j·β_p (photon noise of the source ∝ f, background =
  sky + read + dark ∝ β), f the 15-px median-smoothed flux; per-spectrum a_j, b_j and per-pixel
  α, β by alternating least squares. The simulator uses α, β and the measured distribution of
  the background-to-source ratio ρ_j = b_j / (a_j · median f_j);
* the probability that a pixel is masked (ivar = 0) inside a spectrum's coverage, and the
  coverage edges (first/last good pixel) as quantiles;
* the lag-1 noise correlation from the pixel-difference χ (as for SDSS: ρ = 1 − χ²), and the
  quantiles over spectra of χ_real / χ_twin, a real spectrum's χ over that of its simulated
  twin (same label, z, S/N; line structure adds to both): how far the quoted errors are from
  the scatter (DR1's are ≈ 20 % too large);
* the excess scatter at sky-line pixels (sky-subtraction residuals) over the quoted noise;
* LAMOST: equivalent widths of the uncorrected telluric bands (real stars minus the same
  measurement on noiseless simulated stars without tellurics), and the smooth flux-calibration
  residuals and the arm-join step, from real stars divided by simulated twins of their subtype;
* DESI: the LSF σ(λ) of each arm from the second moment of the RESOLUTION diagonals.
"""

from __future__ import annotations

import argparse
import glob
import sys
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import median_filter, uniform_filter1d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _lamost_real as LR  # noqa: E402

from specsift.simulate.instrument import sky_on_grid  # noqa: E402
from specsift.simulate.lines import C_KMS  # noqa: E402
from specsift.spectra import DEFAULT_GRID, LogGrid  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DESI_GRID = LogGrid.from_range(3.5563, 3.9925, 1e-4)        # 3600–9829 Å
#: telluric bands (vacuum Å): name, band, blue side band, red side band
TELLURIC = (("O2_B", (6866, 6935), (6820, 6860), (6940, 6980)),
            ("H2O_7200", (7165, 7340), (7100, 7160), (7345, 7400)),
            ("O2_A", (7594, 7700), (7540, 7590), (7710, 7760)),
            ("H2O_8200", (8120, 8340), (8060, 8115), (8345, 8400)))


def fit_noise(flux, ivar, iters=12):
    """α(λ), β(λ), a_j, b_j of v = a·f·α + b·β (see module doc)."""
    good = (ivar > 0) & np.isfinite(ivar) & np.isfinite(flux)
    v = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0).astype(np.float64)
    # each spectrum in units of its median variance (a_j, b_j absorb the scale)
    scale = np.nanmedian(np.where(good, v, np.nan), axis=1)
    v = np.clip(v / scale[:, None], 0.0, 1e3)
    f = np.clip(median_filter(np.where(good, flux, 0.0), size=(1, 15)), 0.0, None)
    f = f / np.sqrt(scale)[:, None]
    w = good.astype(float)
    P = flux.shape[1]
    alpha, beta = np.ones(P), np.ones(P)
    a = np.nanmedian(np.where(good, v, np.nan), axis=1) / np.maximum(np.median(f, axis=1), 1e-9)
    b = np.nanmedian(np.where(good, v, np.nan), axis=1) * 0.5
    for _ in range(iters):
        # per pixel: v ≈ α (a f) + β b over spectra (2×2 normal equations, weights ∝ 1/v²)
        x1, x2 = a[:, None] * f, np.broadcast_to(b[:, None], f.shape)
        wt = w / np.maximum(v, 1e-6) ** 2
        A11, A12, A22 = (wt * x1 * x1).sum(0), (wt * x1 * x2).sum(0), (wt * x2 * x2).sum(0)
        r1, r2 = (wt * x1 * v).sum(0), (wt * x2 * v).sum(0)
        det = A11 * A22 - A12 ** 2
        ok = det > 1e-12 * A11 * A22
        alpha = np.where(ok, (A22 * r1 - A12 * r2) / np.where(ok, det, 1), alpha)
        beta = np.where(ok, (A11 * r2 - A12 * r1) / np.where(ok, det, 1), beta)
        alpha, beta = np.clip(alpha, 1e-6, None), np.clip(beta, 1e-6, None)
        # per spectrum: v ≈ a (f α) + b β
        y1, y2 = f * alpha[None], np.broadcast_to(beta[None], f.shape)
        B11, B12, B22 = (wt * y1 * y1).sum(1), (wt * y1 * y2).sum(1), (wt * y2 * y2).sum(1)
        s1, s2 = (wt * y1 * v).sum(1), (wt * y2 * v).sum(1)
        det = B11 * B22 - B12 ** 2
        a = np.clip((B22 * s1 - B12 * s2) / np.where(det > 0, det, 1), 1e-12, None)
        b = np.clip((B11 * s2 - B12 * s1) / np.where(det > 0, det, 1), 1e-12, None)
        na, nb = np.median(alpha[alpha > 1e-6]), np.median(beta[beta > 1e-6])
        alpha, a, beta, b = alpha / na, a * na, beta / nb, b * nb
    covered = good.mean(0) > 0.2
    alpha = np.exp(median_filter(np.log(alpha), 5))
    beta = np.exp(median_filter(np.log(beta), 3))
    rho = b / (a * np.maximum(np.nanmedian(np.where(good, f, np.nan), axis=1), 1e-9))
    pred = a[:, None] * f * alpha + b[:, None] * beta
    resid = np.nanmedian(np.where(good & (v > 0), np.log(np.maximum(v, 1e-12) / pred), np.nan))
    return alpha, beta, rho, covered, float(resid)


def coverage_and_mask(ivar, loglam):
    good = ivar > 0
    has = good.any(1)
    first = good.argmax(1)[has]
    last = (good.shape[1] - 1 - good[:, ::-1].argmax(1))[has]
    inside = np.zeros_like(good)
    for i, (lo, hi) in enumerate(zip(first, last)):
        inside[np.nonzero(has)[0][i], lo:hi + 1] = True
    pmask = 1 - (good & inside).sum(0) / np.maximum(inside.sum(0), 1)
    q = np.linspace(0, 1, 21)
    return pmask, np.quantile(10 ** loglam[first], q), np.quantile(10 ** loglam[last], q)


def noise_chi(flux, ivar, per_spectrum=False):
    good = ivar > 0
    s = np.where(good, 1 / np.sqrt(np.where(good, ivar, 1)), np.inf)
    d = np.diff(flux, axis=1) / np.sqrt(s[:, 1:] ** 2 + s[:, :-1] ** 2)
    d = np.where(good[:, 1:] & good[:, :-1], d, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chi = 1.4826 * np.nanmedian(np.abs(d - np.nanmedian(d, 1)[:, None]), 1)
    if per_spectrum:
        return np.quantile(chi[np.isfinite(chi)], np.linspace(0, 1, 21))
    return float(np.nanmedian(chi))


def chi_ratio_quantiles(flux, ivar, labels, z, instrument, grid):
    """Quantiles of χ_real / χ_twin (see module doc), twins made without the quoted-error
    factor (chi_q absent from the instrument's measurements while this runs)."""
    from specsift.simulate import simulate_like
    from specsift.simulate.instruments import _measured
    from specsift.spectra import median_snr
    ok = labels != ""
    d = dict(_measured._npz())
    d.pop(f"{instrument}_chi_q", None)
    _measured._npz.cache_clear()
    saved = _measured._npz
    _measured._npz = lambda: d                      # twins without the factor being measured
    try:
        snr = median_snr(flux[ok], ivar[ok], ivar[ok] > 0)
        tw = simulate_like(labels[ok], np.where(np.isfinite(z[ok]), z[ok], np.nan),
                           np.maximum(snr, 0.5), seed=11, instrument=instrument, grid=grid)
    finally:
        _measured._npz = saved
    per = lambda f, i: np.array([noise_chi(f[k:k + 1], i[k:k + 1]) for k in range(len(f))])  # noqa: E731
    r = per(flux[ok], ivar[ok]) / per(tw.flux, tw.ivar)
    return np.quantile(r[np.isfinite(r)], np.linspace(0, 1, 21))


def sky_weight(grid):
    """Sky-line weight 0…1 on ``grid``: SDSS sky's line structure above its running mean."""
    sky, _ = sky_on_grid(grid)
    s = sky - uniform_filter1d(sky, 25)
    return np.clip(s / np.percentile(s, 99.5), 0, 1).astype(np.float32)


def sky_excess(flux, ivar, w):
    """Excess variance (in units of the quoted variance) at the strongest sky-line pixels."""
    good = ivar > 0
    hp = flux - median_filter(flux, size=(1, 9))
    chi = np.where(good, hp * np.sqrt(ivar), np.nan)
    line, cont = w > 0.5, (w < 0.02)
    rl = 1.4826 * np.nanmedian(np.abs(chi[:, line]))
    rc = 1.4826 * np.nanmedian(np.abs(chi[:, cont]))
    return max(rl ** 2 / rc ** 2 - 1.0, 0.0), float(rl), float(rc)


def band_ew(flux, ivar, wave, band, blue, red):
    """EW (Å) of a band against a straight line through its side bands; NaN if too masked."""
    out = np.full(len(flux), np.nan)
    inb = (wave > band[0]) & (wave < band[1])
    sb = ((wave > blue[0]) & (wave < blue[1])) | ((wave > red[0]) & (wave < red[1]))
    dl = np.gradient(wave)
    for i in range(len(flux)):
        g = ivar[i] > 0
        if (g & sb).sum() < 10 or (g & inb).mean() < 0.8 * inb.mean():
            continue
        c = np.polyfit(wave[g & sb], flux[i, g & sb], 1)
        cont = np.polyval(c, wave)
        if np.median(cont[inb]) <= 0:
            continue
        m = g & inb
        out[i] = ((1 - flux[i, m] / cont[m]) * dl[m]).sum() * inb.sum() / max(m.sum(), 1)
    return out


def lamost_twins(labels, grid):
    """Noiseless simulated stars (SDSS subtypes nearest to LAMOST's) at each star's RV."""
    from specsift.simulate.instrument import apply_lsf
    from specsift.simulate.stars import star_spectrum, subtype_rows
    rng = np.random.default_rng(0)
    out = np.zeros((len(labels), grid.size), np.float32)
    for i, r in enumerate(labels):
        rows = subtype_rows(nearest_subtype(r["SUBCLASS"]))
        f = star_spectrum(rng.choice(rows, 8), grid, np.full(8, r["Z"] * C_KMS))
        out[i] = np.asarray(f).mean(0)
    return apply_lsf(out, grid, 1800.0)


def nearest_subtype(sub: str) -> str:
    """SDSS thirteen-set subtype closest to a LAMOST SUBCLASS (A0…M9), keeping the letter
    where the set has one (G8 → G2, not K1), since the type letter is what is compared."""
    s = (sub or "G").strip().upper()
    letter = s[:1]
    try:
        num = float(s[1:2])
    except ValueError:
        num = 5.0
    if letter in "OBA":
        return "A0"
    if letter == "F":
        return "F5" if num < 7 else "F9"
    if letter == "G":
        return "G2"
    if letter == "K":
        return "K1" if num < 2 else ("K3" if num < 4 else "K5")
    return "K5"


def calibration_residuals(flux, ivar, twins, wave, deg=3):
    """Legendre coefficients of log(real/twin) (smooth calibration + template mismatch) and
    the step across the arm join (5900–6000 Å vs 5600–5700 Å, after the polynomial)."""
    x = (np.log(wave) - np.log(wave[0])) / (np.log(wave[-1]) - np.log(wave[0])) * 2 - 1
    coefs, steps = [], []
    fs = uniform_filter1d(np.where(ivar > 0, flux, 0), 31, axis=1)
    ws = uniform_filter1d((ivar > 0).astype(float), 31, axis=1)
    sm = fs / np.maximum(ws, 1e-9)
    for i in range(len(flux)):
        ok = (ws[i] > 0.9) & (twins[i] > 0) & (sm[i] > 0) & (wave > 3900) & (wave < 8900)
        if ok.sum() < 1000:
            continue
        y = np.log(sm[i, ok] / twins[i, ok])
        c = np.polynomial.legendre.legfit(x[ok], y - np.median(y), deg)
        coefs.append(c)
        r = y - np.polynomial.legendre.legval(x[ok], c)
        w = wave[ok]
        lo, hi = (w > 5600) & (w < 5700), (w > 5900) & (w < 6000)
        if lo.sum() > 20 and hi.sum() > 20:
            steps.append(np.median(r[hi]) - np.median(r[lo]))
    coefs = np.array(coefs)
    mad = lambda a, ax=0: 1.4826 * np.median(np.abs(a - np.median(a, ax)), ax)  # noqa: E731
    return mad(coefs)[1:], float(mad(np.array(steps))), len(coefs)


def measure_lamost(out: dict):
    grid = DEFAULT_GRID
    flux, ivar, lab, counts = LR.load(fallback=True)
    print("LAMOST files:", counts)
    snr = np.asarray(lab["SNR_G"], float)
    sel = (snr >= 5) & ((ivar > 0).mean(1) > 0.8)
    alpha, beta, rho, covered, resid = fit_noise(flux[sel], ivar[sel])
    pmask, wmin, wmax = coverage_and_mask(ivar, grid.loglam)
    chi = noise_chi(flux[sel], ivar[sel])
    w = sky_weight(grid)
    exc, rl, rc = sky_excess(flux[sel], ivar[sel], w)
    print(f"LAMOST noise fit on {sel.sum()} spectra: median log residual {resid:+.3f}; "
          f"ρ median {np.median(rho):.3g}; χ {chi:.3f}; sky excess {exc:.3f} ({rl:.3f}/{rc:.3f})")
    # tellurics: real stars with S/N_g ≥ 20 minus noiseless simulated twins
    star = (np.asarray(lab["CLASS"]) == "STAR") & (snr >= 20)
    idx = np.nonzero(star)[0]
    idx = idx[np.random.default_rng(1).permutation(idx.size)[:400]]
    twins = lamost_twins(lab[idx], grid)
    ew_med, ew_sd = [], []
    for name, band, blue, red in TELLURIC:
        real = band_ew(flux[idx], ivar[idx], grid.wave, band, blue, red)
        sim = band_ew(twins, np.ones_like(twins), grid.wave, band, blue, red)
        d = real - sim
        d = d[np.isfinite(d)]
        ew_med.append(max(float(np.median(d)), 0.0))
        ew_sd.append(float(1.4826 * np.median(np.abs(d - np.median(d)))))
        print(f"  telluric {name}: EW real {np.nanmedian(real):.2f} Å − sim stars "
              f"{np.nanmedian(sim):.2f} Å = {ew_med[-1]:.2f} ± {ew_sd[-1]:.2f} Å (n={d.size})")
    cal_sd, step_sd, ncal = calibration_residuals(flux[idx], ivar[idx], twins, grid.wave)
    print(f"  calibration Legendre σ(c1..c3) {np.round(cal_sd, 3)}, arm-join step σ "
          f"{step_sd:.3f} (n={ncal})")
    out.update({
        "lamost_loglam": grid.loglam.astype(np.float64), "lamost_alpha": alpha.astype(np.float32),
        "lamost_beta": beta.astype(np.float32), "lamost_covered": covered,
        "lamost_log_rho": np.quantile(np.log(rho), np.linspace(0, 1, 21)),
        "lamost_pmask": pmask.astype(np.float32), "lamost_wmin_q": wmin, "lamost_wmax_q": wmax,
        "lamost_noise_corr": np.float64(max(1 - chi ** 2, 0.0)),
        "lamost_sky_excess": np.float64(exc), "lamost_sky_weight": w,
        "lamost_telluric_names": np.array([t[0] for t in TELLURIC]),
        "lamost_telluric_bands": np.array([t[1] for t in TELLURIC], float),
        "lamost_telluric_ew": np.array(ew_med), "lamost_telluric_ew_sd": np.array(ew_sd),
        "lamost_calib_sd": np.asarray(cal_sd, float), "lamost_join_step_sd": np.float64(step_sd),
        "lamost_n_spectra": np.int64(len(lab)), "lamost_n_noise_fit": np.int64(sel.sum()),
    })
    labels = np.array(["STAR_" + nearest_subtype(s_) if c == "STAR" else
                       ("GALAXY" if c == "GALAXY" else "") for c, s_ in
                       zip(lab["CLASS"], lab["SUBCLASS"])])
    labels = np.where(sel, labels, "")
    return labels, flux, ivar, np.asarray(lab["Z"], float)


def desi_resolution():
    """Median LSF σ (km/s) per arm on each arm's own wavelengths, from RESOLUTION HDUs."""
    files = sorted(glob.glob(str(SHARED / "desi" / "*.fits"))
                   + glob.glob(str(SHARED / "desi" / "fastspecfit" / "coadd-*.fits")))
    res = {}
    for arm in "BRZ":
        sig, wave = [], None
        for f in files:
            with fits.open(f) as h:
                if f"{arm}_RESOLUTION" not in h:
                    continue
                R = np.asarray(h[f"{arm}_RESOLUTION"].data, float)    # (n, ndiag, nwave)
                wave = np.asarray(h[f"{arm}_WAVELENGTH"].data, float)
            nd = R.shape[1]
            d = np.arange(nd) - nd // 2
            Rp = np.clip(R, 0, None)
            norm = Rp.sum(1)
            ok = norm > 0.5
            s2 = (Rp * d[None, :, None] ** 2).sum(1) / np.where(ok, norm, 1)
            sig.append(np.where(ok, np.sqrt(s2), np.nan))
        s = np.nanmedian(np.vstack(sig), 0)
        dl = np.gradient(wave)
        res[arm] = (wave, median_filter(s * dl / wave * C_KMS, 51))
        print(f"  DESI {arm}: {wave[0]:.0f}–{wave[-1]:.0f} Å, σ {np.nanmin(res[arm][1]):.1f}–"
              f"{np.nanmax(res[arm][1]):.1f} km/s (R = {C_KMS / 2.3548 / np.nanmedian(res[arm][1]):.0f})")
    return res


def measure_desi(out: dict):
    from specsift import io
    grid = DESI_GRID
    files = sorted(glob.glob(str(SHARED / "desi" / "*.fits"))
                   + glob.glob(str(SHARED / "desi" / "fastspecfit" / "coadd-*.fits"))
                   + glob.glob(str(SHARED / "desi" / "quasarnp" / "*.fits")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = io.read(files, grid=grid)
    flux, ivar = b.flux, np.where(b.mask, 0, b.ivar)
    keep = (ivar > 0).mean(1) > 0.5
    flux, ivar = flux[keep], ivar[keep]
    alpha, beta, rho, covered, resid = fit_noise(flux, ivar)
    pmask, wmin, wmax = coverage_and_mask(ivar, grid.loglam)
    chi = noise_chi(flux, ivar)
    w = sky_weight(grid)
    exc, rl, rc = sky_excess(flux, ivar, w)
    print(f"DESI noise fit on {keep.sum()} spectra: median log residual {resid:+.3f}; "
          f"ρ median {np.median(rho):.3g}; χ {chi:.3f}; sky excess {exc:.3f}")
    res = desi_resolution()
    ll = grid.loglam
    sig = np.full((3, ll.size), np.nan)
    for k, arm in enumerate("BRZ"):
        wv, s = res[arm]
        inside = (10 ** ll >= wv[0]) & (10 ** ll <= wv[-1])
        sig[k, inside] = np.interp(10 ** ll[inside], wv, s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = np.nanmean(sig, 0)
    sigma = np.where(np.isfinite(sigma), sigma, np.nanmedian(sigma))
    out.update({
        "desi_loglam": ll, "desi_alpha": alpha.astype(np.float32),
        "desi_beta": beta.astype(np.float32), "desi_covered": covered,
        "desi_log_rho": np.quantile(np.log(rho), np.linspace(0, 1, 21)),
        "desi_pmask": pmask.astype(np.float32), "desi_wmin_q": wmin, "desi_wmax_q": wmax,
        "desi_noise_corr": np.float64(max(1 - chi ** 2, 0.0)),
        "desi_sky_excess": np.float64(exc), "desi_sky_weight": w,
        "desi_sigma_kms": sigma.astype(np.float32),
        "desi_arm_ranges": np.array([[res[a][0][0], res[a][0][-1]] for a in "BRZ"]),
        "desi_n_spectra": np.int64(keep.sum()),
    })
    from specsift.simulate.survey import LABEL_SPECS, natural_mix
    labs = list(LABEL_SPECS)[:7]
    labels = np.random.default_rng(5).choice(labs, len(flux), p=natural_mix(labs))
    return labels, flux, ivar, np.full(len(flux), np.nan)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "src/specsift/data/templates/instruments.npz"))
    a = ap.parse_args(argv)
    out: dict = {}
    desi = measure_desi(out)
    lamost = measure_lamost(out)
    np.savez_compressed(a.out, **out)
    # second pass: quoted-error factor against the instrument models just written
    from specsift.simulate.instruments import _measured
    _measured._npz.cache_clear()
    for name, (labels, flux, ivar, z), grid in (("desi", desi, DESI_GRID),
                                                 ("lamost", lamost, DEFAULT_GRID)):
        q = chi_ratio_quantiles(flux, ivar, labels, z, name, grid)
        out[f"{name}_chi_q"] = q
        print(f"{name}: χ_real/χ_twin quantiles 5/50/95 %: {q[1]:.3f} / {q[10]:.3f} / {q[19]:.3f}")
    np.savez_compressed(a.out, **out)
    print("wrote", a.out, f"{Path(a.out).stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
