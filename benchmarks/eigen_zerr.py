"""Calibrate the `eigen` model's ZERR per class on fresh simulated validation spectra.

    python benchmarks/eigen_zerr.py [--model eigen] [--n 1536] [--seed 24] [--save PATH]
        [--restore-penalty]

The Δχ² = 1 error knows only pixel noise; the real scatter is wider (template mismatch).
``EigenModel.calibrate_zerr`` sets, per predicted class, the factor that makes
|z − z_true| < ZERR hold for 68.3 % of the validation spectra.  Validation set:
``simulate_batch(n, 'three', seed, bal_fraction=0)`` without WD/CV stars (as in training;
seed 24 is used by neither training (21, 22) nor the benchmark test set (23)).  Prints the
1σ coverage per class before/after; ``--save`` writes the calibrated model.
``--restore-penalty``: models saved before the penalty was part of the saved state lost
their fitted class penalties; this puts back ``metrics['penalty']`` (fitted at training).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="eigen")
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--save", default=None, help="write the calibrated model here")
    ap.add_argument("--restore-penalty", action="store_true")
    args = ap.parse_args(argv)
    import specsift
    from specsift.simulate import simulate_batch
    torch.set_num_threads(1)
    cmd = "python benchmarks/eigen_zerr.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print("command:", cmd)
    m = specsift.load_model(args.model)
    if args.restore_penalty:
        pen = m.metrics.get("penalty", {})
        m.penalty_ = np.array([float(pen.get(b.label, 0.0)) for b in m.bases_])
        print("class penalties restored:", dict(zip([b.label for b in m.bases_], m.penalty_)))
    b = simulate_batch(args.n, class_set="three", seed=args.seed, bal_fraction=0.0)
    sub = np.char.upper(np.asarray(b.meta["SUBTYPE"], str))
    b = b[np.nonzero(~np.isin(np.char.partition(sub, " ")[:, 0], ["WD", "CV"]))[0]]
    res = m.calibrate_zerr(b)
    print(f"\n### ZERR calibration (n={len(b)}, seed {args.seed}; coverage by predicted class)\n")
    print("| class | n | scale | 1σ coverage before | after |")
    print("|---|---|---|---|---|")
    for lab in res["n"]:
        print(f"| {lab} | {res['n'][lab]} | {res['scale'][lab]:.2f} | "
              f"{res['before'].get(lab, float('nan')):.3f} | {res['after'].get(lab, float('nan')):.3f} |")
    if args.save:
        m.metrics["zerr_calibration"] = {**res, "seed": args.seed, "n_val": len(b),
                                         "command": cmd}
        print("saved", m.save(args.save))


if __name__ == "__main__":
    main()
