"""Emission-line measurements for every galaxy and quasar of a batch at given redshifts.

Columns follow fastspecfit's naming (``HALPHA_FLUX``, ``HALPHA_FLUX_IVAR``, ``HALPHA_EW``,
``HALPHA_SIGMA`` …; quasar broad lines ``HALPHA_BROAD``, ``HBETA_BROAD``, ``MGII_2800``,
``CIII_1908``, ``CIV_1549``, ``LYALPHA``).  Units: flux in the spectrum's flux unit × Å
(1e-17 erg/s/cm² for SDSS-like input), equivalent width in rest-frame Å (positive for
emission), σ the intrinsic Gaussian width in km/s (instrumental σ removed in quadrature),
VSHIFT the velocity offset from the given redshift in km/s.  Errors are inverse variances
(``*_IVAR``; 0 = not measured, and then the value is NaN).  ``*_SIGMA_IVAR`` is that of the
intrinsic σ (the fit's parameter; on simulated lines of σ 60 km/s through a 65 km/s
instrument the reported error is the scatter of the intrinsic σ, 1.5 × that of the total).
The rules' table (``white=True``) also carries ``*_SIGMA_INST``, the instrumental σ at each
line, for SDSS's width test on the total width.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Column, Table

from ..catalog import put_columns
from .continuum import stellar_continuum, template_columns
from .fit import fit_lines, fit_pixels
from .models import WING_SCALE, galaxy_model, line_stacks, quasar_models, window_groups
from .stack import NotStackable
from .table import C_KMS

#: lag-1 noise correlation of SDSS coadd pixels (resampling), measured on real spectra
SDSS_NOISE_CORR = 0.28

__all__ = ["measure_lines", "line_columns", "line_table", "add_line_columns", "LINE_COLUMNS",
           "line_names", "QSO_BROAD_NAMES", "NOCONV_BITS", "not_converged"]

#: catalog names of the broad lines (fastspecfit's, Mg II as one unresolved doublet)
QSO_BROAD_NAMES = {"LYALPHA_BROAD": "LYALPHA", "CIV_BROAD": "CIV_1549", "CIII_BROAD": "CIII_1908",
                   "MGII_BROAD": "MGII_2800", "HBETA_BROAD": "HBETA_BROAD",
                   "HALPHA_BROAD": "HALPHA_BROAD"}
_NARROW_NAMES = ("OII_3726", "OII_3729", "HBETA", "OIII_4959", "OIII_5007", "OI_6300",
                 "NII_6548", "HALPHA", "NII_6584", "SII_6716", "SII_6731")
#: per line: value columns and their units
LINE_COLUMNS = {"FLUX": "1e-17 erg / (s cm2)", "FLUX_IVAR": "1e+34 s2 cm4 / erg2",
                "EW": "Angstrom", "EW_IVAR": "1 / Angstrom2", "SIGMA": "km / s",
                "SIGMA_IVAR": "s2 / km2", "VSHIFT": "km / s"}


#: bit of ``LINES_NOCONV`` per fit: set where that fit stopped at its iteration cap
#: without converging (:data:`.fit.MAX_ITER`); the galaxy fit holds every narrow line,
#: a quasar window its broad line and the narrow lines inside it (:mod:`.models`)
NOCONV_BITS = {"GALAXY": 1, "LYALPHA_BROAD": 2, "CIV_BROAD": 4, "CIII_BROAD": 8,
               "MGII_BROAD": 16, "HBETA_BROAD": 32, "HALPHA_BROAD": 64}


def not_converged(fits, n: int) -> np.ndarray:
    """(n,) int16 ``LINES_NOCONV`` bitmask from :func:`line_columns`' ``fits``: 0 where
    every fit of the row converged (or none ran)."""
    flag = np.zeros(n, np.int16)
    if "GALAXY" in fits:
        rows, res = fits["GALAXY"][:2]
        flag[rows[~res.converged]] |= NOCONV_BITS["GALAXY"]
    if "QSO" in fits:
        rows, per = fits["QSO"]
        for col, (s, res) in per.items():
            flag[rows[s][~res.converged]] |= NOCONV_BITS[col]
    return flag


def line_names() -> tuple[str, ...]:
    """Every line of the catalog, narrow lines first."""
    return _NARROW_NAMES + tuple(QSO_BROAD_NAMES.values())


def _empty(n: int) -> dict[str, np.ndarray]:
    out = {}
    for name in line_names():
        for col in LINE_COLUMNS:
            fill = 0.0 if col.endswith("IVAR") else np.nan
            out[f"{name}_{col}"] = np.full(n, fill, np.float32)
    return out


def _ivar(err) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(err > 0, 1.0 / np.asarray(err, float) ** 2, 0.0)


def sdss_sigma_inst(loglam) -> np.ndarray:
    """SDSS's instrumental σ (km/s) at each pixel: the measured LSF curve bundled for the
    simulator (``data/templates/instrument.npz``, ``wdisp`` in 1e-4-dex pixels)."""
    ll, wdisp = _sdss_lsf()
    return np.interp(np.asarray(loglam, float), ll, wdisp)


@lru_cache(maxsize=1)
def _sdss_lsf() -> tuple[np.ndarray, np.ndarray]:
    """(log λ, σ km/s) of the bundled LSF curve, read once (reading the npz was ~4 ms a
    batch of the line stage)."""
    path = Path(__file__).resolve().parents[1] / "data" / "templates" / "instrument.npz"
    with np.load(path, allow_pickle=False) as d:
        ll = float(d["loglam_start"]) + float(d["loglam_step"]) * np.arange(int(d["size"]))
        wdisp = np.asarray(d["wdisp"], float) * C_KMS * np.log(10) * float(d["loglam_step"])
    ll.flags.writeable = False
    wdisp.flags.writeable = False
    return ll, wdisp


def _continuum_at(cont, rows, pix):
    p = cont.shape[1]
    return cont[rows, np.clip(pix, 0, p - 1)]


def _put(out, name, rows, flux, flux_err, cont, sig, sig_err, vel, z, ok, white=None):
    """Fill one line's columns for ``rows`` where ``ok``; ``white`` = (dict of the rules'
    columns, flux-error ratio white / correlated, σ-error ratio, instrumental σ at the
    line in km/s) when kept."""
    r = rows[ok]
    with np.errstate(divide="ignore", invalid="ignore"):
        ew = flux / cont / (1 + z)
        ew_err = flux_err / np.abs(cont) / (1 + z)
    good_c = ok & np.isfinite(ew) & (cont > 0)
    out[f"{name}_FLUX"][r] = flux[ok]
    out[f"{name}_FLUX_IVAR"][r] = _ivar(flux_err[ok])
    out[f"{name}_EW"][rows[good_c]] = ew[good_c]
    out[f"{name}_EW_IVAR"][rows[good_c]] = _ivar(ew_err[good_c])
    out[f"{name}_SIGMA"][r] = sig[ok]
    out[f"{name}_SIGMA_IVAR"][r] = _ivar(sig_err[ok])
    out[f"{name}_VSHIFT"][r] = vel[ok]
    if white is not None:
        wt, rf, rs, inst = white
        wt[f"{name}_SIGMA_INST"][r] = inst[ok]
        wt[f"{name}_FLUX_IVAR"][r] = _ivar((flux_err * rf)[ok])
        wt[f"{name}_EW_IVAR"][rows[good_c]] = _ivar((ew_err * rf)[good_c])
        wt[f"{name}_SIGMA_IVAR"][r] = _ivar((sig_err * rs)[ok])


def _ratio(white, corr):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(corr > 0, white / np.where(corr > 0, corr, 1.0), 1.0)


def _galaxies(out, wt, loglam, flux, ivar, z, cont, rows, sig_inst, rho, cont_err=None):
    model, index = galaxy_model()
    resid = flux - cont
    res = fit_lines(model, loglam, resid, ivar, z, sig_inst, noise_corr=rho,
                    continuum=cont_err)
    n = len(rows)
    comp = {c.key: j for j, c in enumerate(model.components)}
    keys = dict(zip(_NARROW_NAMES, ("OII_3726", "OII_3729", "Hbeta", "OIII_4959", "OIII_5007",
                                     "OI_6300", "NII_6548", "Halpha", "NII_6584", "SII_6717",
                                     "SII_6731")))
    local = np.arange(n)
    for name in _NARROW_NAMES:
        a, ratio, g = index[name]
        j = comp[keys[name]]
        c = _continuum_at(cont, local, res.centre[:, j]) + res.back_at[:, j]
        white = (wt, _ratio(res.amp_err_white[:, a], res.amp_err[:, a]),
                 _ratio(res.sigma_err_white[:, g], res.sigma_err[:, g]),
                 _continuum_at(sig_inst, local, res.centre[:, j]))
        _put(out, name, rows, ratio * res.amp[:, a], ratio * res.amp_err[:, a], c,
             res.sigma[:, g], res.sigma_err[:, g], res.velocity[:, g], z, res.covered[:, a],
             white)
    return res


def _quasars(out, wt, loglam, flux, ivar, z, rows, sig_inst, rho, single=False, feii=False,
             src=None):
    """Every quasar window's fit for the spectra ``rows`` of the output; their data are
    ``flux`` / ``ivar`` rows ``src`` (default: ``flux`` holds just them, in order).
    Windows that are the same fit up to the rest wavelength (:func:`.models.window_groups`)
    are fitted together, one stacked problem of their (row, window) pairs, and so are
    groups whose models differ only in their lines (:func:`.models.line_stacks`: Hβ and
    Hα), each row with its own group's model."""
    src = np.arange(len(z)) if src is None else src
    lrest_lo = loglam[0] - np.log10(1 + z)
    lrest_hi = loglam[-1] - np.log10(1 + z)
    models = quasar_models(single, feii)
    groups = window_groups(single, feii)
    fits = {}
    for stack in line_stacks(single, feii):
        kinds = []
        for g in stack:
            sels = []
            for i in groups[g]:
                lo, hi = models[i][1].regions[0]
                # the window must reach past the line centre on both sides
                sel = (np.log10(lo * 1.02) > lrest_lo) & (np.log10(hi / 1.02) < lrest_hi)
                if sel.any():
                    sels.append((i, np.nonzero(sel)[0]))
            if sels:
                kinds.append(sels)
        if not kinds:
            continue
        pairs = [pair for sels in kinds for pair in sels]
        for (i, s), res in zip(pairs, _fit_stack(models, kinds, loglam, flux, ivar, z,
                                                 sig_inst, rho, src)):
            col, model, index = models[i]
            fits[col] = (s, res)
            _put_window(out, wt, col, model, index, res, rows[s], z[s], _sub_rows(sig_inst, s))
    return fits


