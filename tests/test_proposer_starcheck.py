"""The verification's survey-noise STAR check (issue 18): a real LAMOST star stays STAR
whichever spurious galaxy/quasar candidate a proposer hands the stage, a real LAMOST galaxy
stays GALAXY, and rows of surveys without a measured residual variance are not looked at.

The stars and galaxies are of the training split of ``benchmarks/_lamost_real.heldout_mask``;
the spurious candidates are the whole-z scan's (``benchmarks/verify_proposers.py``): each puts
a galaxy's [O II] or a quasar's Hα on the last ≈ 20 Å of LAMOST's red arm (≈ 9085 Å), where
the 3-term STAR fit misses most LAMOST stars by several σ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from specsift.catalog import make_catalog
from specsift.spectra import DEFAULT_GRID
from specsift.verify import Candidates, verify_catalog
from specsift.verify.stage import VerifyOptions
from specsift.verify.survey_noise import survey_var_boost, var_boost_from_r2

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lamost-real"
#: (file, spurious winner, its z): a DR10 F9 star (S/N_g 17) fitted as a galaxy at z 1.438
#: better by 6683 in 3-term χ² and by 572 in the line-driven comparison; a DR10 star fitted
#: as a quasar at z 0.384 better by 291 765 and 3580 — both STAR by hundreds or more once
#: the pixels are weighed with LAMOST's residual variance
STARS = [("dr10-afg/spectra/spec-59522-EG224840N075042B03_sp03-212.fits.gz", "GALAXY", 1.4384),
         ("dr10-afg/spectra/spec-59607-EG040217S013757B02_sp06-230.fits.gz", "QSO", 0.3838)]
#: real LAMOST DR7 galaxies (LAMOST z 0.0867 and 0.1523) that gasnet's candidates verify GALAXY
GALAXIES = [("dr7-sbc/spectra/spec-58575-HD103621N361936B01_sp03-088.fits", 0.0867),
            ("dr7-sbc/spectra/spec-58575-HD103621N361936B01_sp03-170.fits", 0.1523)]
needs_shared = pytest.mark.skipif(not (REAL / STARS[0][0]).is_file(),
                                  reason="needs ../shared/data/lamost-real")
MARGIN = VerifyOptions().noise_check_margin


def _table(spectype: str, z: float) -> Table:
    probs = {"GALAXY": [[0.9, 0.05, 0.05]], "QSO": [[0.05, 0.9, 0.05]],
             "STAR": [[0.05, 0.05, 0.9]]}[spectype]
    return make_catalog(Table({"TARGETID": [0]}), "three", np.array(probs), np.array([z]),
                        np.array([1e-4]), "test")


def _verify(batch, cands, opt=None):
    """Proposed as a star at z 0 plus ``cands`` ((type, z), …): the verified row."""
    t = [["STAR"] + [c[0] for c in cands]]
    z = [[0.0] + [c[1] for c in cands]]
    return verify_catalog(batch, _table("STAR", 0.0), Candidates(z, t), opt)[0]


def _read(path):
    from specsift.io import read
    return read(REAL / path)


def test_var_boost_formula_and_shipped_lamost_file():
    """α = median r²/0.455 − 1 (0 for unit-variance residuals, 3 for variance 4); the shipped
    LAMOST α is large at the red end of the red arm and modest in the middle; a survey
    without a file has none."""
    rng = np.random.default_rng(0)
    r = rng.normal(size=(4000, 2)) * np.array([1.0, 2.0])
    a = var_boost_from_r2(r ** 2)
    assert abs(a[0]) < 0.1 and abs(a[1] - 3.0) < 0.3
    assert var_boost_from_r2(np.full((3, 1), np.nan))[0] == 0.0
    boost = survey_var_boost("lamost", DEFAULT_GRID.loglam)
    wave = DEFAULT_GRID.wave
    assert boost.shape == wave.shape and (boost >= 0).all()
    assert np.median(boost[(wave > 9075) & (wave < 9100)]) > 20 * np.median(
        boost[(wave > 6000) & (wave < 8000)])
    assert survey_var_boost("SDSS", DEFAULT_GRID.loglam) is None


@needs_shared
@pytest.mark.parametrize("path, wtype, wz", STARS)
def test_real_star_with_a_spurious_candidate_stays_star(path, wtype, wz):
    """The spurious candidate wins the 3-term decision and the line-driven check; the
    survey-noise check gives the star back, with the same Z, SUBTYPE and CHI2 as from a STAR
    proposal alone and DELTACHI2 its Δχ² (> the margin)."""
    batch = _read(path)
    assert str(batch.meta["SURVEY"][0]).upper() == "LAMOST"
    off = _verify(batch, [(wtype, wz)], VerifyOptions(noise_check_margin=None))
    assert off["SPECTYPE"] == wtype                    # what the check is there for
    on = _verify(batch, [(wtype, wz)])
    alone = _verify(batch, [])
    assert on["SPECTYPE"] == "STAR" and alone["SPECTYPE"] == "STAR"
    for col in ("Z", "SUBTYPE", "CHI2"):
        assert on[col] == alone[col], col
    assert on["DELTACHI2"] > MARGIN


@needs_shared
def test_other_surveys_are_not_checked():
    """The same star read as if it were an SDSS spectrum keeps the spurious winner: SDSS has
    no measured residual variance, so its answers cannot change."""
    path, wtype, wz = STARS[0]
    batch = _read(path)
    batch.meta["SURVEY"] = ["SDSS"]
    assert _verify(batch, [(wtype, wz)])["SPECTYPE"] == wtype


@needs_shared
@pytest.mark.parametrize("path, z", GALAXIES)
def test_real_lamost_galaxy_stays_galaxy(path, z):
    """The check looks at the galaxy (with margin −∞ it would turn it into a star) and leaves
    it a galaxy at its own z: its lines are where LAMOST's ivar holds."""
    batch = _read(path)
    cands = [("GALAXY", z)]
    on = _verify(batch, cands)
    assert on["SPECTYPE"] == "GALAXY" and abs(on["Z"] - z) / (1 + z) < 0.003
    look = _verify(batch, cands, VerifyOptions(noise_check_margin=-np.inf))
    assert look["SPECTYPE"] == "STAR"                 # the check did run on this row
    assert look["DELTACHI2"] < -MARGIN                # and the galaxy wins it by far
