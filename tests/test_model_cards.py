"""Every bundled model says what calibration it carries, on which data, with which command
(issue 17 item 3) — in the model file itself (``metrics["calibration_record"]``, plain
strings, so the file stays weights_only-loadable) and in its card, the two agreeing with
tools/calibration_records.py; and every card names the real data the model saw (issue 18)."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import pytest
import torch

from specsift.models.base import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from calibration_records import RECORDS  # noqa: E402

MODELS = Path(str(resources.files("specsift") / "data" / "models"))


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_model_file_carries_its_calibration_record(name):
    rec = load_model(name).metrics.get("calibration_record")
    assert rec == RECORDS[name], "rerun: PYTHONPATH=src python tools/calibration_records.py --write"
    for entry in rec:
        assert entry["what"] and entry["data"] and entry["command"]
    # the record is plain data: the file loads without unpickling objects
    blob = torch.load(MODELS / f"{name}.pt", map_location="cpu", weights_only=True)
    assert blob["metrics"]["calibration_record"][0]["command"] == rec[0]["command"]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_card_states_calibration_data_and_commands(name):
    card = (MODELS / f"{name}.md").read_text()
    assert "## Calibration this file carries, on which data, with which command" in card
    flat = " ".join(card.split())
    for entry in RECORDS[name]:
        script = next(w for w in entry["command"].split() if w.endswith(".py") or w == "train")
        assert script in flat, (name, script)
    assert "benchmarks/real_calibration.py" in flat     # measured on real spectra, per survey
    assert "real data" in flat.lower() and "held-out" in flat.lower()
