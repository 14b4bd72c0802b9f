"""`specsift train`: train any registered model on a store (thin; the loop is specsift.training)."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=(
        "Train a model on a SpectralStore (HDF5 made by `specsift simulate` or `specsift convert`). "
        "Checkpoints every epoch; --resume continues an interrupted run exactly."))
    p.add_argument("--model", required=True, help="registered model name (e.g. speccznet)")
    p.add_argument("--data", required=True, help="training store (.h5)")
    p.add_argument("--val", help="validation store (.h5); enables early stopping")
    p.add_argument("-o", "--output", required=True, help="model file to write (.pt)")
    p.add_argument("--class-set", help="class set (default: the model's own)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor option, e.g. --set n_bins=300 --set widths=16,24,32,48,64 "
                        "(values parsed as Python literals; repeatable)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda")
    p.add_argument("--checkpoint-dir", help="default: OUTPUT with suffix .ckpt")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--init", metavar="MODEL.pt",
                   help="fine-tune: start from this model file's weights and settings (same "
                        "model kind) with a fresh schedule, e.g. on more or survey-specific data")
    p.add_argument("--patience", type=int, help="early-stop after this many epochs without "
                   "validation-loss improvement")
    p.add_argument("--trainable", type=lambda s: tuple(x for x in s.split(",") if x),
                   metavar="NAME[,NAME…]", help="train only these parameters (name prefixes, "
                   "e.g. cls: gasnet's class head), the rest frozen; use with --init")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_sets(items) -> dict:
    """['a=1', 'w=8,16'] → {'a': 1, 'w': (8, 16)}; strings stay strings."""
    import ast
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


def run(args) -> int:
    from ..models.base import TRAIN_OPTIONS, model_class
    from ..pipeline.preflight import check_file

    check_file(args.output, (".pt",))             # fail now, not after hours of training
    for path in [args.data] + ([args.val] if args.val else []):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such store")
    cls = model_class(args.model)
    kwargs = {"class_set": args.class_set} if args.class_set else {}
    kwargs.update(parse_sets(args.set))
    ckpt = args.checkpoint_dir or str(Path(args.output).with_suffix(".ckpt"))
    # the constructor options travel with the checkpoint, so --resume rebuilds the same model
    args_file = Path(ckpt) / "model_args.json"
    if args.resume and args_file.exists():
        saved = json.loads(args_file.read_text())
        if saved["model"] != args.model:
            raise ValueError(f"{ckpt}: checkpoint is for model {saved['model']!r}, not {args.model!r}")
        kwargs = {**saved["kwargs"], **kwargs}
    elif not args.resume:
        args_file.parent.mkdir(parents=True, exist_ok=True)
        args_file.write_text(json.dumps({"model": args.model, "kwargs": kwargs}))
    if args.init:
        model = _initial_model(args.init, args.model, kwargs)
    else:
        model = cls(**kwargs)
    # every model's fit takes every TRAIN_OPTIONS name (the contract in models/base.py)
    opts = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k, None) is not None}
    opts.update(checkpoint_dir=ckpt, progress=not args.no_progress)
    model.fit(args.data, args.val, **opts)
    if args.init:
        model.training["init"] = str(args.init)
    out = model.save(args.output)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    if model.metrics:
        print("validation: " + json.dumps(model.metrics))
    return 0


def _initial_model(path, name: str, kwargs: dict):
    """The model file to fine-tune; its class set, grid and architecture are kept, so
    constructor options cannot be changed at the same time."""
    from ..models.base import load_model
    model = load_model(path)                      # a registered name or a model file
    if model.name != name:
        raise ValueError(f"{path}: --init model is a {model.name!r}, not a {name!r}")
    if kwargs:
        raise ValueError(f"--init keeps {path}'s settings; drop --class-set/--set "
                         f"({', '.join(sorted(kwargs))})")
    return model
