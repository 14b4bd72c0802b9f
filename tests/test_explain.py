"""`specsift explain` on every bundled model, and saliency checked where the answer is known."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from _spectra import one_line

from specsift import DEFAULT_GRID, load_model
from specsift.cli import main
from specsift.explain import integrated_gradients
from specsift.io import read

DEMO = resources.files("specsift") / "data" / "demo"
GALAXY = str(DEMO / "spec-0266-51602-0013.fits")            # SDSS GALAXY, z 0.1213


@pytest.mark.parametrize("name", ["gasnet", "speccznet", "eigen"])
def test_explain_runs_on_every_bundled_model(name, tmp_path):
    out = tmp_path / name
    rc = main(["explain", "--model", name, GALAXY, str(DEMO / "spec-0332-52367-0639.fits"),
               "--steps", "4", "--no-progress", "-o", str(out)])
    assert rc == 0
    info = json.loads((out / "explain.json").read_text())
    assert info["model"] == load_model(name).tag and len(info["spectra"]) == 2
    for row in info["spectra"]:
        assert (out / row["plot"]).stat().st_size > 10_000
    if name != "eigen":
        assert (out / "class_attention.png").exists()


@pytest.mark.parametrize("name", ["gasnet", "speccznet"])
@pytest.mark.parametrize("lam0", [4500.0, 5507.7, 7219.3])
def test_saliency_peaks_at_a_single_strong_line(name, lam0):
    model = load_model(name)
    sal = np.abs(integrated_gradients(model, one_line(lam0), steps=8)[0])
    w = DEFAULT_GRID.wave
    assert abs(w[np.argmax(sal)] - lam0) < 10.0
    near = np.abs(w - lam0) < 30
    # not just one pixel; 3×: the issue-18 gasnet (trained on LAMOST/DESI noise too) spreads
    # its attribution wider (3.7× at 4500 Å) than the SDSS-only weights did
    assert sal[near].mean() > 3 * sal[~near].mean()


class _Linear(torch.nn.Module):
    """Class-1 logit = Σ w·x over one window; IG of a linear function is exact."""

    def __init__(self, npix, lo, hi):
        super().__init__()
        self.w = torch.zeros(npix)
        self.w[lo:hi] = 1.0

    def forward(self, x):
        s = (x * self.w).sum(-1)
        return {"cls": torch.stack([-s, s], dim=1)}


def test_integrated_gradients_exact_for_a_linear_network():
    batch = one_line(6000.0)
    model = type("M", (), {})()
    model.net = _Linear(batch.npix, 1000, 1100)
    model.make_inputs = lambda b: torch.from_numpy(b.flux.copy())
    sal = integrated_gradients(model, batch, steps=8, target=np.array([1]))
    expect = np.zeros(batch.npix, np.float32)
    expect[1000:1100] = batch.flux[0, 1000:1100]
    np.testing.assert_allclose(sal[0], expect, rtol=1e-5)      # attribution = x·w


def test_eigen_pixel_chi2_gap_adds_up_to_deltachi2():
    model = load_model("eigen")
    info = model.explain(read(GALAXY))
    gap = info["chi2_pixel_gap"][0]
    dchi2 = float(info["catalog"]["DELTACHI2"][0])
    assert dchi2 > 100 and abs(gap.sum() - dchi2) < 0.05 * dchi2
    # the pixels that decide are lines of the z = 0.121 galaxy (Ca H&K, Mg b, Na D, Hα …)
    w = 10 ** info["loglam"]
    top = w[np.argsort(gap)[-20:]] / (1 + info["catalog"]["Z"][0])
    lines = np.array([3934.8, 3969.6, 4305.6, 5176.7, 5894.0, 6564.6, 4862.7])
    assert np.mean(np.min(np.abs(top[:, None] - lines[None]), axis=1) < 25) >= 0.5


def test_explanation_plot_draws_the_fitted_emission_lines(tmp_path, monkeypatch):
    """#19: explain draws the emission-line stage's fitted lines over the spectrum (the
    SDSS star-forming galaxy has Hα measured at high S/N)."""
    import specsift.lines.plot as lplot
    from specsift.explain import plot_explanation
    from specsift.lines import add_lines
    batch = read(str(DEMO / "spec-0266-51602-0107.fits"))
    cat = add_lines(batch, load_model("gasnet").predict(batch))
    assert cat["HALPHA_FLUX"][0] * np.sqrt(cat["HALPHA_FLUX_IVAR"][0]) > 10
    drawn = []
    real = lplot.draw_lines
    monkeypatch.setattr(lplot, "draw_lines", lambda ax, row, *a, **k: drawn.append(
        real(ax, row, *a, **k)))
    sal = np.ones_like(batch.flux)
    z = float(cat["Z"][0])
    plot_explanation(batch, 0, sal, z, "GALAXY", tmp_path / "a.png", line_row=cat[0])
    assert len(drawn) == 1
    wave = batch.wave
    ha = np.argmin(np.abs(wave - 6564.6 * (1 + z)))
    model = drawn[0]                                    # continuum + lines, peaks at Hα
    assert model[ha] > np.nanmedian(model) + 0.5 * (np.nanmax(batch.flux[0]) - np.nanmedian(
        batch.flux[0]))
