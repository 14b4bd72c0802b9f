"""Build the simulator's bundled templates from ../shared/data (run once; output is committed).

    .venv/bin/python tools/bundle_templates.py [--shared ../shared/data] [--out src/specsift/data/templates]

Writes compact float32 ``.npz`` files on log10-λ grids (step 1e-4, the SDSS pixel):
  galaxies.npz   BC03 SSPs (10 ages × 2 metallicities, air→vacuum), Kinney–Calzetti S0/Sa/Sb/Sc
                 (Sc extended past 7660 Å with the CWW Scd shape), UV + optical Fe II (quasars)
  stars.npz      Redrock STAR basis vectors (A B F G K M WD) + ARCHETYPE_COEFF rows, each row tagged
                 with the SDSS stellar SUBCLASS (best fit among the 40 spEigenStar-53724 templates)
  instrument.npz SDSS sky spectrum, noise gain curve and wdisp (LSF σ) measured from real SDSS spec files
  priors.npz     (class, subclass, z, S/N, r flux) rows from the GaSNet-III SDSS catalogues
See src/specsift/data/templates/PROVENANCE.md for sources and licences.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from scipy.ndimage import gaussian_filter1d, median_filter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from specsift.spectra import rebin_matrix  # noqa: E402

STEP = 1e-4
SUB13 = ("A0", "F5", "F9", "G2", "K1", "K3", "K5")
REST = (2.77, 4.10)         # 589–12589 Å: quasars to z=5, galaxies to z=0.8 and beyond
STAR = (3.5400, 3.9800)     # 3467–9550 Å: stars at z≈0 on SDSS, BOSS-blue and LAMOST grids
OBS = (3.5500, 4.0170)      # instrument curves


def grid(lo_hi):
    lo, hi = lo_hi
    return lo + STEP * np.arange(int(round((hi - lo) / STEP)) + 1)


def air_to_vac(w):
    """Morton (2000) / SDSS convention; applied above 2000 Å."""
    w = np.asarray(w, float)
    s2 = (1e4 / w) ** 2
    n = 1 + 8.34254e-5 + 2.406147e-2 / (130 - s2) + 1.5998e-4 / (38.9 - s2)
    return np.where(w > 2000, w * n, w)


def rebin(wave, flux, loglam):
    """Flux-conserving rebin where the input is finer than 1e-4 dex, linear interpolation
    where it is coarser (so coarse templates do not become staircases)."""
    ll = np.log10(wave)
    out = np.interp(loglam, ll, flux, left=0.0, right=0.0)
    fine = np.median(np.diff(ll)) < STEP
    if fine:
        W = rebin_matrix(ll, loglam)
        cover = np.asarray(W.sum(axis=1)).ravel()
        rb = W @ flux
        ok = cover > 0.99
        out[ok] = rb[ok] / cover[ok]
    return out


def norm_at(loglam, f, lo=5400, hi=5600):
    w = 10 ** loglam
    m = (w > lo) & (w < hi)
    return f / np.median(f[m])


def galaxies(shared: Path):
    rest = grid(REST)
    ages = ["11Gyr", "5Gyr", "2.5Gyr", "1.4Gyr", "900Myr", "640Myr", "290Myr", "100Myr",
            "25Myr", "5Myr"]
    ssp, names = [], []
    for zname in ("z02", "z008"):
        for a in ages:
            (f,) = glob.glob(str(shared / f"templates/bc03/*_ssp_{a}_{zname}.spec.gz"))
            d = np.loadtxt(gzip.open(f), comments="#")
            w, fl = air_to_vac(d[:, 0]), d[:, 1]
            ssp.append(norm_at(rest, rebin(w, fl, rest)))
            names.append(f"ssp_{a}_{zname}")
    kc = {}
    for name, fn in (("S0", "s0"), ("Sa", "sa"), ("Sb", "sb"), ("Sc", "sc")):
        t = fits.open(shared / f"templates/kc96/{fn}_template.fits")[1].data
        w, fl = np.asarray(t["WAVELENGTH"], float), np.asarray(t["FLUX"], float)
        cww = np.loadtxt(shared / "templates/cww-kin/CWW_Scd_ext.sed" if name == "Sc"
                         else shared / "templates/cww-kin/CWW_Sbc_ext.sed")
        cw, cf = cww[:, 0], cww[:, 1]
        # splice: the KC96 template where it exists, CWW shape (scaled over the overlap) outside
        ov = (w > w.max() - 600) & (w < w.max() - 20)
        scale_r = np.median(fl[ov] / np.interp(w[ov], cw, cf))
        ov = (w > w.min() + 20) & (w < w.min() + 300)
        scale_b = np.median(fl[ov] / np.interp(w[ov], cw, cf))
        lam = 10 ** rest
        f = np.interp(lam, w, fl)
        red, blue = lam > w.max(), lam < w.min()
        f[red] = np.interp(lam[red], cw, cf) * scale_r
        f[blue] = np.interp(lam[blue], cw, cf) * scale_b
        lamv = air_to_vac(lam)          # KC96 is in air: move to vacuum
        f = np.interp(lam, lamv, f)
        kc[name] = norm_at(rest, f)
    fe = {}
    for name in ("uv", "optical"):
        d = np.loadtxt(shared / f"templates/feii/fe_{name}.txt", comments="#")
        f = np.interp(rest, d[:, 0], d[:, 1], left=0, right=0)
        f = np.clip(f, 0, None)
        fe[name] = f / f.max()
    return dict(loglam_start=REST[0], loglam_step=STEP, size=rest.size,
                ssp=np.array(ssp, np.float32), ssp_names=np.array(names),
                kc_names=np.array(list(kc)), kc=np.array(list(kc.values()), np.float32),
                feii_uv=fe["uv"].astype(np.float32), feii_opt=fe["optical"].astype(np.float32))


def stars(shared: Path, wd_keep=1500, seed=0):
    """Redrock basis on the STAR grid; each coefficient row labelled with SDSS's SUBCLASS."""
    ll = grid(STAR)
    rng = np.random.default_rng(seed)
    eig = fits.open(shared / "templates/sdss-idlspec2d/spEigenStar-53724.fits")[0]
    e_ll = eig.header["COEFF0"] + eig.header["COEFF1"] * np.arange(eig.data.shape[1])
    e_names = np.array([eig.header[f"NAME{i}"] for i in range(eig.data.shape[0])])
    # compare on 3850–9100 Å where spEigenStar is defined
    m = (ll > np.log10(3850)) & (ll < np.log10(9100))
    E = np.array([np.interp(ll[m], e_ll, t) for t in eig.data])
    basis, coeffs, types, subtypes, chi, rss13 = {}, [], [], [], [], []
    for t in ("A", "B", "F", "G", "K", "M", "WD"):
        h = fits.open(shared / f"templates/redrock/rrtemplate-STAR-{t}-v0.1.fits")
        w = h[0].header["CRVAL1"] + h[0].header["CDELT1"] * np.arange(h[0].data.shape[1])
        B = np.array([rebin(w, v, ll) for v in h[0].data])
        # smooth to SDSS resolution (σ ≈ 0.9 px) for the subtype assignment only
        Bs = gaussian_filter1d(B, 0.9, axis=1)
        C = np.asarray(h["ARCHETYPE_COEFF"].data, float)
        if t == "WD" and len(C) > wd_keep:
            C = C[np.sort(rng.choice(len(C), wd_keep, replace=False))]
        S = C @ Bs[:, m]                                   # (rows, px)
        S /= np.median(np.abs(S), axis=1, keepdims=True)
        # fit each spEigenStar template × a scale (additive polynomials let the fit
        # trade continuum shape for lines and give absurd subtypes, so none is used)
        rss = np.empty((len(S), len(E)))
        for j, tj in enumerate(E):
            tj = tj / np.median(np.abs(tj))
            a = (S @ tj) / (tj @ tj)
            rss[:, j] = ((S - a[:, None] * tj) ** 2).sum(axis=1)
        arg = rss.argmin(axis=1)
        best = rss[np.arange(len(S)), arg]
        rss13.append(rss[:, [list(e_names).index(s) for s in SUB13]].astype(np.float32))
        basis[t] = B.astype(np.float32)
        coeffs.append(C.astype(np.float32))
        types += [t] * len(C)
        subtypes += list(e_names[arg])
        chi.append(best)
        print(f"  STAR {t}: {len(C)} rows; SDSS subclasses: "
              f"{dict(zip(*np.unique(e_names[arg], return_counts=True)))}")
    out = dict(loglam_start=STAR[0], loglam_step=STEP, size=ll.size,
               coeff=np.concatenate(coeffs), type=np.array(types), subtype=np.array(subtypes),
               fit_rss=np.concatenate(chi).astype(np.float32),
               rss13=np.concatenate(rss13), sub13=np.array(SUB13),
               sdss13=np.array([np.interp(ll, e_ll, eig.data[list(e_names).index(s)],
                                          left=0, right=0) for s in SUB13], np.float32),
               sdss13_range=np.array([10 ** e_ll[0], 10 ** e_ll[-1]]))
    for t, B in basis.items():
        out[f"basis_{t}"] = B
    return out


