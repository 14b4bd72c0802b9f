"""gasnet's cheaper p(z) decoding and inputs give what the straightforward code gives."""

import numpy as np
import torch

from specsift.models.gasnet.net import decode_bins
from specsift.models.inputs import normalise
from specsift.models.neural import decode_window, row_argmax
from specsift.verify.candidates import pz_peaks


def _peaks_float64(logits, u_centres, k=2, min_ratio=0.05):
    """The definition: local maxima of p = exp(x − max x) in float64 (≥ the left
    neighbour, > the right one, p ≥ min_ratio), the k highest in order."""
    x = np.asarray(logits, np.float64)
    p = np.exp(x - x.max(1, keepdims=True))
    n, b = p.shape
    out = np.full((n, k), np.nan)
    for i in range(n):
        left = np.r_[True, p[i, 1:] >= p[i, :-1]]
        right = np.r_[p[i, :-1] > p[i, 1:], True]
        idx = np.flatnonzero(left & right & (p[i] >= min_ratio))
        idx = idx[np.argsort(-p[i, idx], kind="stable")][:k]
        out[i, :len(idx)] = np.expm1(np.asarray(u_centres, np.float64)[idx])
    return out


def test_pz_peaks_match_the_float64_definition():
    rng = np.random.default_rng(3)
    u = np.linspace(-0.006, 1.86, 300).astype(np.float32)
    for trial in range(20):
        x = rng.standard_normal((40, 300)) * rng.uniform(0.3, 20)
        if trial % 2:
            x = np.cumsum(x, axis=1)                    # smooth, few peaks
        x = x.astype(np.float32)
        x[0] = 0.0                                      # flat: one peak, the first bin
        x[1, :] = -50.0
        x[1, 10], x[1, 200] = 3.0, 3.0 + np.log(0.04)   # a second peak below min_ratio
        for k in (1, 2, 3):
            np.testing.assert_array_equal(pz_peaks(x, u, k), _peaks_float64(x, u, k))
    assert np.isnan(pz_peaks(x, u, 2)[1, 1]) and not np.isnan(pz_peaks(x, u, 2)[1, 0])


def test_row_argmax_is_torchs():
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.integers(0, 5, (64, 50)).astype(np.float32))   # many ties
    assert torch.equal(row_argmax(t), t.argmax(dim=1))
    with torch.inference_mode():
        assert torch.equal(row_argmax(t * 1), t.argmax(dim=1))


def test_decode_bins_p_near_and_spread_as_written_out():
    rng = np.random.default_rng(1)
    zlog = torch.from_numpy((rng.standard_normal((32, 200)) * 4).astype(np.float32))
    zoff = torch.from_numpy(rng.standard_normal((32, 200)).astype(np.float32))
    width = 0.002
    centres = -0.006 + width * (torch.arange(200, dtype=torch.float32) + 0.5)
    u, s, sf, p_near = decode_bins(zlog, zoff, centres, width, near=0.01)
    p = torch.softmax(zlog, dim=1)
    pos = centres[None] + width * torch.tanh(zoff)
    _, u_ref, var, _ = decode_window(p, pos, 3, (0.1 * width) ** 2)
    d = pos - u[:, None]
    assert torch.equal(u, u_ref) and torch.equal(s, torch.sqrt(var))
    assert torch.equal(p_near, (p * (d.abs() <= 0.01)).sum(1))
    assert torch.equal(sf, torch.sqrt((p * d ** 2).sum(1).clamp_min(var)))


def test_normalise_with_given_counts_is_the_same():
    rng = np.random.default_rng(2)
    flux = rng.standard_normal((8, 500)).astype(np.float32) + 2
    ivar = rng.uniform(0, 4, (8, 500)).astype(np.float32)
    mask = rng.random((8, 500)) < 0.1
    flux[0, 3] = np.nan
    ivar[1] = 0.0                                        # no good pixel
    good = (ivar > 0) & ~mask & np.isfinite(flux)
    ref = normalise(flux, ivar, mask)
    n_good = good.sum(1)
    for cl in (False, True):
        got = normalise(flux, ivar, good=good, n_good=n_good, channels_last=cl)
        np.testing.assert_array_equal(np.ascontiguousarray(got), ref)
    assert not ref[1].any()
