"""Metrics against hand-computed cases."""

import json

import numpy as np
import pytest
from astropy.table import Table

from specsift.catalog import make_catalog
from specsift.metrics import (
    calibration,
    classification_metrics,
    delta_z,
    evaluate_catalog,
    redshift_metrics,
    zerr_coverage,
)


def test_redshift_metrics_by_hand():
    zt = np.array([0.0, 1.0, 0.5, 2.0])
    zp = np.array([0.0002, 1.004, 0.5, 2.09])
    # Δz = 0.0002, 0.002, 0, 0.03 ; δ = +0.0002, +0.002, 0, +0.03
    d = delta_z(zp, zt)
    np.testing.assert_allclose(d, [0.0002, 0.002, 0.0, 0.03], atol=1e-12)
    m = redshift_metrics(zp, zt)
    assert m["n"] == 4
    assert m["GF_0.0003"] == 0.5          # 0.0002 and 0
    assert m["GF_0.001"] == 0.5
    assert m["GF_0.003"] == 0.75
    assert m["GF_0.01"] == 0.75
    assert m["MAD"] == pytest.approx((0.0002 + 0.002) / 2)
    # median δ = 0.0011; |δ - med| = 0.0009, 0.0009, 0.0011, 0.0289 → median 0.001
    assert m["sigma_NMAD"] == pytest.approx(1.4826 * 0.001)
    assert m["NMAE"] == pytest.approx((0.0002 + 0.002 + 0 + 0.03) / 4)
    assert m["catastrophic_fraction"] == 0.25
    assert redshift_metrics(zp, zt, catastrophic=0.05)["catastrophic_fraction"] == 0.0
    ss_res = 0.0002**2 + 0.004**2 + 0.09**2
    ss_tot = np.sum((zt - zt.mean()) ** 2)
    assert m["R2"] == pytest.approx(1 - ss_res / ss_tot)


def test_redshift_metrics_ignore_nan_and_empty():
    m = redshift_metrics([0.1, np.nan], [0.1, 0.2])
    assert m["n"] == 1 and m["GF_0.01"] == 1.0 and m["R2"] is None   # one value: no variance
    assert redshift_metrics([], [])["MAD"] is None


def test_zerr_coverage():
    zt = np.zeros(4)
    zp = np.array([0.1, 0.1, 0.1, 0.1])
    ze = np.array([0.2, 0.06, 0.04, -1.0])      # last: no ZERR → ignored
    c = zerr_coverage(zp, zt, ze)
    assert c["n_zerr"] == 3
    assert c["coverage_1sigma"] == pytest.approx(1 / 3)
    assert c["coverage_2sigma"] == pytest.approx(2 / 3)


def test_classification_metrics_by_hand():
    names = ["A", "B", "C"]
    yt = ["A", "A", "B", "B", "C", "C"]
    yp = ["A", "B", "B", "B", "C", ""]
    m = classification_metrics(yt, yp, names)
    assert m["accuracy"] == pytest.approx(4 / 6)
    pa, pb, pc = (m["per_class"][n] for n in names)
    assert pa["precision"] == 1.0 and pa["recall"] == 0.5
    assert pb["precision"] == pytest.approx(2 / 3) and pb["recall"] == 1.0
    assert pb["f1"] == pytest.approx(0.8)
    assert pc["recall"] == 0.5 and pc["support"] == 2
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_calibration_ece():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    c = calibration(probs, y, n_bins=10)
    # bin 0.9: acc 0.5 conf 0.9; bin 0.6: acc 1.0 conf 0.6 → ECE = 0.5·0.4 + 0.5·0.4
    assert c["ECE"] == pytest.approx(0.4)
    assert sum(c["bin_count"]) == 4


def test_evaluate_catalog_matches_by_targetid_and_maps_sdss():
    meta = Table({"TARGETID": [3, 1, 2, 9]})
    probs = np.array([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0.1, 0.1, 0.8, 0], [1, 0, 0, 0, 0]],
                     float)
    cat = make_catalog(meta, "five", probs, z=[2.0, 0.0001, 0.1, 0.0], zerr=[0.01] * 4,
                       model="test-1")
    truth = Table({"TARGETID": [1, 2, 3, 4], "CLASS": ["STAR", "GALAXY", "QSO", "STAR"],
                   "SUBCLASS": ["K3", "STARFORMING", "BROADLINE", "A0"],
                   "Z": [0.0, 0.1, 2.03, 0.0]})
    out = evaluate_catalog(cat, truth)
    json.dumps(out)
    assert out["class_set"] == "five" and out["n_matched"] == 3
    assert out["classification"]["accuracy"] == 1.0
    r = out["redshift"]
    assert r["n"] == 3 and r["GF_0.01"] == 1.0 and r["GF_0.003"] == pytest.approx(2 / 3)
    assert out["redshift_per_class"]["QSO_BROADLINE"]["MAD"] == pytest.approx(0.03 / 3.03)
    assert out["calibration"]["ECE"] == pytest.approx(0.2 / 3, abs=1e-6)


def test_evaluate_catalog_counts_bad_rows_as_errors():
    meta = Table({"TARGETID": [1, 2], "INPUT_FLAGS": [0, 4]})       # 4 = NO_GOOD_PIXELS
    cat = make_catalog(meta, "three", np.array([[1, 0, 0], [1, 0, 0.0]]), [0.0, 0.0],
                       [0.001, 0.001], "m")
    truth = Table({"TARGETID": [1, 2], "CLASS_LABEL": ["STAR", "STAR"], "Z": [0.0, 0.0]})
    out = evaluate_catalog(cat, truth, "three")
    assert out["n_no_data"] == 1
    assert out["classification"]["accuracy"] == 0.5
    assert out["redshift"]["n"] == 1


def test_evaluate_catalog_mismatch_is_clear():
    cat = Table({"TARGETID": [1, 2], "CLASS_LABEL": ["STAR", "QSO"]})
    truth = Table({"TARGETID": [5, 6], "CLASS": ["STAR", "QSO"]})
    with pytest.raises(ValueError, match="share no TARGETID"):
        evaluate_catalog(cat, truth, "three")


def test_roc_auc_is_the_pairwise_probability_with_ties_half():
    from specsift.metrics import roc_auc
    pos, neg = np.array([3.0, 2.0, 2.0, 0.5]), np.array([2.0, 1.0, 0.0])
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert roc_auc(pos, neg) == pytest.approx(np.mean(pairs))
    assert roc_auc(neg, pos) == pytest.approx(1 - np.mean(pairs))
