"""The star-velocity head (models/star_head.py): a real LAMOST star moved by a known shift is
measured moved; ``predict`` (``--no-verify``) takes a STAR row's Z from the head while the
verification stage's inputs stay the network's own; bad input gives a flag, not a crash."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from specsift import io
from specsift.constants import C_KMS
from specsift.flags import ZWARN
from specsift.models.base import load_model, model_class
from specsift.models.star_head import StarVelocityHead, bundled_head, star_features, visit_floor
from specsift.spectra import DEFAULT_GRID, SpectraBatch

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DR10 = SHARED / "lamost-real" / "dr10-afg" / "spectra"
#: LAMOST DR10 G star, held out of every fine-tune (test_verify_stars.G_STARS), S/N_g 62
STAR = DR10 / "spec-59646-HD101506N312805B03_sp11-216.fits.gz"
needs_shared = pytest.mark.skipif(not STAR.is_file(), reason="needs ../shared/data/lamost-real")


def _read(path) -> SpectraBatch:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return io.read(path, grid=DEFAULT_GRID)


def _moved(batch: SpectraBatch, k: int) -> SpectraBatch:
    """The spectrum moved redward by exactly ``k`` pixels (z' = (1+z)·10^(k·step) − 1)."""
    f = np.zeros_like(batch.flux)
    iv = np.zeros_like(batch.ivar)
    f[:, k:], iv[:, k:] = batch.flux[:, :-k], np.where(batch.mask, 0, batch.ivar)[:, :-k]
    return SpectraBatch(batch.loglam, f, iv)


def test_capability_declared():
    assert model_class("gasnet").capabilities.star_velocity
    assert model_class("speccznet").capabilities.star_velocity
    assert not model_class("eigen").capabilities.star_velocity


@needs_shared
@pytest.mark.parametrize("k", [4, -6])
def test_head_recovers_a_known_shift_of_a_real_lamost_star(k):
    head = bundled_head()
    b = _read(STAR)
    z0, e0, ok0 = head.measure(b.flux, b.ivar, b.mask)
    m = _moved(b, k) if k > 0 else _moved_blue(b, -k)
    z1, e1, ok1 = head.measure(m.flux, m.ivar, m.mask)
    assert ok0[0] and ok1[0]
    want = (1 + z0[0]) * 10 ** (k * DEFAULT_GRID.step) - 1
    assert abs(z1[0] - want) * C_KMS < 20, (z0, z1, want)
    assert abs(z1[0] - z0[0]) * C_KMS > 250          # it moved by ≈ k · 69 km/s
    # and against LAMOST's own velocity of this held-out star (labels.csv Z), with a ZERR
    from astropy.table import Table
    lab = Table.read(DR10.parent / "labels.csv", format="ascii.csv")
    z_lamost = float(lab["Z"][list(lab["file"]).index(f"spectra/{STAR.name}")])
    assert abs(z0[0] - z_lamost) * C_KMS < 20
    assert 0 < e0[0] * C_KMS < 20


def _moved_blue(batch, k):
    f = np.zeros_like(batch.flux)
    iv = np.zeros_like(batch.ivar)
    f[:, :-k], iv[:, :-k] = batch.flux[:, k:], np.where(batch.mask, 0, batch.ivar)[:, k:]
    return SpectraBatch(batch.loglam, f, iv)


@needs_shared
@pytest.mark.parametrize("name", ["gasnet", "speccznet"])
def test_no_verify_star_z_comes_from_the_head(name):
    from specsift.pipeline.local import StageOptions, predict_batch
    model = load_model(name)
    b = _read(STAR)
    cat = predict_batch(model, b, StageOptions(verify=False, lines=False))
    assert cat["SPECTYPE"][0] == "STAR"
    z, zerr, ok = bundled_head().measure(b.flux, b.ivar, b.mask, surveys=["LAMOST"])
    assert ok[0] and cat["Z"][0] == pytest.approx(z[0], abs=1e-9)
    # ZERR: the head's σ ⊕ its per-visit LAMOST floor (from the training split's repeats)
    floor = visit_floor(bundled_head(), b.meta, 1)[0]
    assert 1 < floor * C_KMS < 10
    assert cat["ZERR"][0] == pytest.approx(np.hypot(zerr[0], floor * (1 + z[0])), rel=1e-5)
    # the verification stage proposes from the network alone (verified answers unchanged)
    table, _ = model.propose(b)
    assert abs(table["Z"][0] - z[0]) > 1e-9


def test_nonfinite_input_is_flagged_not_a_crash():
    model = load_model("gasnet")
    rng = np.random.default_rng(1)
    flux = (1 + 0.05 * rng.normal(size=(3, DEFAULT_GRID.size))).astype(np.float32)
    ivar = np.full_like(flux, 400.0)
    flux[0, ::3] = np.nan                 # NaN pixels
    flux[1] = np.inf                      # nothing finite at all
    b = SpectraBatch(DEFAULT_GRID.loglam, flux, ivar)
    # the head itself: no usable pixels → not ok, never an exception or NaN leaking through
    z, zerr, ok = bundled_head().measure(flux, ivar)
    assert not ok[1]
    assert np.all(star_features(flux, ivar)[1] == 0)
    cat = model.predict(b)
    assert len(cat) == 3
    assert cat["ZWARN"][0] & ZWARN.BAD_INPUT and cat["ZWARN"][1] & ZWARN.BAD_INPUT
    assert np.all(np.isfinite(np.asarray(cat["Z"], float)))


def test_head_file_is_plain_data(tmp_path):
    """The weights file holds tensors and plain data only (torchfile's weights_only load),
    and a saved head loads back to the same answers."""
    from importlib import resources

    import torch

    from specsift.models.star_head import HEAD_FILE
    path = Path(str(resources.files("specsift") / "data" / "models" / HEAD_FILE))
    blob = torch.load(path, map_location="cpu", weights_only=True)
    assert blob["format"].startswith("specsift-star-rv")
    head = bundled_head()
    head.save(tmp_path / "h.pt")
    again = StarVelocityHead.load(tmp_path / "h.pt")
    x = (1 + 0.1 * np.sin(np.arange(DEFAULT_GRID.size) / 7.0))[None].astype(np.float32)
    iv = np.full_like(x, 100.0)
    np.testing.assert_allclose(again.measure(x, iv)[0], head.measure(x, iv)[0], atol=1e-9)
    with pytest.raises(ValueError, match="not a star-velocity head"):
        StarVelocityHead.from_state({"format": "other"})
