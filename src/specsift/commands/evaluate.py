"""`specsift evaluate`: metrics.json + index.html (with plots; report.md the same) for a
catalog against the truth, or for a model run on labelled data.  Predictions of a model
with a finer class set (thirteen) are mapped to the comparison's set (--class-set three)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=(
        "Either CATALOG --truth TRUTH (tables matched by TARGETID, else by order), or "
        "--model M --data D (spectra files or a store with truth columns CLASS_LABEL or "
        "CLASS/SUBCLASS, and Z)."))
    p.add_argument("catalog", nargs="?", help="catalog from `specsift predict` (FITS/Parquet/CSV)")
    p.add_argument("--truth", help="table with the true labels and Z")
    p.add_argument("--model", help="model file or registered name")
    p.add_argument("--data", nargs="+", help="labelled spectra (files, folders or a store)")
    p.add_argument("--class-set", help="class set of the comparison (default: the catalog's)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--limit", type=int, help="evaluate at most this many spectra")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _run_model(args):
    from astropy.table import vstack

    from ..io import iter_read
    from ..models.base import load_model
    from ..progress import spectra_bar
    model = load_model(args.model)
    cats, metas, snrs, n = [], [], [], 0
    with spectra_bar(args.data, "evaluate", args.limit, enabled=not args.no_progress) as bar:
        for batch in iter_read(args.data, batch_size=args.batch_size, grid=model.grid):
            if args.limit is not None:
                batch = batch[: max(0, args.limit - n)]
            if len(batch) == 0:
                break
            cats.append(model.predict(batch))
            metas.append(batch.meta)
            snrs.append(batch.median_snr())
            n += len(batch)
            bar.update(len(batch))
    if not cats:
        raise ValueError(f"{' '.join(args.data)}: no spectra")
    pred = vstack(cats, metadata_conflicts="silent")
    truth = vstack(metas, join_type="outer", metadata_conflicts="silent")
    for t in (pred, truth):                  # order-matching: files may repeat TARGETIDs
        t["_ROW"] = np.arange(len(t))
    return (pred, truth, np.concatenate(snrs), model.class_set,
            f"{model.tag} on {' '.join(args.data)}", model)


def _read_truth(path):
    """Truth table: a catalog file, or the metadata of a SpectralStore."""
    from ..io import read_catalog
    from ..io.store import SpectralStore
    if str(path).lower().endswith((".h5", ".hdf5")):
        with SpectralStore(path, "r") as store:
            return store.read_meta()
    return read_catalog(path)


def run(args) -> int:
    from ..cli import UsageError
    from ..io import read_catalog, write_catalog
    from ..io.catalog_schema import provenance
    from ..metrics import evaluate_catalog
    from ..report import write_report

    out = Path(args.output)
    if args.model:
        if args.catalog or not args.data:
            raise UsageError("give either CATALOG --truth TRUTH or --model M --data D")
        pred, truth, snr, class_set, title, model = _run_model(args)
        class_set = args.class_set or class_set
        if len(np.unique(np.asarray(pred["TARGETID"]))) != len(pred):
            pred.remove_column("TARGETID")
            truth = truth.copy()
            truth.remove_column("TARGETID") if "TARGETID" in truth.colnames else None
        out.mkdir(parents=True, exist_ok=True)
        write_catalog(pred[[c for c in pred.colnames if c != "_ROW"]], out / "catalog.fits",
                      meta=provenance(model, len(pred)))
    else:
        if not args.catalog or not args.truth:
            raise UsageError("give either CATALOG --truth TRUTH or --model M --data D")
        pred, truth, snr = read_catalog(args.catalog), _read_truth(args.truth), None
        class_set, title = args.class_set, f"{args.catalog} against {args.truth}"
    metrics = evaluate_catalog(pred, truth, class_set)
    report = write_report(metrics, pred, truth, out, title=f"Evaluation: {title}", snr=snr)
    print(summary_line(metrics))
    print(f"wrote {out / 'metrics.json'} and {report}")
    return 0


def summary_line(metrics: dict) -> str:
    """One line a person reads: class set, matched count, rounded metrics."""
    cls, red = metrics.get("classification", {}), metrics.get("redshift", {})

    def r(v, d=3):
        return "–" if v is None else f"{v:.{d}f}"
    return (f"class set {metrics.get('class_set')}: {metrics.get('n_matched')} spectra, "
            f"accuracy {r(cls.get('accuracy'))}, macro F1 {r(cls.get('macro_f1'))}; "
            f"GF(0.003) {r(red.get('GF_0.003'))}, GF(0.01) {r(red.get('GF_0.01'))}, "
            f"NMAE {r(red.get('NMAE'), 5)}")
