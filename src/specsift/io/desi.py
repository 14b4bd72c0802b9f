"""DESI ``coadd-*.fits`` and ``spectra-*.fits`` files.

Each camera arm (B, R, Z; or a merged BRZ) has ``<ARM>_WAVELENGTH`` (Å, vacuum),
``<ARM>_FLUX`` (N, P), ``<ARM>_IVAR`` and optionally ``<ARM>_MASK`` (nonzero = bad).  The
arms are put on one grid — the target grid, or with ``grid=None`` the union of the arm
pixel centres (DESI arms share one 0.8 Å lattice) — and combined with inverse-variance
weights where they overlap: f = Σ w f_arm / Σ w, ivar = Σ w with w = ivar_arm.

``FIBERMAP`` gives TARGETID (and EXPID for per-exposure ``spectra-*`` files: one row per
spectrum is kept, so a TARGETID can appear once per exposure); it must have exactly one
row per spectrum (anything else would pair spectra with other targets' ids) and an
integer TARGETID.  ``<ARM>_RESOLUTION`` (N, ndiag, P), the band-diagonal resolution
matrix, becomes :attr:`SpectraBatch.resolution`: each pixel's Gaussian-equivalent σ in Å
(the kernel's second moment in pixels × the arm's pixel width), put on the common grid
with the same inverse-variance weights as the flux where arms overlap.  A Redrock
``redrock-*.fits`` (or ``zbest-*.fits``) beside the file brings SPECTYPE→CLASS,
SUBTYPE→SUBCLASS, Z, ZERR, ZWARN→RR_ZWARN, DELTACHI2→RR_DELTACHI2 matched by TARGETID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from astropy.table import Table

from ..flags import InputFlag
from ..spectra import LogGrid, SpectraBatch
from ._common import air_to_vacuum, column_of_kind, finalize, header_str, stable_id

__all__ = ["sniff", "is_redrock", "read", "rows", "find_redrock", "read_redrock",
           "resolution_sigma"]

_ARMS = ("B", "R", "Z", "BRZ")
_FIBERMAP_KEEP = {"TARGETID": "TARGETID", "TARGET_RA": "RA", "TARGET_DEC": "DEC",
                  "TILEID": "TILEID", "FIBER": "FIBER", "EXPID": "EXPID", "NIGHT": "NIGHT",
                  "OBJTYPE": "OBJTYPE"}


def _arms(hdul) -> list[str]:
    return [a for a in _ARMS if f"{a}_FLUX" in hdul and f"{a}_WAVELENGTH" in hdul]


def sniff(src) -> bool:
    return bool(_arms(src.handle))


def rows(src) -> int:
    arm = _arms(src.handle)[0]
    return int(src.handle[f"{arm}_FLUX"].header.get("NAXIS2", 1))


def is_redrock(src) -> bool:
    """A Redrock result file: REDSHIFTS (or ZBEST) table with Z and TARGETID, no spectra."""
    hdul = getattr(src, "handle", src)
    for name in ("REDSHIFTS", "ZBEST"):
        if name in hdul and getattr(hdul[name], "columns", None) is not None:
            cols = set(hdul[name].columns.names)
            if {"TARGETID", "Z"} <= cols:
                return True
    return False


def find_redrock(path: Path) -> Path | None:
    """redrock-X.fits or zbest-X.fits beside coadd-X.fits / spectra-X.fits."""
    name = path.name
    for prefix in ("coadd-", "spectra-"):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            for rr in ("redrock-", "zbest-"):
                cand = path.with_name(rr + rest)
                if cand.exists():
                    return cand
    return None


def read_redrock(path: Path) -> Table:
    """Redrock labels renamed to the SDSS-style truth columns, one row per TARGETID."""
    from ._common import open_fits

    with open_fits(path) as hdul:
        if not is_redrock(hdul):
            raise ValueError(f"{path}: not a Redrock file (no REDSHIFTS/ZBEST table)")
        data = hdul["REDSHIFTS" if "REDSHIFTS" in hdul else "ZBEST"].data
        cols = set(data.columns.names)
        tid = column_of_kind(data["TARGETID"], "TARGETID", "iu", path)
        out = Table({"TARGETID": tid.astype(np.int64)})
        for src, dst, kinds in (("SPECTYPE", "CLASS", "SU"), ("SUBTYPE", "SUBCLASS", "SU"),
                                ("Z", "Z", "f"), ("ZERR", "ZERR", "f"),
                                ("ZWARN", "RR_ZWARN", "iu"), ("DELTACHI2", "RR_DELTACHI2", "f")):
            if src in cols:
                v = column_of_kind(data[src], src, kinds, path)
                if v.dtype.kind == "S":
                    v = np.char.strip(np.char.decode(v, "utf-8", "replace"))
                out[dst] = v
    return out


def _arm_arrays(hdul, arm: str, lo: int, hi: int, path: Path, air: bool):
    wave = np.asarray(hdul[f"{arm}_WAVELENGTH"].data, np.float64).ravel()
    flux = hdul[f"{arm}_FLUX"].data
    if flux is None or flux.ndim != 2:
        raise ValueError(f"{path}: {arm}_FLUX is not a 2-D (spectra × pixels) image")
    if flux.shape[1] != wave.size:
        raise ValueError(f"{path}: {arm}_FLUX has {flux.shape[1]} pixels but "
                         f"{arm}_WAVELENGTH has {wave.size}")
    if f"{arm}_IVAR" not in hdul:
        raise ValueError(f"{path}: arm {arm} has flux but no {arm}_IVAR")
    ivar = hdul[f"{arm}_IVAR"].data
    if ivar.shape != flux.shape:
        raise ValueError(f"{path}: {arm}_IVAR shape {ivar.shape} does not match "
                         f"{arm}_FLUX {flux.shape}")
    mask = None
    if f"{arm}_MASK" in hdul and hdul[f"{arm}_MASK"].data is not None:
        m = hdul[f"{arm}_MASK"].data
        if m.shape != flux.shape:
            raise ValueError(f"{path}: {arm}_MASK shape {m.shape} does not match {flux.shape}")
        mask = np.asarray(m[lo:hi]) != 0
    if air:
        wave = air_to_vacuum(wave)
    if np.any(np.diff(wave) <= 0):
        raise ValueError(f"{path}: {arm}_WAVELENGTH is not increasing")
    sigma = None
    if f"{arm}_RESOLUTION" in hdul and hdul[f"{arm}_RESOLUTION"].data is not None:
        res = hdul[f"{arm}_RESOLUTION"].data
        if res.ndim != 3 or res.shape[0] != flux.shape[0] or res.shape[2] != wave.size:
            raise ValueError(f"{path}: {arm}_RESOLUTION shape {res.shape} does not match "
                             f"{arm}_FLUX {flux.shape}")
        sigma = resolution_sigma(np.asarray(res[lo:hi], np.float64)) * np.gradient(wave)
    return (wave, np.asarray(flux[lo:hi], np.float32), np.asarray(ivar[lo:hi], np.float32),
            mask, sigma)


def _shape2d(hdul, arm: str, path: Path) -> tuple[int, int]:
    """(spectra, pixels) of an arm's flux image, from its header (no data read)."""
    hdr = hdul[f"{arm}_FLUX"].header
    if int(hdr.get("NAXIS", 0) or 0) != 2:
        raise ValueError(f"{path}: {arm}_FLUX is not a 2-D (spectra × pixels) image")
    return int(hdr["NAXIS2"]), int(hdr["NAXIS1"])


