"""`specsift demo -o OUTDIR`: the main job on the bundled real SDSS spectra.

Runs `specsift predict` with the default pretrained model on the demo set shipped in the
package, prints our class and redshift next to SDSS's for every spectrum, and writes the
catalog, ``metrics.json``, a PNG of spectra with the predicted lines marked and an HTML page
that ties them together.  Needs nothing outside the installed package.
"""

from __future__ import annotations

import html
import json
import warnings
from pathlib import Path

import numpy as np


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=__doc__.splitlines()[0])
    p.add_argument("-o", "--outdir", default="out/demo", help="where to write the results")
    p.add_argument("--model", default=None, help="model name or file (default: the bundled default)")
    p.add_argument("--n-plot", type=int, default=8, help="spectra to draw")
    p.set_defaults(func=run)


def plot_spectra(batch, catalog, path: Path, rows) -> Path:
    """PNG of the chosen spectra (5-px smoothing for display) with the major lines marked at
    the predicted redshift (blue) and, when it differs, SDSS's (grey), and the fitted
    emission lines (red) where the catalog has line measurements."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import uniform_filter1d

    from ..lines import LINES, MAJOR_LINES, lines_in_range
    from ..lines.plot import draw_lines
    stellar = tuple(ln for ln in LINES if "absorption" in ln.kind and ln.wave > 3000)

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.0 * len(rows)), sharex=True,
                             squeeze=False)
    wave = batch.wave
    for ax, k in zip(axes[:, 0], rows):
        good = ~batch.mask[k]
        wsum = uniform_filter1d(good.astype(float), 5)
        smooth = uniform_filter1d(np.where(good, batch.flux[k], 0.0), 5) / np.maximum(wsum, 1e-9)
        ax.plot(wave, np.where(good, smooth, np.nan), lw=0.6, color="0.15")
        m, c = batch.meta[k], catalog[k]
        zp, zt = float(c["Z"]), float(m["Z"])
        for z, colour in ((zt, "0.6"), (zp, "tab:blue")):
            if z < 0 or (colour == "0.6" and abs(z - zp) < 0.003 * (1 + z)):
                continue
            marks = stellar if str(c["SPECTYPE"]) == "STAR" else MAJOR_LINES
            for line, obs in lines_in_range(z, wave[0], wave[-1], marks):
                ax.axvline(obs, color=colour, lw=0.6, alpha=0.7)
                ax.text(obs, 0.98, line.name, transform=ax.get_xaxis_transform(), fontsize=6,
                        rotation=90, va="top", ha="right", color=colour)
        if "HALPHA_FLUX" in catalog.colnames and str(c["SPECTYPE"]) in ("GALAXY", "QSO"):
            draw_lines(ax, c, batch.loglam, flux=np.where(good, smooth, np.nan), label=False)
        ax.set_title(f"{Path(str(m['SOURCE'])).name}  SDSS {m['CLASS']} {m['SUBCLASS']} "
                     f"z={zt:.4f}   specsift {c['CLASS_LABEL']} z={zp:.4f}±{float(c['ZERR']):.4f}",
                     fontsize=8, loc="left")
        if good.any():
            lo, hi = np.nanpercentile(smooth[good], [1, 99])
            ax.set_ylim(min(lo, 0) - 0.1 * (hi - lo), hi + 0.4 * (hi - lo))
        ax.set_ylabel("flux", fontsize=7)
    axes[-1, 0].set_xlabel("vacuum wavelength (Å); blue: lines at specsift z, grey: at SDSS z")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pick_rows(truth, n: int) -> list[int]:
    """One spectrum of each SDSS class/subclass first, so the plot shows the variety."""
    seen, rows = set(), []
    for i, (c, s) in enumerate(zip(truth["CLASS"], truth["SUBCLASS"])):
        if (c, s) not in seen:
            seen.add((c, s))
            rows.append(i)
    return rows[:n]


def _table_lines(truth, cat, three_sdss, three_ours) -> list[str]:
    head = (f"{'file / row':34s} {'SDSS class':22s} {'z_SDSS':>8s} | "
            f"{'specsift class':20s} {'z':>8s} {'ZERR':>7s} {'ZWARN':>6s} {'dz/(1+z)':>9s}")
    out = [head, "-" * len(head)]
    for i in range(len(cat)):
        src = Path(str(truth["SOURCE"][i])).name
        if not src.startswith("spec-"):
            src = f"{src}[{i}]"
        zt, zp = float(truth["Z"][i]), float(cat["Z"][i])
        dz = abs(zp - zt) / (1 + zt)
        mark = "" if three_sdss[i] == three_ours[i] and dz <= 0.003 else "  *"
        out.append(f"{src[:34]:34s} {(str(truth['CLASS'][i]) + ' ' + str(truth['SUBCLASS'][i]))[:22]:22s} "
                   f"{zt:8.4f} | {str(cat['CLASS_LABEL'][i])[:20]:20s} {zp:8.4f} "
                   f"{float(cat['ZERR'][i]):7.4f} {int(cat['ZWARN'][i]):6d} {dz:9.5f}{mark}")
    return out


def run(args) -> int:
    from ..classes import map_sdss, spectype_of
    from ..data import demo_files
    from ..io import read, read_catalog
    from ..metrics import evaluate_catalog, redshift_metrics
    from ..pipeline.run import predict

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = [str(f) for f in demo_files()]
    catalog_path = outdir / "catalog.fits"
    print(f"specsift demo: {len(files)} bundled real SDSS files (see specsift/data/PROVENANCE.md)")
    result = predict(files, catalog_path, model=args.model, batch_size=256, progress=False,
                     overwrite=True, log=lambda msg: None)      # the demo's own scratch file
    if catalog_path.exists() and result.rows_this_run == 0:     # a previous demo's catalog
        catalog_path.unlink()
        result = predict(files, catalog_path, model=args.model, batch_size=256, progress=False,
                         log=lambda msg: None)
    cat = read_catalog(catalog_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = read(files).meta
    if len(cat) != len(truth) or not np.array_equal(np.asarray(cat["TARGETID"]),
                                                    np.asarray(truth["TARGETID"])):
        raise ValueError("demo: catalog rows do not line up with the demo spectra")
    three_sdss = map_sdss(truth["CLASS"], truth["SUBCLASS"], "three")
    three_ours = np.array([spectype_of(s) if s else "" for s in cat["CLASS_LABEL"]])
    lines = _table_lines(truth, cat, three_sdss, three_ours)
    print("\n".join(lines))

    metrics = evaluate_catalog(cat, truth)
    acc3 = float(np.mean(three_sdss == three_ours))
    zt, zp = np.asarray(truth["Z"], float), np.asarray(cat["Z"], float)
    per_type = {t: redshift_metrics(zp[three_sdss == t], zt[three_sdss == t])
                for t in ("GALAXY", "QSO", "STAR") if (three_sdss == t).any()}
    metrics["three_class_accuracy"] = acc3
    metrics["redshift_per_spectype"] = per_type
    (outdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"\nmodel {cat['MODEL'][0]}: {len(cat)} spectra in {result.seconds:.1f} s; "
          f"three-class accuracy {acc3:.3f}; " + "; ".join(
              f"{t} GF(0.003) {m['GF_0.003']:.3f} (n={m['n']})" for t, m in per_type.items())
          + "   (* = class or z disagrees with SDSS)")

    batch = read(files)
    rows = _pick_rows(truth, args.n_plot)
    png = plot_spectra(batch, cat, outdir / "demo_spectra.png", rows)
    page = outdir / "index.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>specsift demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{font-size:12px}</style>"
        f"<h1>specsift demo: {len(cat)} real SDSS spectra</h1>"
        f"<p>Model <code>{html.escape(str(cat['MODEL'][0]))}</code>. Three-class accuracy "
        f"{acc3:.3f}. Catalog: <a href='{catalog_path.name}'>{catalog_path.name}</a>, "
        f"metrics: <a href='metrics.json'>metrics.json</a>.</p>"
        f"<img src='{png.name}' style='max-width:100%'>"
        f"<pre>{html.escape(chr(10).join(lines))}</pre>")
    print(f"catalog: {catalog_path}\nplot: {png}\nreport: {page}")
    return 0
