"""What the benchmark scripts share: where the real data is and which SDSS files they read.

Import it as the other helpers are (``sys.path.insert(0, <benchmarks/>)``, then
``from _common import SHARED``).  Metrics come from :mod:`specsift.metrics`
(``delta_z``, ``redshift_metrics``, ``roc_auc`` …), never re-implemented here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data beside the repository (read-only real spectra, templates, catalogues)
SHARED = ROOT.parent / "shared" / "data"
SDSS = SHARED / "sdss"
#: the two labelled SDSS tables (CLASS, SUBCLASS, Z, GaSNet-III's Best_fit_z)
LABELLED = (SDSS / "sdss-labelled-50.fits", SDSS / "sdss-qso-10.fits")


def sdss_files(pattern: str = "*.fits") -> list[Path]:
    """The real SDSS files matching ``pattern``, sorted (empty when ../shared is absent)."""
    return sorted(SDSS.glob(pattern))


def read_sdss(files, keep=("CLASS", "SUBCLASS", "Z")):
    """One batch of the given SDSS files with only ``keep`` (+ Best_fit_z, NaN where a file
    lacks it) in the meta, CLASS/SUBCLASS stripped: files with different label columns
    stack into one table."""
    import numpy as np

    from specsift import io as sio
    from specsift.spectra import SpectraBatch

    batches = [sio.read(str(f)) for f in files]
    for b in batches:
        b.meta = b.meta[list(keep) + (["Best_fit_z"] if "Best_fit_z" in b.meta.colnames else [])]
        if "Best_fit_z" not in b.meta.colnames:
            b.meta["Best_fit_z"] = np.full(len(b), np.nan)
        for c in ("CLASS", "SUBCLASS"):
            if c in b.meta.colnames:
                b.meta[c] = np.char.strip(np.asarray(b.meta[c], str))
    return SpectraBatch.concatenate(batches)
