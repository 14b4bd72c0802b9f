"""Evaluation report: ``metrics.json``, PNG plots, ``index.html`` (what a browser shows)
and the same as ``report.md`` (what GitHub and a terminal show).

Plots: confusion matrix, z_pred against z_true in log(1+z) coloured by true class (quasars
at z 3 and galaxies at z 0.05 on one readable axis, as in the GaSNet/Redrock papers), Δz
against S/N, reliability diagram; tables: overall redshift metrics and per-class
classification/redshift metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.table import Table

from .metrics import delta_z, match_rows, truth_labels

__all__ = ["write_report", "snr_column"]

_SNR_COLUMNS = ("SNR", "SN_MEDIAN_ALL", "SN_MEDIAN", "MEDIAN_SNR")


def snr_column(table: Table) -> np.ndarray | None:
    for c in _SNR_COLUMNS:
        if c in table.colnames:
            return np.asarray(table[c], float)
    return None


def _fmt(v, digits=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _plots(metrics: dict, pred: Table, truth: Table, outdir: Path, snr,
           labels: np.ndarray) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    made = []
    cls = metrics.get("classification")
    if cls and cls.get("confusion_matrix"):
        cm = np.asarray(cls["confusion_matrix"], float)
        names = cls["labels"]
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("confusion matrix (colour: row-normalised)")
        fig.tight_layout()
        fig.savefig(outdir / "confusion_matrix.png", dpi=110)
        plt.close(fig)
        made.append(("Confusion matrix", "confusion_matrix.png"))
    zp, zt = np.asarray(pred["Z"], float), np.asarray(truth["Z"], float) if "Z" in truth.colnames else None
    if zt is not None:
        ok = (zp > -1) & np.isfinite(zt) & (zt > -1)     # Z = -1: no data
        _zz_plot(zp[ok], zt[ok], labels[ok], outdir / "z_pred_vs_true.png")
        made.append(("Predicted against true redshift", "z_pred_vs_true.png"))
        if snr is not None:
            d = delta_z(zp, zt)
            sel = ok & np.isfinite(snr) & (snr > 0)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter(snr[sel], np.maximum(d[sel], 1e-6), s=3, alpha=0.5)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.axhline(0.01, color="r", lw=0.8, ls="--", label="catastrophic (0.01)")
            ax.axhline(0.001, color="g", lw=0.8, ls=":", label="0.001")
            ax.set_xlabel("S/N (median per pixel)")
            ax.set_ylabel("Δz = |z_pred − z_true|/(1+z_true)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(outdir / "dz_vs_snr.png", dpi=110)
            plt.close(fig)
            made.append(("Δz against S/N", "dz_vs_snr.png"))
    cal = metrics.get("calibration")
    if cal and cal.get("n"):
        edges = np.asarray(cal["bin_edges"])
        mid = 0.5 * (edges[1:] + edges[:-1])
        acc = np.array([np.nan if a is None else a for a in cal["bin_accuracy"]], float)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.bar(mid, acc, width=edges[1] - edges[0], edgecolor="k", alpha=0.6, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        ax.set_xlabel("top-class probability")
        ax.set_ylabel("fraction correct")
        ax.set_title(f"reliability (ECE {cal['ECE']:.3f})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(outdir / "reliability.png", dpi=110)
        plt.close(fig)
        made.append(("Reliability diagram", "reliability.png"))
    return made


def _zz_plot(zp, zt, labels, path: Path) -> None:
    """z_pred against z_true on log10(1+z) axes, one colour per true class."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name in sorted(set(labels.tolist())):
        sel = labels == name
        ax.scatter(np.log10(1 + zt[sel]), np.log10(1 + zp[sel]), s=8, alpha=0.7,
                   label=f"{name or 'no label'} ({int(sel.sum())})")
    hi = max(float(np.log10(1 + max(zt.max(initial=0.1), zp.max(initial=0.1)))), 0.05)
    ax.plot([0, hi], [0, hi], "k--", lw=0.8)
    for sign in (1, -1):                    # |Δz|/(1+z) = 0.01: the catastrophic limit
        ax.plot([0, hi], [sign * np.log10(1.01), hi + sign * np.log10(1.01)], "k:", lw=0.6)
    ax.set_xlabel("log10(1 + z true)")
    ax.set_ylabel("log10(1 + z predicted)")
    ax.set_title("redshift (dotted: |Δz|/(1+z) = 0.01)")
    ax.legend(fontsize=8, loc="upper left", title="true class", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _html(markdown: str, title: str) -> str:
    """The Markdown report as a self-contained page: headings, tables, images, bold."""
    import html
    import re
    body, rows = [], []

    def flush():
        if rows:
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                                  for r in rest) + "</table>")
            rows.clear()

    for line in markdown.splitlines():
        text = html.escape(line)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                rows.append([c.strip() for c in text.strip("|").split("|")])
            continue
        flush()
        m = re.match(r"!\[(.*)\]\((.*)\)", line)
        if m:
            body.append(f"<img src='{html.escape(m.group(2))}' alt='{html.escape(m.group(1))}'>")
        elif line.startswith("## "):
            body.append(f"<h2>{text[3:]}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{text[2:]}</h1>")
        elif line.strip():
            body.append(f"<p>{text}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
             "img{max-width:100%}")
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style>" + "\n".join(body) + "\n")


