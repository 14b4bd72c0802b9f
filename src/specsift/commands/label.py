"""`specsift label`: serve the labelling web page for a pool and a label database."""

from __future__ import annotations


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=(
        "Serve a web page that shows the spectra the active-learning strategy asks about and "
        "stores labels (who/when) in an SQLite database. Open the printed address in a browser."))
    p.add_argument("--pool", required=True, nargs="+",
                   help="a SpectralStore (.h5) or spectra files / directories / globs")
    p.add_argument("--db", required=True, help="label database (SQLite; created if missing)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; anything else needs --token)")
    p.add_argument("--token", default=None, help="access token required by every request")
    p.add_argument("--strategy", default=None, help="query strategy for a new database "
                   "(entropy, margin, least-confidence, random, diverse)")
    p.add_argument("--batch", type=int, default=None, help="spectra per batch for a new database")
    p.add_argument("--width", type=float, default=None, help="vgg1d width for a new database")
    p.add_argument("--labels", choices=("emission", "vi"), default=None,  # active.labelsets
                   help="label set of a new database: 'emission' (ABSORPTION / EMISSION / "
                        "DOUBLE_PEAK around Hα, the default) or 'vi' (visual inspection of "
                        "galaxies and quasars: class, redshift quality 0-4, VI redshift, comment)")
    p.add_argument("--catalog", default=None,
                   help="catalog of the pool's spectra (from `specsift predict`): its redshifts, "
                        "second solutions and best fits are drawn on the page")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import UsageError
    try:
        import uvicorn

        from ..active.webapp import create_app
        from ..active.webguard import is_loopback
    except ModuleNotFoundError as exc:
        raise UsageError(f"the web page needs {exc.name}: pip install 'specsift[web]'") from None
    if not is_loopback(args.host) and not args.token:
        raise UsageError(f"serving on {args.host} exposes the page beyond this machine: "
                         f"give --token SECRET (then open http://HOST:{args.port}/?token=SECRET)")
    from ..active.loop import LoopConfig
    cfg = None
    if args.strategy or args.batch or args.width:
        cfg = LoopConfig()
        if args.strategy:
            cfg.strategy = args.strategy
        if args.batch:
            cfg.batch = cfg.initial = args.batch
        if args.width:
            cfg.width = args.width
    from ..active.text import printable
    from ..active.webguard import check_token_text
    if args.token:
        try:
            check_token_text(args.token)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    pool = args.pool if len(args.pool) > 1 else args.pool[0]
    try:
        app = create_app(pool, args.db, token=args.token, config=cfg, label_set=args.labels,
                         catalog=args.catalog, port=args.port)
    except (OSError, ValueError) as exc:
        raise UsageError(printable(exc)) from None
    svc = app.state.service
    suffix = f"/?token={args.token}" if args.token else "/"
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"specsift label: {len(svc.pool)} spectra in the pool, labels in {printable(args.db)} "
          f"(label set {svc.label_set.name})"
          + (f", catalog {printable(args.catalog)} ({len(svc.overlay)} rows)" if svc.overlay else ""))
    print(f"open http://{host}:{args.port}{suffix}  (Ctrl-C stops; labels are saved as you go)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
