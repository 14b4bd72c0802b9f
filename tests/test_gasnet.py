"""gasnet: heads, calibration pieces, ZWARN bits, save/load, and the shipped model's σ coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specsift.calibration import MahalanobisOOD, SigmaCalibration, SigmaRegression, fit_temperature
from specsift.catalog import CATALOG_COLUMNS
from specsift.classes import condition_on_redshift, labels
from specsift.flags import ZWARN
from specsift.metrics import zerr_coverage
from specsift.models.base import bundled_path, load_model
from specsift.models.gasnet import GaSNet
from specsift.models.gasnet.net import augment, decode_bins
from specsift.simulate import simulate_batch

TINY = dict(n_bins=200, widths=(8, 16, 16, 16), hidden=32, head_channels=8)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny gasnet trained for one epoch on 384 simulated spectra (seconds on one core)."""
    torch.set_num_threads(1)
    train = simulate_batch(384, "thirteen", seed=3)
    val = simulate_batch(256, "thirteen", seed=4)
    model = GaSNet(**TINY).fit(train, val, epochs=1, batch_size=128, progress=False, log=None,
                               checkpoint_dir=tmp_path_factory.mktemp("ck"))
    return model, val


# ---------------------------------------------------------------------------- pure pieces
def test_bin_refinement_recovers_position_between_bins():
    """A p(u) peaked between bin centres (offsets 0) gives u at the peak, not at a centre."""
    centres = torch.linspace(0.0, 1.0, 101)
    width = float(centres[1] - centres[0])
    u0 = torch.tensor([0.3137, 0.5555, 0.0471])
    zlog = -0.5 * ((centres[None] - u0[:, None]) / width) ** 2
    u, s, s_full, p_near = decode_bins(zlog, torch.zeros_like(zlog), centres, width, near=0.05)
    assert torch.allclose(u, u0, atol=0.05 * width)
    assert (s > 0.5 * width).all() and (s < 2 * width).all()
    assert torch.allclose(s_full, s, rtol=0.05) and (p_near > 0.95).all()
    # a second peak far away: same z, but σ_full and p_near say "not unique"
    zlog2 = torch.logaddexp(zlog, -0.5 * ((centres[None] - 0.9) / width) ** 2 - 0.7)
    u3, s3, s_full3, p_near3 = decode_bins(zlog2[:2], torch.zeros_like(zlog2[:2]), centres, width,
                                           near=0.05)
    assert torch.allclose(u3, u0[:2], atol=0.05 * width)
    assert (s_full3 > 10 * s3).all() and torch.allclose(p_near3, torch.tensor(2 / 3), atol=0.03)
    # offsets move the estimate: all bins pointing +0.5 bin shift u by about that much
    u2, _, _, _ = decode_bins(zlog, torch.full_like(zlog, float(np.arctanh(0.5))), centres, width)
    assert torch.allclose(u2 - u, torch.full_like(u, 0.5 * width), atol=0.05 * width)


def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 5))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(3.0 * true_logits, y)          # a network 3× too confident
    assert 2.5 < t < 3.6


def test_class_probabilities_conditioned_on_the_reported_redshift():
    """A galaxy at z = 4.7 or a star at z = 0.4 becomes the likeliest class that can have
    that z; consistent rows, and rows no class fits, are left exactly as they were."""
    names = labels("thirteen")
    k = {n: i for i, n in enumerate(names)}
    p = np.full((4, len(names)), 0.01)
    p[0, k["GALAXY_AGN"]], p[0, k["QSO"]] = 0.7, 0.1        # galaxy head, z head says 4.7
    p[1, k["STAR_K5"]], p[1, k["GALAXY"]] = 0.8, 0.05       # star head, z = 0.4
    p[2, k["GALAXY"]] = 0.8                                 # consistent: a galaxy at 0.1
    p[3, k["STAR_A0"]] = 0.8                                # z = −0.05: no class has it
    p /= p.sum(1, keepdims=True)
    z = np.array([4.7, 0.4, 0.1, -0.05])
    q, changed = condition_on_redshift(p, names, z)
    assert [names[i] for i in q.argmax(1)] == ["QSO", "GALAXY", "GALAXY", "STAR_A0"]
    assert changed.tolist() == [True, True, False, False]
    assert np.allclose(q.sum(1), 1)
    assert np.array_equal(q[2:], p[2:])
    assert q[0, k["GALAXY_AGN"]] == 0 and q[1, k["STAR_K5"]] == 0
    # the ratio between classes that fit is kept
    assert np.isclose(q[0, k["QSO"]] / q[0, k["QSO_BROADLINE"]], 10.0)


