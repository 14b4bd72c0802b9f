"""How well can any method measure simulated quasar redshifts? An oracle upper bound.

    python benchmarks/qso_oracle.py [--n 3000] [--seed 123] [--window 150]

For each simulated quasar the oracle knows its exact noiseless spectrum (same seed,
``noiseless=True``), including this object's line strengths and blueshifts, and fits it with
one free amplitude at every pixel shift within ±``window`` px of the true z. No line
confusion is possible there, so what is left is the noise. Prints GF(0.003) by S/N and at
the (S/N, z) mix of each GaSNet-III quasar catalogue, next to the issue target of 0.95.
Any real method has less information than this (it does not know the object's lines).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _catalogue_mix import catalogue_mix  # noqa: E402


def oracle_shift(flux, ivar, template, window: int) -> np.ndarray:
    """Sub-pixel shift (parabola on the χ² minimum) of the best amplitude-scaled template."""
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
    off = np.where(den > 0, 0.5 * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0)
    return shifts[k] + np.clip(off, -1, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="spectra simulated (a third are quasars)")
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--window", type=int, default=150, help="± pixels scanned around the true z")
    args = ap.parse_args(argv)
    from specsift.simulate import simulate_batch
    noisy = simulate_batch(args.n, "three", args.seed, bal_fraction=0.0)
    clean = simulate_batch(args.n, "three", args.seed, bal_fraction=0.0, noiseless=True)
    q = np.nonzero(np.asarray(noisy.meta["CLASS_LABEL"]) == "QSO")[0]
    zt = np.asarray(noisy.meta["Z"], float)[q]
    if not np.allclose(zt, np.asarray(clean.meta["Z"], float)[q]):
        raise RuntimeError("noisy and noiseless simulations differ: not the same objects")
    flux = noisy.flux[q].astype(np.float64)
    ivar = np.where(noisy.mask[q], 0.0, noisy.ivar[q]).astype(np.float64)
    shift = oracle_shift(flux, ivar, clean.flux[q].astype(np.float64), args.window)
    step = float(np.median(np.diff(noisy.loglam)))
    zp = (1 + zt) * 10 ** (shift * step) - 1
    dz = np.abs(zp - zt) / (1 + zt)
    snr = np.asarray(noisy.meta["SNR"], float)[q]
    print(f"command: python benchmarks/qso_oracle.py --n {args.n} --seed {args.seed} "
          f"--window {args.window}\n")
    print(f"{len(q)} simulated quasars (catalogue S/N mix); oracle GF(0.003) "
          f"{np.mean(dz < 0.003):.3f}, GF(0.001) {np.mean(dz < 0.001):.3f} (target 0.95)\n")
    print("| S/N | n | oracle GF(0.003) |\n|---|---|---|")
    for lo, hi in ((0, 1.5), (1.5, 2), (2, 3), (3, 4), (4, 8), (8, np.inf)):
        m = (snr >= lo) & (snr < hi)
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
