"""Shared test fixtures.

Real data lives in ``../shared/data`` beside the repository (CI clones the repo with
``shared/`` next to it).  Tests that need it take the ``shared_data`` fixture, which skips
only when that folder is truly absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (read-only real spectra, templates and catalogues)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One intra-op torch thread: on a busy 2-core runner more threads only contend.
    Modules that train use it autouse with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
