"""Labelled surveys: class sets, SDSS-like priors, blocks with their own seeds, chunked writing.

Determinism: spectra are made in fixed blocks of :data:`BLOCK` (256) consecutive indices;
block ``b`` uses ``numpy.random.default_rng(SeedSequence([seed, b]))``.  The output therefore
depends only on (seed, n, options) — never on ``chunk`` or on how a run was resumed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from ..classes import labels as class_labels
from ..spectra import DEFAULT_GRID, LogGrid, SpectraBatch
from .galaxies import make_galaxies, make_galaxy_types
from .instrument import NANOMAGGY_R_TO_FLAM, apply_instrument, masked_median
from .instruments.rows import instrument_of as _instrument_of
from .instruments.rows import observe_rows as _observe_mixed
from .labels import rule_labels
from .quasars import make_quasars
from .stars import make_stars
from .templates import survey_priors

__all__ = ["simulate_batch", "simulate_to_store", "iter_blocks", "LABEL_SPECS", "BLOCK",
           "simulate_block", "natural_mix"]

BLOCK = 256

#: label → (generator, argument, SDSS CLASS, SDSS SUBCLASS)
LABEL_SPECS = {
    "GALAXY": ("galaxy", "GALAXY", "GALAXY", ""),
    "GALAXY_STARFORMING": ("galaxy", "STARFORMING", "GALAXY", "STARFORMING"),
    "GALAXY_STARBURST": ("galaxy", "STARBURST", "GALAXY", "STARBURST"),
    "GALAXY_AGN": ("galaxy", "AGN", "GALAXY", "AGN"),
    "QSO": ("qso", True, "QSO", ""),
    "QSO_BROADLINE": ("qso", False, "QSO", "BROADLINE"),
    "STAR": ("star", "", "STAR", ""),
    **{f"STAR_{s}": ("star", s, "STAR", s) for s in ("A0", "F5", "F9", "G2", "K1", "K3", "K5")},
    **{t: ("galtype", t, "GALAXY", t) for t in ("S0", "Sa", "Sb", "Sc")},
}

#: natural (unbalanced) label frequencies: SDSS-like mix (galaxy subclasses from the catalogue)
_NATURAL = {"GALAXY": .33, "GALAXY_STARFORMING": .17, "GALAXY_STARBURST": .045,
            "GALAXY_AGN": .02, "QSO": .1, "QSO_BROADLINE": .15, "STAR": .185}

#: string columns (width) and float columns of meta, in order; missing values '' / NaN
_STR = {"CLASS_LABEL": 24, "SPECTYPE": 8, "SUBTYPE": 16, "CLASS": 8, "SUBCLASS": 24,
        "TEMPLATE": 32, "SOURCE": 16, "INSTRUMENT": 8}
_FLOAT = ("Z", "SNR", "SNR_MEASURED", "MAG_R", "EW_HA", "EW_OIII", "EW_CIV", "EW_MGII",
          "LOG_NII_HA", "LOG_OIII_HB", "EBV", "VDISP", "LINE_SIGMA", "FWHM_BROAD", "ALPHA_NU",
          "HOST_FRAC", "LOG_AGE", "RV", "BROADLINE_SNR")


def natural_mix(labs):
    """Draw probabilities of ``labs`` in the SDSS-like natural mix (:data:`_NATURAL`): the
    unbalanced sets, and benchmarks that weight real spectra as a survey would see them;
    STAR_* subtypes split STAR's share; a label outside the mix weighs 1 before normalising."""
    p = np.array([_NATURAL.get(l, 0.0) for l in labs])
    if p.sum() == 0 or (p == 0).any():          # a set with labels outside the natural mix
        p = np.where(p == 0, max(p.max(), 1.0), p)
    if all(l.startswith("STAR_") or l in _NATURAL for l in labs) and any(
            l.startswith("STAR_") for l in labs):
        star = [l for l in labs if l.startswith("STAR_")]
        p = np.array([_NATURAL["STAR"] / len(star) if l in star else _NATURAL[l] for l in labs])
    return p / p.sum()


def _catalog_rows(cls, sub_test, zlo, zhi):
    pr = survey_priors()
    sub = pr["sub"]
    ok = (pr["cls"] == cls) & np.array([sub_test(s) for s in sub]) & (pr["z"] >= zlo) & (pr["z"] <= zhi)
    return np.nonzero(ok & (pr["snr"] > 0.5))[0]


_ROW_CACHE: dict = {}


