"""`specsift evaluate`: predictions mapped to the class set, an HTML report with its plots."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
from astropy.table import Table

from specsift.classes import map_labels
from specsift.cli import main
from specsift.metrics import evaluate_catalog

DEMO = str(resources.files("specsift") / "data" / "demo")


def test_model_labels_map_to_a_coarser_class_set():
    got = map_labels(["STAR_K3", "GALAXY_AGN", "QSO_BROADLINE", "QSO", "GALAXY", ""], "three")
    assert got.tolist() == ["STAR", "GALAXY", "QSO", "QSO", "GALAXY", ""]
    assert map_labels(["STAR_A0", "GALAXY_STARBURST", "GALAXY"], "five").tolist() == \
        ["STAR", "GALAXY_STARBURST", ""]


def test_thirteen_class_catalog_scored_on_three_classes():
    pred = Table({"TARGETID": [1, 2, 3], "CLASS_LABEL": ["STAR_K3", "GALAXY_AGN", "QSO"],
                  "Z": [0.0, 0.1, 2.0], "ZWARN": [0, 0, 0]})
    for name in ("STAR_K3", "GALAXY_AGN", "QSO"):
        pred[f"PROB_{name}"] = (pred["CLASS_LABEL"] == name).astype(float)
    truth = Table({"TARGETID": [1, 2, 3], "CLASS": ["STAR", "GALAXY", "GALAXY"],
                   "SUBCLASS": ["K3", "AGN", ""], "Z": [0.0, 0.1, 0.3]})
    m = evaluate_catalog(pred, truth, "three")
    assert m["classification"]["accuracy"] == 2 / 3
    assert m["calibration"]["n"] == 3            # probabilities summed into the 3 classes


def test_evaluate_gasnet_three_class_on_the_demo_set(tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", "--model", "gasnet", "--data", DEMO, "--class-set", "three",
               "--no-progress", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "class set three" in printed and "accuracy 0.9" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["class_set"] == "three" and metrics["n_matched"] == 58
    assert metrics["classification"]["accuracy"] >= 0.9
    page = (out / "index.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page
    for png in ("z_pred_vs_true.png", "confusion_matrix.png", "reliability.png"):
        assert f"src='{png}'" in page and (out / png).stat().st_size > 5000
    from specsift import load_model
    from specsift.io import read_catalog
    assert read_catalog(out / "catalog.fits").meta["MODELSHA"] == load_model("gasnet").file_sha256
    fib = Table.read(out / "catalog.fits", hdu="FIBERMAP")   # the inputs' identifiers
    assert len(fib) == 58 and np.isfinite(fib["RA"]).sum() == 8   # the 8 spec files have RA
    table_rows = np.char.endswith(np.asarray(fib["SOURCE"], str), "labelled-50-trimmed.fits")
    assert (fib["ROW"][table_rows] == np.arange(50)).all()        # rows of the 50-row file
