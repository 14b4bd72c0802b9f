"""Templates at the spectrum's resolution (verify/resolution.py) and the agreement table
against a reference Redrock catalog (metrics.redrock_agreement)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from test_verify import _net_table

from specsift.constants import C_KMS
from specsift.metrics import redrock_agreement
from specsift.spectra import DEFAULT_GRID, SpectraBatch
from specsift.verify import Candidates, model_flux, verify_catalog
from specsift.verify.resolution import SIGMA_STEP, convolved, extra_sigma_pix, template_sigma_kms
from specsift.verify.templates import bases_for

PIX_KMS = C_KMS * np.log(10) * DEFAULT_GRID.step


def _second_moment(row):
    x = np.arange(row.size)
    w = row / row.sum()
    m = (w * x).sum()
    return np.sqrt((w * (x - m) ** 2).sum())


def test_convolved_template_has_the_requested_width_and_keeps_its_coverage():
    """A one-pixel line in a template gets σ = the requested pixels (Gaussians add in
    quadrature), its flux is kept, and pixels where the template had no data stay zero."""
    b = bases_for(DEFAULT_GRID.loglam)["GALAXY"]
    from dataclasses import replace
    v = np.zeros((1, 400), np.float32)
    v[0, 100:300] = 1.0
    v[0, 200] = 50.0
    line = replace(b, vectors=v)
    c = convolved(line, 2.0)
    assert c is convolved(line, 2.0)                      # built once, cached
    assert convolved(line, 0.0) is line
    prof = c.vectors[0, 150:250] - 1.0
    assert abs(_second_moment(prof) - 2.0) < 0.05
    assert abs(prof.sum() - 49.0) < 0.5
    assert np.all(c.vectors[0, :100] == 0) and np.all(c.vectors[0, 300:] == 0)


def _batch(n, survey, resolution=None):
    flux = np.ones((n, DEFAULT_GRID.size), np.float32)
    b = SpectraBatch(DEFAULT_GRID.loglam, flux, flux, meta=Table({"SURVEY": [survey] * n}))
    b.resolution = resolution
    return b


def test_extra_sigma_from_resolution_survey_or_none():
    """SDSS (the templates' own resolution): 0; DESI's sharper LSF: 0 (nothing can sharpen
    a template); LAMOST's nominal R ≈ 1800: half a pixel; a file's own σ of twice SDSS's:
    √3 × SDSS's, rounded to SIGMA_STEP."""
    assert np.all(extra_sigma_pix(_batch(2, "SDSS")) == 0)
    assert np.all(extra_sigma_pix(_batch(2, "DESI")) == 0)
    lam = extra_sigma_pix(_batch(2, "LAMOST"))
    assert np.all((lam > 0.2) & (lam < 1.0))
    tk = template_sigma_kms(DEFAULT_GRID.loglam)
    res = np.tile(2 * tk / C_KMS * DEFAULT_GRID.wave, (2, 1)).astype(np.float32)   # σ in Å
    got = extra_sigma_pix(_batch(2, "DESI", res))
    want = np.sqrt(3) * np.median(tk) / PIX_KMS
    assert np.all(np.abs(got - want) <= SIGMA_STEP / 2 + 0.1), (got, want)
    assert np.all(np.abs(got / SIGMA_STEP - np.rint(got / SIGMA_STEP)) < 1e-9)


def test_fit_uses_the_spectrum_resolution():
    """A noiseless galaxy broadened by the spectrum's LSF (2 pixels beyond the templates')
    is fitted far better with the resolution the reader gives than without it, at the same
    z, and model_flux rebuilds it at that resolution."""
    b = bases_for(DEFAULT_GRID.loglam)["GALAXY"]
    s = 900
    broad = convolved(b, 2.0)
    p = np.arange(DEFAULT_GRID.size)
    flux = np.array([1.0, 0.4, -0.3, 0.2]) @ broad.vectors[:, p + b.offset - s]
    flux = (10 * flux / np.abs(flux).mean()).astype(np.float32)
    ivar = np.full_like(flux, 100.0)
    tk = template_sigma_kms(DEFAULT_GRID.loglam)
    want_kms = np.sqrt(tk ** 2 + (2.0 * PIX_KMS) ** 2)
    res = (want_kms / C_KMS * DEFAULT_GRID.wave).astype(np.float32)[None]
    z = b.z_of(np.array([s + 2.0]))
    out = {}
    for name, r in (("with", res), ("without", None)):
        batch = SpectraBatch(DEFAULT_GRID.loglam, flux[None], ivar[None],
                             meta=Table({"SURVEY": ["DESI"]}))
        batch.resolution = r
        out[name] = verify_catalog(batch, _net_table(1, z, ["GALAXY"]),
                                   Candidates(z[:, None], [["GALAXY"]]))
    c_with, c_without = float(out["with"]["CHI2"][0]), float(out["without"]["CHI2"][0])
    assert c_with < 0.1 * c_without, (c_with, c_without)
    assert abs(float(b.shift_of(out["with"]["Z"][0])) - s) < 0.2
    m = model_flux(DEFAULT_GRID.loglam, out["with"], sigma_pix=[2.0])
    assert np.sqrt(np.mean((m[0] - flux) ** 2)) < 0.05 * np.std(flux)


def test_redrock_agreement_counts_confident_rows_only():
    """Scored where Redrock is confident (ZWARN 0, DELTACHI2 > 25): same SPECTYPE and
    |Δz|/(1+z) < 1000 km/s."""
    ref_t = ["GALAXY", "QSO", "STAR", "QSO", "GALAXY"]
    ref_z = [0.5, 2.0, 0.0, 1.0, 0.3]
    zwarn = [0, 0, 0, 4, 0]
    dchi2 = [100.0, 30.0, 500.0, 100.0, 10.0]
    st = ["GALAXY", "QSO", "GALAXY", "QSO", "STAR"]
    z = [0.5 + 0.002 * 1.5, 2.0 + 0.004 * 3, 0.0, 1.0, 0.0]
    r = redrock_agreement(st, z, ref_t, ref_z, zwarn, dchi2)
    assert r["n"] == 3                                    # rows 0, 1, 2
    assert list(r["confident"]) == [True, True, True, False, False]
    assert list(r["agrees"]) == [True, False, False, False, False]   # row 1: 1200 km/s off
    assert abs(r["agree"] - 1 / 3) < 1e-12
    assert np.isnan(redrock_agreement(st, z, ref_t, ref_z, [1] * 5, dchi2)["agree"])
