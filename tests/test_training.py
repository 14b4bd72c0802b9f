"""The training loop: streaming, determinism, checkpoints and resume; normalisation."""

import numpy as np
import pytest
import torch
from astropy.table import Table

from specsift.io.store import SpectralStore
from specsift.spectra import SpectraBatch
from specsift.training import StoreDataset, normalise, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy(n=300, p=64, seed=0):
    """Two classes: a bump at pixel 20 or at pixel 40, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.arange(p)
    flux = 1 + 3 * np.exp(-0.5 * ((x[None] - np.where(y, 40, 20)[:, None]) / 2) ** 2)
    flux = (flux + rng.normal(0, 0.3, (n, p))).astype(np.float32)
    meta = Table({"TARGETID": np.arange(n), "LABEL": y})
    return SpectraBatch(3.6 + 1e-4 * x, flux, np.full((n, p), 11.0, np.float32), meta=meta)


def _inputs(b):
    return torch.from_numpy(normalise(b.flux, b.ivar, b.mask))


def _targets(b):
    return torch.as_tensor(np.asarray(b.meta["LABEL"]), dtype=torch.long)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv1d(2, 4, 5, padding=2), torch.nn.ReLU(),
                               torch.nn.Dropout(0.2), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 2))


def _fit(net, data, val, **kw):
    kw.setdefault("lr", 3e-3)
    return train(net, torch.nn.functional.cross_entropy, data, val, make_inputs=_inputs,
                 make_targets=_targets, batch_size=32, seed=1, progress=False,
                 log=None, chunk_size=64, buffer_chunks=2, **kw)


def _acc(out, y):
    return {"acc": float((out.argmax(1) == y).float().mean())}


def test_normalise_scale_free_and_masks():
    b = _toy(4)
    a = normalise(b.flux, b.ivar, b.mask)
    c = normalise(1000 * b.flux, b.ivar / 1e6, b.mask)
    assert a.shape == (4, 2, 64)
    np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-4)
    mask = np.zeros((4, 64), bool)
    mask[0, :10] = True
    mask[1] = True
    d = normalise(b.flux, b.ivar, mask)
    assert np.all(d[0, :, :10] == 0) and np.all(d[1] == 0) and np.all(d[0, 1, 10:] > 0)


@pytest.mark.parametrize("width", [1, 2, 7, 101])
def test_row_median_mad_matches_nanmedian(width):
    from specsift.spectra import row_median_mad
    rng = np.random.default_rng(width)
    a = rng.normal(size=(200, width)).astype(np.float32)
    a[::3] = np.round(a[::3])                                  # ties
    a[rng.random(a.shape) < rng.random((200, 1))] = np.nan     # 0–100 % bad per row
    a[3] = np.nan
    med, mad = row_median_mad(a, np.isfinite(a).sum(1))
    with pytest.warns(RuntimeWarning):
        ref = np.nanmedian(a, axis=1, keepdims=True)
        ref_mad = np.nanmedian(np.abs(a - ref), axis=1, keepdims=True)
    np.testing.assert_allclose(med, ref, rtol=1e-6)            # NaN where NaN, too
    np.testing.assert_allclose(mad, ref_mad, rtol=1e-6, atol=1e-7)


def test_dataset_streams_every_row_once_and_reshuffles(tmp_path):
    b = _toy(250)
    with SpectralStore(tmp_path / "s.h5", "w", chunk_rows=32) as s:
        s.append(b)
    ds = StoreDataset(tmp_path / "s.h5", lambda bb: np.asarray(bb.meta["TARGETID"]), None,
                      batch_size=32, chunk_size=50, buffer_chunks=2, seed=3)
    ds.set_epoch(0)
    e0 = np.concatenate([x for x, _ in ds])
    ds.set_epoch(1)
    e1 = np.concatenate([x for x, _ in ds])
    assert sorted(e0) == list(range(250)) and sorted(e1) == list(range(250))
    assert not np.array_equal(e0, e1)
    assert len(ds) == 8                       # ceil(250 / 32)
    ds.set_epoch(0)
    assert np.array_equal(e0, np.concatenate([x for x, _ in ds]))      # seeded
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    assert sorted(np.concatenate([x.numpy() for x, _ in loader])) == list(range(250))


def test_train_learns_and_keeps_best(tmp_path):
    data, val = _toy(300, seed=0), _toy(100, seed=1)
    net = _net()
    res = _fit(net, data, val, epochs=4, val_metrics_fn=_acc)
    assert len(res.history) == 4
    assert res.history[-1]["acc"] > 0.9
    assert res.best_val_loss == min(h["val_loss"] for h in res.history)
    assert res.history[0]["train_loss"] > res.history[-1]["train_loss"]


def test_resume_continues_exactly(tmp_path):
    data, val = _toy(200, seed=0), _toy(60, seed=1)
    with SpectralStore(tmp_path / "t.h5", "w", chunk_rows=32) as s:
        s.append(data)
    full = _net()
    _fit(full, tmp_path / "t.h5", val, epochs=3)
    # interrupted run: 2 epochs with the 3-epoch schedule, then resume for the third
    part = _net()
    _fit(part, tmp_path / "t.h5", val, epochs=3, checkpoint_dir=tmp_path / "ck",
         max_epochs_this_run=2)
    ck = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)   # plain data only
    assert ck["epoch"] == 1
    again = _net()
    res = _fit(again, tmp_path / "t.h5", val, epochs=3, checkpoint_dir=tmp_path / "ck",
               resume=True)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    for a, b in zip(full.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_early_stopping_and_errors(tmp_path):
    data = _toy(100)
    net = _net()
    res = _fit(net, data, data, epochs=30, patience=1, lr=0.0)   # nothing improves
    assert res.stopped_early and len(res.history) == 2
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        _fit(_net(), data, None, epochs=1, resume=True, checkpoint_dir=tmp_path / "none")
    _fit(_net(), data, None, epochs=1, checkpoint_dir=tmp_path / "ck")
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 2))
    with pytest.raises(ValueError, match="does not fit this model"):
        _fit(other, data, None, epochs=2, resume=True, checkpoint_dir=tmp_path / "ck")


# ---------------------------------------------------------------------------- the model interface
from specsift.models.base import load_model  # noqa: E402
from specsift.models.speccznet import SpecCZNet  # noqa: E402
from specsift.simulate import simulate_batch as labelled_batch  # noqa: E402
from specsift.spectra import LogGrid  # noqa: E402

TINY = dict(n_bins=48, widths=(8, 8, 8, 8, 8), head_channels=4, hidden=16, z_hidden=8)


@pytest.fixture(scope="module")
def tiny_model():
    data = labelled_batch(96, "five", seed=5)
    torch.set_num_threads(1)
    return SpecCZNet("five", **TINY).fit(data, None, epochs=1, batch_size=32, progress=False,
                                         log=None), data


def test_save_load_round_trip(tiny_model, tmp_path):
    model, data = tiny_model
    cat = model.predict(data[:20])
    path = model.save(tmp_path / "m.pt")
    again = load_model(path)
    assert isinstance(again, SpecCZNet) and again.class_set == "five"
    assert again.training["n_train"] == 96
    cat2 = again.predict(data[:20])
    np.testing.assert_allclose(cat["Z"], cat2["Z"], rtol=1e-5)
    np.testing.assert_allclose(cat["PROB_STAR"], cat2["PROB_STAR"], rtol=1e-5)
    assert list(cat["CLASS_LABEL"]) == list(cat2["CLASS_LABEL"])
    with pytest.raises(ValueError, match="class set 'five', not 'three'"):
        load_model(path, class_set="three")
    with pytest.raises(ValueError, match="trained on grid"):
        load_model(path, grid=LogGrid(3.6, 1e-4, 3000))


def test_wrong_grid_and_class_set_errors(tmp_path):
    data = labelled_batch(8, "five", seed=6)
    other = data.resample(LogGrid(3.58, 1e-4, 3000))
    with pytest.raises(ValueError, match="model expects"):
        SpecCZNet("five", **TINY).fit(other, None, epochs=1, progress=False, log=None)
    with pytest.raises(ValueError, match="no spectra labelled in class set 'galaxy-types'"):
        SpecCZNet("galaxy-types", **TINY).fit(data, None, epochs=1, progress=False, log=None)
    with pytest.raises(ValueError, match="unknown class set"):
        SpecCZNet("seven")


def test_predict_flags_bad_spectrum_and_keeps_rest(tiny_model):
    model, data = tiny_model
    part = data[:6]
    flux = part.flux.copy()
    flux[2] = np.nan
    with pytest.warns(UserWarning):
        bad = SpectraBatch(part.loglam, flux, part.ivar, part.mask, part.meta)
    cat = model.predict(bad)
    ref = model.predict(part)
    assert len(cat) == 6
    assert cat["Z"][2] == -1 and cat["ZWARN"][2] != 0 and cat["CLASS_LABEL"][2] == ""
    keep = np.arange(6) != 2
    np.testing.assert_allclose(cat["Z"][keep], ref["Z"][keep], rtol=1e-5)
    assert np.all(np.isfinite(cat["Z"])) and np.all(cat["ZERR"][keep] > 0)
    # a spectrum on another grid is resampled, not refused
    assert len(model.predict(part.resample(LogGrid(3.57, 1.2e-4, 3000)))) == 6


def test_crafted_checkpoint_runs_no_code(tmp_path):
    """A checkpoint whose pickle would create a file is refused before anything runs."""
    import os

    class MakesMarker:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "ran"),))

    (tmp_path / "ck").mkdir()
    torch.save({"model": MakesMarker()}, tmp_path / "ck" / "last.pt")
    with pytest.raises(ValueError, match="last.pt.*refused"):
        _fit(_net(), _toy(40), None, epochs=1, checkpoint_dir=tmp_path / "ck", resume=True)
    assert not (tmp_path / "ran").exists()


def test_train_config_groups_the_settings(tmp_path):
    """One TrainConfig or the same settings as keywords train the same weights; unknown
    settings and schedules are refused before any data is read."""
    from specsift.training import TrainConfig
    data = _toy(80)
    a, b = _net(), _net()
    _fit(a, data, None, epochs=2)
    cfg = TrainConfig(epochs=2, batch_size=32, seed=1, progress=False, chunk_size=64,
                      buffer_chunks=2, lr=3e-3)
    train(b, torch.nn.functional.cross_entropy, data, None, make_inputs=_inputs,
          make_targets=_targets, config=cfg, log=None)
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(x, y)
    assert TrainConfig.of(cfg, epochs=5).epochs == 5 and cfg.epochs == 2
    with pytest.raises(TypeError, match="unknown setting.*epoch_count"):
        _fit(_net(), data, None, epoch_count=2)
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainConfig(schedule="linear")


def test_dataset_reads_stores_through_the_io_store_path(tmp_path):
    """A store streams through io's store path (ROW, INPUT_FLAGS as `specsift read` gives
    them); a subset (``indices``) yields exactly its rows, from windows of rows."""
    from specsift.io import read
    b = _toy(300)
    with SpectralStore(tmp_path / "s.h5", "w", chunk_rows=32) as s:
        s.append(b)
    subset = np.sort(np.random.default_rng(0).choice(300, 70, replace=False))
    seen = []
    ds = StoreDataset(tmp_path / "s.h5", lambda bb: bb, None, batch_size=16, chunk_size=8,
                      buffer_chunks=2, seed=1, indices=subset)
    ds.set_epoch(0)
    for x, _ in ds:
        seen.append(x)
    got = SpectraBatch.concatenate(seen)
    order = np.argsort(np.asarray(got.meta["ROW"]))
    assert list(np.asarray(got.meta["ROW"])[order]) == list(subset)
    ref = read(tmp_path / "s.h5", grid=None)
    np.testing.assert_array_equal(got.flux[order], ref.flux[subset])
    for col in ("TARGETID", "INPUT_FLAGS", "SOURCE"):
        assert list(got.meta[col][order]) == list(ref.meta[col][subset]), col


def test_trainable_freezes_everything_else_bit_identically():
    """trainable=("4",) trains the last Linear only: the conv weights and the BatchNorm's
    running statistics (a frozen module stays in eval mode) come back bit-identical."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 5, padding=2), torch.nn.BatchNorm1d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _fit(net, _toy(200), None, epochs=2, trainable="4")
    after = net.state_dict()
    for k, v in before.items():
        same = torch.equal(v, after[k])
        assert same != k.startswith("4."), k          # frozen ones equal, the head moved
    assert all(p.requires_grad == n.startswith("4.") for n, p in net.named_parameters())


def test_trainable_naming_no_parameter_is_an_error():
    with pytest.raises(ValueError, match="'head'.*no parameter"):
        _fit(_net(), _toy(64), None, epochs=1, trainable=("head",))


def test_trainable_has_one_normal_form():
    """A bare prefix is one prefix, not its characters, for the loop and for the models that
    ask what was trained (gasnet's temperature-only recalibration compares with ("cls",))."""
    from specsift.training import TrainConfig, trainable_prefixes
    assert trainable_prefixes(None) is None
    assert trainable_prefixes("cls") == ("cls",)
    assert trainable_prefixes(["cls", "z_head"]) == ("cls", "z_head")
    assert TrainConfig(trainable="cls").trainable == ("cls",)