def resolution_sigma(res: np.ndarray) -> np.ndarray:
    """Gaussian-equivalent σ (pixels) of each pixel's line-spread function from a DESI
    resolution matrix in band-diagonal storage (N, ndiag, P): row d is offset
    ndiag//2 − d.  σ² is the kernel's second central moment over its positive weights;
    NaN where the kernel is empty (masked pixels)."""
    nd = res.shape[1]
    off = (nd // 2 - np.arange(nd, dtype=np.float64))[None, :, None]
    w = np.clip(res, 0.0, None)
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * off).sum(axis=1) / tot
        var = (w * off**2).sum(axis=1) / tot - mean**2
    return np.where(tot > 0, np.sqrt(np.clip(var, 0.0, None)), np.nan)


def _union_loglam(waves: list[np.ndarray], path: Path) -> np.ndarray:
    """Native merged grid: union of the arm pixel centres (must share one lattice)."""
    union = np.unique(np.round(np.concatenate(waves), 4))
    steps = np.diff(union)
    if steps.size and steps.min() < 0.5 * np.median(steps):
        raise ValueError(f"{path}: arm wavelength grids are not on one lattice; "
                         f"give a grid to resample onto")
    return np.log10(union)


def _meta(hdul, path: Path, lo: int, hi: int, labels: Table | None, n_all: int) -> Table:
    n = hi - lo
    meta = Table()
    if "FIBERMAP" in hdul:
        fm = hdul["FIBERMAP"].data
        if fm is None or len(fm) != n_all:
            raise ValueError(f"{path}: FIBERMAP has {0 if fm is None else len(fm)} rows for "
                             f"{n_all} spectra; cannot tell which target each spectrum is")
        for src, dst in _FIBERMAP_KEEP.items():
            if src in fm.columns.names:
                v = np.asarray(fm[src][lo:hi])
                if src == "TARGETID":
                    v = column_of_kind(v, "FIBERMAP TARGETID", "iu", path)
                if v.dtype.kind == "S":
                    v = np.char.strip(np.char.decode(v, "utf-8", "replace"))
                meta[dst] = v
    if "TARGETID" not in meta.colnames:
        meta["TARGETID"] = stable_id(path.name) + np.arange(lo, hi, dtype=np.int64)
    meta["SURVEY"] = ["DESI"] * n
    if labels is not None:
        index = {int(t): k for k, t in enumerate(labels["TARGETID"])}
        rows = np.array([index.get(int(t), -1) for t in meta["TARGETID"]])
        found = rows >= 0
        for col in labels.colnames:
            if col == "TARGETID":
                continue
            src = labels[col]
            if src.dtype.kind in "US":
                vals = np.where(found, np.asarray(src)[np.maximum(rows, 0)], "")
            elif src.dtype.kind == "f":
                vals = np.where(found, np.asarray(src)[np.maximum(rows, 0)], np.nan)
            else:
                vals = np.where(found, np.asarray(src)[np.maximum(rows, 0)], -1)
            meta[col] = vals
    return meta


