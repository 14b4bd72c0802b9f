"""The one training loop every neural model uses (plain PyTorch).

A model supplies three things and the loop knows nothing else about it:

* a ``torch.nn.Module`` (called as ``module(x)`` or ``module(*x)`` when ``x`` is a tuple),
* ``make_inputs(batch: SpectraBatch) -> Tensor | tuple[Tensor, ...]`` and
  ``make_targets(batch: SpectraBatch) -> Tensor | tuple | dict`` that turn a batch of spectra
  (flux, ivar, mask and the meta table with CLASS_LABEL, Z, …) into tensors, and
* ``loss_fn(outputs, targets) -> scalar Tensor``.

Usage::

    from specsift.training import train, normalise
    result = train(net, loss_fn, train_store_or_batch, val_store_or_batch,
                   make_inputs=..., make_targets=..., epochs=20, batch_size=256, lr=2e-3,
                   weight_decay=1e-4, seed=0, checkpoint_dir="ckpt", resume=False,
                   patience=5, val_metrics_fn=lambda outputs, targets: {"acc": ...})
    result.best_state      # state_dict (CPU tensors) of the best epoch, already loaded in net
    result.history         # one dict per epoch: epoch, train_loss, val_loss, lr, seconds, metrics

Data are streamed (:class:`StoreDataset`): a :class:`~specsift.io.store.SpectralStore` (or the path
of one) is read in chunks whose order is shuffled every epoch and whose rows are shuffled
inside a buffer of a few chunks, so memory is bounded by ``chunk_size × buffer_chunks``
spectra however big the store is.  An in-memory :class:`SpectraBatch` works the same way.
``make_inputs`` / ``make_targets`` run in the data workers (``num_workers > 0`` forks them).

Every epoch writes ``checkpoint_dir/last.pt`` (model, optimizer, scheduler, RNG states, epoch,
best metric, best weights, history); ``resume=True`` continues from it and — because the data
order depends only on ``(seed, epoch)`` — gives the same weights as an uninterrupted run.
Optimiser: AdamW; schedule: linear warm-up then cosine decay per step (``schedule='cosine'``),
``'onecycle'`` or ``'constant'``.  Early stopping on the validation loss after ``patience``
epochs without improvement.  ``device='auto'`` picks CUDA when present, else CPU.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .training_data import StoreDataset, normalise

__all__ = ["StoreDataset", "TrainResult", "train", "normalise", "resolve_device",
           "seed_everything"]


# ---------------------------------------------------------------------------- helpers
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to(obj, device):
    if obj is None:
        return None
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj).to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _call(module, x):
    return module(*x) if isinstance(x, (tuple, list)) else module(x)


def _cat(items: list):
    """Concatenate a list of per-batch outputs (tensors, tuples or dicts of tensors)."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([it[i] for it in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([it[k] for it in items]) for k in first}
    return items


def _detach_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_detach_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach_cpu(v) for k, v in obj.items()}
    return obj


def _batch_len(x) -> int:
    while isinstance(x, (tuple, list)):
        x = x[0]
    if isinstance(x, dict):
        return _batch_len(next(iter(x.values())))
    return len(x)


def _loader(ds: StoreDataset, num_workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=None, num_workers=num_workers,
                      persistent_workers=False, pin_memory=False)


# ---------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train` returns: best weights (loaded into the module), history and flags."""

    best_state: dict
    best_epoch: int
    best_val_loss: float
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    device: str = "cpu"

    @property
    def last(self) -> dict:
        return self.history[-1] if self.history else {}


def _schedule(name: str, total: int, warmup_frac: float = 0.05):
    warm = max(1, int(warmup_frac * total))

    def cosine(step):
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    def onecycle(step):
        up = max(1, int(0.3 * total))
        if step < up:
            return 0.04 + 0.96 * step / up
        t = min(1.0, (step - up) / max(1, total - up))
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * t))

    funcs = {"cosine": cosine, "onecycle": onecycle, "constant": lambda step: 1.0}
    if name not in funcs:
        raise ValueError(f"unknown schedule {name!r}; choose cosine, onecycle or constant")
    return funcs[name]


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


def _save_atomic(obj, path: Path) -> None:
    """Checkpoints hold tensors and plain data only, read back with ``weights_only=True``."""
    from . import torchfile
    torchfile.save(obj, path)


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def evaluate_loss(module, loss_fn, ds: StoreDataset, dev, num_workers=0, want_outputs=False,
                  reduce_fn: Callable | None = None):
    """Mean loss over a dataset (weighted by batch size); optionally all outputs/targets
    (each batch's CPU copy passed through ``reduce_fn(outputs, targets)`` first)."""
    module.eval()
    total, n, outs, tgts = 0.0, 0, [], []
    with torch.no_grad():
        for x, y in _loader(ds, num_workers):
            x, y = _to(x, dev), _to(y, dev)
            out = _call(module, x)
            k = _batch_len(x)
            total += float(loss_fn(out, y)) * k
            n += k
            if want_outputs:
                o, t = _detach_cpu(out), _detach_cpu(y)
                if reduce_fn is not None:
                    o, t = reduce_fn(o, t)
                outs.append(o)
                tgts.append(t)
    mean = total / max(n, 1)
    if want_outputs:
        return mean, _cat(outs), _cat(tgts)
    return mean, None, None


