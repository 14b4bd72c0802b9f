"""vgg1d, the simulated emission-line stars, and the loop: oracle run, stop and resume."""

import numpy as np
import pytest
import torch
from _spectra import emission_pool

from specsift.active.db import LabelDB
from specsift.active.loop import ActiveLoop, LoopConfig
from specsift.active.oracle import TruthOracle
from specsift.active.pool import open_pool
from specsift.io.store import SpectralStore
from specsift.models.base import load_model
from specsift.models.vgg1d import VGG1D, minmax_scale, window_grid
from specsift.simulate.emission_stars import (
    HALPHA,
    LAMOST_GRID,
    balmer_emission,
    simulate_emission_stars,
)


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory):
    return emission_pool(tmp_path_factory.mktemp("al") / "pool.h5", 600, 0.1, seed=3)


def test_window_grid_and_scaling():
    g = window_grid()
    assert g.size == 140 and abs(g.wave[0] - 6519) < 1e-6 and 6730 < g.wave[-1] < 6734
    x = minmax_scale(np.array([[1.0, 3.0, 2.0, 9.0]]), np.array([[False, False, False, True]]))
    assert x.tolist() == [[-1.0, 1.0, 0.0, 0.0]]       # masked pixel ignored and zeroed


def test_vgg1d_architecture_and_file_roundtrip(tmp_path):
    m = VGG1D(seed=0)
    convs = [l for l in m.net.features if isinstance(l, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256]
    dense = [l for l in m.net.embed if isinstance(l, torch.nn.Linear)] + [m.net.head]
    assert [d.out_features for d in dense] == [512, 512, 3]
    b = simulate_emission_stars(20, rare_fraction=0.5, seed=1)
    m2 = VGG1D(width=0.125, seed=0)
    p = m2.predict_proba(b)
    m2.save(tmp_path / "v.pt")
    back = load_model(tmp_path / "v.pt")
    assert np.allclose(back.predict_proba(b), p, atol=1e-6)
    cat = back.predict(b)
    assert set(cat["SPECTYPE"]) == {"STAR"} and "PROB_DOUBLE_PEAK" in cat.colnames


def test_emission_profiles_are_visible_and_conserve_flux():
    ll = LAMOST_GRID.loglam
    em = balmer_emission(ll, HALPHA, [[0.0]], [[60.0]], [[10.0]])
    dlam = np.diff(10 ** np.concatenate([[ll[0] - 5e-5], (ll[1:] + ll[:-1]) / 2, [ll[-1] + 5e-5]]))
    assert abs((em[0] * dlam).sum() - 10.0) < 0.05    # equivalent width kept (Å)
    b = simulate_emission_stars(400, rare_fraction=0.5, seed=2)
    lab = np.asarray(b.meta["LABEL"])
    assert {"ABSORPTION", "EMISSION", "DOUBLE_PEAK"} == set(lab)
    w = b.wave
    core = (w > HALPHA - 6) & (w < HALPHA + 6)
    side = ((w > 6470) & (w < 6510)) | ((w > 6620) & (w < 6660))
    peak = b.flux[:, core].max(1) / np.median(b.flux[:, side], 1)
    assert np.median(peak[lab == "EMISSION"]) > 1.3 > np.median(peak[lab == "ABSORPTION"])


def test_loop_with_oracle_finds_rare_objects(pool_path, tmp_path):
    pool = open_pool(pool_path)
    cfg = LoopConfig(strategy="entropy", batch=30, initial=30, width=0.125, train_steps=40, max_epochs=20)
    loop = ActiveLoop(tmp_path / "l.sqlite", pool, cfg, oracle=TruthOracle(pool), log=None)
    st = loop.run(max_labels=90)
    assert st["labelled"] == 90 and st["state"] == "trained"
    truth = np.asarray(pool.store.read_meta(["LABEL"])["LABEL"])
    labels = loop.db.current_labels()
    assert all(truth[i] == l for i, l in labels.items())
    rare = sum(l != "ABSORPTION" for l in labels.values())
    assert rare > 0.1 * 90 * 2          # uncertainty sampling beats the 10 % base rate clearly


def test_stop_and_resume_gives_the_same_run(pool_path, tmp_path):
    """Interrupt the loop inside a retraining, start a fresh process-like loop on the same
    database: it redoes the training and ends exactly where an uninterrupted run ends."""
    pool = open_pool(pool_path)
    cfg = LoopConfig(strategy="margin", batch=25, initial=25, width=0.125, train_steps=30, seed=4)
    ref = ActiveLoop(tmp_path / "ref.sqlite", pool, cfg, oracle=TruthOracle(pool), log=None)
    ref.run(iterations=3)

    calls = {"n": 0}

    def crash(model):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("stopped by the user")
        return {}

    db_path = tmp_path / "res.sqlite"
    first = ActiveLoop(db_path, pool, cfg, oracle=TruthOracle(pool), evaluate=crash, log=None)
    with pytest.raises(KeyboardInterrupt):
        first.run(iterations=3)
    assert LabelDB(db_path).last_iteration()["state"] == "training"
    again = ActiveLoop(db_path, pool, None, oracle=TruthOracle(pool), log=None)
    assert again.config.strategy == "margin"            # configuration comes from the database
    again.run(iterations=1)
    a, b = LabelDB(tmp_path / "ref.sqlite"), LabelDB(db_path)
    assert [q["item"] for q in a.queue()] == [q["item"] for q in b.queue()]
    assert a.current_labels() == b.current_labels()
    assert a.last_iteration()["iteration"] == b.last_iteration()["iteration"] == 2


def test_resume_on_another_pool_is_refused(pool_path, tmp_path):
    ActiveLoop(tmp_path / "x.sqlite", open_pool(pool_path), LoopConfig(width=0.125), log=None)
    other = tmp_path / "other.h5"
    with SpectralStore(other, "w") as s:
        s.append(simulate_emission_stars(10, seed=9))
    with pytest.raises(ValueError, match="belongs to another pool"):
        ActiveLoop(tmp_path / "x.sqlite", open_pool(other), None, log=None)


def test_finished_run_resumes_as_a_no_op(pool_path, tmp_path):
    pool = open_pool(pool_path)
    cfg = LoopConfig(batch=20, initial=20, width=0.125, train_steps=10, max_epochs=5)
    ActiveLoop(tmp_path / "d.sqlite", pool, cfg, oracle=TruthOracle(pool), log=None).run(max_labels=40)
    again = ActiveLoop(tmp_path / "d.sqlite", pool, None, oracle=TruthOracle(pool), log=None)
    st = again.run(max_labels=40)
    assert st["labelled"] == 40 and st["state"] == "trained"