def _prior_rows(label):
    if label not in _ROW_CACHE:
        spec = LABEL_SPECS[label]
        gen, arg = spec[0], spec[1]
        if gen == "galaxy":
            test = {"GALAXY": lambda s: s == "", "STARFORMING": lambda s: s == "STARFORMING",
                    "STARBURST": lambda s: s == "STARBURST", "AGN": lambda s: "AGN" in s}[arg]
            rows = _catalog_rows("GALAXY", test, 0.003, 0.8)
        elif gen == "galtype":
            rows = _catalog_rows("GALAXY", lambda s: True, 0.003, 0.8)
        elif gen == "qso":
            test = (lambda s: s == "") if arg else (lambda s: "BROADLINE" in s)
            rows = _catalog_rows("QSO", test, 0.05, 5.0)
        else:
            rows = np.array([], int)
        _ROW_CACHE[label] = rows
    return _ROW_CACHE[label]


_SNR_FLUX: list = []


def _flux_for_snr(rng, snr):
    """r-band nanomaggies typical of an SDSS spectrum of median S/N ``snr`` (fixed exposure):
    a log-log fit to the catalogue rows, with their scatter."""
    if not _SNR_FLUX:
        pr = survey_priors()
        ok = (pr["snr"] > 0.5) & (pr["rflux"] > 0.3)
        x, y = np.log10(pr["snr"][ok]), np.log10(pr["rflux"][ok])
        coef = np.polyfit(x, y, 1)
        _SNR_FLUX.extend([coef, float(np.std(y - np.polyval(coef, x)))])
    coef, sd = _SNR_FLUX
    return 10 ** (np.polyval(coef, np.log10(snr)) + rng.normal(0, sd, np.shape(snr)))


#: BOSS/eBOSS-like galaxies (CMASS and LRG z 0.43–1.0, ELG to 1.1) that the SDSS-I/II
#: catalogue rows lack (6 of 7888 above z = 0.45): redshift range and median S/N range
BOSS_Z, BOSS_SNR = (0.4, 1.0), (1.5, 10.0)


def _draw_conditions(rng, label, m, z, snr, boss_fraction=0.0):
    """(z, snr, r-band nanomaggies) for m objects of ``label``: catalogue rows (jittered)
    unless the caller fixed z or S/N; a ``boss_fraction`` of the galaxies instead at
    BOSS-like z and S/N (:data:`BOSS_Z`, :data:`BOSS_SNR`, uniform in z and log S/N)."""
    pr = survey_priors()
    gen = LABEL_SPECS[label][0]
    if gen == "star":
        zz = np.zeros(m)                                  # stars: RV set by the generator
        ss = np.clip(10 ** rng.normal(np.log10(20), 0.3, m), 2.0, 100.0)
        ff = _flux_for_snr(rng, ss)
    else:
        rows = rng.choice(_prior_rows(label), m)
        zz = pr["z"][rows].astype(float) * (1 + rng.normal(0, 0.02, m))
        zz = np.clip(zz, 0.003, 5.0)
        ss = pr["snr"][rows].astype(float) * rng.lognormal(0, 0.1, m)
        ff = np.clip(pr["rflux"][rows].astype(float), 0.3, None) * rng.lognormal(0, 0.1, m)
        if boss_fraction > 0 and gen == "galaxy":     # no draws at 0: default sims unchanged
            b = np.nonzero(rng.random(m) < boss_fraction)[0]
            zz[b] = rng.uniform(*BOSS_Z, b.size)
            ss[b] = np.exp(rng.uniform(*np.log(BOSS_SNR), b.size))
            ff[b] = _flux_for_snr(rng, ss[b])
    if z is not None and gen != "star":
        zz = (rng.uniform(z[0], z[1], m) if np.ndim(z) else np.full(m, float(z)))
    if snr is not None:
        ss = (rng.uniform(snr[0], snr[1], m) if np.ndim(snr) else np.full(m, float(snr)))
        ff = _flux_for_snr(rng, ss)          # keep source/sky consistent with the S/N asked for
    return zz, np.clip(ss, 0.5, 300.0), ff


def _empty_meta(n):
    meta = {"TARGETID": np.zeros(n, np.int64)}
    meta.update({k: np.full(n, "", f"U{w}") for k, w in _STR.items()})
    meta.update({k: np.full(n, np.nan) for k in _FLOAT})
    meta["BAL"] = np.zeros(n, np.int16)
    meta["SEED_BLOCK"] = np.zeros(n, np.int64)
    return meta


