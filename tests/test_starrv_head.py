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
    # SUBTYPE: the verification stage's naming (LAMOST library + letter vote) at the head's
    # z — the letter LAMOST gives this G star, whatever the network's own class says
    from specsift.verify.subtype import star_subtypes_at
    assert cat["SUBTYPE"][0] == star_subtypes_at(b, [0], z[:1])[0]
    assert str(cat["SUBTYPE"][0])[:1] == "G"
    # the verification stage proposes from the network alone (verified answers unchanged)
    table, _ = model.propose(b)
    assert abs(table["Z"][0] - z[0]) > 1e-9
    verified = predict_batch(model, b, StageOptions(verify=True, lines=False))
    assert str(verified["SUBTYPE"][0])[:1] == "G"


@needs_shared
def test_star_rows_the_head_cannot_measure_keep_the_network_subtype():
    """name_star_rows names only the rows it is given (those with the head's z)."""
    from astropy.table import Table

    from specsift.models.star_head import name_star_rows
    b = _read(STAR)
    cat = Table({"Z": [0.0], "SUBTYPE": ["K1"]})
    name_star_rows(b, cat, np.zeros(0, np.int64))
    assert cat["SUBTYPE"][0] == "K1"
    name_star_rows(b, cat, np.array([0]))
    assert str(cat["SUBTYPE"][0])[:1] == "G"


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


def _features_reference(flux, ivar, mask=None, half=50):
    """star_features as first written (index-gathered windows, np.nanmedian, channels in
    float64 then cast): the fast form must give the same pixels, to float32 rounding."""
    flux = np.atleast_2d(np.asarray(flux, np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, np.float64))
    with np.errstate(invalid="ignore"):
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        good &= ~np.atleast_2d(np.asarray(mask, bool))
    f = np.where(good, flux, 0.0)
    n, p = f.shape
    cf, cw = np.zeros((n, p + 1)), np.zeros((n, p + 1))
    np.cumsum(f, axis=1, out=cf[:, 1:])
    np.cumsum(good, axis=1, out=cw[:, 1:])
    lo, hi = np.clip(np.arange(p) - half, 0, p), np.clip(np.arange(p) + half + 1, 0, p)
    cnt = cw[:, hi] - cw[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        cont = (cf[:, hi] - cf[:, lo]) / cnt
    good &= cnt >= 10
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(good, cont, np.nan)[:, ::8], axis=1)
    ok_row = np.isfinite(med) & (med > 0)
    good &= ok_row[:, None]
    cont = np.maximum(cont, 0.05 * np.where(ok_row, med, 1.0)[:, None])
    out = np.zeros((n, 2, p), np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.clip(flux / cont - 1.0, -2.0, 2.0)
        s = np.log1p(np.clip(cont * np.sqrt(np.where(good, ivar, 0.0)), 0.0, 1e4))
    out[:, 0] = np.where(good, r, 0.0)
    out[:, 1] = np.where(good, s, 0.0)
    return out


def _awkward_rows(n=8, p=DEFAULT_GRID.size, seed=3):
    """Star-like rows with the cases the edges of the fast paths meet: NaN pixels, a row with
    nothing finite, zero ivar at one end, a masked stretch, a row with fewer than 10 good
    pixels per window, an even and an odd count of finite sampled levels."""
    rng = np.random.default_rng(seed)
    x = np.arange(p)
    flux = (1 + 0.3 * np.sin(x / 300.0))[None] * (1 - 0.4 * np.exp(-0.5 * ((x[None] - rng.uniform(
        200, p - 200, (n, 1))) / 3.0) ** 2)) + 0.02 * rng.normal(size=(n, p))
    flux = flux.astype(np.float32)
    ivar = np.full_like(flux, 900.0)
    mask = np.zeros(flux.shape, bool)
    flux[0, ::3] = np.nan
    flux[1] = np.inf
    ivar[2, :1500] = 0
    mask[3, 1000:2600] = True
    ivar[4, ::12] = 0
    ivar[4, 1::12] = 0
    ivar[5] = 0
    ivar[5, ::15] = 900.0              # < 10 good pixels in most windows
    ivar[6, : p - 8 * 7] = 0           # an odd/even count of sampled levels at the end
    return flux, ivar, mask


def _assert_same_features(got, want):
    np.testing.assert_array_equal(got == 0, want == 0)      # the same good pixels
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=3e-7)


def test_fast_features_equal_the_reference_formula():
    flux, ivar, mask = _awkward_rows()
    for m in (None, mask):
        _assert_same_features(star_features(flux, ivar, m), _features_reference(flux, ivar, m))
    for half in (0, 1, 5, 3000):       # windows narrower and wider than the row
        _assert_same_features(star_features(flux[:4], ivar[:4], half=half),
                              _features_reference(flux[:4], ivar[:4], half=half))
    f64 = flux[:3].astype(np.float64)  # float64 input as well
    _assert_same_features(star_features(f64, ivar[:3]), _features_reference(f64, ivar[:3]))


