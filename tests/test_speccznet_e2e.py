"""Tiny end-to-end run through the CLI: simulate → train → evaluate → explain."""

import json

import numpy as np
import pytest
import torch

from specsift.cli import main
from specsift.io import read_catalog
from specsift.io.store import SpectralStore
from specsift.simulate import simulate_batch as labelled_batch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    for name, n, seed in (("train", 500, 11), ("val", 150, 12)):
        with SpectralStore(d / f"{name}.h5", "w") as s:
            s.append(labelled_batch(n, "five", seed=seed))
    return d


def test_train_predict_evaluate_explain(stores, capsys):
    d = stores
    model = d / "m.pt"
    rc = main(["train", "--model", "speccznet", "--data", str(d / "train.h5"), "--val",
               str(d / "val.h5"), "-o", str(model), "--epochs", "3", "--batch-size", "32",
               "--lr", "3e-3", "--no-progress", "--set", "widths=12,16,16,24,24", "--set", "n_bins=200"])
    assert rc == 0 and model.exists()
    assert model.stat().st_size < 5e6                    # small weights
    assert (d / "m.ckpt" / "last.pt").exists()
    # resume after the last epoch is a no-op that still writes the model
    assert main(["train", "--model", "speccznet", "--data", str(d / "train.h5"), "-o",
                 str(d / "m2.pt"), "--epochs", "3", "--resume", "--checkpoint-dir",
                 str(d / "m.ckpt"), "--no-progress"]) == 0

    out = d / "eval"
    assert main(["evaluate", "--model", str(model), "--data", str(d / "val.h5"), "-o", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_matched"] == 150
    acc = m["classification"]["accuracy"]
    assert acc > 0.5, acc                                    # chance is 0.2
    assert m["redshift"]["n"] == 150 and m["redshift"]["GF_0.01"] > 0.2
    # ZERR was scaled on this validation set: 68 % coverage there by construction
    assert 0.62 <= m["redshift"]["coverage_1sigma"] <= 0.74
    for png in ("confusion_matrix.png", "z_pred_vs_true.png", "dz_vs_snr.png", "reliability.png"):
        assert (out / png).stat().st_size > 1000
    assert "Per class" in (out / "report.md").read_text()

    # catalog-vs-truth form gives the same numbers
    out2 = d / "eval2"
    assert main(["evaluate", str(out / "catalog.fits"), "--truth", str(d / "val.h5"),
                 "-o", str(out2)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    assert m2["classification"]["accuracy"] == pytest.approx(acc)
    cat = read_catalog(out / "catalog.fits")
    assert set(np.unique(np.asarray(cat["SPECTYPE"]).astype(str))) <= {"STAR", "GALAXY", "QSO", ""}

    ex = d / "explain"
    assert main(["explain", "--model", str(model), str(d / "val.h5"), "-o", str(ex),
                 "--limit", "24", "--n-plots", "2", "--steps", "4"]) == 0
    info = json.loads((ex / "explain.json").read_text())
    assert len(info["spectra"]) == 24 and (ex / "class_attention.png").exists()
    assert sum(1 for r in info["spectra"] if "plot" in r) == 2


def test_train_init_fine_tunes_from_a_model_file(stores, capsys):
    """--init starts from the file's weights (at lr ≈ 0 they stay), records where it came
    from, and refuses another model kind or new constructor options."""
    from specsift.models.base import load_model
    d = stores
    base = d / "base.pt"
    common = ["--data", str(d / "train.h5"), "--val", str(d / "val.h5"), "--batch-size", "64",
              "--no-progress"]
    assert main(["train", "--model", "speccznet", *common, "-o", str(base), "--epochs", "1",
                 "--set", "widths=8,8,8,8,8", "--set", "n_bins=100"]) == 0
    tuned = d / "tuned.pt"
    assert main(["train", "--model", "speccznet", *common, "-o", str(tuned), "--epochs", "1",
                 "--lr", "1e-12", "--weight-decay", "0", "--init", str(base)]) == 0
    a, b = load_model(base), load_model(tuned)
    assert b.training["init"] == str(base)
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        if pa.is_floating_point() and "running" not in name:
            torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-4)
    capsys.readouterr()
    assert main(["train", "--model", "gasnet", *common, "-o", str(d / "x.pt"),
                 "--init", str(base)]) != 0
    assert "not a 'gasnet'" in capsys.readouterr().err
    assert main(["train", "--model", "speccznet", *common, "-o", str(d / "x.pt"), "--init",
                 str(base), "--set", "n_bins=50"]) != 0
    assert "drop --class-set/--set" in capsys.readouterr().err
    assert not (d / "x.pt").exists()
