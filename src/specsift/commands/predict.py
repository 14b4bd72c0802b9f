"""`specsift predict INPUT... -o CATALOG`: spectra in, Redrock-compatible catalog out.

Streams any number of files, directories, globs or stores in batches (memory flat in N),
on one core, ``--workers N`` processes, or a Dask cluster; ``--resume`` continues a run
that was killed.  A file that cannot be read becomes a row flagged ZWARN BAD_INPUT.
"""

from __future__ import annotations

import sys

from ._args import positive_int


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="spectra files, directories, glob patterns or specsift stores")
    p.add_argument("-o", "--output", required=True, metavar="CATALOG",
                   help="catalog to write: .fits, .fits.gz, .parquet, .ecsv or .csv")
    p.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="registered model name or model file (default: gasnet when bundled, "
                        "else the best bundled model)")
    p.add_argument("--batch-size", type=positive_int, default=1024, metavar="N",
                   help="spectra per inference batch (default 1024)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="processes on this machine, or Dask workers to start (default 1)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads for the single-process engine (default: all cores)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same catalog")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing catalog made from other inputs")
    p.add_argument("--engine", default="local", choices=("local", "dask"),
                   help="local (default); dask: a Dask cluster (LocalCluster or --address)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="scheduler of a running Dask (tcp://…) or Ray cluster")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8"),
                   help="CPU inference variant (see docs/scaling.md for accuracy per model)")
    p.add_argument("--save-chi2", action="store_true",
                   help="keep χ² curves in the catalog (χ² models such as eigen)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the template χ² verification (docs/verify.md): the model's own "
                        "answer, as fast as the network alone")
    p.add_argument("--no-lines", action="store_true",
                   help="skip the emission-line stage (line columns, rule-based subclasses)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def stage_options(args):
    """The stages after the model, chosen here once from the flags (and checked by
    :class:`~specsift.pipeline.StageOptions`) for every engine and worker."""
    from ..models.base import PredictOptions
    from ..pipeline import StageOptions
    return StageOptions(verify=not args.no_verify, lines=not args.no_lines,
                        predict=PredictOptions(save_chi2=args.save_chi2))


def run(args) -> int:
    from ..pipeline import predict
    from ..pipeline.parts import ResumeError
    from ..term import printable

    try:
        res = predict(args.inputs, args.output, model=args.model, batch_size=args.batch_size,
                      device=args.device, workers=args.workers, resume=args.resume,
                      engine=args.engine, stages=stage_options(args),
                      progress=not args.no_progress, threads=args.threads, address=args.address,
                      precision=args.precision, overwrite=args.overwrite)
    except ResumeError as exc:
        print(f"specsift predict: {printable(exc)}", file=sys.stderr)
        return 2
    print(f"{printable(res.catalog)}: {res.rows} rows (model {res.model}; {res.rows_this_run} predicted "
          f"in {res.seconds:.1f} s, {res.rate:.0f} spectra/s)"
          + (f"; {len(res.read_errors)} file(s) unreadable, flagged BAD_INPUT"
             if res.read_errors else ""))
    if res.rows_this_run and res.rows == res.rows_this_run == len(res.read_errors):
        print("specsift predict: error: no input could be read (every row is flagged "
              "BAD_INPUT)", file=sys.stderr)
        return 2
    return 0