def test_row_median_matches_numpy():
    from specsift.rowstats import row_median
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 9))
    a[0, :4] = np.nan                  # 5 finite (odd)
    a[1, :3] = np.nan                  # 6 finite (even)
    a[2] = np.nan                      # none
    a[3, 0] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(a, axis=1)
    np.testing.assert_array_equal(row_median(a), want)


def test_inference_path_equals_forward():
    """measure's StarRVNet.infer (correlation as batched matmuls with the shift bank) gives
    forward's logits and gates to float rounding, on real-looking and awkward rows."""
    import torch
    net = bundled_head().net
    flux, ivar, mask = _awkward_rows(n=12)
    x = torch.from_numpy(star_features(flux, ivar, mask))
    with torch.no_grad():
        l0, g0 = net(x)
    with torch.inference_mode():
        l1, g1 = net.infer(x)
    with torch.inference_mode():
        torch.testing.assert_close(net._feat_2d(x), net.feat(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l1, l0, rtol=1e-4, atol=1e-4 * float(l0.abs().max()))
    assert torch.equal(l1.argmax(1), l0.argmax(1))
    # the bank is built once and reused, rebuilt when the templates change
    assert net.shift_bank() is net.shift_bank()
    import copy
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.templates.mul_(2.0)
    assert torch.equal(other.shift_bank(), 2.0 * net.shift_bank())


def test_head_loaded_under_inference_mode_measures(tmp_path):
    """predict runs under torch.inference_mode, so the bundled head may be first loaded there
    (its tensors then have no version counter): the cached shift bank must still work."""
    import torch
    bundled_head().save(tmp_path / "h.pt")
    flux, ivar, mask = _awkward_rows()
    with torch.inference_mode():
        head = StarVelocityHead.load(tmp_path / "h.pt")
        z, zerr, ok = head.measure(flux, ivar, mask)
    np.testing.assert_allclose(z, bundled_head().measure(flux, ivar, mask)[0], atol=1e-9,
                               equal_nan=True)


def test_head_for_is_the_one_test_of_predict_and_calibration():
    """The head applies only to a model that declares it, on the head's own grid."""
    from types import SimpleNamespace

    from specsift.models.base import Capabilities
    from specsift.models.star_head import head_for
    from specsift.spectra import DEFAULT_GRID, LogGrid
    yes = SimpleNamespace(capabilities=Capabilities(star_velocity=True), grid=DEFAULT_GRID)
    no = SimpleNamespace(capabilities=Capabilities(), grid=DEFAULT_GRID)
    other = SimpleNamespace(capabilities=Capabilities(star_velocity=True),
                            grid=LogGrid(DEFAULT_GRID.start, DEFAULT_GRID.step, 2000))
    assert head_for(yes) is not None
    assert head_for(no) is None and head_for(other) is None


@needs_shared
def test_star_rows_with_nonfinite_pixels_are_flagged_and_leave_the_others_alone():
    """A real LAMOST star, a copy with a band of NaN pixels and a copy with every pixel NaN,
    through gasnet's predict (the head runs on its STAR rows): both damaged copies are flagged
    BAD_INPUT; the band-masked copy is still measured from its good pixels (within a few km/s
    of the clean star), the all-NaN one gets the no-data Z = ZERR = -1 (NODATA); nothing
    crashes, and the clean star's head velocity is the one it gets alone."""
    model = load_model("gasnet")
    clean = _read(STAR)
    bad = clean.flux.copy()
    bad[0, 1500:1700] = np.nan
    empty = np.full_like(clean.flux, np.nan)
    b = SpectraBatch(clean.loglam, np.concatenate([clean.flux, bad, empty]),
                     np.concatenate([clean.ivar] * 3))
    b.meta["SURVEY"] = ["LAMOST"] * 3
    alone = SpectraBatch(clean.loglam, clean.flux, clean.ivar)
    alone.meta["SURVEY"] = ["LAMOST"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat, one = model.predict(b), model.predict(alone)
    assert cat["SPECTYPE"][0] == "STAR" and not cat["ZWARN"][0] & ZWARN.BAD_INPUT
    assert all(cat["ZWARN"][k] & ZWARN.BAD_INPUT for k in (1, 2))
    assert cat["SPECTYPE"][1] == "STAR" and not cat["ZWARN"][1] & ZWARN.NODATA
    assert abs(cat["Z"][1] - cat["Z"][0]) * C_KMS < 10 and cat["ZERR"][1] > 0
    assert cat["ZWARN"][2] & ZWARN.NODATA and cat["Z"][2] == -1.0 and cat["ZERR"][2] == -1.0
    assert abs(cat["Z"][0] - one["Z"][0]) * C_KMS < 1e-3
