"""Give the eigen model file real-star templates (issue 18: eigen's own answer on real stars).

    python benchmarks/eigen_real_stars.py [--model src/specsift/data/models/eigen.pt]
        [--ncomp 10] [--floor-kms LAMOST=KMS] --save PATH
    python benchmarks/lamost_anomaly.py --recalibrate PATH      # then: LAMOST's normals again
    python benchmarks/eigen_real_stars.py --speed-against OLD.pt [--model NEW.pt]
        # CPU ms per spectrum of OLD and NEW, timed alternately (300 LAMOST, 68 SDSS, 200 sim)

No retraining: the simulated GALAXY, QSO and STAR eigenspectra, the class penalties, the
temperature and the ZERR scales stay as they are.  Added (``specsift.models.eigen.stars``):

* a STAR basis for SURVEY = LAMOST spectra: the 6 spEigenStar vectors of the verification
  stage (``data/templates/verify.npz``) and the ``--ncomp`` leading principal components of
  LAMOST's own star library (``data/templates/lamost_stars.npz``, built from the training
  split of ``lamost-real`` only), on the STAR rest grid with the same shifts; it inherits the
  STAR penalty, ZERR scale and rest-frame model errors;
* the spEigenStar vectors as the velocity basis of every star;
* LAMOST's own per-pixel variance boost (``EigenModel.survey_var_boost_``), fitted as the
  sky-line boost is (:func:`specsift.models.eigen.modelerror.fit_var_boost`) on the real
  LAMOST stars of the training split at their catalogue z with the LAMOST STAR basis: real
  LAMOST residuals scatter most at the blue end, the arm join and the telluric bands, and
  without it single artefacts there decided the class;
* the STAR ZERR scale again (the velocity now comes from the spEigenStar vectors): the
  68.3 % quantile of |Δz|/ZERR_raw over the simulated spectra predicted STAR of a fresh
  simulation (seed 24, as ``benchmarks/eigen_zerr.py``; 900 drawn, WD/CV removed);
* LAMOST's STAR velocity floor (km/s in quadrature with ZERR): the floor that makes the
  robust width of the repeat-visit pulls 1 over the dr8-ccf pairs of the training split
  (``--floor-kms LAMOST=KMS`` overrides it).

Both template files are already shipped; only their (derived) vectors are copied into the
model file, so that the model does not change when the verification templates are rebuilt.
``--ncomp`` was chosen on the training split of ``lamost-real`` (docs/eigen.md): 10 where
called-STAR stops rising and simulated quasars are not affected (the basis applies to
LAMOST spectra only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def lamost_training_stars():
    """(batch, repeat pairs) of the lamost-real STAR spectra outside the held-out split."""
    import _lamost_survey as LS
    import real_surveys as RS
    from _common import SHARED
    b, _ = RS.lamost()
    cls = np.char.upper(np.char.strip(np.asarray(b.meta["CLASS"]).astype(str)))
    keep = ((cls == "STAR") & ~np.asarray(b.meta["HELDOUT"], bool)
            & (np.asarray(b.meta["folder"]) != "lamost") & np.isfinite(np.asarray(b.meta["Z"], float)))
    b = b[np.flatnonzero(keep)]
    return b, LS.repeat_pairs(b.meta, SHARED / "lamost-real")


def fit_survey_var_boost(model, batch, survey: str = "LAMOST") -> np.ndarray:
    """The survey's variance boost from its stars at their catalogue z (module docstring)."""
    from specsift.models.eigen.chi2scan import Chi2Scanner
    from specsift.models.eigen.modelerror import fit_var_boost
    basis = next(b for b in model.bases_ if b.survey == survey.upper())
    sc = Chi2Scanner([basis], model.grid.size, model.npoly)
    return fit_var_boost(sc, batch, np.full(len(batch), "STAR"),
                         np.asarray(batch.meta["Z"], float), model.var_boost_, model.grid.step)


def star_zerr_scale(model, n: int = 900, seed: int = 24) -> tuple[float, int]:
    """(scale, n) of the STAR ZERR factor on simulated spectra (module docstring); set on
    every STAR basis of ``model``."""
    from specsift.simulate import simulate_batch
    b = simulate_batch(n, class_set="three", seed=seed, bal_fraction=0.0)
    sub = np.char.upper(np.asarray(b.meta["SUBTYPE"], str))
    b = b[np.flatnonzero(~np.isin(np.char.partition(sub, " ")[:, 0], ["WD", "CV"]))]
    star = [c for c, x in enumerate(model.bases_) if x.label == "STAR"]
    res = model._run(b)
    sol = res["sol"]
    pick = np.isin(sol.best_class, star) & (res["ngood"] > 0) & (sol.zerr > 0)
    r = np.abs(sol.z - np.asarray(b.meta["Z"], float))[pick] / sol.zerr[pick]
    scale = float(np.quantile(r, 0.6827))
    model.zerr_scale_ = np.asarray(model.zerr_scale_, float)
    model.zerr_scale_[star] = scale
    return scale, int(pick.sum())


