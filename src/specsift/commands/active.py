"""`specsift active run|status|benchmark`: the active-learning loop and its benchmark."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    r = sub.add_parser("run", help="train → score the pool → queue a batch; repeat (resumable)")
    r.add_argument("--pool", required=True, nargs="+", help="SpectralStore (.h5) or spectra files")
    r.add_argument("--db", required=True, help="label database (SQLite); holds all loop state")
    r.add_argument("--strategy", default="entropy",
                   choices=["entropy", "margin", "least-confidence", "random", "diverse"])
    r.add_argument("--batch", type=int, default=100, help="spectra asked about per iteration")
    r.add_argument("--initial", type=int, default=None, help="size of the first random batch")
    r.add_argument("--iterations", type=int, default=None, help="stop after queuing this many batches")
    r.add_argument("--max-labels", type=int, default=None, help="stop once this many labels exist")
    r.add_argument("--oracle", default=None, metavar="COLUMN",
                   help="answer queries from this truth column of the store (simulation)")
    r.add_argument("--wait", action="store_true", help="wait for labels from the web page")
    r.add_argument("--width", type=float, default=1.0, help="vgg1d width (1 = the paper's net)")
    r.add_argument("--full-spectrum", action="store_true", help="vgg1d on the store's whole grid "
                   "instead of the Hα window 6519–6732 Å")
    r.add_argument("--train-steps", type=int, default=300)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    r.set_defaults(func=run_loop)
    s = sub.add_parser("status", help="where a run stands: iteration, state, labels, metrics")
    s.add_argument("--db", required=True)
    s.set_defaults(func=status)
    b = sub.add_parser("benchmark", help="simulated-oracle benchmark of every strategy vs random")
    b.add_argument("--out", default="out/active-bench")
    b.add_argument("--pool-size", "--pool", type=int, default=100_000)
    b.add_argument("--test-size", "--test", type=int, default=20_000)
    b.add_argument("--rare", type=float, default=0.01, help="fraction of emission-line stars")
    b.add_argument("--seeds", type=int, default=5)
    b.add_argument("--max-labels", type=int, default=2000)
    b.add_argument("--batch", type=int, default=100)
    b.add_argument("--width", type=float, default=1.0)
    b.add_argument("--train-steps", type=int, default=300)
    b.add_argument("--strategies", default="entropy,margin,least-confidence,diverse,random")
    b.add_argument("--figdir", default=None, help="write learning-curve PNGs here")
    b.add_argument("--threads", type=int, default=None)
    b.set_defaults(func=benchmark)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _threads(n):
    if n:
        import torch
        torch.set_num_threads(n)


def run_loop(args) -> int:
    _threads(args.threads)
    from ..active.loop import ActiveLoop, LoopConfig
    from ..active.oracle import TruthOracle
    from ..active.pool import open_pool
    from ..spectra import DEFAULT_GRID
    pool = open_pool(args.pool if len(args.pool) > 1 else args.pool[0])
    cfg = LoopConfig(strategy=args.strategy, batch=args.batch, initial=args.initial or args.batch,
                     seed=args.seed, width=args.width, train_steps=args.train_steps)
    if args.full_spectrum:
        cfg.window = None
        grid = getattr(getattr(pool, "store", None), "grid", DEFAULT_GRID)
        if grid != DEFAULT_GRID:
            raise ValueError("--full-spectrum works on stores on the default grid; "
                             "convert the pool with `specsift convert` first")
    oracle = TruthOracle(pool, args.oracle) if args.oracle else None
    loop = ActiveLoop(args.db, pool, cfg, oracle=oracle)
    st = loop.run(iterations=args.iterations, max_labels=args.max_labels, wait=args.wait)
    print(json.dumps(st))
    if st["state"] == "labelling" and st["pending"] and not oracle:
        print(f"waiting for {st['pending']} labels: specsift label --pool {' '.join(args.pool)} "
              f"--db {args.db}")
    return 0


def status(args) -> int:
    from ..active.db import LabelDB
    db = LabelDB(args.db, create=False)
    for it in db.iterations():
        m = it["metrics"]
        print(f"iteration {it['iteration']:>3}  {it['state']:<10} labels {it['n_labelled'] or 0:>6}  "
              + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in m.items() if k in ("f1_rare", "rare_error", "rare_found",
                                                         "train_seconds", "score_seconds")))
    print(f"labels: {db.counts()}")
    return 0


def benchmark(args) -> int:
    _threads(args.threads or 1)
    from ..active.benchmark import run_benchmark, summarise
    path = run_benchmark(args.out, strategies=tuple(args.strategies.split(",")),
                         seeds=range(args.seeds), pool_size=args.pool_size,
                         test_size=args.test_size, rare_fraction=args.rare,
                         max_labels=args.max_labels, batch=args.batch, width=args.width,
                         train_steps=args.train_steps)
    table = summarise(json.loads(Path(path).read_text()), args.figdir)
    print(f"\npool {args.pool_size} ({args.rare:.1%} rare), test {args.test_size}, vgg1d width "
          f"{args.width}, {args.train_steps} steps/retraining, batch {args.batch}, "
          f"{args.seeds} seeds\n")
    print(table)
    (Path(args.out) / "table.md").write_text(table + "\n")
    return 0
