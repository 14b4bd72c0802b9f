"""The fine stage only for windows that can still matter (:mod:`specsift.verify.windows`): the
same answers as fitting every window finely, at a fraction of the fine fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specsift.constants import C_KMS
from specsift.models.base import load_model
from specsift.simulate import simulate_batch
from specsift.verify import verify_catalog
from specsift.verify.stage import VerifyOptions
from specsift.verify.windows import Windows


@pytest.fixture(scope="module")
def proposed():
    """160 simulated spectra of the thirteen classes and gasnet's catalog and candidates."""
    torch.set_num_threads(1)
    batch = simulate_batch(160, "thirteen", seed=21)
    model = load_model("gasnet").prepare("cpu", 1)
    with torch.inference_mode():
        cat, cands = model.propose(batch)
    return batch, cat, cands


def test_pruned_fine_stage_gives_the_full_answers(proposed):
    batch, cat, cands = proposed
    full = verify_catalog(batch, cat, cands, VerifyOptions(fine_margin=None))
    fast = verify_catalog(batch, cat, cands)
    for col in ("SPECTYPE", "SUBTYPE", "CLASS_LABEL", "ZWARN"):
        np.testing.assert_array_equal(np.asarray(fast[col]), np.asarray(full[col]), col)
    z0, z1 = np.asarray(full["Z"]), np.asarray(fast["Z"])
    # χ² = F − bᵀM⁻¹b from float32 products carries ~1e-3 relative noise at high S/N that
    # depends on which rows share a chunk, so a flat minimum may move by a few km/s
    assert np.all(np.abs(z1 - z0) / (1 + z0) * C_KMS < 10)
    d0, d1 = np.asarray(full["DELTACHI2"]), np.asarray(fast["DELTACHI2"])
    np.testing.assert_allclose(d1, d0, rtol=0.02, atol=1.0)


def test_only_windows_near_the_best_coarse_chi2_are_refined():
    """worth_refining: within max(min, margin·|best|) of the spectrum's best coarse χ²."""
    w = Windows.__new__(Windows)
    w.opt = VerifyOptions(fine_margin=0.1, fine_margin_min=100.0)
    w.res = {"coarse": np.array([5000.0, 5400.0, 5600.0, 300.0, 390.0, 420.0])}
    spec = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(w.worth_refining(spec, 2),
                                  [True, True, False, True, True, False])
    w.opt = VerifyOptions(fine_margin=None)
    assert w.worth_refining(spec, 2).all()


def test_partner_left_at_the_coarse_stage_is_named():
    """Each spectrum's far window (from its winner) of lowest coarse χ² is refined where it was
    not — even where another far window (e.g. STAR, always refined) was: DELTACHI2 needs the
    likely partner, not any fine one."""
    w = Windows.__new__(Windows)
    w.res = {"coarse": np.array([10.0, 50.0, 40.0, 10.0, 20.0, 30.0, 5.0, 60.0]),
             "fine": np.array([True, True, False, True, True, False, True, True])}
    spec = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    far = np.array([False, True, True, False, True, True, False, True])
    w.opt = VerifyOptions(partner_margin=None)       # the lowest far window alone
    # 0: lowest far coarse (40) unrefined → refine it although far row 1 (50) is refined;
    # 1: lowest far (20) refined already → nothing; 2: its only far row refined → nothing
    np.testing.assert_array_equal(w.partners(spec, far),
                                  [False, False, True, False, False, False, False, False])


def test_fewer_fine_fits_than_windows(proposed, monkeypatch):
    """The point of it: most windows stop at the coarse stage (here fewer than 3 in 4 go on)."""
    import specsift.verify.stage as stage
    batch, cat, cands = proposed
    seen = []
    orig = stage.Windows.refine

    def spy(self, rows):
        orig(self, rows)
        seen.append(self.res["fine"].mean())
    monkeypatch.setattr(stage.Windows, "refine", spy)
    verify_catalog(batch, cat, cands)
    assert seen and seen[0] < 0.75


def test_partner_candidates_within_the_partner_margin_are_refined():
    """Every far window whose coarse χ² is within max(fine_margin_min, partner_margin·|lowest|)
    of the lowest far one is refined (the fine partner need not be the lowest coarse one);
    ``partner_margin=None``: the lowest alone."""
    w = Windows.__new__(Windows)
    w.res = {"coarse": np.array([1000.0, 4000.0, 4030.0, 4100.0, 4200.0]),
             "fine": np.array([True, False, False, False, False])}
    spec = np.zeros(5, np.int64)
    far = np.array([False, True, True, True, True])
    w.opt = VerifyOptions(partner_margin=0.02, fine_margin_min=50.0)   # 4000 + max(50, 80)
    np.testing.assert_array_equal(w.partners(spec, far), [False, True, True, False, False])
    w.opt = VerifyOptions(partner_margin=None)
    np.testing.assert_array_equal(w.partners(spec, far), [False, True, False, False, False])