def fit_floor(model, batch, pairs) -> tuple[float, float]:
    """(floor km/s, robust pull width before) making the robust repeat-pull width 1."""
    import _lamost_survey as LS
    model.star_zerr_floor_kms_ = {}
    cat = model.predict(batch)
    st = np.asarray(cat["SPECTYPE"]).astype(str)
    both = [(i, j) for i, j in pairs if st[i] == st[j] == "STAR"]
    z, ze = np.asarray(cat["Z"], float), np.asarray(cat["ZERR"], float)
    w0 = LS.pull_stats(z, ze, both)[1]
    for kms in np.arange(0.0, 30.01, 0.1):
        zf = np.hypot(ze, kms / 299792.458 * (1 + z))
        if LS.pull_stats(z, zf, both)[1] <= 1.0:
            return round(float(kms), 1), w0
    return 30.0, w0


def add_real_stars(model, ncomp: int = 10, survey: str = "LAMOST", floors=None) -> dict:
    """Add the survey STAR basis and the velocity basis to ``model`` in place (idempotent:
    an earlier survey basis is replaced); returns the provenance stored in its metrics."""
    from specsift.models.eigen.stars import survey_star_basis, velocity_basis
    model.drop_survey_bases()
    star = next(c for c, b in enumerate(model.bases_) if b.label == "STAR")
    sb = model.bases_[star]
    model.bases_.append(survey_star_basis(model.grid.loglam, sb.jmin, sb.jmax, survey, ncomp))
    model.penalty_ = np.append(model.penalty_, model.penalty_[star])
    model.zerr_scale_ = np.append(model.zerr_scale_, model.zerr_scale_[star])
    if model.rest_model_error_ is not None:
        model.rest_model_error_.append(model.rest_model_error_[star])
    for cal in model.survey_anomaly_.values():
        cal["rest_model_error"].append(cal["rest_model_error"][star])
    model.star_velocity_ = {"basis": velocity_basis(model.grid.loglam, sb.jmin, sb.jmax),
                            "npoly": model.npoly, "reach": 3}
    model.star_zerr_floor_kms_ = dict(floors or {})
    model._scanner, model._velocity = None, None
    prov = {"survey_star_basis": {"survey": survey, "ncomp": ncomp,
                                  "from": "verify.npz STAR (spEigenStar, 6) + SVD of "
                                          "lamost_stars.npz (LAMOST training split)"},
            "star_velocity": "verify.npz STAR (spEigenStar, 6 vectors), ±3 px of the class z",
            "star_zerr_floor_kms": dict(floors or {}),
            "command": "python benchmarks/eigen_real_stars.py"}
    model.metrics = {**(model.metrics or {}), "real_stars": prov}
    return prov


def speed_against(old: str, new: str, reps: int = 3) -> None:
    """Print CPU ms per spectrum of two eigen files, ``predict`` timed alternately in one
    process (1 torch thread; the median of ``reps``): on a shared machine two separate runs
    differ by more than the change."""
    import time

    import real_surveys as RS
    import torch

    import specsift
    from specsift.simulate import simulate_batch
    torch.set_num_threads(1)
    sets = {"300 LAMOST spectra": RS.lamost()[0][:300], "68 SDSS spectra": RS.sdss()[0],
            "200 simulated (seed 24)": simulate_batch(200, class_set="three", seed=24,
                                                      bal_fraction=0.0)}
    models = {"before": specsift.load_model(old), "after": specsift.load_model(new)}
    for m in models.values():
        for b in sets.values():
            m.predict(b[:8])
    ms = {(k, s): [] for k in models for s in sets}
    for _ in range(reps):
        for s, b in sets.items():
            for k, m in models.items():
                t = time.process_time()
                m.predict(b)
                ms[(k, s)].append(1e3 * (time.process_time() - t) / len(b))
    print(f"| data | {old} | {new} | ratio |\n|---|---|---|---|")
    for s in sets:
        a, b = np.median(ms[("before", s)]), np.median(ms[("after", s)])
        print(f"| {s} | {a:.2f} | {b:.2f} | {b / a:.2f} |")


def main() -> None:
    import specsift
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "src/specsift/data/models/eigen.pt"))
    ap.add_argument("--ncomp", type=int, default=10)
    ap.add_argument("--floor-kms", nargs="*", default=[], help="SURVEY=KMS")
    ap.add_argument("--save")
    ap.add_argument("--speed-against", metavar="OLD.pt")
    a = ap.parse_args()
    if a.speed_against:
        return speed_against(a.speed_against, a.model)
    if not a.save:
        ap.error("--save PATH is required (or --speed-against OLD.pt)")
    m = specsift.load_model(a.model)
    floors = {k.upper(): float(v) for k, v in (x.split("=") for x in a.floor_kms)}
    prov = add_real_stars(m, a.ncomp, floors=floors)
    scale, n = star_zerr_scale(m)
    prov["star_zerr_scale"] = {"scale": scale, "n_sim_predicted_star": n, "seed": 24}
    b, pairs = lamost_training_stars()
    m.survey_var_boost_ = {"LAMOST": fit_survey_var_boost(m, b)}
    prov["survey_var_boost"] = {"LAMOST": f"{len(b)} lamost-real training-split stars"}
    if "LAMOST" not in floors:
        kms, w0 = fit_floor(m, b, pairs)
        floors["LAMOST"] = kms
        prov["star_zerr_floor_fit"] = {"pairs": len(pairs), "robust_width_before": w0}
    m.star_zerr_floor_kms_ = floors
    prov["star_zerr_floor_kms"] = floors
    print(prov)
    print("saved", m.save(a.save))


if __name__ == "__main__":
    main()
