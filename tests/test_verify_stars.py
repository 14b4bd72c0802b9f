"""Stars in the verification stage: SUBTYPE from the named templates, the line-driven STAR check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from specsift.spectra import DEFAULT_GRID, SpectraBatch
from specsift.verify.fit import prepare
from specsift.verify.starcheck import star_beats_winner
from specsift.verify.subtype import star_subtypes
from specsift.verify.templates import bases_for

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DR10 = SHARED / "lamost-real" / "dr10-afg" / "spectra"
#: real LAMOST DR10 stars (held-out split of gasnet's fine-tuning) that LAMOST types G: with
#: spEigenStar and the SDSS pipeline's 4 polynomial terms both fit an F template best (F9, F2),
#: with the LAMOST library a G one
G_STARS = ("spec-59646-HD101506N312805B03_sp11-216.fits.gz",     # LAMOST G7, S/N_g 62
           "spec-59615-HD090143N355133B01_sp11-208.fits.gz")     # LAMOST G1, S/N_g 64
#: LAMOST DR10 K1 star (S/N_g 10) that speccznet's candidates plus the 3-term fit gave to
#: GALAXY z 0.44 with ZWARN 0 — a wrong class with no warning
K1_STAR = DR10 / "spec-59613-HD031919N390319V02_sp06-025.fits.gz"
needs_shared = pytest.mark.skipif(not DR10.is_dir(), reason="needs ../shared/data/lamost-real")


def _named_star(name: str, shift: float, seed: int = 0, bend: float = 0.3,
                mult: bool = False):
    """A named spEigenStar template at a pixel shift plus (``mult``: times) a smooth
    calibration error bend·(x − x²/2) of its mean, with noise at S/N ≈ 30 per pixel.  The fit
    models an additive error (the SDSS pipeline's); a multiplicative one of 30 % moves a
    type by a step or two (F5 → G2), which the line-driven STAR check does not mind."""
    b = bases_for(DEFAULT_GRID.loglam)["STAR"]
    names = [s.split()[0] for s in b.star_names]
    t = b.star_named[names.index(name)].astype(np.float64)
    p = np.arange(DEFAULT_GRID.size, dtype=float)
    flux = np.interp(p + b.offset - shift, np.arange(t.size), t)
    x = np.linspace(-1, 1, p.size)
    err = bend * (x - x ** 2 / 2)
    flux = 10 * flux / flux[flux > 0].mean()
    flux = flux * (1 + err) if mult else np.where(flux > 0, flux + 10 * err, 0.0)
    ivar = np.where(flux > 0, 1.0 / (flux / 30 + 1e-3) ** 2, 0.0)
    rng = np.random.default_rng(seed)
    flux = flux + rng.normal(0, 1, flux.size) / np.sqrt(np.maximum(ivar, 1e-12)) * (ivar > 0)
    return flux.astype(np.float32), ivar.astype(np.float32), b


def _subtypes(batch, b, rows, shifts, **kw):
    return star_subtypes(batch, b, rows, shifts, prepare(batch.flux, batch.ivar, batch.mask), **kw)


@pytest.mark.parametrize("name", ["A0", "F5", "G2", "K3", "M2"])
def test_named_template_at_known_type_recovered(name):
    """A named template redshifted by 3 pixels (≈ 207 km/s), bent by a flux-calibration
    error and noisy, is named by its own type (an SDSS spectrum: spEigenStar, 4 terms)."""
    flux, ivar, b = _named_star(name, 3.0, seed=len(name))
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux[None], ivar[None])
    batch.meta["SURVEY"] = ["SDSS"]
    assert _subtypes(batch, b, [0], [3.0])[0] == name


def _library_star(name: str, shift: float, seed: int = 0):
    """The shipped LAMOST library's template ``name`` at a pixel shift, plus a smooth additive
    bend and noise at S/N ≈ 30 per pixel."""
    b = bases_for(DEFAULT_GRID.loglam)["STAR"]
    temps, names = b.survey_named["LAMOST"]
    t = temps[list(names).index(name)].astype(np.float64)
    p = np.arange(DEFAULT_GRID.size, dtype=float)
    flux = 10 * np.interp(p + b.offset - shift, np.arange(t.size), t)
    x = np.linspace(-1, 1, p.size)
    flux = np.where(flux > 0, flux + 2 * (x - x ** 2 / 2), 0.0)
    ivar = np.where(flux > 0, 1.0 / (np.abs(flux) / 30 + 1e-3) ** 2, 0.0)
    rng = np.random.default_rng(seed)
    flux = flux + rng.normal(0, 1, flux.size) / np.sqrt(np.maximum(ivar, 1e-12)) * (ivar > 0)
    return flux.astype(np.float32), ivar.astype(np.float32), b


@pytest.mark.parametrize("name", ["A5", "F5", "G5", "K5", "M0"])
def test_lamost_star_named_from_the_library_sdss_star_from_speigenstar(name):
    """The same spectrum (a LAMOST library template, shifted, bent, noisy) is named from the
    LAMOST library when its SURVEY is LAMOST and from spEigenStar when it is SDSS (the
    library's names are relabelled here so that the two sources cannot be confused)."""
    from dataclasses import replace
    flux, ivar, b = _library_star(name, 2.0, seed=len(name))
    temps, names = b.survey_named["LAMOST"]
    lib = replace(b, survey_named={"LAMOST": (temps, tuple(f"LIB_{n}" for n in names))})
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.stack([flux] * 3), np.stack([ivar] * 3))
    batch.meta["SURVEY"] = ["LAMOST", "SDSS", " lamost "]
    got = _subtypes(batch, lib, [0, 1, 2], [2.0] * 3)
    assert got[0] == got[2] == f"LIB_{name}"
    spe = {s.split()[0] for s in b.star_names}
    assert got[1] in spe
    assert _subtypes(batch, lib, [0], [2.0], library=False)[0] in spe
    bare = SpectraBatch(DEFAULT_GRID.loglam, flux[None], ivar[None])      # no SURVEY column
    assert _subtypes(bare, lib, [0], [2.0])[0] in spe


@needs_shared
@pytest.mark.parametrize("fname", G_STARS)
def test_real_lamost_g_stars_get_a_g_subtype(fname):
    """Verified SUBTYPE of two real LAMOST G stars has LAMOST's letter (the reader's SURVEY
    column names them from the LAMOST library; from spEigenStar with 4 terms they come out F)."""
    from specsift import load_model
    from specsift.io import read
    from specsift.verify import verify_batch
    batch = read(DR10 / fname)
    assert str(batch.meta["SURVEY"][0]).strip() == "LAMOST"
    out = verify_batch(load_model("gasnet"), batch)
    assert out["SPECTYPE"][0] == "STAR"
    assert str(out["SUBTYPE"][0])[0] == "G"
    b = bases_for(batch.loglam)["STAR"]
    spe = _subtypes(batch, b, [0], b.shift_of(np.asarray(out["Z"])[:1]), library=False)
    assert spe[0][0] == "F"


@needs_shared
def test_star_check_turns_a_silent_wrong_galaxy_into_a_star():
    """The SDSS-only speccznet + the 3-term decision called this real K1 star GALAXY with
    ZWARN 0; the LAMOST fine-tuned speccznet calls it STAR, but eigen's candidates without
    its LAMOST star templates and its robust star check (issue 18; with either eigen itself
    calls it STAR) + the 3-term decision still call it QSO: the line-driven check makes it STAR near LAMOST's velocity,
    with DELTACHI2 > the margin."""
    from specsift import load_model
    from specsift.io import read
    from specsift.verify import verify_batch
    from specsift.verify.stage import VerifyOptions
    model = load_model("eigen").drop_survey_bases()
    model.robust_star_ = None      # eigen's own robust star check would already make it STAR
    batch = read(K1_STAR)
    off = verify_batch(model, batch, verify_options=VerifyOptions(star_check_margin=None))
    assert off["SPECTYPE"][0] != "STAR"
    on = verify_batch(model, batch)
    assert on["SPECTYPE"][0] == "STAR"
    assert on["DELTACHI2"][0] > VerifyOptions().star_check_margin
    assert abs((on["Z"][0] - float(batch.meta["Z"][0])) * 299792.458) < 50


@needs_shared
def test_star_check_keeps_real_sdss_quasars_and_galaxies():
    """No real SDSS quasar or galaxy at its catalogue z loses to a star in the line-driven
    comparison (the safety side of the check)."""
    from specsift.io import read
    batch = read(SHARED / "sdss" / "sdss-labelled-50.fits")
    cls = np.char.strip(np.asarray(batch.meta["CLASS"], dtype=str))
    rows = np.flatnonzero(cls != "STAR")
    bases = bases_for(batch.loglam)
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    z = np.asarray(batch.meta["Z"], float)[rows]
    won, delta = star_beats_winner(prep, bases, rows, cls[rows], bases["QSO"].shift_of(z), 15,
                                   25.0)
    assert len(rows) >= 25 and not won.any(), delta[won]


def test_star_check_prefers_a_star_with_a_bent_continuum():
    """A K3 template with a strong calibration bend: the line-driven comparison prefers STAR
    near z = 0 to a quasar at z 0.8 by far more than the margin."""
    flux, ivar, _ = _named_star("K3", 1.0, bend=0.8, mult=True)
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux[None], ivar[None])
    bases = bases_for(batch.loglam)
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    won, delta = star_beats_winner(prep, bases, [0], np.array(["QSO"]),
                                   bases["QSO"].shift_of([0.8]), 15, 25.0)
    assert won[0] and delta[0] > 1000


