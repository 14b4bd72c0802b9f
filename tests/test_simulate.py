"""Simulator: label definitions, redshift and S/N bookkeeping, determinism, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from specsift.classes import labels, map_sdss
from specsift.simulate import (
    LINES,
    apply_instrument,
    kauffmann03,
    kewley01,
    simulate_batch,
    simulate_to_store,
)
from specsift.simulate.lines import sdss_agn_line
from specsift.spectra import DEFAULT_GRID, LogGrid


def is_agn(x, y):
    """Above Kewley 2001 (maximum starburst) and above the SDSS AGN line, where the AGN
    sampler (simulate.lines.sample_agn_ratios) must put every AGN."""
    return (y > kewley01(x)) & (y > sdss_agn_line(x))


@pytest.fixture(scope="module")
def five():
    return simulate_batch(n=300, class_set="five", seed=11)


def test_labels_balanced_and_sdss_mapping(five):
    lab = np.asarray(five.meta["CLASS_LABEL"])
    counts = {l: (lab == l).sum() for l in labels("five")}
    assert set(counts) == set(labels("five"))
    assert max(counts.values()) - min(counts.values()) <= 6   # balanced per block of 256
    # the SDSS-style CLASS/SUBCLASS written into meta maps back onto the same label
    back = map_sdss(five.meta["CLASS"], five.meta["SUBCLASS"], "five")
    assert np.all(back == lab)
    assert set(five.meta["SPECTYPE"]) == {"GALAXY", "QSO", "STAR"}


def test_starburst_ew_and_bpt_regions():
    # labels come from SDSS's rules on the measured lines (simulate/labels.py): at high S/N
    # the measurement is the truth to a few per cent, so the labels sit on the rules' sides
    m = simulate_batch(n=256, class_set="five", seed=11, snr=(40, 60)).meta
    lab = np.asarray(m["CLASS_LABEL"])
    sb, sf, agn = lab == "GALAXY_STARBURST", lab == "GALAXY_STARFORMING", lab == "GALAXY_AGN"
    ew_obs = np.asarray(m["EW_HA"]) * (1 + np.asarray(m["Z"]))      # SDSS: observed frame
    assert sb.sum() > 20 and sf.sum() > 20 and agn.sum() > 20
    assert np.all(ew_obs[sb] > 45) and np.all(ew_obs[sf] < 55) and np.all(ew_obs[sf] > 0)
    x, y = np.asarray(m["LOG_NII_HA"]), np.asarray(m["LOG_OIII_HB"])
    assert np.all(y[agn] > sdss_agn_line(x[agn]) - 0.1)
    assert np.all(y[sf | sb] < sdss_agn_line(x[sf | sb]) + 0.1)
    assert np.mean(is_agn(x[agn], y[agn])) > 0.9
    assert np.mean(y[sf | sb] < kauffmann03(x[sf | sb])) > 0.9


def test_bpt_ratios_are_those_of_the_injected_lines():
    """Line fluxes measured on (with lines − without lines) give the ratios in meta."""
    from specsift.simulate import galaxy_with_lines
    from specsift.simulate.lines import galaxy_line_fluxes, sample_agn_ratios
    rng = np.random.default_rng(3)
    n, grid, z = 5, DEFAULT_GRID, np.full(5, 0.3)
    x, y = sample_agn_ratios(rng, n)
    names, rel = galaxy_line_fluxes(rng, x, y, np.ones(n, bool))
    w = np.zeros((n, 20))
    w[:, 0] = 1.0
    args = (grid, z, w, np.full(n, 0.3), np.full(n, 150.0), names, rel)
    with_l, obs_rel = galaxy_with_lines(rng, *args, np.full(n, 20.0), np.full(n, 100.0))
    without, _ = galaxy_with_lines(rng, *args, np.zeros(n), np.full(n, 100.0))
    lines = with_l - without
    lam = grid.wave

    def flux_in(w0):
        core = np.abs(lam - w0 * 1.3) < 13
        return (lines[:, core] * np.gradient(lam)[core]).sum(1)

    assert np.allclose(np.log10(flux_in(LINES["NII_6584"]) / flux_in(LINES["Halpha"])),
                       np.log10(obs_rel[:, names.index("NII_6584")]), atol=0.02)
    ratio = flux_in(LINES["OIII_5007"]) / flux_in(LINES["Hbeta"])
    assert np.all(is_agn(np.log10(obs_rel[:, names.index("NII_6584")]), np.log10(ratio)))
    # EW(Hα) at rest = line flux / continuum, observed EW = rest EW × (1+z)
    cont = np.median(without[:, np.abs(lam - LINES["Halpha"] * 1.3) < 80], axis=1)
    ew_obs = flux_in(LINES["Halpha"]) / cont
    assert np.allclose(ew_obs / 1.3, 20.0, rtol=0.05)   # z=0.3: a (1+z) slip fails by 30 %


def test_line_lands_at_redshifted_wavelength():
    z = 0.2
    b = simulate_batch(n=20, class_set="thirteen", seed=5, z=z, snr=20, noiseless=True)
    sel = np.asarray(b.meta["CLASS_LABEL"]) == "GALAXY_STARBURST"
    assert sel.any()
    lam = b.wave
    for f in b.flux[sel]:
        win = np.abs(lam - LINES["Halpha"] * (1 + z)) < 30
        peak = lam[win][np.argmax(f[win])]
        assert abs(peak / LINES["Halpha"] - 1 - z) < 2.5e-4   # within one 1e-4-dex pixel
        win = np.abs(lam - LINES["OIII_5007"] * (1 + z)) < 30
        peak = lam[win][np.argmax(f[win])]
        assert abs(peak / LINES["OIII_5007"] - 1 - z) < 2.5e-4


def test_measured_snr_matches_request(five):
    measured = five.median_snr()
    assert np.all(np.abs(measured / five.meta["SNR"] - 1) < 0.10)
    b = simulate_batch(n=40, class_set="three", seed=2, snr=(2, 30))
    assert np.all(np.abs(b.median_snr() / b.meta["SNR"] - 1) < 0.10)
    assert np.all((b.meta["SNR"] >= 2) & (b.meta["SNR"] <= 30))


def test_determinism_and_chunking(tmp_path):
    a = simulate_batch(n=300, class_set="thirteen", seed=4)
    c = simulate_batch(n=20, class_set="thirteen", seed=5)
    assert not np.array_equal(a.flux[:20], c.flux)
    from specsift.io.store import SpectralStore
    for chunk in (64, 1000):
        simulate_to_store(tmp_path / f"s{chunk}.h5", n=300, class_set="thirteen", seed=4,
                          chunk=chunk, progress=False)
    with SpectralStore(tmp_path / "s64.h5") as s1, SpectralStore(tmp_path / "s1000.h5") as s2:
        x, y = s1.read(slice(0, 300)), s2.read(slice(0, 300))
        assert len(s1) == len(s2) == 300
        assert np.array_equal(x.flux, y.flux) and np.array_equal(x.flux, a.flux)
        assert np.array_equal(x.ivar, a.ivar) and np.array_equal(y.mask, a.mask)
        assert list(x.meta["CLASS_LABEL"]) == list(a.meta["CLASS_LABEL"])


def test_resume_gives_the_same_file(tmp_path):
    from specsift.io.store import SpectralStore
    p = tmp_path / "r.h5"
    simulate_to_store(p, n=100, class_set="five", seed=3, chunk=50, progress=False)
    full = simulate_batch(n=100, class_set="five", seed=3)
    with pytest.raises(ValueError, match="other settings"):
        simulate_to_store(p, n=300, class_set="three", seed=3, progress=False, resume=True)
    # extend n: the first 100 rows were made with n=100, resume needs identical settings
    simulate_to_store(p, n=100, class_set="five", seed=3, progress=False, resume=True)
    with SpectralStore(p) as s:
        assert len(s) == 100
        assert np.array_equal(s.read(slice(0, 100)).flux, full.flux[:100])


def test_thirteen_and_galaxy_types_subtypes():
    b = simulate_batch(n=130, class_set="thirteen", seed=8)
    lab = np.asarray(b.meta["CLASS_LABEL"])
    stars = np.char.startswith(lab, "STAR_")
    assert np.all(np.char.add("STAR_", np.asarray(b.meta["SUBTYPE"])[stars]) == lab[stars])
    assert np.all(np.abs(b.meta["Z"][stars]) <= 500 / 299792.458 + 1e-9)
    assert np.all(map_sdss(b.meta["CLASS"], b.meta["SUBCLASS"], "thirteen") == lab)
    g = simulate_batch(n=40, class_set="galaxy-types", seed=8, z=(0.0, 0.3))
    assert set(g.meta["CLASS_LABEL"]) == {"S0", "Sa", "Sb", "Sc"}
    assert np.all((g.meta["Z"] >= 0) & (g.meta["Z"] <= 0.3))
    # Sc is extended past 7660 Å rest: flux there is positive, not zero-padded
    sc = g.flux[np.asarray(g.meta["CLASS_LABEL"]) == "Sc"]
    assert np.all(np.median(sc[:, -200:], axis=1) > 0)


def test_boss_fraction_adds_high_redshift_galaxies_only():
    """The SDSS-I/II catalogue priors stop at z ≈ 0.45; boss_fraction moves that share of
    galaxies (and nothing else) to BOSS-like z and S/N, and 0 leaves every spectrum as it was."""
    from specsift.simulate.survey import BOSS_SNR, BOSS_Z
    base = simulate_batch(n=256, class_set="thirteen", seed=4)
    assert np.array_equal(base.flux, simulate_batch(n=256, class_set="thirteen", seed=4,
                                                    boss_fraction=0.0).flux)
    gal = np.char.startswith(np.asarray(base.meta["CLASS_LABEL"], str), "GALAXY")
    assert np.max(base.meta["Z"][gal]) < 0.8
    b = simulate_batch(n=256, class_set="thirteen", seed=4, boss_fraction=1.0)
    z, snr = np.asarray(b.meta["Z"]), np.asarray(b.meta["SNR"])
    assert np.all((z[gal] >= BOSS_Z[0]) & (z[gal] <= BOSS_Z[1]))
    assert np.all((snr[gal] >= BOSS_SNR[0]) & (snr[gal] <= BOSS_SNR[1]))
    # the same objects drawn; galaxy and quasar subclasses follow the rules on the new
    # spectra (other z, S/N and noise draws), the stars' labels stay
    assert np.array_equal(b.meta["SPECTYPE"], base.meta["SPECTYPE"])
    star = np.asarray(base.meta["SPECTYPE"]) == "STAR"
    assert np.array_equal(b.meta["CLASS_LABEL"][star], base.meta["CLASS_LABEL"][star])
    # the measured S/N is what was asked for, as for every other simulated spectrum
    assert abs(np.median(np.asarray(b.meta["SNR_MEASURED"])[gal] / snr[gal]) - 1) < 0.05
    with pytest.raises(ValueError, match="boss_fraction"):
        simulate_batch(n=5, boss_fraction=1.5)


def test_apply_instrument_other_grid_and_resolution():
    """Reusable on a LAMOST-like grid at R=1800: S/N honoured, LSF width right."""
    grid = LogGrid.from_range(np.log10(3700), np.log10(9000), 1e-4)
    rng = np.random.default_rng(0)
    f = np.ones((3, grid.size), np.float32) * 10
    f[:, grid.size // 2] += 1000                            # a delta function
    out, ivar, mask, _ = apply_instrument(f, grid, 1e6, rng, resolution=1800,
                                          bad_pixel_rate=0, noiseless=True)
    c = grid.size // 2
    prof = out[0, c - 40:c + 41] - 10
    x = np.arange(-40, 41)
    sig_pix = np.sqrt((prof * x ** 2).sum() / prof.sum())
    expect = 299792.458 / (2.3548 * 1800) / (299792.458 * np.log(10) * 1e-4)
    assert abs(sig_pix / expect - 1) < 0.03
    out, ivar, mask, _ = apply_instrument(f, grid, np.array([3.0, 10, 30]), rng, resolution=1800)
    snr = np.median(out * np.sqrt(ivar), axis=1)
    assert np.allclose(snr, [3, 10, 30], rtol=0.05)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown class set"):
        simulate_batch(n=5, class_set="seven")
    with pytest.raises(ValueError, match="z range"):
        simulate_batch(n=5, z=(0.5, 0.1))


def test_cli_writes_store(tmp_path):
    from specsift.cli import main
    from specsift.io.store import SpectralStore
    out = tmp_path / "sim.h5"
    rc = main(["simulate", "--classes", "three", "--n", "50", "--seed", "1", "-o", str(out),
               "--quiet", "--snr", "5,20"])
    assert rc == 0
    with SpectralStore(out) as s:
        assert len(s) == 50 and s.grid.size == DEFAULT_GRID.size
        m = s.read_meta(["CLASS_LABEL", "SNR"])
        assert set(m["CLASS_LABEL"]) == {"STAR", "GALAXY", "QSO"}
        assert np.all((m["SNR"] >= 5) & (m["SNR"] <= 20))
    with pytest.raises(SystemExit):          # argparse rejects an unreadable range
        main(["simulate", "--n", "5", "-o", str(tmp_path / "x.h5"), "--z", "a,b"])
    assert main(["simulate", "--n", "5", "-o", str(tmp_path / "x.h5"), "--z", "0.5,0.1"]) == 2
