"""How well can any method measure simulated quasar redshifts? An oracle upper bound.

    python benchmarks/qso_oracle.py [--n 3000] [--seed 123] [--window 150] [--blind-blueshift]

For each simulated quasar the oracle knows its exact noiseless spectrum (same seed,
``noiseless=True``), including this object's line strengths and blueshifts, and fits it with
one free amplitude at every pixel shift within ±``window`` px of the true z. No line
confusion is possible there, so what is left is the noise. Prints GF(0.003) by S/N and at
the (S/N, z) mix of each GaSNet-III quasar catalogue, next to the issue target of 0.95.
Any real method has less information than this (it does not know the object's lines).

``--blind-blueshift`` takes away one thing the oracle should not know: the blueshift of the
high-ionisation lines (Lyα, N V, Si IV, C IV …), drawn per object from |N(0, 800 km/s)| as
in real quasars. The oracle then fits a grid of blueshifts jointly with z, every other
parameter still exact. This is the bound for a method that knows each quasar perfectly
except for where its high-ionisation lines sit relative to the systemic redshift.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np

from specsift.metrics import delta_z

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _catalogue_mix import catalogue_mix  # noqa: E402


def oracle_shift(flux, ivar, template, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel shift (parabola on the χ² minimum) of the best amplitude-scaled template,
    and the χ² at that minimum."""
    shifts = np.arange(-window, window + 1)
    npix = flux.shape[1]
    chi2 = np.empty((len(flux), shifts.size))
    for k, s in enumerate(shifts):
        t = np.zeros_like(template)
        if s >= 0:
            t[:, s:] = template[:, :npix - s]
        else:
            t[:, :npix + s] = template[:, -s:]
        a = (ivar * flux * t).sum(1) / np.maximum((ivar * t * t).sum(1), 1e-30)
        chi2[:, k] = (ivar * (flux - a[:, None] * t) ** 2).sum(1)
    k = np.clip(chi2.argmin(1), 1, shifts.size - 2)
    r = np.arange(len(flux))
    y0, y1, y2 = chi2[r, k - 1], chi2[r, k], chi2[r, k + 1]
    den = y0 - 2 * y1 + y2
    off = np.clip(np.where(den > 0, 0.5 * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0), -1, 1)
    return shifts[k] + off, y1 - 0.5 * den * off ** 2


class _FixedBlueshift:
    """A random Generator that draws exactly what it wraps, except that the quasar
    simulator's high-ionisation blueshift draw, ``normal(0, 800, n)``, returns ``kms``:
    every other parameter of every object stays the same."""

    def __init__(self, rng, kms: float):
        self._rng, self._kms = rng, kms

    def normal(self, loc=0.0, scale=1.0, size=None):
        out = self._rng.normal(loc, scale, size)
        return np.full(np.shape(out), self._kms) if (loc, scale) == (0, 800) else out

    def __getattr__(self, name):
        return getattr(self._rng, name)


@contextlib.contextmanager
def fixed_blueshift(kms: float):
    """Within the block, simulated quasars get high-ionisation blueshift ``kms``."""
    from specsift.simulate import quasars, survey
    original = survey.make_quasars

    def patched(rng, *a, **kw):
        return original(_FixedBlueshift(rng, kms), *a, **kw)
    if "normal(0, 800, n)" not in Path(quasars.__file__).read_text():
        raise RuntimeError("the quasar simulator no longer draws blueshifts as normal(0, 800, n)")
    survey.make_quasars = patched
    try:
        yield
    finally:
        survey.make_quasars = original


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="spectra simulated (a third are quasars)")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--window", type=int, default=150, help="± pixels scanned around the true z")
    ap.add_argument("--blind-blueshift", action="store_true",
                    help="fit the high-ionisation blueshift (0–3000 km/s) jointly with z")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from specsift.simulate import simulate_batch
    noisy = simulate_batch(args.n, "three", args.seed, bal_fraction=0.0)
    clean = simulate_batch(args.n, "three", args.seed, bal_fraction=0.0, noiseless=True)
    q = np.nonzero(np.asarray(noisy.meta["CLASS_LABEL"]) == "QSO")[0]
    zt = np.asarray(noisy.meta["Z"], float)[q]
    if not np.allclose(zt, np.asarray(clean.meta["Z"], float)[q]):
        raise RuntimeError("noisy and noiseless simulations differ: not the same objects")
    flux = noisy.flux[q].astype(np.float64)
    ivar = np.where(noisy.mask[q], 0.0, noisy.ivar[q]).astype(np.float64)
    if args.blind_blueshift:
        best = np.full(len(q), np.inf)
        shift = np.zeros(len(q))
        for kms in tqdm(np.arange(0.0, 3001.0, 100.0), desc="blueshift grid", unit="step"):
            with fixed_blueshift(kms):
                trial = simulate_batch(args.n, "three", args.seed, bal_fraction=0.0, noiseless=True)
            s, c2 = oracle_shift(flux, ivar, trial.flux[q].astype(np.float64), args.window)
            better = c2 < best
            best[better], shift[better] = c2[better], s[better]
    else:
        shift = oracle_shift(flux, ivar, clean.flux[q].astype(np.float64), args.window)[0]
    step = float(np.median(np.diff(noisy.loglam)))
    zp = (1 + zt) * 10 ** (shift * step) - 1
    dz = delta_z(zp, zt)
    snr = np.asarray(noisy.meta["SNR"], float)[q]
    blind = " --blind-blueshift" if args.blind_blueshift else ""
    print(f"command: python benchmarks/qso_oracle.py --n {args.n} --seed {args.seed} "
          f"--window {args.window}{blind}\n")
    what = "blueshift-blind oracle" if blind else "oracle"
    print(f"{len(q)} simulated quasars (catalogue S/N mix); {what} GF(0.003) "
          f"{np.mean(dz < 0.003):.3f}, GF(0.001) {np.mean(dz < 0.001):.3f} (target 0.95)\n")
    print("| S/N | n | oracle GF(0.003) |\n|---|---|---|")
    for lo, hi in ((0, 1.5), (1.5, 2), (2, 3), (3, 4), (4, 8), (8, np.inf)):
        m = (snr >= lo) & (snr < hi)
        if m.any():
            print(f"| {lo}–{hi} | {m.sum()} | {np.mean(dz[m] < 0.003):.3f} |")
    print("\n| z | n | oracle GF(0.003) |\n|---|---|---|")
    for lo, hi in ((0, 0.5), (0.5, 1), (1, 1.5), (1.5, 2), (2, 2.5), (2.5, 3), (3, 6)):
        m = (zt >= lo) & (zt < hi)
        if m.any():
            print(f"| {lo}–{hi} | {m.sum()} | {np.mean(dz[m] < 0.003):.3f} |")
    mix = catalogue_mix(zp, zt, snr)
    if mix:
        print("\n| (S/N, z) mix of | median S/N | oracle GF(0.003) | GaSNet-III on those real spectra |"
              "\n|---|---|---|---|")
        for k, v in mix.items():
            print(f"| {k} | {v['median_snr']:.1f} | {v['GF_0.003']:.3f} | {v['published_GF_0.003']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