def read(src, grid: LogGrid | None, batch_size: int) -> Iterator[SpectraBatch]:
    path, hdul = src.path, src.handle
    arms = _arms(hdul)
    if "BRZ" in arms and len(arms) > 1:
        arms = ["BRZ"]
    shapes = {a: _shape2d(hdul, a, path) for a in arms}
    n = shapes[arms[0]][0]
    if any(s[0] != n for s in shapes.values()):
        raise ValueError(f"{path}: arms hold different numbers of spectra "
                         f"({', '.join(f'{a} {s[0]}' for a, s in shapes.items())})")
    if n == 0:
        raise ValueError(f"{path}: no spectra in {arms[0]}_FLUX")
    air = header_str(hdul[0].header, "AIRORVAC").lower() == "air"
    rr = find_redrock(path)
    labels = read_redrock(rr) if rr is not None else None
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        parts = [_arm_arrays(hdul, a, lo, hi, path, air) for a in arms]
        target = grid.loglam if grid is not None else _union_loglam([p[0] for p in parts], path)
        num = np.zeros((hi - lo, target.size))
        wsum = np.zeros((hi - lo, target.size))
        lo_w, hi_w = np.full(hi - lo, np.inf), np.full(hi - lo, -np.inf)
        flags = np.zeros(hi - lo, np.int32)
        has_res = any(p[4] is not None for p in parts)
        rnum, rw, rplain, rcount = (np.zeros((hi - lo, target.size)) for _ in range(4))
        for wave, flux, ivar, mask, sigma in parts:
            arm = SpectraBatch(np.log10(wave), flux, ivar, mask, source=str(path))
            good = ~arm.mask
            has = good.any(axis=1)
            lo_w = np.where(has, np.minimum(lo_w, wave[good.argmax(axis=1)]), lo_w)
            hi_w = np.where(has, np.maximum(hi_w, wave[good.shape[1] - 1 - good[:, ::-1].argmax(axis=1)]), hi_w)
            flags |= np.asarray(arm.meta["INPUT_FLAGS"], np.int32) & (
                InputFlag.NONFINITE_FLUX | InputFlag.BAD_IVAR)
            r = arm.resample(target)
            w = np.where(r.mask, 0.0, r.ivar.astype(np.float64))
            num += w * r.flux
            wsum += w
            if sigma is not None:
                s_t = _sigma_on(target, wave, sigma)
                known = np.isfinite(s_t)
                rnum += np.where(known, w * np.nan_to_num(s_t), 0.0)
                rw += np.where(known, w, 0.0)
                rplain += np.nan_to_num(s_t)
                rcount += known
        flux = np.divide(num, wsum, out=np.zeros_like(num), where=wsum > 0)
        resolution = None
        if has_res:
            with np.errstate(invalid="ignore", divide="ignore"):
                resolution = np.where(rw > 0, rnum / rw,
                                      np.where(rcount > 0, rplain / rcount, np.nan))
        meta = _meta(hdul, path, lo, hi, labels, n)
        meta["INPUT_FLAGS"] = flags
        yield finalize(path, target, flux, wsum, wsum <= 0, meta, grid,
                       wave_bounds=(lo_w, hi_w), resolution=resolution)


def _sigma_on(target_loglam: np.ndarray, wave: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """σ (Å) of each spectrum interpolated onto the target pixels the arm covers (held
    constant over its last half pixel; NaN outside it or where the arm's σ is unknown)."""
    tw = 10.0 ** target_loglam
    edge = np.gradient(wave)              # a target pixel the arm half-covers counts too
    inside = (tw >= wave[0] - edge[0]) & (tw <= wave[-1] + edge[-1])
    out = np.full((sigma.shape[0], tw.size), np.nan)
    for k, row in enumerate(sigma):
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            out[k, inside] = np.interp(tw[inside], wave[ok], row[ok])
    return out
