"""The survey-noise STAR check's comparison itself (:func:`specsift.verify.starcheck.
noise_star_beats_winner`): data-free on a synthetic spectrum, and through the stage's
template-error path on a real LAMOST star (its winner scored with the decision's fit, not the
template-error refit's coefficients)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_proposer_starcheck import STARS, _read, _verify, needs_shared

from specsift.spectra import DEFAULT_GRID
from specsift.verify.stage import VerifyOptions
from specsift.verify.starcheck import noise_star_beats_winner, whole_pixel_models
from specsift.verify.templates import bases_for
from specsift.verify.windows import NCOEFF_MAX

LOGLAM = DEFAULT_GRID.loglam


def _synthetic():
    """Two fits drawn by the check's own models (STAR at shift 0, GALAXY at z ≈ 0.5, random
    coefficients), Δ = winner − STAR per pixel, and data between them: on the pixels W that
    hold half of ΣΔ² (the winner's "lines") the data is the winner, elsewhere 45 % of the
    way from STAR to it.  Per pixel the gap (> 0: STAR better) is −wΔ² on W, +0.1·wΔ²
    elsewhere: the winner wins overall, STAR wherever W does not count."""
    rng = np.random.default_rng(1)
    step = bases_for(LOGLAM)["STAR"].step
    coef = rng.normal(size=(2, NCOEFF_MAX))
    ishift = np.array([0, int(round(np.log10(1.5) / step))])
    m_s, m_w = whole_pixel_models(LOGLAM, ["STAR", "GALAXY"], ishift, coef)
    d2 = (m_w - m_s) ** 2
    order = np.argsort(-d2)
    W = np.zeros(d2.size, bool)
    W[order[:np.searchsorted(np.cumsum(d2[order]), 0.5 * d2.sum()) + 1]] = True
    flux = m_s + np.where(W, 1.0, 0.45) * (m_w - m_s)
    ivar = np.full(d2.size, 1e5 / d2.sum())        # |Δχ²| ≈ 10⁴ against the margin 50
    batch = SimpleNamespace(loglam=LOGLAM, flux=flux[None], ivar=ivar[None])
    args = (batch, np.ones((1, d2.size), bool), np.zeros(1), [0], ["GALAXY"], ishift[1:],
            coef[1:], ishift[:1], coef[:1])
    return args, W, (flux, ivar, m_s, m_w)


def test_alpha_zero_is_the_plain_delta_chi2():
    args, W, (f, ivar, m_s, m_w) = _synthetic()
    won, d = noise_star_beats_winner(*args, np.zeros(W.size), 50.0)
    plain = np.sum(ivar * ((f - m_w) ** 2 - (f - m_s) ** 2))
    assert d[0] == pytest.approx(plain, rel=1e-9) and plain < -1e3 and not won[0]


def test_masked_pixels_do_not_count():
    args, W, _ = _synthetic()
    args[1][0, W] = False                      # the winner's pixels masked: STAR
    won, d = noise_star_beats_winner(*args, np.zeros(W.size), 50.0)
    assert won[0] and d[0] > 1e3


def test_a_large_alpha_on_the_winners_lines_flips_the_verdict():
    args, W, _ = _synthetic()
    won, d = noise_star_beats_winner(*args, np.where(W, 1e4, 0.0), 50.0)
    assert won[0] and d[0] > 1e3
    won, d = noise_star_beats_winner(*args, np.where(W, 0.0, 1e4), 50.0)   # α elsewhere
    assert not won[0] and d[0] < -1e3


@needs_shared
def test_refitted_qso_winner_is_scored_with_the_decisions_fit():
    """A LAMOST star whose spurious QSO winner (z 0.384) is template-error refitted: the
    survey-noise Δχ² (seen through margin −∞, DELTACHI2) is the same with the refit on or
    off — the check scores the decision's shift and coefficients; with the refit's it moved
    from ≈ 1.6·10⁴ to ≈ 4.7·10⁵ toward STAR."""
    path, wtype, wz = STARS[1]
    batch = _read(path)
    look = dict(noise_check_margin=-np.inf)
    keep = _verify(batch, [(wtype, wz)], VerifyOptions(noise_check_margin=None))
    plain = _verify(batch, [(wtype, wz)],
                    VerifyOptions(noise_check_margin=None, qso_template_error=None))
    assert keep["SPECTYPE"] == plain["SPECTYPE"] == "QSO"
    assert keep["CHI2"] != plain["CHI2"]                 # the refit did run on this row
    on = _verify(batch, [(wtype, wz)], VerifyOptions(**look))
    off = _verify(batch, [(wtype, wz)], VerifyOptions(**look, qso_template_error=None))
    assert on["SPECTYPE"] == off["SPECTYPE"] == "STAR"
    assert on["DELTACHI2"] == pytest.approx(off["DELTACHI2"], rel=1e-6)
    assert 5e3 < on["DELTACHI2"] < 1e5


def test_alpha_holds_its_edge_values_where_no_star_has_data():
    """Pixels no training star covers take the nearest covered α (0 there would trust the
    ends of the arms, where LAMOST stars are missed most, more than anywhere)."""
    from specsift.verify.survey_noise import var_boost_from_r2
    r2 = np.full((5, 6), np.nan)
    r2[:, 2:4] = [[0.455 * 3, 0.455 * 9]] * 5             # α 2 and 8 where covered
    a = var_boost_from_r2(r2)
    assert a == pytest.approx([2, 2, 2, 8, 8, 8], rel=1e-5)


def test_alpha_file_records_its_provenance_and_a_different_fit_warns_once():
    import warnings

    from specsift.verify import survey_noise as SN
    from specsift.verify.stage import SKY_HALFWIDTH, SKY_LINES
    lo, step, alpha, digest = SN._load("lamost_resid_var.npz")
    assert digest == SN.star_fit_digest(SKY_LINES, SKY_HALFWIDTH)     # as shipped: silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SN.survey_var_boost("LAMOST", LOGLAM, digest)
    other = SN.star_fit_digest(SKY_LINES, SKY_HALFWIDTH + 1.0)
    assert other != digest
    SN._warn_digest.cache_clear()
    with pytest.warns(RuntimeWarning, match="another STAR fit"):
        SN.survey_var_boost("LAMOST", LOGLAM, other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # once only
        SN.survey_var_boost("LAMOST", LOGLAM, other)
    from importlib import resources
    with (resources.files("specsift") / "data" / "templates" / "lamost_resid_var.npz").open(
            "rb") as fh, np.load(fh) as f:
        assert int(f["nstars"]) == len(f["files"]) == 1050 and float(f["sn_min"]) == 10.0


def test_whole_pixel_models_are_model_flux_at_the_whole_pixel():
    """The template slices equal model_flux's interpolation where Z is a whole pixel (any
    type, broadened or not), and catalog_models picks, of the two pixels a Z half-way
    between sits at, the one the coefficients fit."""
    from astropy.table import Table

    from specsift.verify.model_flux import model_flux
    from specsift.verify.starcheck import catalog_models
    rng = np.random.default_rng(2)
    step = bases_for(LOGLAM)["STAR"].step
    types = np.array(["STAR", "GALAXY", "QSO"])
    ishift = np.array([3, int(np.log10(1.3) / step), int(np.log10(2.5) / step)])
    coef = rng.normal(size=(3, NCOEFF_MAX))
    sig = np.array([0.0, 1.2, 2.0])
    t = Table({"Z": 10.0 ** (ishift * step) - 1, "SPECTYPE": types, "COEFF": coef,
               "CHI2": np.zeros(3)})
    a = whole_pixel_models(LOGLAM, types, ishift, coef, sig)
    b = model_flux(LOGLAM, t, sig)
    assert np.allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    t["Z"] = 10.0 ** ((ishift + 0.5) * step) - 1           # half-way: data fitted at +1
    up = whole_pixel_models(LOGLAM, types, ishift + 1, coef, sig)
    got = catalog_models(LOGLAM, t, up, np.ones_like(up), sig)
    assert np.allclose(got, up)
