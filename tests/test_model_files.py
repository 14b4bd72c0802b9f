"""Model files and checkpoints run no code when loaded, and names are looked up in a fixed order."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from specsift import torchfile
from specsift.models.base import FILE_FORMAT, bundled_path, load_model, model_ref


class _MakesMarker:
    """Unpickling this object creates a marker file (stands for any code a file could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(path, marker) -> None:
    torch.save({"format": FILE_FORMAT, "model": "vgg1d", "version": "1", "class_set": "three",
                "grid": {}, "training": {}, "metrics": {}, "state": _MakesMarker(marker)}, path)


def test_crafted_pickle_in_a_model_file_runs_no_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _crafted(path, marker)
    with pytest.raises(torchfile.UnsafeFileError, match="evil.pt.*refused"):
        load_model(path)
    assert not marker.exists()


def test_bundled_models_are_plain_tensor_files():
    for name in ("gasnet", "speccznet", "eigen"):
        path = bundled_path(name)
        if path is None:
            continue
        torch.load(path, map_location="cpu", weights_only=True)       # raises on any object
        assert os.path.getsize(path) < 4_000_000


def test_numpy_state_round_trips_exactly(tmp_path):
    state = {"a": np.arange(5, dtype=np.float64) / 3, "u": np.array([1, 2**32 - 1], np.uint32),
             "s": np.float32(0.1), "t": (np.random.get_state(), [np.int64(3)]),
             "w": torch.ones(2)}
    back = torchfile.load(torchfile.save(state, tmp_path / "s.pt"))
    assert back["a"].dtype == np.float64 and np.array_equal(back["a"], state["a"])
    assert back["u"].dtype == np.uint32 and back["u"].tolist() == [1, 2**32 - 1]
    assert back["s"] == float(np.float32(0.1)) and back["t"][1] == [3]
    np.random.set_state(back["t"][0])                                 # a usable RNG state
    assert torch.equal(back["w"], state["w"])
    with pytest.raises(TypeError, match="object"):
        torchfile.save({"bad": np.array(["x", None], dtype=object)}, tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()


def test_registered_name_is_not_shadowed_by_a_file_in_the_cwd(tmp_path, monkeypatch):
    if bundled_path("gasnet") is None:
        pytest.skip("gasnet weights not bundled")
    marker = tmp_path / "ran"
    _crafted(tmp_path / "gasnet", marker)
    shutil.copy(bundled_path("speccznet") or bundled_path("eigen"), tmp_path / "eigen")
    monkeypatch.chdir(tmp_path)
    assert load_model("gasnet").name == "gasnet" and not marker.exists()
    assert model_ref("gasnet") == "gasnet"
    with pytest.raises(ValueError, match="unknown model 'mymodel'.*pass ./mymodel"):
        shutil.copy(bundled_path("eigen"), tmp_path / "mymodel")
        load_model("mymodel")                       # not a path: never read from the cwd
    assert load_model("./mymodel").name == "eigen"  # looks like a path: a file
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model("nope.pt")


def test_predict_with_a_registered_name_ignores_a_same_named_file(tmp_path, monkeypatch):
    from specsift.pipeline.run import _model_ref
    if bundled_path("eigen") is None:
        pytest.skip("eigen weights not bundled")
    marker = tmp_path / "ran"
    _crafted(tmp_path / "eigen", marker)
    monkeypatch.chdir(tmp_path)
    model, ref = _model_ref("eigen")
    assert ref == "eigen" and model.name == "eigen" and not marker.exists()


def test_upgrade_converts_an_older_numpy_file_and_runs_no_code(tmp_path):
    """An older specsift file (NumPy arrays and scalars pickled inside) is refused by load(),
    converted by upgrade() to the same values, and a crafted pickle is refused by upgrade()
    too — without creating its marker file."""
    from specsift.torchfile import UnsafeFileError, load, upgrade

    old = {"mean": np.linspace(0, 1, 7, dtype=np.float32), "n": np.int64(3),
           "state": {"w": torch.ones(2, 2), "hist": np.arange(4, dtype=np.uint8)}}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(UnsafeFileError):
        load(tmp_path / "old.pt")
    got = load(upgrade(tmp_path / "old.pt", tmp_path / "new.pt"))
    np.testing.assert_array_equal(got["mean"], old["mean"])
    assert got["mean"].dtype == np.float32 and got["n"] == 3
    assert got["state"]["hist"].dtype == np.uint8 and torch.equal(got["state"]["w"], torch.ones(2, 2))

    marker = tmp_path / "ran"
    _crafted(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeFileError, match="refused"):
        upgrade(tmp_path / "evil.pt", tmp_path / "evil-new.pt")
    assert not marker.exists() and not (tmp_path / "evil-new.pt").exists()