def test_star_subtypes_of_no_rows_is_empty():
    b = bases_for(DEFAULT_GRID.loglam)["STAR"]
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.ones((1, DEFAULT_GRID.size), np.float32),
                         np.ones((1, DEFAULT_GRID.size), np.float32))
    assert _subtypes(batch, b, [], []).shape == (0,)
    assert isinstance(batch.meta, Table)


@needs_shared
def test_star_check_row_is_the_resolution_broadened_star_fit():
    """The row the STAR check turns into a star carries the stage's own STAR-window fit, made
    with the spectrum's resolution (LAMOST: σ > 0 beyond the templates'), not an unbroadened
    refit: its CHI2 and Z are those of the broadened fit and differ from the unbroadened one."""
    from specsift import load_model
    from specsift.io import read
    from specsift.verify import verify_batch
    from specsift.verify.resolution import extra_sigma_pix
    from specsift.verify.stage import VerifyOptions, _fit_rows, sky_mask
    batch = read(K1_STAR)
    on = verify_batch(load_model("eigen"), batch)
    assert on["SPECTYPE"][0] == "STAR"
    opt = VerifyOptions()
    prep = prepare(batch.flux, batch.ivar, batch.mask | sky_mask(batch.loglam))
    sigma = extra_sigma_pix(batch)
    assert sigma[0] > 0
    args = (prep, bases_for(batch.loglam), np.array([0]), np.array(["STAR"]), np.zeros(1),
            np.array([opt.star_halfwidth]), opt)
    broad, sharp = _fit_rows(*args, sigma), _fit_rows(*args)
    assert on["CHI2"][0] == pytest.approx(broad["chi2"][0], rel=1e-9)
    assert abs(broad["chi2"][0] - sharp["chi2"][0]) > 1e-6 * broad["chi2"][0]


