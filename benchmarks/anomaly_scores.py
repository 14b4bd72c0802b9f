"""Which way of turning the eigen model's residual features into one anomaly score works best.

    python benchmarks/anomaly_scores.py [--n 96] [--seed 31] [--val-seed 77] [--val-n 1500]

Same features (``specsift.anomaly.residual_features`` of the shipped eigen fit), same
anomalies and normals as ``benchmarks/anomalies.py``; every rule is calibrated on its own
validation normals (``--val-seed``, never the test normals) and scored by ROC AUC per kind:

* ``max, unconditioned``: (x − median)/(q99 − median) per feature, max — the old rule;
* ``max, S/N bins``: the same with median and q99 per S/N quintile;
* ``Mahalanobis``: distance of the log features to the validation normals;
* ``isolation forest``: scikit-learn's, on the log features;
* ``max, S/N regression``: ``AnomalyCalibration.fit(..., snr=..., combine="max")``;
* ``top-2 mean, S/N regression``: the same, mean of the two largest scaled features;
* ``top-2 mean, S/N regression, + degeneracy``: and the ``degenerate`` feature (1/R of
  the χ² scan);
* ``… + rest-frame model error``: the residual features computed against the per-class
  rest-frame model error fitted on the same validation normals
  (``specsift.models.eigen.modelerror``) — the rule shipped.

All rules but the last two use the residual features only, all but the last plain ivar. Pick
the rule on one anomaly seed and confirm it on others (``--seed 41``, ``--seed 51``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anomalies import auc, build  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--val-seed", type=int, default=77)
    ap.add_argument("--val-n", type=int, default=1500)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from sklearn.ensemble import IsolationForest

    import specsift
    from specsift.anomaly import AnomalyCalibration
    from specsift.simulate import simulate_batch

    model = specsift.load_model("eigen")
    model.rest_model_error_ = None                   # plain ivar first
    normal, kinds = build(args.n, args.seed)
    val = simulate_batch(args.val_n, class_set="three", seed=args.val_seed, bal_fraction=0.0)
    sub = np.char.upper(np.asarray(val.meta["SUBTYPE"], str))
    val = val[np.nonzero(~np.isin(sub, ["WD", "CV"]))[0]]

    def features(batch):
        res = model._run(model.check_batch(batch))
        return res["features"], res["snr"]

    def residual_only(f):
        return {k: v for k, v in f.items() if k != "degenerate"}

    fv_all, sv = features(val)
    fv = residual_only(fv_all)
    test = {"normal": features(normal)} | {k: features(b) for k, b in kinds.items()}
    names = sorted(fv)
    model.calibrate_anomaly(model._run(model.check_batch(val)))     # fits the model error
    test_me = {"normal": features(normal)} | {k: features(b) for k, b in kinds.items()}

    def logx(f):
        return np.log(np.maximum(np.stack([np.asarray(f[k], float) for k in names], 1), 1e-6))

    def binned(nb=5):
        ell = np.log(np.maximum(sv, 0.1))
        edges = np.quantile(ell, np.linspace(0, 1, nb + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        x = np.exp(logx(fv))
        idx = np.clip(np.searchsorted(edges, ell, side="right") - 1, 0, nb - 1)
        med = np.array([np.median(x[idx == i], 0) for i in range(nb)])
        q = np.array([np.quantile(x[idx == i], 0.99, 0) for i in range(nb)])

        def score(f, s):
            b = np.clip(np.searchsorted(edges, np.log(np.maximum(s, 0.1)), side="right") - 1,
                        0, nb - 1)
            return ((np.exp(logx(f)) - med[b]) / np.maximum(q[b] - med[b], 1e-9)).max(1)
        return score

    xv = logx(fv)
    mu, prec = xv.mean(0), np.linalg.inv(np.cov(xv.T))
    iso = IsolationForest(n_estimators=300, random_state=0).fit(xv)
    plain = AnomalyCalibration.fit(fv, combine="max")
    cond = AnomalyCalibration.fit(fv, snr=sv, combine="max")
    top2 = AnomalyCalibration.fit(fv, snr=sv, combine="top2")
    shipped = AnomalyCalibration.fit(fv_all, snr=sv, combine="top2")
    rules = {
        "max, unconditioned": lambda f, s: plain.score(f),
        "max, S/N bins": binned(),
        "Mahalanobis": lambda f, s: np.einsum("ij,jk,ik->i", logx(f) - mu, prec, logx(f) - mu),
        "isolation forest": lambda f, s: -iso.score_samples(logx(f)),
        "max, S/N regression": lambda f, s: cond.score(f, s),
        "top-2 mean, S/N regression": lambda f, s: top2.score(f, s),
        "top-2 mean, S/N regression, + degeneracy": lambda f, s: shipped.score(f, s),
    }
    kind_names = [k for k in test if k != "normal"]
    print("| rule | " + " | ".join(kind_names) + " | mean |")
    print("|---" * (len(kind_names) + 2) + "|")
    for name, rule in rules.items():
        ns = rule(*test["normal"])
        aucs = [auc(rule(*test[k]), ns) for k in kind_names]
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in aucs) + f" | {np.mean(aucs):.3f} |")
    ns = model.anomaly_.score(*test_me["normal"])
    aucs = [auc(model.anomaly_.score(*test_me[k]), ns) for k in kind_names]
    print("| top-2 mean, S/N regression, + degeneracy, + rest-frame model error (shipped) | "
          + " | ".join(f"{a:.3f}" for a in aucs) + f" | {np.mean(aucs):.3f} |")


if __name__ == "__main__":
    main()
