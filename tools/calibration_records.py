"""Write each bundled model file's calibration record: what it carries, fitted on which data,
with which command (``metrics["calibration_record"]``, plain strings: the file stays
``weights_only``-loadable).  The model cards (``src/specsift/data/models/*.md``) say the same
in prose with the numbers; tests/test_model_cards.py checks that file, card and this list agree.

    PYTHONPATH=src python tools/calibration_records.py            # print
    PYTHONPATH=src python tools/calibration_records.py --write    # rewrite the bundled files

Why in the file too: a model file travels without its card (``--model PATH``); ``specsift``
users can read ``load_model(PATH).metrics["calibration_record"]`` wherever it went.
Rewriting changes nothing else (load + save round-trips the weights bit for bit).
"""

from __future__ import annotations

import json
import sys

VERIFY = {
    "what": "verification stage (not in this file, default `specsift predict`): ZERR = "
            "VerifyOptions.zerr_scale × χ² curvature σ ⊕ star_zerr_floor_kms per survey",
    "data": "STAR scale: 1185 real LAMOST stars (lamost-real + lamost) against LAMOST Z ⊕ Z_ERR; "
            "GALAXY / QSO scales: 17 / 31 real SDSS spectra of ../shared/data/sdss; LAMOST star "
            "floor 6.8 km/s: 150 repeat-visit pairs of lamost-real/dr8-ccf",
    "command": "python benchmarks/real_surveys.py --models gasnet --calibrate",
}

RECORDS = {
    "gasnet": [
        {"what": "class-probability temperature; ZERR error model + per-SPECTYPE σ calibration "
                 "of both z heads; Mahalanobis OOD (anomaly) statistics",
         "data": "simulated SDSS only: specsift simulate --classes thirteen --n 8192 --seed 22",
         "command": "python benchmarks/gasnet.py --model RUN/gasnet-ft.pt --recalibrate val.h5 "
                    "--save gasnet.pt --sim test.h5"},
        VERIFY,
    ],
    "speccznet": [
        {"what": "one global ZERR factor on the p(z) window width (class probabilities: raw "
                 "softmax, no temperature)",
         "data": "simulated SDSS only: specsift simulate --classes five --n 4000 --seed 9002",
         "command": "python benchmarks/lamost_finetune.py recalibrate-zerr --model "
                    "RUN/speccznet-ft.pt --val five-val-4000.h5 --save speccznet.pt"},
        VERIFY,
    ],
    "eigen": [
        {"what": "class penalties and χ² temperature",
         "data": "simulated SDSS: 600 spectra of specsift simulate --classes three --n 1536 --seed 22",
         "command": "specsift train --model eigen ... (fit's calibration; see the card)"},
        {"what": "ZERR scale per class",
         "data": "simulated SDSS: 1515 spectra, seed 24",
         "command": "python benchmarks/eigen_zerr.py --restore-penalty --save "
                    "src/specsift/data/models/eigen.pt"},
        {"what": "anomaly score, default normal population (rest-frame model error, "
                 "S/N-conditioned feature levels, threshold)",
         "data": "simulated SDSS: 1519 normals of seed 22 (no BAL, no WD/CV)",
         "command": "python benchmarks/anomalies.py --n 96 --recalibrate "
                    "src/specsift/data/models/eigen.pt"},
        {"what": "anomaly score, LAMOST normal population (spectra with SURVEY = LAMOST)",
         "data": "1098 real LAMOST stars: the training split of benchmarks/_lamost_real."
                 "heldout_mask over ../shared/data/lamost-real (derived statistics only)",
         "command": "python benchmarks/lamost_anomaly.py --recalibrate "
                    "src/specsift/data/models/eigen.pt"},
        VERIFY,
    ],
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv != ["--write"]:
        sys.exit(__doc__)
    from specsift import load_model
    from specsift.models.base import model_path as bundled  # the package's file for a name
    for name, rec in RECORDS.items():
        if argv == ["--write"]:
            model = load_model(bundled(name))
            model.metrics["calibration_record"] = rec
            print("wrote", model.save(bundled(name)))
        else:
            print(name, json.dumps(rec, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
