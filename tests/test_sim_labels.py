"""The simulator's noise description and its rule-made subclass labels (simulate/labels.py)."""

import numpy as np
import pytest

from specsift.simulate import apply_instrument, simulate_batch
from specsift.simulate.instrument import sky_on_grid
from specsift.simulate.instruments import get as get_instrument
from specsift.simulate.labels import galaxy_subclass, matched_flux, quasar_subclass_fit
from specsift.simulate.quasars import make_quasars
from specsift.spectra import DEFAULT_GRID as GRID


def test_ivar_describes_the_sky_residuals_it_adds():
    """Noise / σ(ivar) has unit scatter at the strongest sky lines too (it was ~2× there
    when the sky-subtraction residuals were left out of ivar)."""
    n = 400
    flux = np.full((n, GRID.size), 5.0, np.float32)
    out, ivar, _, info = apply_instrument(flux, GRID, 10.0, np.random.default_rng(0),
                                          bad_pixel_rate=0.0, noise_corr=0.0,
                                          sky_residual=0.05)
    sky, _ = sky_on_grid(GRID)
    top = np.argsort(sky)[-40:]                       # the 40 brightest sky pixels
    pull = (out - info["noiseless"])[:, top] * np.sqrt(ivar[:, top])
    assert 0.9 < np.std(pull) < 1.1
    quiet = np.argsort(sky)[: GRID.size // 2]
    assert 0.95 < np.std((out - info["noiseless"])[:, quiet] * np.sqrt(ivar[:, quiet])) < 1.05


def _line_rows(n, f_true, noise_sigma, seed=0):
    rng = np.random.default_rng(seed)
    ivar = np.full((n, GRID.size), 1.0 / noise_sigma ** 2)
    noise = rng.normal(0, noise_sigma, (n, GRID.size))
    centre = np.full(n, 6564.61 * 1.1)
    return matched_flux(noise, ivar, GRID, centre, [(1.0, np.full(n, 80.0))],
                        np.full(n, f_true), np.full(GRID.size, 65.0))


def test_matched_flux_scatters_by_its_error():
    est, err = _line_rows(2000, 50.0, 1.0)
    assert np.all(err > 0)
    assert abs(np.std((est - 50.0) / err) - 1) < 0.05
    assert abs(np.mean(est) - 50.0) < 3 * np.std(est) / np.sqrt(2000)
    est0, _ = _line_rows(5, 50.0, 1.0, seed=1)
    ivar0 = np.zeros((2, GRID.size))                    # no good pixel: not measurable
    e2, r2 = matched_flux(np.zeros((2, GRID.size)), ivar0, GRID, np.full(2, 7000.0),
                          [(1.0, np.full(2, 80.0))], np.full(2, 5.0), np.full(GRID.size, 65.0))
    assert np.all(r2 == 0) and np.all(np.isnan(e2))


def _gal(snr, oiii=1.0, hb=1.0, ha=3.0, nii=0.5, ew=20.0, z=0.1):
    lines = {k: (np.array([v]), np.array([v / snr]), np.array([v]))
             for k, v in (("HBETA", hb), ("OIII_5007", oiii), ("HALPHA", ha), ("NII_6584", nii))}
    return galaxy_subclass(lines, np.array([z]), np.array([ew]))[0][0]


@pytest.mark.parametrize("snr,label", [(2.9, ""), (3.1, "STARFORMING")])
def test_galaxy_label_needs_every_bpt_line_at_3_sigma(snr, label):
    assert _gal(snr) == label


def test_galaxy_label_agn_line_and_starburst_ew():
    # SDSS's line: log(O3/Hβ) > 0.7 − 1.2 (log(N2/Hα) + 0.4); at log N2/Hα = −0.4: 0.7
    assert _gal(50, oiii=10 ** 0.69, ha=10 ** 0.4, nii=1.0) == "STARFORMING"
    assert _gal(50, oiii=10 ** 0.71, ha=10 ** 0.4, nii=1.0) == "AGN"
    # STARBURST: observed-frame EW(Hα) > 50 Å (rest 46 Å at z = 0.1 is 50.6 observed)
    assert _gal(50, ew=46.0, z=0.1) == "STARBURST"
    assert _gal(50, ew=44.0, z=0.1) == "STARFORMING"


def test_quasar_label_is_the_line_fits_broadline():
    """Quasar subclasses come from the package's own line fit and SDSS's BROADLINE rule
    (the 10σ threshold itself is tested in test_lines): the same quasars are BROADLINE at
    S/N 50 and plain QSO at S/N 0.3, decided in both cases (their lines are on the grid)."""
    rng = np.random.default_rng(0)
    n = 8
    z = rng.uniform(0.3, 0.6, n)
    flux, _ = make_quasars(rng, z, GRID, weak=np.zeros(n, bool), bal_fraction=0.0)
    flux = flux * (20.0 / np.median(flux, axis=1))[:, None]
    s_inst = get_instrument("sdss").resolution().sigma_kms(GRID.loglam)
    subs = {}
    for snr in (50.0, 0.3):
        obs, ivar, _, _ = apply_instrument(flux, GRID, np.full(n, snr), np.random.default_rng(1),
                                           bad_pixel_rate=0.0)
        sub, decided = quasar_subclass_fit(obs, ivar, GRID, z, s_inst)
        assert decided.all()
        subs[snr] = np.char.find(sub, "BROADLINE") >= 0
    assert subs[50.0].all() and not subs[0.3].any()


def test_faint_galaxies_lose_their_subclass_as_in_sdss():
    """At S/N ~1.5 most galaxies' BPT lines are below 3σ, so SDSS (and now the simulator)
    calls them plain GALAXY; at S/N 40 the drawn subclass is measured and kept."""
    share = {}
    for snr in ((1, 2), (40, 50)):
        m = simulate_batch(n=256, class_set="thirteen", seed=5, snr=snr).meta
        lab = np.asarray(m["CLASS_LABEL"]).astype(str)
        gal = np.asarray(m["SPECTYPE"]).astype(str) == "GALAXY"
        share[snr] = np.mean(lab[gal] == "GALAXY")
        back = np.asarray(m["SUBCLASS"]).astype(str)[gal]
        assert np.all((back == "") == (lab[gal] == "GALAXY"))
    assert share[(1, 2)] > share[(40, 50)] + 0.3