def simulate_block(b, seed, class_set, z, snr, balanced, grid, resolution, noiseless,
                   bad_pixels, bal_fraction, sdss1_fraction=0.5, boss_fraction=0.0,
                   instrument="sdss", like=None):
    """Spectra b·BLOCK … (b+1)·BLOCK − 1 (complete block, sliced by the caller).
    ``like``: per-row label, z, snr, sdss1, instrument (:func:`simulate_like`)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(b)]))
    labs = np.array(class_labels(class_set))
    idx = b * BLOCK + np.arange(BLOCK)
    if like is not None:
        lab = np.asarray(like["label"])
    elif balanced:
        lab = rng.permutation(labs[idx % labs.size])
    else:
        lab = rng.choice(labs, BLOCK, p=natural_mix(list(labs)))
    if class_set == "three":       # three-class: draw the SDSS subclass behind GALAXY/QSO/STAR
        sub = {"GALAXY": (["GALAXY", "GALAXY_STARFORMING", "GALAXY_STARBURST", "GALAXY_AGN"],
                          [.6, .3, .08, .02]),
               "QSO": (["QSO", "QSO_BROADLINE"], [.35, .65]), "STAR": (["STAR"], [1.0])}
        gen_lab = np.array([rng.choice(sub[l][0], p=sub[l][1]) for l in lab])
    else:
        gen_lab = lab
    meta = _empty_meta(BLOCK)
    flux = np.zeros((BLOCK, grid.size), np.float32)
    coverage = np.ones((BLOCK, grid.size), bool)
    zs, ss, fs = np.zeros(BLOCK), np.zeros(BLOCK), np.zeros(BLOCK)
    for g in np.unique(gen_lab):
        sel = np.nonzero(gen_lab == g)[0]
        zs[sel], ss[sel], fs[sel] = _draw_conditions(rng, g, sel.size, z, snr, boss_fraction)
    if like is not None:
        gal = np.array([LABEL_SPECS[g][0] != "star" for g in gen_lab])
        lz = np.asarray(like["z"], float)
        zs = np.where(gal & np.isfinite(lz), lz, zs)        # NaN: the class's prior
        ss = np.clip(np.asarray(like["snr"], float), 0.5, 300.0)
        fs = _flux_for_snr(rng, ss)
    rule_lines: dict = {}
    for gen in ("galaxy", "galtype", "qso", "star"):
        sel = np.nonzero([LABEL_SPECS[g][0] == gen for g in gen_lab])[0]
        if not sel.size:
            continue
        args = np.array([LABEL_SPECS[g][1] for g in gen_lab[sel]])
        if gen == "galaxy":
            f, par = make_galaxies(rng, args, zs[sel], grid)
        elif gen == "galtype":
            f, par = make_galaxy_types(rng, args, zs[sel], grid)
        elif gen == "qso":
            f, par = make_quasars(rng, zs[sel], grid, weak=args.astype(bool),
                                  bal_fraction=bal_fraction)
        else:
            f, par = make_stars(rng, args, grid)
            zs[sel] = par["Z"]
            coverage[sel] = par.pop("coverage")[None, :]
            par.pop("Z")
        flux[sel] = f
        if gen in ("galaxy", "qso"):        # subclasses by SDSS's rules (labels.rule_labels)
            rule_lines[gen] = (sel, par.pop("_RULE_LINES", None))
        for k, v in par.items():
            meta[k][sel] = v
    # absolute scale: mean f_λ over the r band = the catalogue's r flux
    lam = grid.wave
    band = (lam > 5600) & (lam < 6900)
    level = flux[:, band].mean(axis=1) if band.sum() > 10 else np.median(flux, axis=1)
    level = np.where(level > 1e-6, level, np.maximum(np.abs(flux).mean(axis=1), 1e-6))
    scale = NANOMAGGY_R_TO_FLAM * fs / level
    flux *= scale[:, None].astype(np.float32)
    # SDSS-I spectra start near 3800 Å and stop near 9200 Å; BOSS covers 3600–10400 Å
    sdss1 = rng.random(BLOCK) < sdss1_fraction
    if like is not None:
        sdss1 = np.asarray(like["sdss1"], bool)
    blue = np.where(sdss1, rng.uniform(3795, 3830, BLOCK), 0.0)
    inst = _instrument_of(instrument, seed, b) if like is None else \
        np.asarray(like["instrument"]).astype("U8")
    if (inst == "sdss").all():                       # the SDSS path, draws unchanged
        out, ivar, mask, info = apply_instrument(
            flux, grid, ss, rng, resolution=resolution, bad_pixel_rate=0.3 if bad_pixels else 0.0,
            blue_cut=blue, noiseless=noiseless)
    else:
        out, ivar, mask, info = _observe_mixed(flux, grid, ss, rng, inst, blue, resolution,
                                               bad_pixels, noiseless)
    meta["INSTRUMENT"] = inst
    mask |= ~coverage
    ivar[mask] = 0.0
    out[mask] = 0.0
    if noiseless:
        out = info["noiseless"]
        out[mask] = 0.0
    meta["TARGETID"] = idx.astype(np.int64)
    meta["SPECTYPE"] = np.array([LABEL_SPECS[g][2] for g in gen_lab], dtype="U8")
    meta["CLASS"] = meta["SPECTYPE"]
    sdss_sub = np.array([LABEL_SPECS[g][3] for g in gen_lab], dtype="U24")
    # galaxy and quasar subclasses as SDSS's rules give them on this spectrum's lines
    meta["CLASS_LABEL"], sdss_sub = rule_labels(
        rule_lines, out, info["noiseless"], ivar, grid, scale, zs, meta,
        lab, sdss_sub, class_set, inst, resolution)
    is_star = meta["SPECTYPE"] == "STAR"
    meta["SUBCLASS"] = np.where(is_star, meta["SUBTYPE"], sdss_sub)
    meta["SUBTYPE"] = np.where(is_star, meta["SUBTYPE"], sdss_sub)
    meta["Z"], meta["SNR"] = zs, ss
    meta["MAG_R"] = 22.5 - 2.5 * np.log10(fs)
    meta["SOURCE"][:] = "simulate"
    meta["SEED_BLOCK"][:] = b
    good = ~mask
    with np.errstate(invalid="ignore", divide="ignore"):
        snr_pix = np.where(good, out * np.sqrt(ivar), np.nan)
        meta["SNR_MEASURED"] = np.nan_to_num(masked_median(snr_pix, mask))
    qso = meta["SPECTYPE"] == "QSO"
    if qso.any():
        meta["BROADLINE_SNR"][qso] = _broadline_snr(info["noiseless"][qso], ivar[qso],
                                                    grid, zs[qso])
    return out, ivar, mask, meta


def _broadline_snr(flux, ivar, grid, z):
    """Best S/N of a broad-line flux measurement (line minus the mean of ±3 % side bands)
    among Lyα, C IV, C III], Mg II, Hβ, Hα: what SDSS's BROADLINE test looks at."""
    lam = grid.wave[None, :]
    dl = np.gradient(grid.wave)[None, :]
    good = ivar > 0
    var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
    best = np.zeros(len(z))
    for w0 in (1215.67, 1549.06, 1908.73, 2799.49, 4862.68, 6564.61):
        c = (w0 * (1 + z))[:, None]
        core = (lam > c * 0.98) & (lam < c * 1.02) & good
        side = (((lam > c * 0.95) & (lam < c * 0.98)) | ((lam > c * 1.02) & (lam < c * 1.05))) & good
        ns, nc = side.sum(axis=1), core.sum(axis=1)
        cont = (flux * side).sum(axis=1) / np.maximum(ns, 1)
        line = ((flux - cont[:, None]) * dl * core).sum(axis=1)
        err = np.sqrt((dl ** 2 * var * core).sum(axis=1))
        s = np.where((ns >= 5) & (nc >= 5) & (err > 0), line / np.where(err > 0, err, 1), 0.0)
        best = np.maximum(best, s)
    return best


