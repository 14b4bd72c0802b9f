"""The networks' own fine radial velocity for stars: a small learned head, shift-equivariant.

Why: gasnet's and speccznet's z heads are p(z) over bins 600–1390 km/s wide; good for a galaxy
at z = 0.5, far too coarse for a star (their unverified |Δv| ≤ 20 km/s against LAMOST was 0.57
and 0.24).  Verification fixes that with a χ², but ``--no-verify`` is the network alone.  This
head gives the rows a network calls STAR a velocity good to a few km/s and an honest ZERR.

Network (:class:`StarRVNet`), on the model grid at full resolution (no pooling):

    features  (N, 2, P): flux / running continuum − 1, log1p(per-pixel S/N)   (:func:`star_features`)
    3 × conv1d (k 7, stride 1) → F (N, K, P): K learned line-feature maps
    correlation with K learned rest-frame templates T_k (K, P) at every shift δ of ±D pixels
      (grouped conv1d; exactly shift-equivariant: a star moved by one pixel moves the curve by one)
    × a per-template gate from the position-free mean of F (which templates fit this star)
    2 × conv1d along δ → logits over 2D+1 shifts;  δ̂ = p-weighted mean over ±3 around the peak
    log σ from (window spread, window mass, S/N, the gate) — heteroscedastic, Gaussian NLL

One pixel of the default grid is 69 km/s; a 20 km/s target is 0.3 px, so the velocity is read
off the full-resolution correlation, never after striding.  Training (LAMOST's training split,
shifted by known amounts, plus simulated SDSS/DESI stars): ``benchmarks/train_star_rv.py``;
weights: ``data/models/star_rv.pt`` (tensors and plain data, read by :mod:`specsift.torchfile`).

Models that declare ``Capabilities.star_velocity`` call :func:`refine_star_rows` in ``predict``
(not in ``propose``: the verification stage sees the same candidates as before).  ``measure``
runs :meth:`StarRVNet.infer`, ``forward``'s arithmetic laid out for one CPU thread (the
correlation as batched matmuls against a cached shift bank, channels-last convolutions, 32
rows a step): the same answers to float rounding, ≈ 1.8× cheaper per star.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..constants import C_KMS
from ..flags import ZWARN
from ..rowstats import row_median
from ..spectra import survey_of
from ..verify.subtype import star_subtypes_at
from .base import bundled_path
from .inputs import log1p

__all__ = ["StarRVNet", "StarVelocityHead", "star_features", "refine_star_rows", "decode",
           "bundled_head", "head_for", "name_star_rows", "visit_floor", "HEAD_FILE", "PIX_KMS"]

HEAD_NAME = "star_rv"
HEAD_FILE = f"{HEAD_NAME}.pt"
HEAD_FORMAT = "specsift-star-rv-1"
#: half-width of the running continuum (pixels): wide against a line (≈ 3 px FWHM at R 1800)
CONT_HALF = 50
#: the window around the curve's peak over which δ̂ is the probability-weighted mean
WINDOW = 3


def pix_kms(step: float) -> float:
    """km/s of one pixel of a log10 grid of ``step`` (ln 10 · step · c)."""
    return math.log(10) * step * C_KMS


PIX_KMS = pix_kms(1e-4)


def star_features(flux, ivar, mask=None, half: int = CONT_HALF) -> np.ndarray:
    """(N, 2, P) float32: flux divided by its running mean (±``half`` px over good pixels) − 1,
    clipped to ±2, and log1p(continuum · √ivar).  Why divided by a local continuum: line depths
    are what says where a star's lines are, independent of flux calibration and colour.  Bad or
    non-finite pixels are 0 in both channels; a row with no good pixel is all zeros.

    The window sums are differences of edge-padded cumulative sums read by slices (the window
    clipped at the row's ends, as ``np.clip``'d indices would give, value for value) and the
    row level is :func:`specsift.rowstats.row_median` (the same continuum as the index-gather and
    ``np.nanmedian`` form, bit for bit); the channels are then formed in float32
    (tests/test_starrv_head.py: within 3e-7 of the float64 form), at ~half the cost."""
    flux, ivar = _as_float(flux), _as_float(ivar)      # float32 stays float32: no copy
    flux32, ivar32 = flux.astype(np.float32, copy=False), ivar.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        good &= ~np.atleast_2d(np.asarray(mask, bool))
    n, p = flux.shape
    sums, cnt = _window_sums(np.where(good, flux, 0.0), good, half)
    with np.errstate(invalid="ignore", divide="ignore"):
        cont = sums / cnt
    good &= cnt >= 10
    med = row_median(np.where(good[:, ::8], cont[:, ::8], np.nan))
    ok_row = np.isfinite(med) & (med > 0)
    good &= ok_row[:, None]
    cont = np.maximum(cont, 0.05 * np.where(ok_row, med, 1.0)[:, None])
    # the two channels in float32 (what the network reads): the window sums above need
    # float64, these element-wise steps do not (equal to the float64 form to ~1e-7)
    cont = cont.astype(np.float32)
    out = np.zeros((n, 2, p), np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = np.divide(flux32, cont)
        r -= 1.0
        np.clip(r, -2.0, 2.0, out=r)
        sn = np.sqrt(np.where(good, ivar32, np.float32(0.0)))
        sn *= cont
        np.clip(sn, 0.0, 1e4, out=sn)
        log1p(sn, out=sn)                 # torch's kernel: numpy's is scalar on AVX2
    np.copyto(out[:, 0], r, where=good)
    np.copyto(out[:, 1], sn, where=good)
    return out


def _as_float(a) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a))
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _window_sums(f: np.ndarray, good: np.ndarray, half: int):
    """(sum of ``f``, count of ``good``) over pixels i−half … i+half (clipped to the row) of
    each pixel i, as float64: cumulative sums padded by ``half`` copies of their first (0) and
    last values, so that window i is ``c[i + 2·half + 1] − c[i]`` — two slices, no gather."""
    n, p = f.shape
    w = 2 * half + 1
    cf = np.zeros((n, p + 1 + 2 * half))
    np.cumsum(f, axis=1, dtype=np.float64, out=cf[:, half + 1:half + 1 + p])  # float64 sums
    cf[:, half + 1 + p:] = cf[:, half + p:half + p + 1]
    cw = np.zeros((n, p + 1 + 2 * half), np.int64)
    np.cumsum(good, axis=1, dtype=np.int64, out=cw[:, half + 1:half + 1 + p])
    cw[:, half + 1 + p:] = cw[:, half + p:half + p + 1]
    return cf[:, w:w + p] - cf[:, :p], (cw[:, w:w + p] - cw[:, :p]).astype(np.float64)


class StarRVNet(nn.Module):
    """``forward(x) -> (logits over 2D+1 shifts (N, 2D+1), gate (N, K))`` (module docstring)."""

    def __init__(self, npix: int, channels: int = 12, templates: int = 12, kernel: int = 7,
                 max_shift: int = 16, hidden: int = 32):
        super().__init__()
        k, c = kernel, channels
        self.npix, self.max_shift = int(npix), int(max_shift)
        self.feat = nn.Sequential(nn.Conv1d(2, c, k, padding=k // 2), nn.GELU(),
                                  nn.Conv1d(c, c, k, padding=k // 2), nn.GELU(),
                                  nn.Conv1d(c, templates, k, padding=k // 2))
        self.templates = nn.Parameter(torch.randn(templates, npix) * 0.02)
        self.gate = nn.Linear(templates, templates)
        self.curve = nn.Sequential(nn.Conv1d(templates, hidden, 5, padding=2), nn.GELU(),
                                   nn.Conv1d(hidden, 1, 5, padding=2))
        self.sigma = nn.Sequential(nn.Linear(templates + 3, hidden), nn.GELU(),
                                   nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor):
        good = (x[:, 1:2] > 0).to(x.dtype)
        f = self.feat(x) * good                     # nothing learned from masked pixels
        d = self.max_shift
        corr = F.conv1d(F.pad(f, (d, d)), self.templates[:, None], groups=f.shape[1])
        gate = torch.sigmoid(self.gate(f.mean(dim=2)))
        logits = self.curve(corr * gate[:, :, None] / math.sqrt(self.npix))[:, 0]
        return logits, gate

    def infer(self, x: torch.Tensor):
        """:meth:`forward`'s outputs without autograd, for ``measure``: the correlation as K
        batched matmuls against :meth:`shift_bank` instead of a grouped conv1d whose kernel
        is the whole row (the same sums in another order: equal to float rounding,
        tests/test_starrv_head.py)."""
        good = (x[:, 1:2] > 0).to(x.dtype)
        f = self._feat_2d(x).mul_(good)
        corr = torch.bmm(f.transpose(0, 1), self.shift_bank()).transpose(0, 1)  # (N, K, 2D+1)
        gate = torch.sigmoid(self.gate(f.mean(dim=2)))
        logits = self.curve(corr * gate[:, :, None] / math.sqrt(self.npix))[:, 0]
        return logits, gate

    def _feat_2d(self, x: torch.Tensor) -> torch.Tensor:
        """:attr:`feat` (conv, GELU, conv, GELU, conv) as 1-row conv2d on channels-last
        tensors: the same weights and sums, ~17 % faster on one thread (oneDNN's channels-last
        kernels; tests/test_starrv_head.py compares it with ``feat``)."""
        y = x[:, :, None, :].contiguous(memory_format=torch.channels_last)
        for i, m in enumerate(self.feat):
            if isinstance(m, nn.Conv1d):
                w = m.weight[:, :, None, :].contiguous(memory_format=torch.channels_last)
                y = F.conv2d(y, w, m.bias, padding=(0, m.padding[0]))
            else:
                y = m(y)
        return y[:, :, 0]

    def shift_bank(self) -> torch.Tensor:
        """(K, P, 2D + 1): column s of template k is T_k moved by s − D pixels (cut at the
        row's ends), so that ``f_k @ bank_k`` is :meth:`forward`'s correlation of the
        zero-padded f_k at every shift (the pad's zeros add nothing, so no pad, no copy).
        Built once from the (frozen, eval-mode) templates and kept; rebuilt if they change."""
        t = self.templates
        try:
            version = t._version
        except RuntimeError:        # loaded under inference_mode (predict): no version counter
            version = None
        key = (version, t.data_ptr(), t.dtype)
        if getattr(self, "_bank_key", None) != key:
            k, p = t.shape
            n = 2 * self.max_shift + 1
            d = self.max_shift
            with torch.no_grad():
                bank = torch.zeros(k, p + n - 1, n, dtype=t.dtype)
                for s in range(n):
                    bank[:, s:s + p, s] = t
            self._bank, self._bank_key = bank[:, d:d + p].contiguous(), key
        return self._bank


def decode(net: StarRVNet, logits: torch.Tensor, gate: torch.Tensor, x: torch.Tensor):
    """(δ̂ px, log σ px, peak index) from the network outputs: δ̂ the p-weighted mean of the
    shifts within ±:data:`WINDOW` of the curve's peak (differentiable: training uses it)."""
    d = net.max_shift
    p = torch.softmax(logits, dim=1)
    peak = p.argmax(dim=1)
    offs = torch.arange(-WINDOW, WINDOW + 1, device=p.device)
    idx = (peak[:, None] + offs[None]).clamp(0, 2 * d)
    pw = p.gather(1, idx)
    mass = pw.sum(1).clamp_min(1e-9)
    pos = (idx - d).to(p.dtype)
    mean = (pw * pos).sum(1) / mass
    spread = ((pw * (pos - mean[:, None]) ** 2).sum(1) / mass).clamp_min(1e-6)
    good = (x[:, 1] > 0)
    snr = (x[:, 1] * good).sum(1) / good.sum(1).clamp_min(1)
    z = torch.cat([gate, 0.5 * torch.log(spread)[:, None], torch.log(mass)[:, None],
                   snr[:, None]], dim=1)
    return mean, net.sigma(z)[:, 0], peak


class StarVelocityHead:
    """The trained head: :meth:`measure` gives z and ZERR of star spectra on its grid."""

    def __init__(self, net: StarRVNet, grid: dict, sigma_scale: float | dict = 1.0,
                 meta: dict | None = None, floor_kms: dict | None = None):
        self.net = net.eval()
        self.grid = {k: grid[k] for k in ("start", "step", "size")}
        self.step = float(grid["step"])
        #: factor on σ per survey ("" = any other: simulated SDSS/DESI-calibrated), fitted by
        #: benchmarks/train_star_rv.py ``finish``
        self.sigma_scale = ({str(k).upper(): float(v) for k, v in sigma_scale.items()}
                            if isinstance(sigma_scale, dict) else {"": float(sigma_scale)})
        self.meta = dict(meta or {})
        #: km/s per visit added in quadrature to ZERR, per survey (:func:`visit_floor`)
        self.floor_kms = {str(k).upper(): float(v) for k, v in (floor_kms or {}).items()}

    @classmethod
    def from_state(cls, state: dict) -> "StarVelocityHead":
        if state.get("format") != HEAD_FORMAT:
            raise ValueError(f"not a star-velocity head file (format {HEAD_FORMAT!r} expected)")
        net = StarRVNet(**state["config"])
        net.load_state_dict({k: v.float() for k, v in state["weights"].items()})
        return cls(net, state["grid"], state.get("sigma_scale", 1.0), state.get("meta"),
                   state.get("floor_kms"))

    def state(self, dtype=torch.float16) -> dict:
        n = self.net
        cfg = {"npix": n.npix, "channels": n.feat[0].out_channels,
               "templates": n.templates.shape[0], "kernel": n.feat[0].kernel_size[0],
               "max_shift": n.max_shift, "hidden": n.sigma[0].out_features}
        return {"format": HEAD_FORMAT, "config": cfg, "grid": self.grid,
                "sigma_scale": self.sigma_scale, "meta": self.meta, "floor_kms": self.floor_kms,
                "weights": {k: v.detach().cpu().to(dtype) for k, v in n.state_dict().items()}}

    def save(self, path) -> Path:
        from .. import torchfile
        return torchfile.save(self.state(), path)

    @classmethod
    def load(cls, path) -> "StarVelocityHead":
        from .. import torchfile
        return cls.from_state(torchfile.load(path))

    def fits(self, grid) -> bool:
        """Whether spectra on ``grid`` (a LogGrid) are on the grid the templates were learnt on."""
        return (grid.size == self.grid["size"] and abs(grid.step - self.grid["step"]) < 1e-12
                and abs(grid.start - self.grid["start"]) < 1e-3 * self.grid["step"])

    def scale_of(self, surveys, n: int) -> np.ndarray:
        """(n,) σ factor of each spectrum's survey (the default "" where it has none)."""
        default = self.sigma_scale.get("", 1.0)
        if surveys is None:
            return np.full(n, default)
        return np.array([self.sigma_scale.get(str(s).upper(), default) for s in surveys])

    def measure(self, flux, ivar, mask=None, surveys=None, batch_size: int = 32):
        """(z, zerr, ok) per spectrum; ``ok`` False where the spectrum had no usable pixels,
        the output is not finite, or the peak is at the edge of the ±D-pixel range (a velocity
        the head cannot measure).  Why 32 rows a step: on one thread the (rows, K, P) feature
        maps of 32–64 rows stay in cache, ~1.4× faster per star than 128–256 rows."""
        n = len(flux)
        z, zerr, ok = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
        d = self.net.max_shift
        scale = self.scale_of(surveys, n)
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                x = torch.from_numpy(star_features(flux[lo:lo + batch_size],
                                                   ivar[lo:lo + batch_size],
                                                   None if mask is None else mask[lo:lo + batch_size]))
                mean, logs, peak = decode(self.net, *self.net.infer(x), x)
                mean, logs, peak = mean.double().numpy(), logs.double().numpy(), peak.numpy()
                has = (x[:, 1] > 0).sum(1).numpy() >= 100
                sl = slice(lo, lo + len(mean))
                z[sl] = 10.0 ** (self.step * mean) - 1.0
                sig = np.exp(np.clip(logs, -10, 5)) * scale[sl]
                zerr[sl] = np.log(10) * self.step * sig * (1 + z[sl])
                ok[sl] = has & (peak > WINDOW) & (peak < 2 * d - WINDOW) & np.isfinite(z[sl]) \
                    & np.isfinite(zerr[sl])
        return z, zerr, ok


@lru_cache(maxsize=1)
def bundled_head() -> StarVelocityHead | None:
    """The shipped head (``data/models/star_rv.pt``), or None where this install lacks it."""
    p = bundled_path(HEAD_NAME)
    return None if p is None else StarVelocityHead.load(p)


def head_for(model) -> "StarVelocityHead | None":
    """The head ``model``'s predict applies to its STAR rows: the bundled one, where the model
    declares ``capabilities.star_velocity`` and its grid is the head's; else None.  One test,
    used by :func:`refine_star_rows` and by a model's ZERR calibration (which leaves out the
    rows whose ZERR the head gives), so the two cannot disagree."""
    if not model.capabilities.star_velocity:
        return None
    head = bundled_head()
    return head if head is not None and head.fits(model.grid) else None


def refine_star_rows(model, batch, cat, reach_kms: float) -> np.ndarray:
    """Give the STAR rows of ``cat`` (the model's catalog of ``batch``, changed in place) the
    star-velocity head's Z and ZERR (and the SUBTYPE named at that Z, :func:`name_star_rows`),
    where the model declares ``capabilities.star_velocity`` and
    the head's velocity lies within ``reach_kms`` of the network's own (its coarse bin ± a
    margin).  Other rows, and STAR rows the head cannot measure (no good pixels, a velocity off
    its range), keep the network's answer; masked NaN/inf pixels are flagged by make_catalog's
    BAD_INPUT, and the head measures the good pixels.  Returns the rows that took the head's
    answer."""
    head = head_for(model)
    used = np.zeros(len(cat), bool)
    if head is None or not len(cat):
        return used
    rows = np.flatnonzero((np.asarray(cat["SPECTYPE"]).astype(str) == "STAR")
                          & ((np.asarray(cat["ZWARN"]) & int(ZWARN.NODATA)) == 0))
    if len(rows):
        z, zerr, ok = head.measure(batch.flux[rows], batch.ivar[rows], batch.mask[rows],
                                   survey_of(batch.meta, len(batch))[rows])
        znet = np.asarray(cat["Z"], np.float64)[rows]
        ok &= np.abs(z - znet) * C_KMS <= reach_kms
        floor = visit_floor(head, batch.meta, len(batch))[rows]
        sel = rows[ok]
        cat["Z"][sel] = z[ok]
        cat["ZERR"][sel] = np.hypot(zerr[ok], floor[ok] * (1 + z[ok]))
        used[sel] = True
        name_star_rows(batch, cat, sel)
    return used


def name_star_rows(batch, cat, rows) -> None:
    """SUBTYPE of the ``rows`` of ``cat`` (changed in place) from the verification stage's
    naming at their Z (:func:`specsift.verify.subtype.star_subtypes_at`: the survey's own
    library and letter vote for LAMOST, spEigenStar for SDSS), as eigen names its stars.
    Why: the networks' own stellar class was learnt from simulated SDSS stars (gasnet's
    letter agreed with LAMOST's for 0.84 of the held-out stars) or is absent (speccznet's
    three-class set), while the naming needs only a z good to a pixel — which the head's is.
    Only rows with the head's z: at a network's coarse z (bins 600–1390 km/s, 9–20 pixels)
    the named fit would be at the wrong shift, so those keep the network's SUBTYPE."""
    if not len(rows):
        return
    sub = np.asarray(cat["SUBTYPE"]).astype("U20")
    sub[rows] = star_subtypes_at(batch, rows, np.asarray(cat["Z"], np.float64)[rows])
    cat["SUBTYPE"] = sub


def visit_floor(head: "StarVelocityHead", meta, n: int) -> np.ndarray:
    """Per-visit systematic (in z) of each spectrum's survey (``head.floor_kms``, from the
    reader's SURVEY column), added in quadrature to the head's ZERR.  Why: a visit's wavelength
    calibration error is shared by our velocity and LAMOST's, so the head's σ, scaled against
    LAMOST's Z, cannot see it; only repeat visits do (benchmarks/train_star_rv.py ``finish``
    measures it on the training split's repeats).  A survey without repeats to measure it on
    gets none."""
    return np.array([head.floor_kms.get(s, 0.0) for s in survey_of(meta, n)]) / C_KMS
