"""eigen's robust star check (issue 18): one artefact cannot make a star a galaxy or quasar."""

import numpy as np
import pytest

from specsift.models.base import load_model
from specsift.models.eigen.robust import ROBUST_DEFAULT, robust_star_gap

#: two LAMOST stars of the training split of lamost-real whose plain χ² was lost to one place:
#: a cosmic ray at 6714 Å fitted as a galaxy's Hα (z 0.023), and a dip at the red end
#: (9020–9040 Å) fitted as a quasar line (z 2.273)
COSMIC_RAY = "lamost-real/dr10-afg/spectra/spec-59522-GACII052N48B2_sp15-234.fits.gz"
RED_END = "lamost-real/dr8-ccf/spectra/spec-55859-F5907_sp02-223.fits.gz"


def test_gap_capped_and_best_block_left_out():
    gap = np.zeros((2, 120))
    gap[0, 5:8] = 1000.0          # one spike (3 px) in block 0
    gap[0, 30:] = -1.0            # the star better everywhere else, by a little
    gap[1, ::10] = 20.0           # the other fit better by 20 in every block
    good = np.ones_like(gap, bool)
    out = robust_star_gap(gap, good, cap=25.0, nblock=12)
    assert out[0] == pytest.approx(-90.0)        # 3 × 25 capped, then that block dropped
    assert out[1] == pytest.approx(11 * 20.0)    # spread advantage survives the drop
    good[1, :60] = False                         # blocks follow the good pixels: 6 of 12 left
    assert robust_star_gap(gap, good, 25.0, 12)[1] == pytest.approx(5 * 20.0)


@pytest.mark.parametrize("path, plain", [(COSMIC_RAY, "GALAXY"), (RED_END, "QSO")])
def test_real_star_with_artefact_stays_star(shared_data, path, plain):
    from specsift.io import read
    b = read(shared_data / path)
    m = load_model("eigen")
    cat, cand = m.propose(b)
    assert cat["SPECTYPE"][0] == "STAR"
    assert list(cand.spectype[0]) == ["STAR", plain]   # the verification stage sees both
    assert abs(float(cat["Z"][0])) < 0.002
    assert float(cat["DELTACHI2"][0]) > m.robust_star_["tau"]
    assert float(cat["PROB_STAR"][0]) > 0.5
    m.robust_star_ = None                        # the plain χ² decision, as before the check
    assert m.predict(b)["SPECTYPE"][0] == plain
    m.robust_star_ = {"surveys": ["SDSS"]}       # checked on other surveys' rows only
    assert m.predict(b)["SPECTYPE"][0] == plain
    m.robust_star_ = {}                          # empty: the default settings, on
    assert m.predict(b)["SPECTYPE"][0] == "STAR"
    m.robust_star_ = {"surveys": ["lamost"]}     # survey names in any case, as _active
    assert m.predict(b)["SPECTYPE"][0] == "STAR"


def test_settings_saved_and_off_survives_reload(tmp_path):
    m = load_model("eigen")
    assert m.robust_star_ == {"cap": 25.0, "nblock": 12, "tau": 50.0, "surveys": ("LAMOST",)}
    m.robust_star_["surveys"] += ("SDSS",)      # a model's settings are its own
    assert ROBUST_DEFAULT["surveys"] == ("LAMOST",)
    assert load_model("eigen").robust_star_["surveys"] == ("LAMOST",)
    m.robust_star_ = None
    m2 = load_model(m.save(tmp_path / "e.pt"))
    assert m2.robust_star_ is None