def iter_blocks(n, class_set="five", seed=1, z=None, snr=None, balanced=True,
                grid: LogGrid = DEFAULT_GRID, resolution=None, noiseless=False,
                bad_pixels=True, bal_fraction=0.1, sdss1_fraction=0.5, boss_fraction=0.0,
                start=0, instrument="sdss"):
    """Yield SpectraBatch pieces covering spectra ``start`` … ``n − 1`` in order."""
    class_labels(class_set)
    if n < 0:
        raise ValueError("n must be ≥ 0")
    z = _check_range("z", z, -0.01, 7.0)
    snr = _check_range("snr", snr, 0.1, 1000.0)
    if not 0.0 <= boss_fraction <= 1.0:
        raise ValueError(f"boss_fraction={boss_fraction} must be in [0, 1]")
    _instrument_of(instrument, seed, 0)                 # unknown names fail before any work
    b0 = start // BLOCK
    for b in range(b0, (n + BLOCK - 1) // BLOCK):
        out, ivar, mask, meta = simulate_block(b, seed, class_set, z, snr, balanced, grid,
                                               resolution, noiseless, bad_pixels, bal_fraction,
                                               sdss1_fraction, boss_fraction, instrument)
        lo = max(start - b * BLOCK, 0)
        hi = min(n - b * BLOCK, BLOCK)
        t = Table({k: v[lo:hi] for k, v in meta.items()})
        t["INPUT_FLAGS"] = np.zeros(len(t), np.int32)
        # simulated arrays are valid by construction: skip the O(N·P) checks on purpose
        yield SpectraBatch._unchecked(grid.loglam, out[lo:hi], ivar[lo:hi], mask[lo:hi], t)


def _check_range(name, v, lo, hi):
    if v is None:
        return None
    if np.ndim(v):
        v = tuple(float(x) for x in v)
        if len(v) != 2 or not (lo <= v[0] <= v[1] <= hi):
            raise ValueError(f"{name} range {v} must be (min, max) with {lo} ≤ min ≤ max ≤ {hi}")
        return v
    v = float(v)
    if not lo <= v <= hi:
        raise ValueError(f"{name}={v} outside [{lo}, {hi}]")
    return v


def simulate_batch(n=1000, class_set="five", seed=1, z=None, snr=None, balanced=True,
                   grid: LogGrid = DEFAULT_GRID, **kw) -> SpectraBatch:
    """``n`` labelled spectra in memory (use :func:`simulate_to_store` for big ``n``).

    z: None (class priors from SDSS catalogues), (zmin, zmax) uniform, or a float; stars keep
    their radial-velocity z.  snr: None (catalogue S/N mix), (lo, hi) uniform, or a float.
    Extra keywords: resolution (None = SDSS curve, or R), noiseless, bad_pixels, bal_fraction,
    sdss1_fraction (share of spectra with SDSS-I coverage from ~3800 Å instead of BOSS 3600 Å),
    boss_fraction (share of galaxies at BOSS/eBOSS z 0.4–1.0 and S/N 1.5–10 instead of the
    SDSS-I/II catalogue's z < 0.45; default 0, the catalogue mix the benchmarks use),
    instrument ('sdss' default, 'lamost', 'desi', or 'mix' per spectrum: see
    :mod:`specsift.simulate.instruments`; meta column INSTRUMENT says which).
    """
    parts = list(iter_blocks(n, class_set, seed, z, snr, balanced, grid, **kw))
    if not parts:
        return SpectraBatch(grid.loglam, np.zeros((0, grid.size), np.float32),
                            meta=Table({c: [] for c in ("TARGETID",)}))
    return SpectraBatch.concatenate(parts) if len(parts) > 1 else parts[0]


def simulate_to_store(path, n=10000, class_set="five", seed=1, chunk=1000, progress=True,
                      resume=False, **kw):
    """Simulate into a chunked HDF5 :class:`~specsift.io.store.SpectralStore` in constant
    memory.  ``resume=True`` continues a partial file made with the same settings."""
    from ..io.store import SpectralStore
    path = Path(path)
    settings = {"class_set": class_set, "seed": int(seed), "n": int(n),
                **{k: str(v) for k, v in kw.items()}}
    start = 0
    mode = "w"
    if resume and path.exists():
        with SpectralStore(path, "r") as st:
            old = {k: st.attrs.get(f"sim_{k}") for k in settings}
            start = len(st)
        if any(str(old[k]) != str(v) for k, v in settings.items()):
            raise ValueError(f"{path}: was simulated with other settings {old}; cannot resume")
        mode = "a"
    from tqdm import tqdm
    bar = tqdm(total=n, initial=start, unit="spec", disable=not progress, desc="simulate")
    with SpectralStore(path, mode) as st:
        for k, v in settings.items():
            st.attrs[f"sim_{k}"] = v
        st.attrs["sim_seeding"] = f"numpy SeedSequence([seed, block]) per block of {BLOCK}"
        buf: list[SpectraBatch] = []
        nbuf = 0
        for piece in iter_blocks(n, class_set, seed, start=start, **kw):
            buf.append(piece)
            nbuf += len(piece)
            if nbuf >= chunk:
                st.append(SpectraBatch.concatenate(buf))
                bar.update(nbuf)
                buf, nbuf = [], 0
        if buf:
            st.append(SpectraBatch.concatenate(buf))
            bar.update(nbuf)
    bar.close()
    return path
