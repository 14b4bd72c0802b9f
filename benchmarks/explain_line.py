"""Where integrated gradients peak on a spectrum whose answer is known: a flat continuum with
one strong emission line, for each network model and both IG baselines.

    python benchmarks/explain_line.py

Prints, per model, line position and baseline, the wavelength of the |IG| peak, its distance
from the line and the share of |IG| within ±30 Å of it.  'flux' (the default of
`specsift.explain.integrated_gradients`) zeroes only the flux channel; 'zero' zeroes every
input channel, including the per-pixel S/N one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from specsift import DEFAULT_GRID, load_model
from specsift.explain import integrated_gradients

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _spectra import one_line  # noqa: E402  (the spectra tests/test_explain.py checks)

LINES = (4500.0, 5507.7, 7219.3)


def main() -> None:
    torch.set_num_threads(1)
    w = DEFAULT_GRID.wave
    print(f"{'model':<10} {'line Å':>8} {'baseline':<8} {'peak Å':>8} {'Δ Å':>7} {'|IG| ±30 Å':>11}")
    for name in ("gasnet", "speccznet"):
        model = load_model(name)
        for lam0 in LINES:
            for baseline in ("flux", "zero"):
                sal = np.abs(integrated_gradients(model, one_line(lam0), steps=8,
                                                  baseline=baseline)[0])
                peak = w[np.argmax(sal)]
                near = sal[np.abs(w - lam0) < 30].sum() / sal.sum()
                print(f"{name:<10} {lam0:>8.1f} {baseline:<8} {peak:>8.1f} {peak - lam0:>7.1f} "
                      f"{near:>11.3f}")


if __name__ == "__main__":
    main()