def test_sigma_calibration_hits_coverage_targets():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.001, 0.01, 6000)
    du = rng.normal(0, 2.5 * sigma)                    # quoted σ 2.5× too small
    groups = np.where(rng.random(6000) < 0.5, "GALAXY", "QSO")
    cal = SigmaCalibration().fit(du[:3000], sigma[:3000], groups[:3000])
    s = cal.apply(sigma[3000:], groups[3000:])
    c = zerr_coverage(du[3000:], np.zeros(3000), s)
    assert abs(c["coverage_1sigma"] - 0.683) < 0.03
    assert abs(c["coverage_2sigma"] - 0.954) < 0.02
    a, _, _ = cal.params["GALAXY"]
    assert 2.0 < a < 3.0


def test_sigma_calibration_uses_other_peaks():
    """10 % catastrophic errors the distribution knew about (large σ_x): the fit uses σ_x
    and reaches 95 % at 2σ, which no single scale of σ alone can."""
    rng = np.random.default_rng(3)
    n = 6000
    sigma = np.full(n, 0.002)
    bad = rng.random(n) < 0.1
    du = np.where(bad, rng.normal(0, 0.3, n), rng.normal(0, sigma))
    extra = np.where(bad, 0.3, 0.0)
    g = np.full(n, "QSO")
    cal = SigmaCalibration().fit(du[:3000], sigma[:3000], g[:3000], extra[:3000])
    c = zerr_coverage(du[3000:], np.zeros(3000), cal.apply(sigma[3000:], g[3000:], extra[3000:]))
    assert abs(c["coverage_1sigma"] - 0.683) < 0.03 and abs(c["coverage_2sigma"] - 0.954) < 0.02
    assert cal.params["QSO"][2] > 0
    plain = SigmaCalibration().fit(du[:3000], sigma[:3000], g[:3000])
    c0 = zerr_coverage(du[3000:], np.zeros(3000), plain.apply(sigma[3000:], g[3000:]))
    assert c0["coverage_2sigma"] < 0.93



def test_sigma_regression_learns_snr_dependence():
    """Same quoted peak width, but the faintest spectra err 20× more than the brightest: a
    per-type scale cannot cover the faint ones; the regression (t likelihood, then the
    per-type 1σ/2σ scaling on top, as gasnet composes them) covers both ends."""
    rng = np.random.default_rng(4)
    n = 8000
    sigma = np.full(n, 0.001)
    snr = np.exp(rng.uniform(np.log(1), np.log(50), n))
    true = 0.001 * (30 / snr) ** 0.8
    du = rng.normal(0, true)
    g, extra, p_near = np.full(n, "QSO"), np.zeros(n), np.ones(n)
    h = n // 2
    reg = SigmaRegression().fit(du[:h], sigma[:h], g[:h], extra[:h], snr[:h], p_near[:h])
    cal = SigmaCalibration().fit(du[:h], reg.apply(sigma[:h], g[:h], extra[:h], snr[:h],
                                                   p_near[:h]), g[:h])
    s = cal.apply(reg.apply(sigma[h:], g[h:], extra[h:], snr[h:], p_near[h:]), g[h:])
    r = np.abs(du[h:]) / s
    for lo, hi in ((1, 4), (12, 50)):                  # right at both ends of the S/N range
        sel = (snr[h:] >= lo) & (snr[h:] < hi)
        assert abs(np.mean(r[sel] < 1) - 0.683) < 0.05
        assert abs(np.mean(r[sel] < 2) - 0.954) < 0.04
    plain = SigmaCalibration().fit(du[:h], sigma[:h], g[:h]).apply(sigma[h:], g[h:])
    faint = snr[h:] < 4
    assert np.mean(np.abs(du[h:][faint]) / plain[faint] < 1) < 0.5
    theta = reg.params["theta"]                        # [c0, c1, c_extra, c_lnsnr, ...]
    s_lo = reg.apply(np.array([0.001]), ["QSO"], [0.0], [2.0], [1.0])[0]
    s_hi = reg.apply(np.array([0.001]), ["QSO"], [0.0], [40.0], [1.0])[0]
    assert s_lo > 5 * s_hi and len(theta) == 2 + 4
    # a spectral type unseen in fitting still gets a finite σ
    assert np.isfinite(reg.apply(np.array([0.001]), ["STAR"], [0.0], [10.0], [1.0])).all()