def instrument(shared: Path):
    """Sky, noise gain and LSF width measured from the real SDSS spec files."""
    ll = grid(OBS)
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns outside coverage
    skies, gains, wdisps, boss = [], [], [], []
    for f in sorted(glob.glob(str(shared / "sdss/spec-*.fits"))):
        d = fits.open(f)["COADD"].data
        l = np.asarray(d["loglam"], float)
        iv = np.asarray(d["ivar"], float)
        sky, model = np.asarray(d["sky"], float), np.asarray(d["model"], float)
        good = (iv > 0) & (d["and_mask"] == 0)
        g = np.where(good, (sky + np.clip(model, 0, None)) * iv, np.nan)
        # gain = counts per flux unit, up to a constant: var = (sky + f)/g
        gi = np.interp(ll, l[good], median_filter(g[good], 151, mode="nearest"),
                       left=np.nan, right=np.nan)
        gi /= np.nanmedian(gi[(ll > np.log10(5000)) & (ll < np.log10(8000))])
        si = np.interp(ll, l, sky, left=np.nan, right=np.nan)
        wi = np.interp(ll, l, median_filter(np.asarray(d["wdisp"], float), 51, mode="nearest"),
                       left=np.nan, right=np.nan)
        (boss if l[-1] > 4.0 else skies).append(si)
        gains.append(gi)
        wdisps.append(wi)
    sky = np.nanmedian(np.array(skies), axis=0)
    bsky = np.nanmedian(np.array(boss), axis=0)
    ov = np.isfinite(sky) & np.isfinite(bsky)
    ratio = np.median(median_filter(sky[ov], 201) / median_filter(bsky[ov], 201))
    sky = np.where(np.isfinite(sky), sky, bsky * ratio)
    gain = np.nanmedian(np.array(gains), axis=0)
    wdisp = np.nanmedian(np.array(wdisps), axis=0)
    for a in (sky, gain, wdisp):
        ok = np.isfinite(a)
        a[~ok] = np.interp(ll[~ok], ll[ok], a[ok])
    return dict(loglam_start=OBS[0], loglam_step=STEP, size=ll.size,
                sky=sky.astype(np.float32), gain=gain.astype(np.float32),
                wdisp=wdisp.astype(np.float32))