def test_letter_vote_follows_the_near_best_templates_not_the_single_best():
    """A row whose single best template is F9 but whose next three (within a few per-pixel
    χ² units) are G gets the best G template; a row whose G templates are far worse keeps
    F9; k = 1 is the plain best template."""
    from specsift.verify.subtype import letter_vote
    names = ("F5", "F9", "G0", "G2", "G3", "K1")
    near = [1300.0, 1000.0, 1010.0, 1020.0, 1030.0, 1500.0]     # 1000 pixels: χ²/N = 1
    far = [1300.0, 1000.0, 2000.0, 2100.0, 2200.0, 2500.0]
    chi2 = np.array([near, far])
    got = letter_vote(chi2, names, [1000, 1000], k=5, tau=100.0)
    assert [names[i] for i in got] == ["G0", "F9"]
    assert (letter_vote(chi2, names, [1000, 1000], k=1, tau=100.0) == 1).all()


def test_letter_vote_scales_delta_chi2_by_the_fit_residual_level():
    """The same Δχ² counts for less where the best fit's χ² per pixel is higher (template
    mismatch, not noise, sets the residuals): the vote flips to the letter with more
    near-best templates only there."""
    from specsift.verify.subtype import letter_vote
    names = ("F9", "G0", "G2")
    d = np.array([0.0, 300.0, 300.0])
    chi2 = np.stack([1000.0 + d, 10000.0 + d])                   # χ²/N = 1 and 10
    got = letter_vote(chi2, names, [1000, 1000], k=3, tau=100.0)
    assert [names[i] for i in got] == ["F9", "G0"]


DR1_F9 = SHARED / "lamost-real" / "dr1-b6212" / "spectra" / "spec-55862-B6212_sp06-003.fits"


@pytest.mark.skipif(not DR1_F9.is_file(), reason="needs ../shared/data/lamost-real")
def test_lamost_v26_star_is_named_by_the_best_template_v29_by_the_vote():
    """A real LAMOST DR1 star (VERSPIPE v2.6.4, LAMOST F9, S/N_g 71): the reader carries
    VERSPIPE, and a v2.6 star keeps the single best library template (F9, LAMOST's answer);
    the same spectrum labelled v2.9.8 gets the vote's letter (its near-best templates are G),
    which is what the vote does for the pipeline versions it was chosen on (the letter model
    off: it replaces both rules where it ships, and keeps this star's F)."""
    from functools import partial

    from specsift.io import read
    from specsift.verify.subtype import star_subtypes
    named = partial(star_subtypes, letter_trees=False)
    batch = read(DR1_F9)
    assert str(batch.meta["VERSPIPE"][0]).startswith("v2.6")
    b = bases_for(batch.loglam)["STAR"]
    shift = b.shift_of(np.asarray(batch.meta["Z"], float))
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    assert named(batch, b, [0], shift, prep)[0] == "F9"
    assert named(batch, b, [0], shift, prep, library_vote=None)[0] == "F9"
    assert star_subtypes(batch, b, [0], shift, prep)[0][0] == "F"       # the letter model
    batch.meta["VERSPIPE"] = ["v2.9.8"]
    assert named(batch, b, [0], shift, prep)[0][0] == "G"
    assert named(batch, b, [0], shift, prep, best_only_versions={})[0][0] == "G"


