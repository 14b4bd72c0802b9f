"""`specsift explain`: integrated-gradients saliency along wavelength with the known lines
marked at the observed wavelength, per spectrum, plus a per-class rest-frame summary
(gasnet, speccznet, vgg1d).  χ²-scan models (eigen) explain themselves instead: data,
best-fit and runner-up reconstructions, residual in σ, each pixel's share of the χ² gap
between the two, and the χ²(z) curve of every class with both minima and DELTACHI2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="+", help="spectra files, folders or a store")
    p.add_argument("--model", required=True, help="model file or registered name")
    p.add_argument("-o", "--output", required=True, help="output folder for PNGs and JSON")
    p.add_argument("--n-plots", type=int, default=12, help="spectra drawn one by one")
    p.add_argument("--limit", type=int, default=500, help="spectra used for the class summary")
    p.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..explain import plot_class_attention
    from ..models.base import load_model

    model = load_model(args.model)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if not model.capabilities.torch_net:          # χ²-scan models explain themselves
        return _run_chi2(model, args, out)
    per_class: dict[str, dict] = {}
    rows, plotted = [], 0
    for n, batch in _batches(args, model):
        plotted = _explain_batch(model, batch, args, out, n, rows, per_class, plotted)
    if not rows:
        raise ValueError(f"{' '.join(args.input)}: no spectra")
    plot_class_attention(per_class, out / "class_attention.png")
    summary = {name: {"n": d["n"], "near_line_fraction": {ln: c[0] / c[1] for ln, c in d["counts"].items()}}
               for name, d in per_class.items()}
    (out / "explain.json").write_text(json.dumps({"model": model.tag, "spectra": rows,
                                                  "per_class": summary}, indent=1))
    print(f"wrote {plotted} spectrum plots, class_attention.png and explain.json to {out}")
    return 0


def _batches(args, model):
    """(index of the first spectrum, batch) on the model's grid, up to --limit spectra, with
    the progress bar both explain paths show."""
    from ..io import iter_read
    from ..progress import spectra_bar

    n = 0
    with spectra_bar(args.input, "explain", args.limit, not args.no_progress) as bar:
        for batch in iter_read(args.input, batch_size=64, grid=model.grid):
            batch = batch[: max(0, args.limit - n)]
            if len(batch) == 0:
                return
            yield n, batch
            n += len(batch)
            bar.update(len(batch))


def _explain_batch(model, batch, args, out: Path, n: int, rows: list, per_class: dict,
                   plotted: int) -> int:
    """Saliency of one batch: plots (up to --n-plots), rows and the class summary."""
    from ..explain import integrated_gradients, line_attention, plot_explanation
    from ..lines import add_lines
    cat = add_lines(batch, model.predict(batch))       # the fitted lines go on the plots
    sal = integrated_gradients(model, batch, steps=args.steps)
    z = np.asarray(cat["Z"], float)
    labels = np.asarray(cat["CLASS_LABEL"], str)
    for k in range(len(batch)):
        tid = int(cat["TARGETID"][k])
        row = {"TARGETID": tid, "CLASS_LABEL": labels[k], "Z": float(z[k])}
        if plotted < args.n_plots and labels[k]:
            f = plot_explanation(batch, k, sal, z[k], labels[k], out / f"explain-{n + k:05d}.png",
                                 title=f"{tid}: {labels[k]}  z = {z[k]:.4f}", line_row=cat[k])
            row["plot"] = f.name
            plotted += 1
        rows.append(row)
    for name in np.unique(labels[labels != ""]):
        sel = labels == name
        att = line_attention(sal[sel], batch.loglam, z[sel])
        acc = per_class.setdefault(name, {"rest_wave": [], "counts": {}, "n": 0})
        acc["rest_wave"] += att["rest_wave"]
        acc["n"] += int(sel.sum())
        for line, frac in att["near_line_fraction"].items():
            if frac is not None:
                c = acc["counts"].setdefault(line, [0.0, 0])
                c[0] += frac * int(sel.sum())
                c[1] += int(sel.sum())
    return plotted


def _run_chi2(model, args, out: Path) -> int:
    """Models with their own ``explain(batch)`` (χ² scans): one reconstruction + χ²(z)
    plot per spectrum and explain.json with the solution of every spectrum."""
    from ..explain import plot_chi2_explanation

    rows, plotted = [], 0
    for n, batch in _batches(args, model):
        info = model.explain(batch)
        cat = info["catalog"]
        for k in range(len(batch)):
            tid, lab, z = int(cat["TARGETID"][k]), str(cat["CLASS_LABEL"][k]), float(cat["Z"][k])
            row = {"TARGETID": tid, "CLASS_LABEL": lab, "Z": z, "ZERR": float(cat["ZERR"][k]),
                   "DELTACHI2": float(cat["DELTACHI2"][k]), "ZWARN": int(cat["ZWARN"][k]),
                   "Z_SECOND": float(info["z_second"][k]),
                   "CLASS_SECOND": str(info["class_second"][k]),
                   "ANOMALY_SCORE": float(cat["ANOMALY_SCORE"][k])}
            if plotted < args.n_plots and lab:
                f = plot_chi2_explanation(info, k, out / f"explain-{n + k:05d}.png",
                                          title=f"{tid}: {lab}  z = {z:.4f}")
                row["plot"] = f.name
                plotted += 1
            rows.append(row)
    if not rows:
        raise ValueError(f"{' '.join(args.input)}: no spectra")
    (out / "explain.json").write_text(json.dumps({"model": model.tag, "spectra": rows},
                                                 indent=1, allow_nan=True))
    print(f"wrote {plotted} spectrum plots and explain.json to {out}")
    return 0
