"""The `eigen` model end to end on a tiny simulated survey: fit, predict, anomalies, files."""

import numpy as np
import pytest

from specsift.anomaly_inject import bad_columns, flux_jump
from specsift.flags import ZWARN
from specsift.models.base import load_model
from specsift.models.eigen import EigenModel
from specsift.simulate import simulate_batch

SMALL = {"STAR": {"nvec": 4, "zmin": -0.004, "zmax": 0.004},
         "GALAXY": {"nvec": 3, "zmin": -0.005, "zmax": 0.6},
         "QSO": {"nvec": 3, "zmin": 0.0, "zmax": 0.6}}


@pytest.fixture(scope="module")
def data():
    kw = dict(class_set="three", z=(0.05, 0.45), snr=(8.0, 30.0), bal_fraction=0.0)
    return simulate_batch(240, seed=101, **kw), simulate_batch(120, seed=102, **kw)


@pytest.fixture(scope="module")
def model(data):
    train, val = data
    return EigenModel("three", classes=SMALL).fit(train, val, iterations=5, progress=False)


@pytest.fixture(scope="module")
def catalog(model, data):
    return model.predict(data[1])


def test_fit_predicts_classes_and_redshifts(model, data, catalog):
    val = data[1]
    for col in ("Z", "ZERR", "ZWARN", "DELTACHI2", "CHI2_MIN", "RCHI2", "DEGENERACY",
                "ANOMALY_SCORE", "PROB_STAR", "PROB_GALAXY", "PROB_QSO"):
        assert col in catalog.colnames
    truth = np.asarray(val.meta["CLASS_LABEL"])
    assert np.mean(catalog["CLASS_LABEL"] == truth) > 0.85
    zt = np.asarray(val.meta["Z"])
    dz = np.abs(catalog["Z"] - zt) / (1 + zt)
    gal = truth == "GALAXY"
    assert np.mean(dz[gal] < 3e-3) > 0.85
    probs = np.stack([catalog[f"PROB_{c}"] for c in ("STAR", "GALAXY", "QSO")], 1)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.all(catalog["DELTACHI2"] >= 0)
    small = (catalog["ZWARN"] & ZWARN.SMALL_DELTA_CHI2) != 0
    np.testing.assert_array_equal(small, catalog["DELTACHI2"] < 9)
    # training monitored the χ²: it decreased from the PCA start
    hist = model.training["history"]["GALAXY/round0"]["train_chi2"]
    assert hist[-1] < hist[0]


def test_injected_anomalies_score_above_normals(model, data, catalog):
    rng = np.random.default_rng(5)
    val = data[1]
    normal = np.asarray(catalog["ANOMALY_SCORE"])
    sub = val[:48]
    for name, odd_batch in (("bad_columns", bad_columns(sub, rng, nsigma=(10.0, 20.0))),
                            ("flux_jump", flux_jump(sub, rng, size=(0.3, 0.5)))):
        cat = model.predict(odd_batch)
        odd = np.asarray(cat["ANOMALY_SCORE"])
        # ROC AUC of anomalies vs normals (Mann–Whitney)
        auc = np.mean(odd[:, None] > normal[None, :])
        assert auc > 0.8, (name, auc)
        assert np.median(odd) > np.quantile(normal, 0.75)
        flagged = (cat["ZWARN"] & ZWARN.ANOMALY) != 0
        normal_flagged = (catalog["ZWARN"] & ZWARN.ANOMALY) != 0
        assert flagged.mean() > normal_flagged.mean()


def test_save_load_round_trip_and_chi2_curves(model, data, catalog, tmp_path):
    path = model.save(tmp_path / "eigen.pt")
    again = load_model(path)
    cat2 = again.predict(data[1][:20], options={"save_chi2": True})
    for col in ("Z", "ZERR", "DELTACHI2", "ANOMALY_SCORE", "CLASS_LABEL"):
        a, b = np.asarray(cat2[col]), np.asarray(catalog[col][:20])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9)
        else:
            np.testing.assert_array_equal(a, b)
    for b in again.bases_:
        assert cat2[f"CHI2_{b.label}"].shape == (20, b.nshift)
        assert cat2.meta[f"CHI2_{b.label}_JMIN"] == b.jmin
    with pytest.raises(ValueError, match="class set"):
        load_model(path, class_set="five")


def test_spectrum_without_data_keeps_its_row(model, data):
    b = data[1][:3]
    b.ivar = b.ivar.copy()
    b.mask = b.mask.copy()
    b.ivar[1] = 0
    b.mask[1] = True
    cat = model.predict(b)
    assert len(cat) == 3
    assert cat["ZWARN"][1] & ZWARN.NODATA
    assert cat["Z"][1] == -1
    assert not cat["ZWARN"][0] & ZWARN.NODATA


