"""Model files and training checkpoints that hold only tensors and plain data.

Why: ``torch.load(weights_only=False)`` unpickles arbitrary objects, so a model file handed
round a collaboration could run code on every machine that loads it.  Here every file is
written as nested dicts / lists / tuples of tensors, str, int, float, bool and None, and read
back with ``weights_only=True``, which refuses anything else.  NumPy arrays (fitted
statistics, RNG states) travel as tensors tagged with their dtype and come back as the same
arrays; NumPy scalars become Python numbers.  Writes go to a temporary file renamed into place,
so a kill never leaves half a file where a finished one is expected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["save", "load", "encode", "decode", "UnsafeFileError"]

_ARRAY = "__ndarray__"          # {_ARRAY: tensor, "dtype": "float64", "shape": [...]}


class UnsafeFileError(ValueError):
    """The file holds objects other than tensors and plain data (it is not loaded)."""


def encode(obj):
    """``obj`` with NumPy arrays → tagged tensors and NumPy scalars → Python numbers."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (str, bool, int, float)) \
            and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"cannot store a NumPy array of dtype {obj.dtype} in a model file")
        a = np.ascontiguousarray(obj)
        wide = a.astype(np.int64) if a.dtype.kind == "u" else a     # torch lacks most uint
        return {_ARRAY: torch.from_numpy(wide.copy()), "dtype": a.dtype.str,
                "shape": list(a.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):                # e.g. a training store's path
        return os.fspath(obj)
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"model file keys must be str or int, not {type(k).__name__}")
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(encode(v) for v in obj)
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    raise TypeError(f"cannot store {type(obj).__name__} in a model file (tensors, numbers, "
                    f"strings, lists and dicts only)")


def decode(obj):
    """Inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if _ARRAY in obj and set(obj) == {_ARRAY, "dtype", "shape"}:
            return obj[_ARRAY].numpy().astype(np.dtype(obj["dtype"])).reshape(obj["shape"])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def save(obj, path) -> Path:
    """Write ``obj`` (see :func:`encode`) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode(obj)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path, map_location="cpu"):
    """Read a file written by :func:`save`; never runs code from the file.

    Raises :class:`UnsafeFileError` when the file holds other objects (a crafted pickle, or
    a file from an older specsift: convert it with :func:`upgrade`), ``ValueError`` when it is not a
    torch file at all."""
    try:
        return decode(torch.load(path, map_location=map_location, weights_only=True))
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or not a torch file
        if "weights only" not in str(exc).lower():
            raise ValueError(f"{path}: not a readable model file ({exc.__class__.__name__}: "
                             f"{_first_line(exc)})") from None
        what = _first_line(exc)
        raise UnsafeFileError(f"{path}: refused, the file holds objects other than tensors "
                              f"and plain data ({what}); if it is an older specsift file you "
                              f"trust, convert it with specsift.torchfile.upgrade") from None


def _numpy_globals() -> list:
    """What an older file's pickled NumPy arrays and scalars need, and nothing else: array and
    scalar reconstruction and the dtype classes (under NumPy 1's and 2's module names)."""
    core = getattr(np, "_core", None) or np.core
    out = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(core.multiarray, name)
        out += [fn, (fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    out += sorted({type(np.dtype(c)) for c in "?bBhHiIlLqQefdg"}, key=str)
    return out


def upgrade(src, dst) -> Path:
    """Rewrite an older file (NumPy arrays pickled inside) in the safe form.

    The old file is still read with ``weights_only=True``, allowing only NumPy's array, scalar
    and dtype reconstruction (:func:`_numpy_globals`): a file holding any other object is
    refused as by :func:`load`, so upgrading runs no code from the file either."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - same reporting as load()
        raise UnsafeFileError(f"{src}: refused, not an older specsift file of tensors and "
                              f"NumPy arrays ({_first_line(exc)})") from None
    return save(obj, dst)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    for line in text.splitlines():
        if "Unsupported global" in line or "Unsupported operand" in line:
            return line.strip()[:200]
    return (text.strip().splitlines() or [exc.__class__.__name__])[0][:200]