def test_star_without_pixels_in_the_fit_range_gets_no_subtype():
    """A LAMOST star whose pixels in the library's fit range (rest 3800–6500 Å) are all
    masked: every template ties, so no name is given ('') instead of an arbitrary one; the
    same spectrum unmasked is named.  Bad vote settings are a clear error."""
    from specsift.verify.subtype import letter_vote
    flux, ivar, b = _library_star("G5", 2.0, seed=3)
    wave = 10 ** DEFAULT_GRID.loglam / 1.0000067
    blind = np.where((wave > 3700) & (wave < 6600), 0.0, ivar).astype(np.float32)
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.stack([flux, flux]), np.stack([ivar, blind]))
    batch.meta["SURVEY"] = ["LAMOST", "LAMOST"]
    got = _subtypes(batch, b, [0, 1], [2.0] * 2)
    assert got[0] != "" and got[1] == ""
    with pytest.raises(ValueError, match="k must be"):
        letter_vote(np.ones((1, 3)), ("F5", "G0", "K1"), [10], k=0, tau=100.0)


def test_star_subtypes_at_names_any_rows_of_a_batch_as_each_alone():
    """star_subtypes_at (the unverified models' naming) prepares only the rows it is given: on
    rows [2, 0] of a mixed LAMOST/SDSS batch it gives each row's name from its own survey's
    source, the same as for that spectrum in a batch of its own."""
    from specsift.verify.subtype import star_subtypes_at
    fk, ik, _ = _library_star("K5", 1.0, seed=3)
    fa, ia, _ = _library_star("A5", 1.0, seed=4)
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.stack([fk, fa, fa]), np.stack([ik, ia, ia]))
    batch.meta["SURVEY"] = ["LAMOST", "SDSS", "SDSS"]
    z = 10.0 ** (DEFAULT_GRID.step * np.array([1.0, 1.0])) - 1.0
    got = star_subtypes_at(batch, [2, 0], z)
    alone = [star_subtypes_at(batch[[i]], [0], z[:1])[0] for i in (2, 0)]
    assert list(got) == alone
    assert got[1][0] == "K" and got[0][0] == "A"
    assert got[0] in {s.split()[0] for s in bases_for(DEFAULT_GRID.loglam)["STAR"].star_names}
    assert len(star_subtypes_at(batch, [], [])) == 0


def test_reused_products_memory_leaves_no_trace_between_calls(monkeypatch):
    """The SUBTYPE fit and the STAR check hold their products in reused memory
    (``subtype._RESTRICTED``, ``starcheck._BINNED_SCRATCH``): a call after a larger one
    with other stars (whose products are still in that memory) gives the same names and
    Δχ² as in fresh memory."""
    from specsift.verify import starcheck, subtype
    from specsift.verify.frames import Scratch
    names = ["A0", "F5", "G2", "K3", "M2"]
    stars = [_named_star(n, 2.0 + k, seed=k) for k, n in enumerate(names)]
    b = stars[0][2]
    batch = SpectraBatch(DEFAULT_GRID.loglam, np.stack([s[0] for s in stars]),
                         np.stack([s[1] for s in stars]))
    batch.meta["SURVEY"] = ["SDSS"] * len(names)
    prep = prepare(batch.flux, batch.ivar, batch.mask)
    bases = bases_for(batch.loglam)

    def both(rows):
        rows = np.asarray(rows)
        return (star_subtypes(batch, b, rows, 2.0 + rows, prep).tolist(),
                star_beats_winner(prep, bases, rows, np.full(len(rows), "QSO"),
                                  np.full(len(rows), 900.0), 15, 25.0)[1].tolist())
    both([0, 1, 2, 3, 4])                       # fills the reused memory with all five
    after = both([4, 2])
    monkeypatch.setattr(subtype, "_RESTRICTED", Scratch())
    monkeypatch.setattr(starcheck, "_BINNED_SCRATCH", Scratch())
    assert after == both([4, 2])
    assert after[0] == ["M2", "G2"]