def priors(shared: Path):
    rows = {k: [] for k in ("cls", "sub", "z", "snr", "rflux")}
    for f in sorted(glob.glob(str(shared / "catalogs/gasnet3-sdss-*.fits"))):
        t = Table.read(f, hdu=1)
        rows["cls"] += [str(c).strip() for c in t["CLASS"]]
        rows["sub"] += [str(c).strip() for c in t["SUBCLASS"].filled("")
                        if hasattr(t["SUBCLASS"], "filled")] or \
            [str(c).strip() for c in t["SUBCLASS"]]
        rows["z"] += list(np.asarray(t["Z"], float))
        rows["snr"] += list(np.asarray(t["SN_MEDIAN_ALL"], float))
        rows["rflux"] += list(np.asarray(t["SPECTROFLUX"], float)[:, 2])
    return dict(cls=np.array(rows["cls"]), sub=np.array(rows["sub"]),
                z=np.array(rows["z"], np.float32), snr=np.array(rows["snr"], np.float32),
                rflux=np.array(rows["rflux"], np.float32))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "src/specsift/data/templates"))
    a = ap.parse_args(argv)
    shared, out = Path(a.shared), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("priors", priors), ("instrument", instrument), ("galaxies", galaxies),
                     ("stars", stars)):
        print(f"building {name} …")
        np.savez_compressed(out / f"{name}.npz", **fn(shared))
    total = sum(p.stat().st_size for p in out.glob("*.npz"))
    print(f"wrote {out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