def test_mahalanobis_ood_flags_far_embeddings():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 3000)
    emb = rng.normal(0, 1, (3000, 8)) + 4 * np.eye(8)[y]
    ood = MahalanobisOOD().fit(emb[:2000], y[:2000], 3, emb[2000:])
    normal = ood.score(emb[2000:])
    assert abs(np.mean(normal > 1) - 0.01) < 0.01
    assert (ood.score(np.full((5, 8), 15.0)) > 5).all()


def test_augment_keeps_shapes_and_masks_consistent():
    b = simulate_batch(16, "thirteen", seed=5)
    rng = np.random.default_rng(0)
    f, iv, m = augment(b.flux, b.ivar, b.mask, b.loglam, rng)
    assert f.shape == b.flux.shape and iv.shape == b.ivar.shape
    assert np.all(iv[m] == 0) and np.all(np.isfinite(f)) and np.all(iv >= 0)
    assert not np.shares_memory(f, b.flux)
    f2, _, _ = augment(b.flux, b.ivar, b.mask, b.loglam, np.random.default_rng(0))
    assert np.array_equal(f, f2)


# ---------------------------------------------------------------------------- the model
def test_catalog_schema_and_roundtrip(tiny_model, tmp_path):
    model, val = tiny_model
    cat = model.predict(val[:40])
    names = labels("thirteen")
    for col in CATALOG_COLUMNS + ("ANOMALY_SCORE", "MODEL") + tuple(f"PROB_{n}" for n in names):
        assert col in cat.colnames
    probs = np.stack([cat[f"PROB_{n}"] for n in names], 1)
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.all(cat["ZERR"] > 0) and np.all(np.isfinite(cat["Z"]))
    assert set(cat["SPECTYPE"]) <= {"GALAXY", "QSO", "STAR"}
    assert model.z_head_ in ("bins", "mdn")
    assert set(model.metrics["calibration"]["heads"]) == {"bins", "mdn"}
    path = model.save(tmp_path / "g.pt")
    again = load_model(path)
    cat2 = again.predict(val[:40])
    assert np.allclose(cat2["Z"], cat["Z"], rtol=1e-2, atol=1e-3)   # float16 weights on disk
    assert np.array_equal(cat2["CLASS_LABEL"], cat["CLASS_LABEL"]) or \
        np.mean(cat2["CLASS_LABEL"] == cat["CLASS_LABEL"]) > 0.9
    with pytest.raises(ValueError, match="class set"):
        load_model(path, class_set="five")


def test_zwarn_bits_for_bad_inputs(tiny_model):
    model, val = tiny_model
    b = val[:6]
    b.ivar[0] = 0                                      # no good pixels → NODATA, Z = -1
    b.mask[0] = True
    b.ivar[1] *= 1e-6                                  # S/N ≈ 0.01 → POORDATA
    b.flux[2] = 1e4 * np.sin(np.arange(b.npix) / 3.0)  # nothing like a spectrum
    cat = model.predict(b)
    zw = np.asarray(cat["ZWARN"])
    assert zw[0] & ZWARN.NODATA and cat["Z"][0] == -1
    assert zw[1] & ZWARN.POORDATA and not zw[3] & ZWARN.POORDATA
    assert cat["ANOMALY_SCORE"][2] > np.median(cat["ANOMALY_SCORE"][3:])
    low = probs_max(cat) < 0.6
    assert np.array_equal((zw & ZWARN.LOW_CLASS_CONFIDENCE) != 0, low)
    model.config["anomaly_threshold"], old = -1.0, model.config["anomaly_threshold"]
    try:
        assert np.all(np.asarray(model.predict(b[3:])["ZWARN"]) & ZWARN.ANOMALY)
    finally:
        model.config["anomaly_threshold"] = old


