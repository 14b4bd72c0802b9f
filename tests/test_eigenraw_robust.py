"""eigen's robust star check (issue 18): one artefact cannot make a star a galaxy or quasar."""

import numpy as np
import pytest

from specsift.models.base import load_model
from specsift.models.eigen.robust import ROBUST_DEFAULT, block_sums, robust_star_gap

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


#: a real LAMOST galaxy (dr7-sbc, LAMOST z 0.1308, S/N_g 8.6): the check tries it (its best
#: class is not a star) and the star loses by a robust margin of ≈ −1600
GALAXY = "lamost-real/dr7-sbc/spectra/spec-58575-HD103621N361936B01_sp03-066.fits"
SDSS = ["sdss/spec-0266-51602-0013.fits", "sdss/spec-0280-51612-0117.fits"]


def test_real_lamost_galaxy_stays_galaxy(shared_data):
    """Negative control: a real galaxy's advantage is spread over the spectrum."""
    from specsift.io import read
    b = read(shared_data / GALAXY)
    m = load_model("eigen")
    on = m.predict(b)
    m.robust_star_ = None
    off = m.predict(b)
    assert on["SPECTYPE"][0] == off["SPECTYPE"][0] == "GALAXY"
    assert float(on["Z"][0]) == pytest.approx(0.1308, abs=0.003)
    for col in ("Z", "DELTACHI2", "PROB_GALAXY", "ZWARN"):
        assert on[col][0] == off[col][0]


def test_mixed_batch_only_lamost_rows_change_and_order_is_kept(shared_data):
    from specsift.io import read
    paths = [SDSS[0], COSMIC_RAY, SDSS[1], RED_END, GALAXY]
    b = read([shared_data / p for p in paths])
    m = load_model("eigen")
    on = m.predict(b)
    m.robust_star_ = None
    off = m.predict(b)
    assert list(on["SPECTYPE"][[1, 3]]) == ["STAR", "STAR"]
    assert list(off["SPECTYPE"][[1, 3]]) == ["GALAXY", "QSO"]
    for i in (0, 2, 4):                              # SDSS rows and the LAMOST galaxy
        for col in ("SPECTYPE", "Z", "ZERR", "DELTACHI2", "PROB_STAR", "ZWARN", "CHI2_MIN"):
            assert on[col][i] == off[col][i], (paths[i], col)
    m.robust_star_ = {}
    for i, p in enumerate(paths):                    # row i is file i, as alone
        one = m.predict(read(shared_data / p))
        assert one["SPECTYPE"][0] == on["SPECTYPE"][i]
        assert one["TARGETID"][0] == on["TARGETID"][i]
        # a switched star's velocity alone and in a batch: float32 scan noise (≈ 0.6 km/s)
        assert float(one["Z"][0]) == pytest.approx(float(on["Z"][i]), abs=1e-5)


def test_non_default_setting_survives_save_load(tmp_path):
    m = load_model("eigen")
    m.robust_star_["tau"] = 80.0
    m2 = load_model(m.save(tmp_path / "e.pt"))
    assert m2.robust_star_ == {"cap": 25.0, "nblock": 12, "tau": 80.0, "surveys": ("LAMOST",)}


@pytest.mark.parametrize("path", [COSMIC_RAY, RED_END])
def test_switched_row_gaps_are_the_decision_gaps(shared_data, path):
    """After a switch DELTACHI2 is the second-lowest decision χ² minus the lowest over every
    class (not only the class the check beat), χ²₂ = χ²₁ + DELTACHI2, and the star basis's
    class χ² is the reported fit's."""
    from specsift.io import read
    m = load_model("eigen")
    b = m.check_batch(read(shared_data / path))
    res = m._run(b)
    sol, dec = res["sol"], res["chi2_decision"][0]
    d = np.sort(dec[np.isfinite(dec)])
    assert np.argmin(np.where(np.isfinite(dec), dec, np.inf)) == sol.best_class[0]
    assert sol.deltachi2[0] == pytest.approx(d[1] - d[0])
    assert sol.chi2_second[0] == pytest.approx(sol.chi2[0] + sol.deltachi2[0])
    assert sol.chi2_class[0, sol.best_class[0]] == pytest.approx(sol.chi2[0])
    assert dec[sol.best_class[0]] == pytest.approx(sol.chi2[0])
    assert float(m._catalog(b, res)["DELTACHI2"][0]) == pytest.approx(d[1] - d[0])


def test_eigen_block_sums_cap_and_leave_the_best_block_out():
    """eigen's robust comparison (its own decision; the verification's diagnostics)."""
    gap = np.zeros((2, 120))
    gap[0, 5] = 1e4
    gap[0, 60:] = -1.0
    gap[1, :] = 2.0
    good = np.ones_like(gap, bool)
    assert block_sums(gap, good, 25.0, 12)[0, 0] == pytest.approx(25.0)
    out = robust_star_gap(gap, good, 25.0, 12)
    assert out[0] == pytest.approx(-60.0) and out[1] == pytest.approx(11 * 20.0)