def _markdown(metrics: dict, plots, title: str) -> str:
    out = [f"# {title}", "", f"Class set `{metrics.get('class_set')}`; {metrics.get('n_matched')} "
           f"spectra matched ({metrics.get('n_no_data', 0)} without usable data, "
           f"{metrics.get('n_unlabelled_truth', 0)} with no truth label in the set).", ""]
    cls = metrics.get("classification")
    if cls:
        out += [f"**Accuracy {_fmt(cls.get('accuracy'))}**, macro F1 {_fmt(cls.get('macro_f1'))}",
                ""]
        if metrics.get("calibration", {}).get("ECE") is not None:
            out += [f"Expected calibration error {_fmt(metrics['calibration']['ECE'])}.", ""]
    red = metrics.get("redshift")
    if red:
        keys = [k for k in red if k.startswith("GF_")] + ["MAD", "sigma_NMAD", "NMAE",
                                                          "catastrophic_fraction", "R2",
                                                          "coverage_1sigma", "coverage_2sigma"]
        keys = [k for k in keys if k in red]
        out += ["## Redshift", "", "| n | " + " | ".join(keys) + " |",
                "|---" * (len(keys) + 1) + "|",
                f"| {red['n']} | " + " | ".join(_fmt(red[k]) for k in keys) + " |", ""]
    if cls and cls.get("per_class"):
        per_z = metrics.get("redshift_per_class", {})
        out += ["## Per class", "",
                "| class | support | precision | recall | F1 | GF(0.01) | NMAE | σ_NMAD |",
                "|---|---|---|---|---|---|---|---|"]
        for name, c in cls["per_class"].items():
            z = per_z.get(name, {})
            out.append(f"| {name} | {c['support']} | {_fmt(c['precision'])} | "
                       f"{_fmt(c['recall'])} | {_fmt(c['f1'])} | {_fmt(z.get('GF_0.01'))} | "
                       f"{_fmt(z.get('NMAE'))} | {_fmt(z.get('sigma_NMAD'))} |")
        out.append("")
    for caption, fname in plots:
        out += [f"## {caption}", "", f"![{caption}]({fname})", ""]
    return "\n".join(out)


def write_report(metrics: dict, pred: Table, truth: Table, outdir, title: str = "Evaluation",
                 snr: np.ndarray | None = None) -> Path:
    """Write ``metrics.json``, the PNG plots, ``index.html`` and ``report.md`` into
    ``outdir``; return the HTML page's path.  ``pred`` and ``truth`` are matched the same way as in the metrics."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    ip, it = match_rows(pred, truth)
    p, t = pred[ip], truth[it]
    if snr is not None:
        snr = np.asarray(snr, float)[it]
    else:
        snr = snr_column(t)
    try:
        labels = truth_labels(t, metrics["class_set"])
    except (KeyError, ValueError):
        labels = np.full(len(t), "")
    plots = _plots(metrics, p, t, outdir, snr, labels)
    md = _markdown(metrics, plots, title)
    (outdir / "report.md").write_text(md)
    path = outdir / "index.html"
    path.write_text(_html(md, title))
    return path
