"""gasnet's channels-last CPU trunk (models/gasnet/fast.py) and the channels-last input layout
(models/inputs.normalise): the same numbers as the eval-mode network, to float32 rounding."""

import numpy as np
import pytest
import torch
from torch import nn

from specsift.models.gasnet.fast import ChannelsLastTrunk
from specsift.models.gasnet.net import GaSNetModule
from specsift.models.inputs import normalise


def _net(seed=0, npix=1000):
    """A small gasnet with BatchNorm statistics and affine parameters far from the identity,
    so that a wrong fold (or none) shows."""
    torch.manual_seed(seed)
    return _scrambled_bn(GaSNetModule(npix, 5, 40), seed, mean_scale=1.0)


def _scrambled_bn(net, seed, mean_scale):
    """``net`` (eval mode) with every BatchNorm's statistics and affine parameters drawn far
    from the identity."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(mean_scale * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.2 + 2 * torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.5 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
    return net.eval()


def _spectra(n=7, npix=1000, seed=3):
    rng = np.random.default_rng(seed)
    flux = (5 + rng.normal(0, 1, (n, npix))).astype(np.float32)
    flux[:, 300:310] += 40.0                                 # a line
    ivar = rng.uniform(0.5, 2.0, (n, npix)).astype(np.float32)
    mask = np.zeros((n, npix), bool)
    mask[1, 100:200] = True
    ivar[2, :50] = 0.0
    flux[3, 500] = np.nan
    return flux, ivar, mask


def _trunk_case():
    """(spectra, their (N, C, P) input, the fast trunk, the eval trunk's output)."""
    net = _net()
    flux, ivar, mask = _spectra()
    x = torch.from_numpy(normalise(flux, ivar, mask))
    with torch.no_grad():
        ref = net.trunk(x)
    return (flux, ivar, mask), x, ChannelsLastTrunk(net.trunk), ref


def test_trunk_equals_eval_trunk_both_layouts():
    (flux, ivar, mask), x, fast, ref = _trunk_case()
    with torch.no_grad():
        nlc = torch.from_numpy(normalise(flux, ivar, mask, channels_last=True))
        for inp in (x, nlc):
            out = fast(inp)
            assert out.shape == ref.shape
            assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_folded_network_differs_without_bn():
    """The check above is sensitive: dropping a BatchNorm's shift moves the output."""
    _, x, fast, ref = _trunk_case()
    with torch.no_grad():
        fast.convs[1].bias.add_(0.5)
        assert not torch.allclose(fast(x), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


def test_whole_forward_with_fast_trunk():
    net = _net(seed=5)
    flux, ivar, mask = _spectra(seed=9)
    x = torch.from_numpy(normalise(flux, ivar, mask, channels_last=True))
    with torch.no_grad():
        ref = net(torch.from_numpy(normalise(flux, ivar, mask)))
        out = net(x, trunk=ChannelsLastTrunk(net.trunk))
    for k in ref:
        assert torch.allclose(out[k], ref[k], rtol=1e-5, atol=1e-5 * float(ref[k].abs().max())), k


def test_channels_last_input_same_values_other_layout():
    flux, ivar, mask = _spectra()
    a = normalise(flux, ivar, mask)
    b = normalise(flux, ivar, mask, channels_last=True)
    assert a.flags.c_contiguous and not b.flags.c_contiguous
    assert b.strides == (4 * 2 * flux.shape[1], 4, 8)
    np.testing.assert_array_equal(a, b)
    good = (ivar > 0) & ~mask & np.isfinite(flux)
    np.testing.assert_array_equal(normalise(flux, ivar, good=good), a)
    # bad pixels are 0 in both channels, the line is clipped to ±50
    assert np.all(a[1, :, 100:200] == 0) and np.all(a[3, :, 500] == 0)
    assert np.isfinite(a).all() and a[:, 0].max() <= 50.0


def test_rejects_other_trunks():
    with pytest.raises(ValueError, match="not a gasnet trunk"):
        ChannelsLastTrunk(nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten()))


def _speccz(seed=0, npix=1000):
    from specsift.models.speccznet import SpecCZNetModule
    torch.manual_seed(seed)
    return _scrambled_bn(SpecCZNetModule(npix, 5, 30), seed, mean_scale=0.3)


@pytest.mark.parametrize("npix", [1000, 1003])          # 1003: partial pooling windows
def test_speccznet_trunk_equals_eval_network(npix):
    from specsift.models.speccznet_fast import SpecCZTrunk
    net = _speccz(npix=npix)
    flux, ivar, mask = _spectra(npix=npix)
    x = torch.from_numpy(normalise(flux, ivar, mask))
    nlc = torch.from_numpy(normalise(flux, ivar, mask, channels_last=True))
    fast = SpecCZTrunk(net)
    with torch.no_grad():
        ref = net.reduce(net.blocks(net.front(x)))
        for inp in (x, nlc):
            out = fast(inp)
            assert out.shape == ref.shape and out.is_contiguous()
            assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
        logits, zlog = net(x)
        logits2, zlog2 = net(nlc, trunk=fast)
    assert torch.allclose(logits2, logits, rtol=1e-5, atol=1e-5 * float(logits.abs().max()))
    assert torch.allclose(zlog2, zlog, rtol=1e-5, atol=1e-5 * float(zlog.abs().max()))


def test_speccznet_pools_match_torch():
    from torch.nn import functional as F

    from specsift.models.speccznet_fast import _avg_pool, _max_pool2
    g = torch.randn(3, 4, 1, 11)
    out = torch.empty(3, 4, 1, 6)
    _max_pool2(g, out)
    assert torch.equal(out, F.max_pool2d(g, (1, 2), (1, 2), ceil_mode=True))
    v = torch.randn(3, 10)
    ref = F.avg_pool1d(v[:, None], 4, 4, ceil_mode=True)[:, 0]
    assert torch.allclose(_avg_pool(v, 4), ref, rtol=1e-6, atol=1e-7)


def test_normalise_against_its_formula_with_bad_values():
    """Negative, NaN and infinite ivar, non-finite flux, masked pixels: both layouts give the
    documented formula (scale from np.nanmedian over good pixels)."""
    rng = np.random.default_rng(1)
    flux = rng.normal(5, 2, (6, 300)).astype(np.float32)
    ivar = rng.uniform(-1, 3, (6, 300)).astype(np.float32)
    ivar[0, :5], ivar[1, :5], flux[2, :5], flux[3, :4] = np.nan, np.inf, np.inf, np.nan
    mask = rng.random((6, 300)) < 0.1
    mask[1, :5] = False
    good = (ivar > 0) & ~mask & np.isfinite(flux)
    f = np.where(good, flux, np.nan)
    med = np.nanmedian(f, axis=1, keepdims=True)
    mad = 1.4826 * np.nanmedian(np.abs(f - med), axis=1, keepdims=True)
    s = np.fmax(np.abs(med), mad).astype(np.float32)
    with np.errstate(all="ignore"):
        x0 = np.where(good, np.clip(flux / s, -50, 50), 0)
        x1 = np.where(good, np.log1p(np.clip(s * np.sqrt(ivar), 0, 1e4)), 0)
    for cl in (False, True):
        out = normalise(flux, ivar, mask, channels_last=cl)
        np.testing.assert_allclose(out[:, 0], x0, rtol=1e-6)
        np.testing.assert_allclose(out[:, 1], x1, rtol=1e-6)
        assert out[1, 1, 0] == np.float32(np.log1p(1e4))         # infinite ivar: clipped


def test_log1p_within_one_ulp_of_numpy_into_strided_output():
    """:func:`.inputs.log1p` (torch's kernel) against np.log1p over the S/N channel's range
    (0 … 1e4, subnormals and exact zeros included): every float32 value within one ulp, and
    written through a strided (channels-last) output as into a contiguous one."""
    from specsift.models.inputs import log1p
    rng = np.random.default_rng(4)
    x = np.concatenate([np.exp(rng.uniform(-40, np.log(1e4), 20000)), [0.0, 1e-45, 1e4]])
    x = x.astype(np.float32).reshape(1, -1)
    want = np.log1p(x)
    got = log1p(x.copy(), np.empty_like(x))
    ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
    assert ulps.max() <= 1
    strided = np.empty((1, x.shape[1], 2), np.float32).transpose(0, 2, 1)[:, 1]
    log1p(x, strided)
    assert np.array_equal(strided, got)


def test_conv_relu_fused_equals_conv_then_relu():
    from specsift.models.channels_last import as_channels_last, conv2d_of, conv_relu
    torch.manual_seed(2)
    conv = conv2d_of(nn.Conv1d(4, 8, 5, stride=2, padding=1), nn.BatchNorm1d(8).eval())
    h = as_channels_last(torch.randn(3, 4, 50))
    with torch.no_grad():
        ref = torch.relu(conv(h))
        fused = conv_relu(conv, h)                 # inference: the fused path where present
    assert torch.equal(fused, ref) and (ref == 0).any() and (ref > 0).any()
    with torch.enable_grad():                      # gradients on: the two plain steps
        assert torch.equal(conv_relu(conv, h).detach(), ref)