#: most (row, window) pairs fitted as one stack of several models (:func:`_fit_stack`):
#: a stack saves one fit's per-iteration fixed cost but costs more per row (its narrow
#: lines' evaluation spans both models' positions; per-kind writes): Hβ + Hα of a batch
#: of 256 (10–14 pairs) 7–10 ms faster stacked, of 1024 (45–48) 10–13 ms; ~150 pairs
#: even, 400 (the 400 SDSS spec files' batch) 16–39 ms slower
#: (``benchmarks/linesfix_stack.py``)
STACK_ROWS_MAX = 128


def _fit_stack(models, kinds, loglam, flux, ivar, z, sig_inst, rho, src):
    """The fits of the windows of ``kinds`` (per :func:`.models.window_groups` group of one
    :func:`.models.line_stacks` stack, its (model position, rows) pairs) as one problem,
    split back per window, in order.  Every pair is fitted with its group's first window's
    model at the redshift that puts that model's window on the pair's own window:
    (1 + z) × λ_own / λ_first; the groups' models are stacked (:mod:`.stack`), or, where
    their evaluation differs (:class:`.stack.NotStackable`), fitted one by one."""
    parts = [_window_rows(models, sels, loglam, z) for sels in kinds]
    refs = [models[sels[0][0]][1] for sels in kinds]
    cat = [np.concatenate(x) for x in zip(*parts)]
    s_all, z_fit = cat[0], cat[1]
    extra = cat[2] if refs[0].templates else None
    kind = np.repeat(np.arange(len(kinds)), [p[0].size for p in parts])
    try:
        if len(kinds) > 1 and kind.size > STACK_ROWS_MAX:
            raise NotStackable(f"{kind.size} rows: cheaper apart")
        fits = [(fit_lines(refs[0], loglam, flux, ivar, z_fit, _sub_rows(sig_inst, s_all),
                           noise_corr=rho, extra=extra, rows=src[s_all], others=refs[1:],
                           kind=kind), [pair for sels in kinds for pair in sels])]
    except NotStackable:
        fits = [(fit_lines(ref, loglam, flux, ivar, zf, _sub_rows(sig_inst, s),
                           noise_corr=rho, extra=ex if ref.templates else None, rows=src[s]),
                 sels) for ref, (s, zf, ex), sels in zip(refs, parts, kinds)]
    out = []
    for res, sels in fits:
        ends = np.cumsum([s.size for _, s in sels])
        out += [res.rows(slice(e - s.size, e)) for (_, s), e in zip(sels, ends)]
    return out


