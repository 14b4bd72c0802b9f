"""Data bundled with the package (no ../shared needed at run time).

``demo/``: a small set of real SDSS spectra for `specsift demo` (see PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "DEMO_DIR", "demo_files"]

DATA_DIR = Path(__file__).resolve().parent
DEMO_DIR = DATA_DIR / "demo"


def demo_files() -> list[Path]:
    """Paths of the bundled demo spectra files (8 SDSS/BOSS spec files + one 50-spectrum
    labelled table), sorted.  Raises FileNotFoundError if the package was installed
    without its data."""
    files = sorted(DEMO_DIR.glob("*.fits"))
    if not files:
        raise FileNotFoundError(f"{DEMO_DIR}: bundled demo spectra are missing "
                                f"(reinstall specsift, or run benchmarks/make_demo_set.py)")
    return files
