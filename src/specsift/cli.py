"""`specsift` command line: a thin dispatcher over one module per subcommand.

Each module in :mod:`specsift.commands` defines ``register(subparsers)``, which adds its
parser and sets ``func``.  Modules are imported only for the subcommand that runs, so
`specsift info` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand → (module in specsift.commands, one-line help)
COMMANDS = {
    "info": ("info", "summarise spectra files: counts, wavelength range, S/N, labels"),
    "convert": ("convert", "read spectra files and write one chunked HDF5 store on one grid"),
    "demo": ("demo", "the main job on the bundled real SDSS spectra"),
    "simulate": ("simulate", "simulate a labelled survey into a store"),
    "train": ("train", "train a model on a store"),
    "evaluate": ("evaluate", "metrics and a report for a catalog or a model on data"),
    "explain": ("explain", "where a model looks, drawn against known lines"),
    "predict": ("predict", "classify and redshift spectra into a catalog"),
    "active": ("active", "active-learning loop and its benchmark"),
    "label": ("label", "serve the labelling web page"),
}


class UsageError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def _version() -> str:
    """'specsift 0.1.0 (astropy …, torch …)': what a bug report needs."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__
    deps = []
    for name in ("numpy", "astropy", "torch", "specutils"):
        try:
            deps.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return f"specsift {__version__} ({', '.join(deps)})"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="specsift", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"specsift.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"specsift.commands.{module}":
                continue  # not built yet
            raise
        mod.register(sub, name, help_)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Import only the module of the subcommand being run.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _printable_warnings()
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("specsift: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, OSError, KeyError) as exc:
        if args.debug:
            raise
        from .term import printable  # file names may hold escapes or newlines
        msg = printable(str(exc).strip() or exc.__class__.__name__, limit=600)
        print(f"specsift {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


def _printable_warnings() -> None:
    """Warnings name files too: print them with control characters escaped."""
    import warnings

    from .term import printable
    if getattr(warnings.formatwarning, "_printable", False):
        return
    plain = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        return plain(printable(message), category, filename, lineno, line)
    fmt._printable = True
    warnings.formatwarning = fmt


if __name__ == "__main__":
    sys.exit(main())
