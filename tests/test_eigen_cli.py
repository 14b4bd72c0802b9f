"""`specsift predict --model eigen --save-chi2` end to end on real SDSS spectra."""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from specsift.cli import main

FILES = ("spec-0266-51602-0013.fits", "spec-0280-51612-0117.fits", "spec-1599-53089-0469.fits")


def test_predict_save_chi2_writes_curves_whose_minimum_is_z(shared_data, tmp_path):
    out = tmp_path / "cat.fits"
    # --no-verify: this test is about eigen's own χ² curves, Z and CHI2_MIN (the verification
    # stage would re-decide Z and CLASS_LABEL with other templates)
    rc = main(["predict", "--model", "eigen", "--save-chi2", "--no-progress", "--threads", "1",
               "--no-verify", *[str(shared_data / "sdss" / f) for f in FILES], "-o", str(out)])
    assert rc == 0
    cat = Table.read(out)
    head = fits.getheader(out, 1)
    assert len(cat) == 3
    step = float(head["LOGLAM_STEP"])
    assert step == 1e-4
    for row in cat:
        assert row["CLASS_LABEL"] in ("STAR", "GALAXY", "QSO")
        for lab in ("STAR", "GALAXY", "QSO"):
            cur = np.asarray(row[f"CHI2_{lab}"])
            assert cur.ndim == 1 and cur.size > 30 and np.all(np.isfinite(cur))
        # the chosen class's curve has its minimum at Z (parabola refinement: ≤ 1 pixel)
        lab = row["CLASS_LABEL"]
        cur = np.asarray(row[f"CHI2_{lab}"])
        j_best = int(head[f"CHI2_{lab}_JMIN"]) + int(np.argmin(cur))
        assert abs(np.log10(1 + row["Z"]) / step - j_best) <= 1.0
        # CHI2_MIN is the parabola vertex through the curve's minimum and its neighbours:
        # at most the curve's minimum and no deeper than the neighbours rise above it
        # (tolerance: float32 scan vs the exact float64 refit)
        i = int(np.argmin(cur))
        rise = max(cur[max(i - 1, 0)], cur[min(i + 1, cur.size - 1)]) - cur[i]
        depth = cur[i] - row["CHI2_MIN"]
        assert -1.0 <= depth <= rise + 1.0


def test_save_chi2_ecsv_catalog_reads_back(shared_data, tmp_path):
    """A χ² curve is one very long ECSV field; the catalog predict writes must read back."""
    from specsift.io.catalog import read_catalog

    out = tmp_path / "cat.ecsv"
    rc = main(["predict", "--model", "eigen", "--save-chi2", "--no-progress", "--threads", "1",
               "--no-verify", str(shared_data / "sdss" / FILES[0]), "-o", str(out)])
    assert rc == 0
    assert max(len(line) for line in out.read_text().splitlines()) > 131072
    cat = read_catalog(out)
    assert len(cat) == 1
    cur = np.asarray(cat[0]["CHI2_GALAXY"])
    assert cur.ndim == 1 and cur.size > 30 and np.all(np.isfinite(cur))
    import csv
    assert csv.field_size_limit() == 131072  # the limit is restored after reading
