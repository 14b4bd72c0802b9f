"""The LAMOST star library: its builder (deterministic, rest frame, robust) and its split (the
shipped file was made from training-split stars only)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from specsift.spectra import DEFAULT_GRID
from specsift.verify.star_library import build_library, merge_rare, subclass_key

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
LIB = ROOT / "src" / "specsift" / "data" / "templates" / "lamost_stars.npz"
needs_shared = pytest.mark.skipif(not (SHARED / "lamost-real").is_dir(),
                                  reason="needs ../shared/data/lamost-real")


def test_subclass_keys_and_rare_merge():
    assert [subclass_key(s) for s in ("F5", "A7III", "dM1", "sdM2", "gM0", "WD", "Non", "")] \
        == ["F5", "A7", "M1", "M2", "M0", "", "", ""]
    keys = ["G2"] * 8 + ["G5"] * 9 + ["G3"] * 2 + ["G4"] * 1 + ["M1", "M3", "M2"]
    got = list(merge_rare(keys, 8))
    # G3 ties between G2 and G5 → the earlier type; G4 → G5; M alone pooled at its median
    assert got == ["G2"] * 8 + ["G5"] * 9 + ["G2"] * 2 + ["G5"] + ["M2"] * 3


def _lines(loglam, depth=0.5):
    """A continuum with absorption lines (Gaussians of σ = 4 px, wide enough that linear
    interpolation to and from the rest frame keeps them within 3 %) every 37 pixels."""
    p = np.arange(loglam.size)
    t = 1.0 + 0.3 * np.linspace(-1, 1, p.size)
    for c in range(20, p.size - 20, 37):
        t -= depth * np.exp(-0.5 * ((p - c) / 4.0) ** 2)
    return t


def test_builder_is_deterministic_rest_frame_and_robust():
    """Stars of one template at several z come back as that template in the rest frame
    (interpolation error only), whatever the row order; one wild star does not move the
    median; a class with too few stars gets no template."""
    loglam = DEFAULT_GRID.loglam
    t = _lines(loglam)
    p = np.arange(loglam.size, dtype=float)
    z = np.array([-3e-4, -1e-4, 0.0, 1e-4, 2e-4, 3.5e-4, 5e-4, 6e-4, 8e-4, 1e-3])
    flux = np.stack([a * np.interp(p - np.log10(1 + zz) / 1e-4, p, t)
                     for a, zz in zip(np.linspace(1, 3, z.size), z)])
    flux[4] *= 1 + 9 * (np.sin(p / 50) > 0.9)          # one star with wild bumps
    ivar = np.ones_like(flux)
    sub = ["G2"] * 10
    flux2 = np.concatenate([flux, flux[:3]])            # 3 K0 stars: too few for a template
    ivar2 = np.ones_like(flux2)
    names, temps, n = build_library(loglam, flux2, ivar2, np.r_[z, z[:3]], sub + ["K0"] * 3)
    assert list(names) == ["G2"] and list(n) == [10]
    inner = slice(30, -30)
    ref = t / np.median(t[(10 ** loglam > 4000) & (10 ** loglam < 8000)])
    assert np.max(np.abs(temps[0][inner] - ref[inner])) < 0.03
    perm = np.random.default_rng(1).permutation(10)
    names_p, temps_p, _ = build_library(loglam, flux[perm], ivar[perm], z[perm],
                                        [sub[i] for i in perm])
    again = build_library(loglam, flux, ivar, z, sub)[1]
    assert list(names_p) == ["G2"] and np.allclose(temps_p, again, rtol=0, atol=1e-12)


@needs_shared
def test_shipped_library_is_the_training_split_only():
    """Every file the shipped library lists is a training-split STAR of lamost-real, the
    list is exactly what the builder selects, and no held-out star is among them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _lamost_survey as LS
    import build_lamost_templates as B
    root = SHARED / "lamost-real"
    lab = LS.labels(root)
    rows = B.train_rows(root)
    held = {str(Path(p).relative_to(root)) for p, r in lab.items() if r["HELDOUT"]}
    chosen = [str(Path(r["PATH"]).relative_to(root)) for r in rows]
    assert len(held) > 300 and len(chosen) > 900
    assert not held & set(chosen)
    with np.load(LIB) as f:
        files = [str(x) for x in f["files"]]
        assert int(f["nstars"].sum()) <= len(files)
    assert files == chosen


@needs_shared
def test_builder_on_real_stars_is_deterministic():
    """Two builds from the same 24 real training-split stars are identical."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import build_lamost_templates as B
    rows = [r for r in B.train_rows() if str(r["SUBCLASS"]).startswith("F5")][:12] \
        + [r for r in B.train_rows() if str(r["SUBCLASS"]).startswith("G5")][:12]
    flux, ivar = B.read_rows(rows)
    a = B.build(rows, flux, ivar)
    b = B.build(rows, flux.copy(), ivar.copy())
    assert list(a[0]) == ["F5", "G5"] and list(a[2]) == [12, 12]
    assert np.array_equal(a[1], b[1])
