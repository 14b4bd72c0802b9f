"""Progress bars that count spectra, with an ETA, for the commands that read many files.

Why an estimate: how many spectra a set of inputs holds is only known after reading them.
A store's row count is in its header and an SDSS/LAMOST ``spec`` file holds one spectrum,
so the total starts as (store rows + one per other file) and grows if a multi-spectrum file
turns out to hold more; the ETA is right for the common cases from the first batch on.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

__all__ = ["spectra_bar", "expected_spectra", "GrowingBar"]


def expected_spectra(inputs) -> int | None:
    """Store rows + one per other file named by ``inputs`` (None if they cannot be listed)."""
    from .io import expand_paths
    from .pipeline.units import is_store, store_rows
    try:
        paths = expand_paths(inputs)
    except (OSError, ValueError):
        return None
    total = 0
    for p in paths:
        try:
            total += store_rows(p) if p.is_file() and is_store(p) else 1
        except (OSError, KeyError):
            total += 1
    return total


class GrowingBar:
    """tqdm whose total grows when more spectra arrive than were expected."""

    def __init__(self, bar, limit: int | None):
        self.bar, self.limit = bar, limit

    def update(self, n: int) -> None:
        if self.bar.total is not None and self.bar.n + n > self.bar.total:
            self.bar.total = self.bar.n + n if self.limit is None else min(
                self.bar.n + n, self.limit)
        self.bar.update(n)

    def write(self, msg: str) -> None:
        self.bar.write(msg, file=sys.stderr)


@contextmanager
def spectra_bar(inputs, desc: str, limit: int | None = None, enabled: bool = True):
    """A bar for reading ``inputs`` (at most ``limit`` spectra), closed on exit."""
    from tqdm import tqdm
    total = expected_spectra(inputs) if enabled else None
    if limit is not None and total is not None:
        total = min(total, limit)
    bar = tqdm(total=total, unit="spectra", desc=desc, disable=not enabled,
               dynamic_ncols=True, file=sys.stderr)
    try:
        yield GrowingBar(bar, limit)
    finally:
        bar.close()
