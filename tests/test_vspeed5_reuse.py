"""The rescue's second decision reuses the first one's window fits (:class:`.windows.Reusing`):
the same decisions as fitting every window again, from fewer fitted rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specsift.constants import C_KMS
from specsift.models.base import load_model
from specsift.simulate import simulate_batch
from specsift.verify.candidates import Candidates
from specsift.verify.fit import prepare
from specsift.verify.resolution import extra_sigma_pix
from specsift.verify.stage import VerifyOptions, _poly_chi2, sky_mask
from specsift.verify.templates import bases_for
from specsift.verify.windows import Reusing, Windows
from specsift.verify.zfind import full_range_candidates, solve


@pytest.fixture(scope="module")
def first_pass():
    """120 simulated spectra, gasnet's candidates, the stage's first decision (its windows
    kept) and the whole-z scan's candidates of every spectrum, as if all were rescued."""
    torch.set_num_threads(1)
    batch = simulate_batch(120, "thirteen", seed=5)
    model = load_model("gasnet").prepare("cpu", 1)
    with torch.inference_mode():
        cat, cands = model.propose(batch)
    opt = VerifyOptions()
    prep = prepare(batch.flux, batch.ivar, batch.mask | sky_mask(batch.loglam))
    bases = bases_for(batch.loglam)
    n = len(batch)
    todo = np.arange(n)
    net_t = np.asarray(cat["SPECTYPE"], "U6")
    net_z = np.asarray(cat["Z"], np.float64)
    sigma = extra_sigma_pix(batch)
    poly = _poly_chi2(prep)
    keep = []
    solve(prep, bases, cands, todo, opt, n, net_t, net_z, poly, sigma, keep=keep)
    extra = full_range_candidates(prep, bases, todo, n, opt)
    union = Candidates.concat([cands, extra])
    args = (prep, bases, union, todo, opt, n, net_t, net_z, poly, sigma)
    return args, keep[0]


def test_reused_windows_give_the_decisions_of_fitting_them_again(first_pass):
    args, first = first_pass
    again, reused = [], []
    a = solve(*args, keep=again)
    b = solve(*args, reuse=first, keep=reused)
    np.testing.assert_array_equal(b["type"], a["type"])
    np.testing.assert_array_equal(b["edge"], a["edge"])
    # the reused rows were fitted in other chunks: float32 rounding of χ² only
    dv = np.abs(b["z"] - a["z"]) / (1 + a["z"]) * C_KMS
    assert np.all(dv < 10)
    np.testing.assert_allclose(b["dchi2"], a["dchi2"], rtol=0.02, atol=1.0)
    w = reused[0][4]
    assert isinstance(w, Reusing)
    n_old, n_new = len(w.parts[0][2]), len(w.parts[1][2])
    assert n_old > 0.2 * (n_old + n_new)          # the model's candidates and the fixed windows
    assert n_old + n_new == len(again[0][0])      # every window of the decision, once


def test_a_reused_fine_fit_shows_only_once_asked_for(first_pass):
    """An earlier row refined there counts here as a coarse-only row (χ² inf, its coarse
    shift) until this decision asks for it; then its earlier fine fit, not a new one."""
    args, (spec, typ, zc, hw, old) = first_pass
    fine = np.flatnonzero(old.res["fine"])[:5]
    assert len(fine) and np.all(np.isfinite(old.res["chi2"][fine]))
    prep, bases, opt = args[0], args[1], args[4]
    empty = np.zeros(0, np.int64)
    new = Windows(prep, bases, empty, np.zeros(0, "U6"), np.zeros(0), empty, opt, args[9])
    w = Reusing(old, fine, np.arange(len(fine)), new, empty, opt)
    r = w.res
    assert np.all(np.isinf(r["chi2"])) and not r["fine"].any()
    np.testing.assert_array_equal(r["shift"], old.coarse_shift[fine])
    before = old.res["chi2"][fine].copy()
    ask = np.zeros(len(fine), bool)
    ask[:2] = True
    w.refine(ask)
    r = w.res
    np.testing.assert_array_equal(r["chi2"][:2], before[:2])      # the same bits: not refitted
    assert np.all(np.isinf(r["chi2"][2:])) and list(r["fine"]) == [True, True, False, False,
                                                                  False][:len(fine)]


def test_reusing_refuses_windows_of_other_options_or_sigma(first_pass):
    """A reused fit is the one a new fit would give only on the same fit products, options
    and σ: windows made otherwise are refused, not silently mixed."""
    import dataclasses
    args, (spec, typ, zc, hw, old) = first_pass
    prep, bases, opt, sigma = args[0], args[1], args[4], args[9]
    empty = np.zeros(0, np.int64)
    rows = np.flatnonzero(old.res["fine"])[:2]
    other = dataclasses.replace(opt, fine_margin=0.5)
    for o, sig in ((other, sigma), (opt, None)):
        new = Windows(prep, bases, empty, np.zeros(0, "U6"), np.zeros(0), empty, o, sig)
        with pytest.raises(ValueError, match="Reusing"):
            Reusing(old, rows, np.arange(len(rows)), new, empty, o)
