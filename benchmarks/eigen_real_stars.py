"""Give the eigen model file real-star templates (issue 18: eigen's own answer on real stars).

    python benchmarks/eigen_real_stars.py [--model src/specsift/data/models/eigen.pt]
        [--ncomp 10] [--floor-kms LAMOST=KMS] --save PATH
    python benchmarks/lamost_anomaly.py --recalibrate PATH      # then: LAMOST's normals again

No retraining: the simulated GALAXY, QSO and STAR eigenspectra, the class penalties, the
temperature and the ZERR scales stay as they are.  Added (``specsift.models.eigen.stars``):

* a STAR basis for SURVEY = LAMOST spectra: the 6 spEigenStar vectors of the verification
  stage (``data/templates/verify.npz``) and the ``--ncomp`` leading principal components of
  LAMOST's own star library (``data/templates/lamost_stars.npz``, built from the training
  split of ``lamost-real`` only), on the STAR rest grid with the same shifts; it inherits the
  STAR penalty, ZERR scale and rest-frame model errors;
* the spEigenStar vectors as the velocity basis of every star;
* per survey, a STAR velocity floor in km/s (``--floor-kms``; LAMOST's was chosen on the
  training split's stars and repeat visits, docs/eigen.md).

Both template files are already shipped; only their (derived) vectors are copied into the
model file, so that the model does not change when the verification templates are rebuilt.
``--ncomp`` was chosen on the training split of ``lamost-real`` (docs/eigen.md): 10 where
called-STAR stops rising and simulated quasars are not affected (the basis applies to
LAMOST spectra only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def add_real_stars(model, ncomp: int = 10, survey: str = "LAMOST", floors=None) -> dict:
    """Add the survey STAR basis and the velocity basis to ``model`` in place (idempotent:
    an earlier survey basis is replaced); returns the provenance stored in its metrics."""
    from specsift.models.eigen.stars import survey_star_basis, velocity_basis
    keep = [c for c, b in enumerate(model.bases_) if not b.survey]
    star = next(c for c in keep if model.bases_[c].label == "STAR")
    sb = model.bases_[star]
    model.bases_ = [model.bases_[c] for c in keep]
    model.penalty_ = np.asarray(model.penalty_, float)[keep]
    model.zerr_scale_ = np.asarray(model.zerr_scale_, float)[keep]
    if model.rest_model_error_ is not None:
        model.rest_model_error_ = [model.rest_model_error_[c] for c in keep]
    for cal in model.survey_anomaly_.values():
        cal["rest_model_error"] = [cal["rest_model_error"][c] for c in keep]
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


def main() -> None:
    import specsift
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "src/specsift/data/models/eigen.pt"))
    ap.add_argument("--ncomp", type=int, default=10)
    ap.add_argument("--floor-kms", nargs="*", default=[], help="SURVEY=KMS")
    ap.add_argument("--save", required=True)
    a = ap.parse_args()
    m = specsift.load_model(a.model)
    floors = {k.upper(): float(v) for k, v in (x.split("=") for x in a.floor_kms)}
    print(add_real_stars(m, a.ncomp, floors=floors))
    print("saved", m.save(a.save))


if __name__ == "__main__":
    main()