def probs_max(cat):
    return np.max(np.stack([cat[c] for c in cat.colnames if c.startswith("PROB_")], 1), 1)


def test_fit_requires_validation_data():
    with pytest.raises(ValueError, match="validation"):
        GaSNet(**TINY).fit(simulate_batch(8, "thirteen", seed=1), None)


def test_refitting_the_class_head_alone_keeps_redshifts_and_their_calibration(tiny_model,
                                                                             tmp_path):
    """trainable=("cls",): only the class head and the temperature change; Z, the ZERR and
    OOD models (fitted on an unchanged trunk and z heads) and ANOMALY_SCORE stay as they were."""
    import copy
    model, val = tiny_model
    head = copy.deepcopy(model)
    head.fit(val, val, epochs=1, batch_size=128, lr=1e-2, progress=False, log=None,
             checkpoint_dir=tmp_path, trainable=("cls",))
    a, b = model.predict(val), head.predict(val)
    np.testing.assert_array_equal(np.asarray(a["Z"]), np.asarray(b["Z"]))
    np.testing.assert_array_equal(np.asarray(a["ANOMALY_SCORE"]), np.asarray(b["ANOMALY_SCORE"]))
    assert head.sigma_reg_ == model.sigma_reg_ and head.sigma_cal_ == model.sigma_cal_
    assert head.z_head_ == model.z_head_ and head.temperature_ != model.temperature_
    old, new = model.net.state_dict(), head.net.state_dict()
    assert all(torch.equal(old[k], new[k]) != k.startswith("cls.") for k in old)


def test_class_head_alone_needs_a_trained_start():
    with pytest.raises(ValueError, match="untrained"):
        GaSNet(**TINY).fit(simulate_batch(8, "thirteen", seed=1),
                           simulate_batch(8, "thirteen", seed=2), trainable=("cls",))


# ---------------------------------------------------------------------------- shipped model
@pytest.mark.skipif(bundled_path("gasnet") is None, reason="no bundled gasnet.pt")
def test_shipped_model_sigma_coverage_in_sane_band():
    """On fresh simulated spectra (a seed never used in training) the calibrated ZERR covers
    |Δz| about 68 % / 95 % of the time, and classes are mostly right."""
    torch.set_num_threads(1)
    model = load_model("gasnet")
    batch = simulate_batch(400, "thirteen", seed=777)
    cat = model.predict(batch)
    z_true = np.asarray(batch.meta["Z"], float)
    c = zerr_coverage(cat["Z"], z_true, cat["ZERR"])
    assert 0.55 < c["coverage_1sigma"] < 0.82
    assert 0.85 < c["coverage_2sigma"] <= 1.0
    acc = np.mean(np.asarray(cat["CLASS_LABEL"]) == np.asarray(batch.meta["CLASS_LABEL"]))
    assert acc > 0.6


@pytest.mark.skipif(bundled_path("gasnet") is None, reason="no bundled gasnet.pt")
def test_shipped_model_on_real_sdss(shared_data):
    """Regression guard on 50 real SDSS spectra: GALAXY/QSO/STAR mostly right, stars' z exact."""
    from specsift import io as sio
    torch.set_num_threads(1)
    batch = sio.read(shared_data / "sdss" / "sdss-labelled-50.fits")
    cat = load_model("gasnet").predict(batch)
    truth = np.char.strip(np.asarray(batch.meta["CLASS"], str))
    assert np.mean(np.asarray(cat["SPECTYPE"], str) == truth) >= 0.75
    star = truth == "STAR"
    dz = np.abs(cat["Z"][star] - batch.meta["Z"][star])
    assert np.mean(dz < 0.003) >= 0.9


def test_heads_of_one_head_equal_that_head_of_all(tiny_model):
    """Prediction decodes only z_head_ (heads(only=...)): the same numbers as decoding both."""
    model, val = tiny_model
    model.net.eval()
    with torch.no_grad():
        out = model.net(model.make_inputs(val[:64]))
    full = model.heads(out)
    for head in ("bins", "mdn"):
        one = model.heads(out, only=head)
        assert set(one) == {"logits", "emb", head}
        assert all(np.array_equal(a, b) for a, b in zip(one[head], full[head]))
        assert np.array_equal(one["logits"], full["logits"])
