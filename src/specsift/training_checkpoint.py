"""What a training run's checkpoint holds and how it is written and read back.

Split from :mod:`specsift.training` (the loop) so that the loop reads as the loop.  A
checkpoint (``last.pt``) holds the model, optimiser, scheduler and RNG states and where the run
stands (:class:`RunState`); it holds tensors and plain data only and is read back with
``weights_only=True`` (:mod:`specsift.torchfile`): a crafted file runs no code.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["RunState", "save_checkpoint", "resume"]


@dataclass
class RunState:
    """Where a run stands: what a checkpoint holds besides weights and optimiser state."""

    epoch: int = -1                     # last finished epoch (0-based)
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    best_state: dict | None = None
    history: list = field(default_factory=list)
    stopped: bool = False


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(path: Path, module, opt, sched, run: RunState) -> None:
    """``last.pt`` after an epoch (written atomically: a kill leaves the previous one)."""
    from . import torchfile
    state = {"model": module.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "rng": _rng_state(), "epoch": run.epoch,
             "best_loss": run.best_loss, "best_epoch": run.best_epoch,
             "bad_epochs": run.bad_epochs, "best_state": run.best_state,
             "history": run.history, "stopped": run.stopped}
    torchfile.save(state, path)


def resume(ckpt_path: Path | None, module, opt, sched) -> RunState:
    """Weights, optimiser, schedule and RNG states from ``last.pt``; where the run stood."""
    if ckpt_path is None or not ckpt_path.exists():
        raise FileNotFoundError(f"cannot resume: no checkpoint at "
                                f"{ckpt_path if ckpt_path else '(no checkpoint_dir given)'}")
    from . import torchfile
    ck = torchfile.load(ckpt_path)
    try:
        module.load_state_dict(ck["model"])
    except RuntimeError as exc:
        detail = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ValueError(f"{ckpt_path}: checkpoint does not fit this model "
                         f"({' '.join(detail[:2])[:300]})") from None
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    _set_rng_state(ck["rng"])
    return RunState(epoch=ck["epoch"], best_loss=ck["best_loss"], best_epoch=ck["best_epoch"],
                    bad_epochs=ck["bad_epochs"], best_state=ck["best_state"],
                    history=ck["history"], stopped=ck.get("stopped", False))
