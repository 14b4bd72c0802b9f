"""Argument types shared by subcommands: bad values fail in argparse, before any work,
with a usage line instead of a traceback from deep inside a run."""

from __future__ import annotations

import argparse

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--threads -2``, ``--workers 0``, ``--batch-size x`` are refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
