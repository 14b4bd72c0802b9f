"""specutils interop: SpectraBatch ↔ Spectrum, read() and model.predict() on Spectrum objects."""

from __future__ import annotations

import warnings
from importlib import resources

import numpy as np
import pytest
from astropy import units as u
from astropy.nddata import StdDevUncertainty

from specsift import DEFAULT_GRID, SpectraBatch, load_model
from specsift.flags import InputFlag
from specsift.io import read
from specsift.specutils_io import FLUX_UNIT

specutils = pytest.importorskip("specutils")
Spectrum = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
GALAXY = str(resources.files("specsift") / "data" / "demo" / "spec-0266-51602-0013.fits")


def test_batch_to_spectrum_and_back_is_exact():
    batch = read(GALAXY)
    spec = batch.to_specutils()
    assert isinstance(spec, Spectrum) and spec.flux.unit == FLUX_UNIT
    assert spec.spectral_axis.unit == u.AA and spec.flux.shape == (1, batch.npix)
    back = SpectraBatch.from_specutils(spec)
    np.testing.assert_array_equal(back.flux, batch.flux)
    np.testing.assert_allclose(back.ivar, batch.ivar, rtol=1e-6)
    np.testing.assert_array_equal(back.mask, batch.mask)
    assert back.meta["TARGETID"][0] == batch.meta["TARGETID"][0]
    assert back.meta["RA"][0] == batch.meta["RA"][0]


def test_units_converted_jansky_stddev_and_frequency_axis():
    wave = DEFAULT_GRID.wave * u.AA
    f_lam = np.full((2, wave.size), 10.0) * FLUX_UNIT          # flat 10e-17 erg/s/cm²/Å
    sigma = 0.5 * FLUX_UNIT
    eq = u.spectral_density(wave)
    f_nu = f_lam.to(u.mJy, equivalencies=eq)
    s_nu = (np.full((2, wave.size), 1.0) * sigma).to(u.mJy, equivalencies=eq)
    nu = wave.to(u.Hz, equivalencies=u.spectral())[::-1]        # increasing frequency
    spec = Spectrum(flux=f_nu[:, ::-1], spectral_axis=nu,
                    uncertainty=StdDevUncertainty(s_nu.value[:, ::-1]))
    batch = SpectraBatch.from_specutils(spec, grid=None)
    assert len(batch) == 2 and DEFAULT_GRID.matches(batch.loglam)
    np.testing.assert_allclose(batch.flux, 10.0, rtol=1e-5)
    np.testing.assert_allclose(batch.ivar, 4.0, rtol=1e-4)      # 1/0.5²


def test_spectrum_without_uncertainty_gets_estimated_ivar_and_flag():
    rng = np.random.default_rng(1)
    flux = (5 + rng.normal(0, 0.5, DEFAULT_GRID.size)) * FLUX_UNIT
    batch = read(Spectrum(flux=flux, spectral_axis=DEFAULT_GRID.wave * u.AA))
    assert batch.meta["INPUT_FLAGS"][0] & InputFlag.ESTIMATED_IVAR
    assert 2.5 < np.median(batch.ivar[0]) < 6.0                # σ ≈ 0.5 → ivar ≈ 4


def test_read_and_predict_accept_specutils_own_sdss_loader():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = Spectrum.read(GALAXY, format="SDSS-III/IV spec")
    ours, theirs = read(GALAXY), read(spec)
    good = ~ours.mask[0] & ~theirs.mask[0]                     # specutils masks and_mask ≠ 0
    assert good.sum() > 1500
    np.testing.assert_allclose(theirs.flux[0][good], ours.flux[0][good], atol=0.01)
    model = load_model("gasnet")
    a, b = model.predict(spec), model.predict(ours)
    assert a["CLASS_LABEL"][0] == b["CLASS_LABEL"][0] == "GALAXY"
    assert abs(a["Z"][0] - b["Z"][0]) < 1e-3 and abs(a["Z"][0] - 0.1213) < 3e-3
