"""The quasar posterior of the verification stage (:func:`specsift.verify.zfind.quasar_posterior`):
the line-shift systematic in a verified quasar's ZERR, and the model's own z as a prior."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from specsift.catalog import make_catalog
from specsift.constants import C_KMS
from specsift.flags import ZWARN
from specsift.spectra import DEFAULT_GRID, SpectraBatch
from specsift.verify import Candidates, verify_catalog
from specsift.verify.stage import VerifyOptions
from specsift.verify.templates import bases_for
from specsift.verify.zfind import NET_KMS, qso_systemic_kms, quasar_posterior

WAVE = (3600.0, 9200.0)


def _kms(dz, z):
    return np.asarray(dz) / (1 + np.asarray(z)) * C_KMS


def test_systemic_scatter_is_that_of_the_best_line_in_range():
    # z 0.3: [O III] at 6511 Å; z 2: Mg II at 8400 Å; z 3: C III] at 7635 Å (Mg II beyond the
    # red end); z 5: C IV at 9297 Å is beyond it too, only Si IV (8381 Å) is left
    got = qso_systemic_kms(np.array([0.3, 2.0, 3.0, 5.0]), *WAVE)
    np.testing.assert_array_equal(got, [56.0, 205.0, 233.0, 477.0])
    # a wider spectrum (DESI to 9824 Å) still sees C IV at z 5
    assert qso_systemic_kms(np.array([5.0]), 3600.0, 9824.0)[0] == 415.0


def test_posterior_is_the_inverse_variance_mean_of_fit_and_model():
    z = np.array([2.0])
    sys_z = 205.0 * 3 / C_KMS                                # Mg II at z 2
    fit_err = np.hypot(1e-4, sys_z)
    net_z = z + 900 / C_KMS * 3                              # 900 km/s away: same solution
    zq, eq, both = quasar_posterior(z, [1e-4], ["QSO"], ["QSO"], net_z, [fit_err], [np.nan],
                                    WAVE)
    assert both[0]
    # equal errors: half-way, σ/√2
    np.testing.assert_allclose(zq, (z + net_z) / 2)
    np.testing.assert_allclose(eq, fit_err / np.sqrt(2))
    # a model four times less sure moves the fit by 1/17 of the way
    zq, eq, _ = quasar_posterior(z, [1e-4], ["QSO"], ["QSO"], net_z, [4 * fit_err], [np.nan],
                                 WAVE)
    np.testing.assert_allclose(_kms(zq - z, z), 900 / 17, rtol=1e-6)
    assert eq[0] < fit_err


def test_posterior_leaves_other_solutions_types_and_unsure_models_alone():
    z = np.array([2.0, 2.0, 0.5, 2.0, 2.0])
    zerr = np.full(5, 1e-4)
    far = 2.0 + 1.5 * NET_KMS / C_KMS * 3                    # beyond NET_KMS: another solution
    net_z = np.array([far, 2.0003, 0.5003, 2.0003, 2.0003])
    net_t = ["QSO", "GALAXY", "GALAXY", "QSO", "QSO"]
    typ = ["QSO", "QSO", "GALAXY", "QSO", "QSO"]
    net_err = np.array([1e-4, 1e-4, 1e-4, np.nan, 1e-4])
    # the last model states a reach of ±0.02 in ln(1+z) (speccznet's ±4.5 bins): its 30 km/s
    # ZERR is not believed, and its prior has (almost) no weight
    reach = np.array([np.nan, np.nan, np.nan, np.nan, 0.02])
    zq, eq, both = quasar_posterior(z, zerr, typ, net_t, net_z, net_err, reach, WAVE)
    assert list(both) == [False, False, False, False, True]
    np.testing.assert_array_equal(zq[:4], z[:4])
    assert abs(_kms(zq[4] - z[4], z[4])) < 0.01 * _kms(3e-4, 2.0)
    # every verified quasar carries the line-shift systematic in its ZERR; a galaxy does not
    sys_z = qso_systemic_kms(z, *WAVE) * (1 + z) / C_KMS
    np.testing.assert_allclose(eq[[0, 1, 3]], np.hypot(zerr, sys_z)[[0, 1, 3]])
    assert eq[2] == zerr[2]


def _qso_batch(z_true: float):
    """A noiseless spEigenQSO spectrum at ``z_true`` (its first two vectors)."""
    b = bases_for(DEFAULT_GRID.loglam)["QSO"]
    p = np.arange(DEFAULT_GRID.size, dtype=float)
    q = p + b.offset - float(b.shift_of(z_true))
    tem = np.stack([np.interp(q, np.arange(b.vectors.shape[1]), v) for v in b.vectors[:2]])
    flux = np.array([1.0, 0.3]) @ tem
    flux = (10 * flux / np.abs(flux).mean()).astype(np.float32)
    return SpectraBatch(DEFAULT_GRID.loglam, flux[None], np.full((1, flux.size), 100.0,
                                                                  np.float32))


def test_stage_moves_a_quasar_towards_a_confident_model_and_only_then():
    """The fit finds the template's z; a model saying QSO 600 km/s away with a 100 km/s ZERR
    pulls the verified z most of the way (the fit's σ is the Mg II scatter, 205 km/s); with
    ``quasar_posterior=False`` the fit's z stands."""
    z_true = 1.5
    batch = _qso_batch(z_true)
    net_z = z_true + 600 / C_KMS * (1 + z_true)
    probs = np.array([[0.05, 0.05, 0.9]])
    table = make_catalog(Table({"TARGETID": [0]}), "three", probs, np.array([net_z]),
                         np.array([100 / C_KMS * (1 + z_true)]), "test")
    cands = Candidates([[net_z]], [["QSO"]])
    plain = verify_catalog(batch, table, cands, VerifyOptions(quasar_posterior=False))
    post = verify_catalog(batch, table, cands)
    assert plain["SPECTYPE"][0] == post["SPECTYPE"][0] == "QSO"
    assert abs(_kms(plain["Z"][0] - z_true, z_true)) < 30          # the fit: the template's z
    moved = _kms(post["Z"][0] - plain["Z"][0], z_true)
    w = 205.0 ** 2 / (205.0 ** 2 + 100.0 ** 2)                      # fit σ ≈ the Mg II scatter
    assert 0.9 * w * 600 < moved < 600
    # ZERR: the posterior's, (205⁻² + 100⁻²)^(-1/2) ≈ 90 km/s with the fit's own σ small
    assert 80 < _kms(post["ZERR"][0], z_true) < 100 and plain["ZERR"][0] < post["ZERR"][0]
    # nothing else of the fit changes
    for c in ("CHI2", "DELTACHI2", "NPIXELS"):
        assert post[c][0] == plain[c][0]


def test_candidate_supported_only_by_the_5577_sky_residual_does_not_win(monkeypatch):
    """A faint flat spectrum whose one feature is an [O I] 5577 subtraction residual: a QSO at
    z 3.589 puts Lyα on it.  With the stage's sky mask the residual is not fitted and that
    candidate gains nothing over the polynomial (DELTACHI2 < 25, or another answer); without
    the mask the same candidate wins by a large Δχ²."""
    from specsift.verify import stage
    rng = np.random.default_rng(3)
    wave = 10 ** DEFAULT_GRID.loglam
    # the residual: 40 σ at its peak, the width of the sky line at SDSS resolution (σ ≈ 1.7 Å)
    flux = (1.0 + 40 * np.exp(-0.5 * ((wave - 5578.89) / 1.7) ** 2)
            + rng.normal(0, 1, wave.size)).astype(np.float32)
    batch = SpectraBatch(DEFAULT_GRID.loglam, flux[None], np.ones((1, wave.size), np.float32))
    z_sky = 5578.89 / 1215.67 - 1
    table = make_catalog(Table({"TARGETID": [0]}), "three", np.array([[0.05, 0.05, 0.9]]),
                         np.array([z_sky]), np.array([0.01]), "test")
    cands = Candidates([[z_sky]], [["QSO"]])
    opt = VerifyOptions(rescue_deltachi2=0.0, rescue_explained=0.0)    # the candidate alone
    out = verify_catalog(batch, table, cands, opt)
    on_sky = (out["SPECTYPE"][0] == "QSO") & (abs(out["Z"][0] - z_sky) < 0.01)
    assert not on_sky or out["DELTACHI2"][0] < 25
    monkeypatch.setattr(stage, "SKY_LINES", ())
    bare = verify_catalog(batch, table, cands, opt)
    assert bare["SPECTYPE"][0] == "QSO" and abs(bare["Z"][0] - z_sky) < 0.01
    assert bare["DELTACHI2"][0] > 100


def test_net_disagree_compares_the_fit_not_the_posterior():
    """A confident model 1500 km/s from the fit pulls the posterior z near itself, but the
    fit and the model still disagree by more than 1000 km/s: NET_DISAGREE says so."""
    z_true = 1.5
    net_z = z_true + 1500 / C_KMS * (1 + z_true)
    table = make_catalog(Table({"TARGETID": [0]}), "three", np.array([[0.05, 0.05, 0.9]]),
                         np.array([net_z]), np.array([100 / C_KMS * (1 + z_true)]), "test")
    out = verify_catalog(_qso_batch(z_true), table, Candidates([[net_z]], [["QSO"]]))
    assert abs(_kms(out["Z"][0] - net_z, z_true)) < 1000          # the posterior moved
    assert out["ZWARN"][0] & ZWARN.NET_DISAGREE


def test_no_candidates_at_all_is_not_a_crash():
    """A model that proposes nothing (K = 0 slots): the stage still tries its own windows."""
    z_true = 1.5
    table = make_catalog(Table({"TARGETID": [0]}), "three", np.array([[0.05, 0.05, 0.9]]),
                         np.array([z_true]), np.array([1e-3]), "test")
    out = verify_catalog(_qso_batch(z_true), table,
                         Candidates(np.zeros((1, 0)), np.zeros((1, 0), "U6")))
    assert len(out) == 1 and np.isfinite(out["Z"][0])
