"""The real LAMOST spectra of ``../shared/data/lamost-real`` with their labels, on one grid.

Shared by ``tools/measure_instruments.py`` (noise/mask/telluric measurements),
``benchmarks/realism.py`` (real-vs-simulated AUC) and ``benchmarks/lamost_finetune.py``
(fine-tuning data and the held-out validation stars).

``load(folders, fallback=False)`` reads every file with the package readers
(:func:`specsift.io.read`); files they reject are skipped and counted. ``fallback=True``
reads those with a plain image reader instead (rows flux, ivar, wavelength, and_mask as
``EXTEN0`` lists them: DR5/DR7/DR8) so that measurements and fine-tuning can use every file
while the package readers catch up; it is never used for the realism AUC.

The split (:func:`heldout_mask`): whole observing plans (PLANID) are held out, chosen by a
hash of the plan name (≈ 30 % of plans), and every star (DESIG) observed in a held-out plan
is held out too, so that repeat visits of one star never straddle train and validation.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from specsift.spectra import DEFAULT_GRID, SpectraBatch  # noqa: E402

FOLDERS = ("dr1-b6212", "dr10-afg", "dr5", "dr7-sbc", "dr8-ccf")
from _common import SHARED  # noqa: E402


def _raw_image(path: Path, grid) -> SpectraBatch:
    """Plain LAMOST image reader: rows named by EXTEN0 (commas allowed), else flux/ivar/…"""
    with fits.open(path, memmap=False) as h:
        hdr = h[0].header
        d = np.asarray(h[0].data, np.float64)
    names = [s.strip().lower() for s in str(hdr.get("EXTEN0", "")).replace(",", " ").split()]
    row = {n: k for k, n in enumerate(names)} if len(names) == d.shape[0] else {}
    flux, ivar = d[row.get("flux", 0)], d[row.get("inverse", 1)]
    if "wavelength" in row:
        wave = d[row["wavelength"]]
    else:
        wave = 10 ** (hdr["CRVAL1"] + hdr.get("CD1_1", hdr.get("CDELT1")) * np.arange(d.shape[1]))
    mask = d[row["andmask"]] != 0 if "andmask" in row else None
    b = SpectraBatch(np.log10(wave), flux[None], ivar[None],
                     None if mask is None else mask[None], source=str(path))
    return b.resample(grid)


def _read(path: Path, grid, fallback: bool):
    from specsift import io
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return io.read(path, grid=grid), "package"
    except Exception:
        if not fallback:
            return None, "unread"
        return _raw_image(path, grid), "fallback"


def snr_g(row) -> float:
    for k in ("SN_G", "SNRG"):
        if k in row.colnames and np.isfinite(row[k]):
            return float(row[k])
    return np.nan


def load(folders=FOLDERS, shared: Path = SHARED, grid=DEFAULT_GRID, fallback=False,
         limit: int | None = None, classes=None):
    """(flux, ivar, labels Table, counts) for the files of ``folders`` (``limit`` per folder)."""
    fl, iv, rows = [], [], []
    counts = {}
    for folder in folders:
        lab = Table.read(shared / "lamost-real" / folder / "labels.csv", format="ascii.csv")
        if classes is not None:
            lab = lab[np.isin(np.asarray(lab["CLASS"]).astype(str), classes)]
        if limit is not None and len(lab) > limit:
            idx = np.random.default_rng(0).choice(len(lab), limit, replace=False)
            lab = lab[np.sort(idx)]
        c = counts.setdefault(folder, {"package": 0, "fallback": 0, "unread": 0})
        for r in lab:
            b, how = _read(shared / "lamost-real" / folder / r["file"], grid, fallback)
            c[how] += 1
            if b is None:
                continue
            fl.append(b.flux[0]); iv.append(np.where(b.mask[0], 0, b.ivar[0]))
            rows.append(dict(folder=folder, file=str(r["file"]), CLASS=str(r["CLASS"]),
                             SUBCLASS=str(r["SUBCLASS"]), Z=float(r["Z"]), SNR_G=snr_g(r),
                             PLANID=str(r["PLANID"]), DESIG=str(r["DESIG"]),
                             VERSPIPE=(str(b.meta["VERSPIPE"][0])
                                       if "VERSPIPE" in b.meta.colnames else "")))
    t = Table(rows=rows) if rows else Table()
    return np.array(fl, np.float32), np.array(iv, np.float32), t, counts


def _hashed(s: str, frac: float) -> bool:
    return int(hashlib.sha1(s.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < frac


def split_keys(labels: Table) -> np.ndarray:
    """The unit :func:`heldout_mask` holds out, per row: the observing plan (PLANID) where a
    plan holds < 10 % of its folder's files, else the star ("star:" + DESIG: DR1's 179 files
    are one plan).  Also the grouping of the library builder's plan-wise cross-validation
    (``benchmarks/build_lamost_templates.py --cv --folds plan``), which mimics this split."""
    plan = np.asarray(labels["PLANID"]).astype(str)
    desig = np.asarray(labels["DESIG"]).astype(str)
    folder = np.asarray(labels["folder"]).astype(str)
    # the keys keep plan's string width, so a "star:" key is cut to it — as the split has
    # always been made: widening it would move stars between train and held-out
    key = plan.copy()
    for f in np.unique(folder):
        sel = folder == f
        names, n = np.unique(plan[sel], return_counts=True)
        big = set(names[n >= 0.1 * sel.sum()])
        for i in np.nonzero(sel)[0]:
            if plan[i] in big:
                key[i] = "star:" + desig[i]
    return key


def heldout_mask(labels: Table, frac: float = 0.3) -> np.ndarray:
    """True for validation rows. The unit held out is :func:`split_keys`' (the observing plan,
    chosen by a hash of its name, or the star); then every visit of a held-out star is held
    out too, so that repeat visits never straddle train and validation."""
    desig = np.asarray(labels["DESIG"]).astype(str)
    held = np.array([_hashed(k, frac) for k in split_keys(labels)])
    return held | np.isin(desig, list(set(desig[held])))