def test_explain_command_draws_fit_residual_and_chi2(model, data, tmp_path):
    import json

    from specsift.cli import main
    from specsift.io.store import SpectralStore
    path = model.save(tmp_path / "tiny.pt")
    store = tmp_path / "three.h5"
    with SpectralStore(store, "w") as st:
        st.append(data[1][:3])
    out = tmp_path / "explain"
    assert main(["explain", "--model", str(path), str(store), "-o", str(out),
                 "--n-plots", "2"]) == 0
    pngs = sorted(out.glob("explain-*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 20_000 for p in pngs)
    rows = json.loads((out / "explain.json").read_text())["spectra"]
    assert len(rows) == 3 and all("DELTACHI2" in r and "Z_SECOND" in r for r in rows)
    info = model.explain(data[1][:3])
    for lab, (zs, cur) in info["chi2"].items():
        assert cur.shape == (3, zs.size)


def test_zerr_calibrated_to_68_percent_and_applied(model, data, catalog):
    """calibrate() fitted the per-class ZERR scale on the validation batch; predict applies it."""
    val = data[1]
    cal = model.metrics["zerr_calibration"]
    assert model.zerr_scale_.shape == (len(model.bases_),) and np.all(model.zerr_scale_ > 0)
    zt = np.asarray(val.meta["Z"])
    inside = np.abs(np.asarray(catalog["Z"]) - zt) < np.asarray(catalog["ZERR"])
    for k, b in enumerate(model.bases_):
        sel = np.asarray(catalog["CLASS_LABEL"]) == b.label
        if b.label in cal["after"]:
            assert abs(inside[sel].mean() - 0.6827) < 0.08, (b.label, inside[sel].mean())
            assert cal["scale"][b.label] == pytest.approx(model.zerr_scale_[k])
    # the raw Δχ² = 1 error times the scale is what the catalog holds (float32 scan: a
    # different batch gives curves equal to ~1e-6, so the curvature to ~1e-3)
    res = model._run(val[:10])
    np.testing.assert_allclose(catalog["ZERR"][:10],
                               res["sol"].zerr * model.zerr_scale_[res["sol"].best_class],
                               rtol=5e-3)


def test_anomaly_calibration_judges_a_faint_spectrum_against_faint_normals():
    """Normal misfit grows with S/N; a faint spectrum with a bright spectrum's usual misfit
    is odd. Only the S/N-conditioned calibration sees it, and it survives a round trip."""
    from specsift.anomaly import AnomalyCalibration
    rng = np.random.default_rng(0)
    snr = np.exp(rng.uniform(np.log(2), np.log(50), 2000))
    feats = {"rchi2": 1.0 + 0.002 * snr ** 2 * rng.lognormal(0, 0.1, snr.size),
             "excursion_3": 2.0 + 0.05 * snr * rng.lognormal(0, 0.1, snr.size)}
    odd = {"rchi2": np.array([1.0 + 0.002 * 40 ** 2]), "excursion_3": np.array([2.0 + 0.05 * 40])}
    plain = AnomalyCalibration.fit(feats)
    cond = AnomalyCalibration.fit(feats, snr=snr)
    assert plain.score(odd)[0] < plain.threshold                   # blind to it
    assert cond.score(odd, np.array([3.0]))[0] > 3 * cond.threshold
    assert cond.score(odd, np.array([40.0]))[0] < cond.threshold   # normal when bright
    assert np.mean(cond.score(feats, snr) > cond.threshold) == pytest.approx(0.01, abs=0.002)
    again = AnomalyCalibration.from_dict(cond.to_dict())
    np.testing.assert_allclose(again.score(odd, np.array([3.0])), cond.score(odd, np.array([3.0])))
    with pytest.raises(ValueError, match="snr"):
        cond.score(odd)


def test_anomaly_top2_wants_two_symptoms_and_reads_the_degeneracy():
    """With ``top2`` one feature at 1.5× its normal 99th percentile is not enough (it is
    with ``max``); the same excess in two features is. A tiny degeneracy ratio R is such
    a symptom; no second solution is not."""
    from specsift.anomaly import AnomalyCalibration, degeneracy_feature
    rng = np.random.default_rng(1)
    n = 4000
    snr = np.full(n, 10.0)
    feats = {f"f{i}": np.exp(rng.normal(0, 0.3, n)) for i in range(3)}
    feats["degenerate"] = degeneracy_feature(np.exp(rng.normal(0, 1, n)), np.ones(n, bool))
    top2 = AnomalyCalibration.fit(feats, snr=snr)
    single = AnomalyCalibration.fit(feats, snr=snr, combine="max")
    assert top2.combine == "top2"
    q = {k: np.quantile(np.log(v), 0.99) for k, v in feats.items()}
    typical = {k: np.array([np.median(v)]) for k, v in feats.items()}
    one = dict(typical, f0=np.array([np.exp(1.5 * q["f0"])]))
    two = dict(one, degenerate=degeneracy_feature(np.array([1e-4]), np.array([True])))
    ten = np.array([10.0])
    assert single.score(one, ten)[0] > single.threshold
    assert top2.score(one, ten)[0] < top2.threshold
    assert top2.score(two, ten)[0] > top2.threshold
    assert degeneracy_feature(np.array([0.0]), np.array([False]))[0] < 0.01
    assert AnomalyCalibration.from_dict(top2.to_dict()).combine == "top2"
    assert AnomalyCalibration.from_dict({"names": ["x"]}).combine == "max"     # old files


def test_rest_model_error_learns_a_line_the_basis_cannot_follow():
    """Normal spectra whose one rest-frame line varies in strength (the basis cannot follow
    it) at several redshifts: ε² peaks at the line's rest pixel and nowhere else, and the
    deflated weights shrink the line's residuals but leave a bad column elsewhere intact."""
    from types import SimpleNamespace

    from specsift.anomaly import residual_features
    from specsift.models.eigen.modelerror import deflate_ivar, fit_rest_model_error
    rng = np.random.default_rng(5)
    n, p, jmax, line = 400, 300, 50, 120              # rest pixel of the line
    basis = SimpleNamespace(jmax=jmax, basis=np.zeros((1, p + jmax)))
    shift = rng.integers(0, jmax + 1, n).astype(float)
    model = np.full((n, p), 10.0)
    ivar = np.full((n, p), 4.0)                       # σ = 0.5: S/N 20
    cols = np.arange(p)[None, :] + jmax - shift[:, None].astype(int)
    bump = np.exp(-0.5 * ((cols - line) / 1.5) ** 2) * rng.normal(0, 3.0, (n, 1))
    flux = model + bump + rng.normal(0, 0.5, (n, p))
    best = np.zeros(n, int)
    eps2 = fit_rest_model_error([basis], flux, ivar, model, best, shift)[0]
    assert abs(int(np.argmax(eps2)) - line) <= 1
    assert eps2[line] > 20 * np.median(eps2[jmax:p])
    w = deflate_ivar([basis], [eps2], ivar, model, best, shift)
    plain = residual_features(flux, ivar, model, 1)["excursion_3"]
    deflated = residual_features(flux, w, model, 1)["excursion_3"]
    assert np.quantile(deflated, 0.9) < 0.4 * np.quantile(plain, 0.9)   # the line no longer dominates
    odd = flux[:1].copy()
    odd[0, 20:24] += 5 * 0.5                              # a 5σ bad column away from the line
    f_odd = residual_features(odd, w[:1], model[:1], 1)["excursion_3"][0]
    assert f_odd > np.quantile(deflated, 0.99)
    assert deflate_ivar([basis], None, ivar, model, best, shift) is ivar


def test_a_survey_gets_its_own_normal_population(model, data, tmp_path):
    """Spectra whose SURVEY has its own calibration are judged against that survey's normals
    (a shared instrument signature stops being anomalous, a bad column still is); every other
    spectrum keeps the default calibration exactly; the file keeps it."""
    val = data[1]
    m = load_model(model.save(tmp_path / "base.pt"))

    def survey_x(b):
        out = b[np.arange(len(b))]
        wig = 1.0 + 0.25 * np.sin(2 * np.pi * np.arange(out.npix) / 150.0)
        out.flux, out.ivar = out.flux * wig, out.ivar / wig ** 2
        out.meta = b.meta.copy()
        out.meta["SURVEY"] = ["X"] * len(b)
        return out
    fit_x, test_x = survey_x(val[:70]), survey_x(val[70:])
    flagged = lambda c: (np.asarray(c["ZWARN"]) & ZWARN.ANOMALY) != 0  # noqa: E731
    before_x = m.predict(test_x)
    before_sdss = m.predict(val[70:])
    m.calibrate_anomaly(fit_x, survey="x")
    assert set(m.survey_anomaly_) == {"X"}
    after_x = m.predict(test_x)
    assert flagged(before_x).mean() > 0.5 and flagged(after_x).mean() < 0.15
    np.testing.assert_array_equal(m.predict(val[70:])["ANOMALY_SCORE"],
                                  before_sdss["ANOMALY_SCORE"])
    odd = m.predict(bad_columns(test_x, np.random.default_rng(3), nsigma=(15.0, 25.0)))
    normal = np.asarray(after_x["ANOMALY_SCORE"])
    assert np.mean(np.asarray(odd["ANOMALY_SCORE"])[:, None] > normal[None, :]) > 0.8
    again = load_model(m.save(tmp_path / "x.pt"))
    np.testing.assert_allclose(again.predict(test_x)["ANOMALY_SCORE"], after_x["ANOMALY_SCORE"])
