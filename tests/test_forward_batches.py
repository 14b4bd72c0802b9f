"""Inference fast paths give the reference path's answers exactly.

The networks run on the CPU in mini-batches of ``cpu_batch_size`` (128) rather than one pass
over a whole batch (faster: the activations stay in cache); every catalog column and every
verification candidate must be bit for bit what a single pass gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specsift.models.base import PredictOptions, load_model
from specsift.simulate import simulate_batch


@pytest.fixture(scope="module")
def spectra():
    torch.set_num_threads(1)
    return simulate_batch(300, "thirteen", seed=7)


def _same(a, b) -> list[str]:
    """Names of the columns of tables ``a`` and ``b`` that differ (NaN equal to NaN)."""
    out = []
    for c in a.colnames:
        x, y = np.asarray(a[c]), np.asarray(b[c])
        same = (np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc"
                else np.array_equal(x, y))
        if not same:
            out.append(c)
    return out


@pytest.mark.parametrize("name", ["gasnet", "speccznet"])
def test_cpu_mini_batches_give_the_single_pass_answers(name, spectra):
    model = load_model(name).prepare("cpu", 1)
    assert model.cpu_batch_size < len(spectra)     # several passes, the last one partial
    with torch.inference_mode():
        cat, cands = model.propose(spectra)
        ref, ref_cands = model.propose(spectra, options=PredictOptions(batch_size=len(spectra)))
    assert cat.colnames == ref.colnames
    assert _same(cat, ref) == []
    np.testing.assert_array_equal(cands.z, ref_cands.z)
    np.testing.assert_array_equal(cands.spectype, ref_cands.spectype)