def _window_rows(models, sels, loglam, z):
    """(rows, redshift each pair is fitted at, template values per pair — an empty
    (pairs, 0, 0) array for a model without templates, so that the kinds of a stack
    concatenate alike) of one :func:`.models.window_groups` group's windows ``sels``, pairs
    in order."""
    ref = models[sels[0][0]][1]
    w_ref = ref.components[0].wave
    s_all = np.concatenate([s for _, s in sels])
    z_fit = np.concatenate([(1 + z[s]) * (models[i][1].components[0].wave / w_ref) - 1
                            for i, s in sels])
    extra = (np.concatenate([template_columns(models[i][1], loglam, z[s]) for i, s in sels])
             if ref.templates else np.zeros((s_all.size, 0, 0)))
    return s_all, z_fit, extra


def _put_window(out, wt, col, model, index, res, rows, z, si):
    """One quasar window's columns (its broad line, the narrow lines inside it) from its
    fit ``res`` of the spectra ``rows`` (redshifts ``z``, instrumental σ rows ``si``)."""
    a0, a1 = res.amp[:, 0], res.amp[:, 1]
    tot = a0 + a1
    var = res.cov_amp[:, 0, 0] + res.cov_amp[:, 1, 1] + 2 * res.cov_amp[:, 0, 1]
    err = np.sqrt(np.clip(var, 0, None))
    s_core = res.sigma[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(tot != 0, np.clip(a1 / tot, 0, 1), 0.0)
    moment = s_core * np.sqrt((1 - frac) + frac * WING_SCALE ** 2)
    m_err = res.sigma_err[:, 0] * moment / np.maximum(s_core, 1e-9)
    ok = res.covered[:, 0] & res.covered[:, 1]
    local = np.arange(rows.size)
    white = (wt, _ratio(res.amp_err_white[:, 0], res.amp_err[:, 0]),
             _ratio(res.sigma_err_white[:, 0], res.sigma_err[:, 0]),
             _continuum_at(si, local, res.centre[:, 0]))
    _put(out, QSO_BROAD_NAMES[col], rows, tot, err, res.back_at[:, 0], moment, m_err,
         res.velocity[:, 0], z, ok, white)
    comp = {c.key: j for j, c in enumerate(model.components)}
    for name, (a, ratio, g) in index.items():
        if name not in _NARROW_NAMES:
            continue
        j = comp[name]
        _put(out, name, rows, ratio * res.amp[:, a], ratio * res.amp_err[:, a],
             res.back_at[:, j], res.sigma[:, g], res.sigma_err[:, g],
             res.velocity[:, g], z, res.covered[:, a],
             (wt, _ratio(res.amp_err_white[:, a], res.amp_err[:, a]),
              _ratio(res.sigma_err_white[:, g], res.sigma_err[:, g]),
              _continuum_at(si, local, res.centre[:, j])))


def _inst_rows(sig, n: int, p: int) -> np.ndarray:
    """Instrumental σ as an (N, P) array (broadcast views; no copy)."""
    sig = np.asarray(sig, float)
    if sig.ndim == 0:
        return np.broadcast_to(sig, (n, p))
    if sig.ndim == 1 and sig.size == n and n != p:
        return np.broadcast_to(sig[:, None], (n, p))
    return np.broadcast_to(sig, (n, p))


def _sub_rows(sig: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of an (N, P) σ array from :func:`_inst_rows`, still a broadcast view
    where it is one (indexing one materialised (len(rows), P) float64 copies, ~6 MB a
    quasar window of a batch)."""
    k, p = len(rows), sig.shape[1]
    if sig.strides[0] == 0:                       # one curve for every spectrum
        return np.broadcast_to(sig[0], (k, p))    # (``rows`` may repeat: stacked windows)
    if sig.strides[1] == 0:                       # one value per spectrum
        return np.broadcast_to(sig[rows, :1], (k, p))
    return sig[rows]


def measure_lines(loglam, flux, ivar, z, spectype, continuum=None, sigma_inst=None,
                  noise_corr: float = SDSS_NOISE_CORR, return_fits: bool = False,
                  white: bool = False, feii: bool = False):
    """Line measurements (a Table, one row per spectrum) at redshifts ``z``.

    ``spectype``: GALAXY rows get the narrow-line fit, QSO rows the broad-line windows (with
    the narrow lines inside them); other rows stay NaN.  ``continuum`` (N, P): an
    emission-line-free continuum model for the galaxies (e.g. the verification stage's best
    template fit); without one the BC03 stellar continuum of :mod:`.continuum` is fitted.
    Quasars always use local linear backgrounds (a quasar template carries the broad lines).
    ``sigma_inst``: instrumental σ in km/s — scalar, (N,), (P,) or (N, P); default SDSS's
    measured LSF curve (:func:`sdss_sigma_inst`, 48–86 km/s).  ``noise_corr``: lag-1
    correlation of neighbouring pixels' noise, which ivar does not carry; default SDSS's
    0.28 (measured on real SDSS coadds, see ``simulate/instrument.py``); 0 for white noise.
    ``white``: also return the rules' table: the *_IVAR columns made as the SDSS
    pipeline's errors are (ivar alone; a galaxy's window backgrounds held fixed, as SDSS
    fits no local background under them) and *_SIGMA_INST, the instrumental σ at each line.
    ``feii``: fit an Fe II pseudo-continuum under the quasar lines (see
    :data:`~specsift.lines.models.FEII_SIGMA_KMS`; off by default).
    """
    out, wt, fits = line_columns(loglam, flux, ivar, z, spectype, continuum, sigma_inst,
                                 noise_corr, feii)
    res = (line_table(out),) + ((Table(wt, copy=False),) if white else ()) + \
        ((fits,) if return_fits else ())
    return res[0] if len(res) == 1 else res


@lru_cache(maxsize=1)
def _units() -> dict[str, u.UnitBase]:
    """Every line column's unit, parsed once (parsing ~170 unit strings a batch cost more
    than building the table); each of the seven distinct strings parsed once, not once per
    line (~15 ms of a fresh process's first batch)."""
    parsed = {col: u.Unit(unit) for col, unit in LINE_COLUMNS.items()}
    return {f"{name}_{col}": parsed[col] for name in line_names() for col in LINE_COLUMNS}


def line_table(cols: dict[str, np.ndarray]) -> Table:
    """The line columns of :func:`line_columns` as a Table with their units (no copies)."""
    units = _units()
    return Table([Column(v, name=k, unit=units[k], copy=False) for k, v in cols.items()],
                 copy=False)


def add_line_columns(table: Table, cols: dict[str, np.ndarray]) -> None:
    """Append the line columns of :func:`line_columns` to ``table`` with their units, in
    place and without copies: the same columns as ``table.add_columns(line_table(cols)
    .columns.values())``, put by :func:`specsift.catalog.put_columns` — ``add_column`` made a
    second Column of each (and ~8 attribute copies through ``Column.__setattr__``), set the
    unit afterwards, and on a one-row table broadcast and copied every column: 16 ms of a
    one-spectrum batch for the 119 columns, 4 ms now; 5 → 4 ms for 400 rows."""
    put_columns(table, cols, units=_units())


def line_columns(loglam, flux, ivar, z, spectype, continuum=None, sigma_inst=None,
                 noise_corr: float = SDSS_NOISE_CORR, feii: bool = False):
    """:func:`measure_lines` as plain arrays: (columns, white-noise *_IVAR columns, fits),
    for callers that add them to a catalog themselves (no intermediate Tables).  ``fits``:
    per SPECTYPE the rows and fit results; for galaxies also the continuum subtracted,
    which — when it is our own BC03 fit — is filled in the line windows only (0 elsewhere)."""
    loglam = np.asarray(loglam, float)
    flux = np.asarray(flux, np.float32)
    ivar = np.asarray(ivar, np.float32)
    n = flux.shape[0]
    z = np.broadcast_to(np.asarray(z, float), (n,)).copy()
    spectype = np.char.strip(np.asarray(spectype).astype(str))
    sig = _inst_rows(sdss_sigma_inst(loglam) if sigma_inst is None else sigma_inst, n,
                     loglam.size)
    out = _empty(n)
    wt = {k: v.copy() for k, v in out.items() if k.endswith("_IVAR")}
    # the instrumental σ at each line (km/s): SDSS's width test is on the total width
    wt.update({f"{name}_SIGMA_INST": np.full(n, np.nan, np.float32) for name in line_names()})
    fits = {}
    ok_z = np.isfinite(z) & (z > -0.01)
    gal = np.nonzero((spectype == "GALAXY") & ok_z)[0]
    qso = np.nonzero((spectype == "QSO") & ok_z)[0]
    if gal.size:
        cont_err = None
        # the galaxies' rows gathered once (each (N, P) gather is a copy: five of them
        # were ~5 ms a batch)
        flux_g, ivar_g = flux[gal], ivar[gal]
        if continuum is not None:
            cont = np.asarray(continuum, float)[gal]
        else:
            # our own continuum fit, evaluated in the line windows only (the rest of
            # ``cont`` stays 0); its uncertainty goes into the line errors
            idx = fit_pixels(galaxy_model()[0], loglam, z[gal])
            at, design, ccov = stellar_continuum(loglam, flux_g, ivar_g, z[gal], idx,
                                                 with_cov=True, noise_corr=noise_corr)
            cont = np.zeros(flux_g.shape, np.float32)
            inside = (idx >= 0) & (idx < loglam.size)
            rows = np.broadcast_to(np.arange(gal.size)[:, None], idx.shape)
            cont[rows[inside], idx[inside]] = at[inside]
            cont_err = (design, ccov)
        fits["GALAXY"] = (gal, _galaxies(out, wt, loglam, flux_g, ivar_g, z[gal], cont, gal,
                                         _sub_rows(sig, gal), noise_corr, cont_err), cont)
    if qso.size:
        fits["QSO"] = (qso, _quasars(out, wt, loglam, flux, ivar, z[qso], qso,
                                     _sub_rows(sig, qso), noise_corr, feii=feii, src=qso))
    return out, wt, fits
