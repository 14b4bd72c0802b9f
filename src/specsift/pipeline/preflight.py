"""Checks on a predict run's output made before any work, and the lock held while it runs.

Why here and first: a catalog name the writer cannot write, ``--device cuda`` on a machine
without one, or ``-o`` naming one of the inputs used to fail only at the merge, after all
the work, and to leave a ``.parts`` folder that then blocked the corrected command.  Every
such mistake is now a one-line error (exit code 2) before the run directory exists.

What "the same catalog" means: the merged catalog records a hash of its input files (path,
size, mtime) under the key ``INPUTSHA``.  An existing catalog is replaced silently only
when it was made from the same inputs; a catalog of other inputs (or of unknown origin) is
kept unless ``--overwrite`` is given, and ``--resume`` never reports it as "complete".

The lock (``.CATALOG.lock`` beside the catalog, ``fcntl.flock`` with the holder's pid)
makes a second run on the same catalog stop at once instead of sharing, and deleting, the
first one's part and merge files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..io.catalog import catalog_format
from .parts import ResumeError

__all__ = ["OutputError", "check_run", "check_file", "input_files", "inputs_key", "catalog_key", "holds_output_lock",
           "OutputLock", "KEY"]

#: Catalog metadata key holding :func:`inputs_key` of the inputs it was made from.
KEY = "INPUTSHA"
_GLOB = set("*?[")


class OutputError(ValueError):
    """The output cannot be written as asked (printed as one line, exit code 2)."""


def check_file(output, suffixes: tuple[str, ...] = ()) -> Path:
    """An output file name: not a directory, one of ``suffixes`` when given, in a folder
    that exists or can be made and is writable.  For every command that writes a file."""
    out = Path(output)
    if out.is_dir() or str(output).endswith(("/", os.sep)):
        raise OutputError(f"{output}: is a directory; give a file name such as "
                          f"{out / ('catalog' + (suffixes[0] if suffixes else '.fits'))}")
    if suffixes and not out.name.lower().endswith(suffixes):
        raise OutputError(f"{output}: unknown extension; use {' or '.join(suffixes)}")
    parent = next((p for p in [out.parent, *out.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: cannot be written there ({parent} is not a writable "
                          f"directory)")
    return out


def check_name(output) -> Path:
    """A catalog name the writer supports (:func:`specsift.io.catalog.catalog_format`)."""
    out = check_file(output)
    catalog_format(out)                           # ValueError naming the supported endings
    return out


def check_device(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise OutputError(f"--device {device} asked for, but torch sees no CUDA device; "
                              f"use --device cpu")


def input_files(inputs, output: Path) -> list[str]:
    """The input files (expanded), minus the output and its run folder when a directory or
    pattern picked them up; ``-o`` naming an input file is an error."""
    from ..io import expand_paths

    out = os.path.realpath(output)
    parts = out + ".parts" + os.sep
    out_name = Path(out).name
    files: list[str] = []
    for item in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
        s = os.fspath(item)
        explicit = Path(s).is_file() or not (Path(s).is_dir() or _GLOB & set(s))
        for p in expand_paths([s]):
            # realpath only where it can match: same name, inside a .parts, or a link
            # (a million input files must not cost a million path resolutions)
            maybe = (p.name == out_name or ".parts" in str(p) or p.is_symlink())
            real = os.path.realpath(p) if maybe else ""
            if maybe and (real == out or real.startswith(parts)):
                if explicit:
                    raise OutputError(f"{output}: is also an input; the output would "
                                      f"overwrite it (choose another -o)")
                continue                          # our own output found in an input folder
            files.append(str(p))
    if not files:
        raise FileNotFoundError(f"{' '.join(map(str, inputs))}: no spectra files found "
                                f"(besides the catalog itself)")
    return files


def inputs_key(files) -> str:
    """Hash of the input files' absolute paths, sizes and modification times."""
    rows = []
    for f in files:
        try:
            st = os.stat(f)
            rows.append([os.path.abspath(f), st.st_size, int(st.st_mtime)])
        except OSError:
            rows.append([os.path.abspath(f), None, None])
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:32]


def catalog_key(path: Path) -> str | None:
    """The :data:`KEY` recorded in a catalog; None when absent or unreadable."""
    try:
        name = path.name.lower()
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq
            md = pq.read_schema(path).metadata or {}
            v = md.get(f"specsift.{KEY}".encode())
            return v.decode() if v else None
        if ".fit" in name:
            from astropy.io import fits
            with fits.open(path, memmap=True) as hdul:
                return next((str(h.header[KEY]) for h in hdul if KEY in h.header), None)
        from ..io import read_catalog
        v = read_catalog(path).meta.get(KEY)
        return None if v is None else str(v)
    except Exception:  # noqa: BLE001 - not a catalog we can read: of unknown origin
        return None


def check_run(output, inputs, *, device: str = "cpu", resume: bool = False,
              overwrite: bool = False) -> tuple[list[str], str, bool]:
    """All checks before work: returns (input files, their key, catalog already complete).

    Raises :class:`OutputError` / :class:`~.parts.ResumeError` (both ValueError)."""
    out = check_name(output)
    check_device(device)
    files = input_files(inputs, out)
    key = inputs_key(files)
    unfinished = (out.with_name(out.name + ".parts") / "plan.json").exists()
    if unfinished or not out.exists() or overwrite:
        return files, key, False                  # the run directory's own plan check applies
    if catalog_key(out) == key:
        return files, key, resume                 # same inputs: done, or made again
    what = (f"{out}: a finished catalog made from other inputs (or not by specsift predict) "
            f"is here" + (" (a CSV catalog records no inputs)" if catalog_format(out) == "csv"
                          else ""))
    if resume:
        raise ResumeError(f"{what}; --resume would keep it. Pass --overwrite to replace it, "
                          f"or choose another -o")
    raise OutputError(f"{what}; pass --overwrite to replace it, or choose another -o")


# ----------------------------------------------------------------------------- lock
class OutputLock:
    """Exclusive lock on a catalog for one process (a no-op where fcntl is missing)."""

    def __init__(self, output):
        out = Path(output)
        self.catalog, self.path = out, out.with_name(f".{out.name}.lock")
        self.fd: int | None = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:                       # not POSIX: no lock
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OutputError(f"{self.catalog}: another specsift predict (pid "
                                  f"{holder}) is writing this catalog; wait for it to end") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:                              # not a file its last holder just removed
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)     # while still holding it: see __enter__
            os.close(self.fd)
            self.fd = None


def holds_output_lock(func):
    """Decorator for ``predict(inputs, output, …)``: check the output's name, then run
    holding its :class:`OutputLock` (released on return, error or interrupt)."""
    @functools.wraps(func)
    def wrapper(inputs, output, *args, **kwargs):
        check_name(output)                        # before the lock creates any folder
        with OutputLock(output):
            return func(inputs, output, *args, **kwargs)
    return wrapper
