"""Write tests/data/demo_predictions.json: every bundled model's catalog of the bundled demo
spectra (Z, ZERR, ZWARN, CLASS_LABEL, PROB_*, ANOMALY_SCORE), which
tests/test_model_contract.py asserts a fresh run still gives.

Regenerate (only when a model file or its decoding changes on purpose):
    PYTHONPATH=src python tools/demo_predictions.py tests/data/demo_predictions.json
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import torch

MODELS = ("gasnet", "speccznet", "eigen")


def demo_predictions() -> dict:
    from specsift import io, load_model
    torch.set_num_threads(1)
    demo = Path(str(resources.files("specsift") / "data" / "demo"))
    out = {}
    for name in MODELS:
        model = load_model(name)
        batch = io.read(sorted(str(p) for p in demo.glob("*.fits")), grid=model.grid)
        cat = model.predict(batch)
        cols = ["Z", "ZERR", "ZWARN", "CLASS_LABEL"] + [c for c in cat.colnames
                                                         if c.startswith("PROB_")]
        if "ANOMALY_SCORE" in cat.colnames:
            cols.append("ANOMALY_SCORE")
        out[name] = {c: (np.asarray(cat[c]).astype(str).tolist() if c == "CLASS_LABEL" else
                         np.asarray(cat[c]).tolist()) for c in cols}
        out[name]["TARGETID"] = np.asarray(cat["TARGETID"]).tolist()
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    Path(sys.argv[1]).write_text(json.dumps(demo_predictions(), indent=0) + "\n")