def train(module: torch.nn.Module, loss_fn: Callable, train_data, val_data=None, *,
          make_inputs: Callable, make_targets: Callable, epochs: int = 10,
          batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
          device="auto", checkpoint_dir=None, resume: bool = False, patience: int | None = None,
          progress: bool = True, val_metrics_fn: Callable | None = None,
          schedule: str = "cosine", num_workers: int = 0, chunk_size: int = 512,
          buffer_chunks: int = 4, grad_clip: float | None = 5.0,
          val_reduce_fn: Callable | None = None,
          train_indices=None, val_indices=None, max_epochs_this_run: int | None = None,
          log: Callable | None = print) -> TrainResult:
    """Train ``module`` with AdamW; return the best epoch's weights (loaded) and the history.

    ``train_data``/``val_data``: SpectralStore, store path, SpectraBatch, or a ready
    :class:`StoreDataset`.  ``val_metrics_fn(outputs, targets) -> dict`` gets the whole
    validation set's concatenated outputs/targets (CPU) after every epoch;
    ``val_reduce_fn(outputs, targets) -> (outputs, targets)`` shrinks each validation batch
    before it is kept (e.g. logits over many z bins → predicted z), bounding memory.  Without
    ``val_data`` the last epoch counts as best and early stopping is off.
    ``max_epochs_this_run`` stops this call after that many epochs (the schedule is still
    planned for ``epochs``) so a long job can be split into resumable pieces.
    """
    dev = resolve_device(device)
    seed_everything(seed)

    def dataset(data, shuffle, indices):
        if isinstance(data, StoreDataset):
            return data
        return StoreDataset(data, make_inputs, make_targets, batch_size=batch_size,
                            chunk_size=chunk_size, buffer_chunks=buffer_chunks,
                            shuffle=shuffle, seed=seed, indices=indices)

    train_ds = dataset(train_data, True, train_indices)
    val_ds = dataset(val_data, False, val_indices) if val_data is not None else None
    steps_per_epoch = train_ds.n_batches(num_workers)
    module.to(dev)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(schedule, epochs * steps_per_epoch))

    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    start_epoch, best_loss, best_epoch, bad_epochs = 0, math.inf, -1, 0
    best_state, history, stopped = None, [], False
    if resume:
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
        start_epoch, best_loss, best_epoch = ck["epoch"] + 1, ck["best_loss"], ck["best_epoch"]
        bad_epochs, best_state, history = ck["bad_epochs"], ck["best_state"], ck["history"]
        stopped = ck.get("stopped", False)
        if log:
            log(f"resumed from {ckpt_path} at epoch {start_epoch}/{epochs}")
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    end_epoch = epochs if max_epochs_this_run is None else min(epochs, start_epoch + max_epochs_this_run)
    for epoch in range(start_epoch, end_epoch):
        if stopped:
            break
        t0 = time.perf_counter()
        module.train()
        train_ds.set_epoch(epoch)
        total, n = 0.0, 0
        bar = _progress(progress, steps_per_epoch, f"epoch {epoch + 1}/{epochs}")
        for x, y in _loader(train_ds, num_workers):
            x, y = _to(x, dev), _to(y, dev)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(_call(module, x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}; "
                                         f"lower the learning rate or check the inputs")
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            opt.step()
            if sched.last_epoch < epochs * steps_per_epoch - 1:
                sched.step()
            k = _batch_len(x)
            total += float(loss.detach()) * k
            n += k
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / n:.4f}")
        if bar is not None:
            bar.close()
        row = {"epoch": epoch + 1, "train_loss": total / max(n, 1), "lr": opt.param_groups[0]["lr"]}
        if val_ds is not None:
            want = val_metrics_fn is not None
            vloss, outs, tgts = evaluate_loss(module, loss_fn, val_ds, dev, num_workers, want,
                                              val_reduce_fn)
            row["val_loss"] = vloss
            if want:
                row.update({k: _plain(v) for k, v in val_metrics_fn(outs, tgts).items()})
            if vloss < best_loss:
                best_loss, best_epoch, bad_epochs = vloss, epoch + 1, 0
                best_state = _cpu_state(module)
            else:
                bad_epochs += 1
            if patience is not None and bad_epochs >= patience:
                stopped = True
        else:
            best_loss, best_epoch, best_state = row["train_loss"], epoch + 1, _cpu_state(module)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        if log:
            log("  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
        if ckpt_path is not None:
            _save_atomic({"model": module.state_dict(), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "rng": _rng_state(), "epoch": epoch,
                          "best_loss": best_loss, "best_epoch": best_epoch,
                          "bad_epochs": bad_epochs, "best_state": best_state,
                          "history": history, "stopped": stopped}, ckpt_path)
        if stopped and log:
            log(f"early stop: no val-loss improvement for {patience} epochs "
                f"(best epoch {best_epoch})")
    if best_state is None:
        best_state = _cpu_state(module)
    module.load_state_dict(best_state)
    return TrainResult(best_state=best_state, best_epoch=best_epoch, best_val_loss=best_loss,
                       history=history, stopped_early=stopped, device=str(dev))


def _plain(v):
    if isinstance(v, torch.Tensor):
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
