"""``prepare(threads=N)`` holds numpy's BLAS to N threads as it holds torch's: a run asked for
one thread must not have OpenBLAS's worker spinning beside it (CPU time of the process)."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from specsift import load_model


def _blas_threads() -> list[int]:
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.fixture
def restore_threads():
    torch_before = torch.get_num_threads()
    with threadpool_limits(limits=None):          # restores every pool's count on exit
        yield
    torch.set_num_threads(torch_before)


def test_prepare_with_threads_limits_blas_too(restore_threads):
    if not _blas_threads():
        pytest.skip("numpy reports no BLAS library to threadpoolctl")
    threadpool_limits(limits=2, user_api="blas")
    model = load_model("gasnet")
    model.prepare("cpu", threads=1)
    assert torch.get_num_threads() == 1
    assert set(_blas_threads()) == {1}
    a = np.ones((300, 300))
    assert (a @ a)[0, 0] == 300.0                 # BLAS still works on one thread


def test_prepare_without_threads_leaves_blas_alone(restore_threads):
    if not _blas_threads():
        pytest.skip("numpy reports no BLAS library to threadpoolctl")
    threadpool_limits(limits=2, user_api="blas")
    before = _blas_threads()
    load_model("gasnet").prepare("cpu")
    assert _blas_threads() == before
