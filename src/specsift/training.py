"""The one training loop every neural model uses (plain PyTorch).

A model supplies three things and the loop knows nothing else about it:

* a ``torch.nn.Module`` (called as ``module(x)`` or ``module(*x)`` when ``x`` is a tuple),
* ``make_inputs(batch: SpectraBatch) -> Tensor | tuple[Tensor, ...]`` and
  ``make_targets(batch: SpectraBatch) -> Tensor | tuple | dict`` that turn a batch of spectra
  (flux, ivar, mask and the meta table with CLASS_LABEL, Z, …) into tensors, and
* ``loss_fn(outputs, targets) -> scalar Tensor``.

Usage::

    from specsift.training import TrainConfig, train, normalise
    cfg = TrainConfig(epochs=20, batch_size=256, lr=2e-3, weight_decay=1e-4, seed=0,
                      checkpoint_dir="ckpt", resume=False, patience=5)
    result = train(net, loss_fn, train_store_or_batch, val_store_or_batch,
                   make_inputs=..., make_targets=..., config=cfg,
                   val_metrics_fn=lambda outputs, targets: {"acc": ...})
    # or the settings as keywords: train(..., epochs=20, lr=2e-3)
    result.best_state      # state_dict (CPU tensors) of the best epoch, already loaded in net
    result.history         # one dict per epoch: epoch, train_loss, val_loss, lr, seconds, metrics

Data are streamed (:class:`StoreDataset`): a :class:`~specsift.io.store.SpectralStore` (or the path
of one) is read in chunks whose order is shuffled every epoch and whose rows are shuffled
inside a buffer of a few chunks, so memory is bounded by ``chunk_size × buffer_chunks``
spectra however big the store is.  An in-memory :class:`SpectraBatch` works the same way.
``make_inputs`` / ``make_targets`` run in the data workers (``num_workers > 0`` forks them).

The settings are one :class:`TrainConfig`.  Every epoch writes ``checkpoint_dir/last.pt``
(:mod:`specsift.training_checkpoint`: model, optimizer, scheduler, RNG states, epoch,
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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .training_checkpoint import RunState, resume, save_checkpoint
from .training_data import StoreDataset, normalise
from .training_tensors import batch_len, call, concat, detach_cpu, to_device

__all__ = ["StoreDataset", "TrainConfig", "TrainResult", "train", "normalise", "resolve_device",
           "seed_everything", "trainable_prefixes"]


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
            x, y = to_device(x, dev), to_device(y, dev)
            out = call(module, x)
            k = batch_len(x)
            total += float(loss_fn(out, y)) * k
            n += k
            if want_outputs:
                o, t = detach_cpu(out), detach_cpu(y)
                if reduce_fn is not None:
                    o, t = reduce_fn(o, t)
                outs.append(o)
                tgts.append(t)
    mean = total / max(n, 1)
    if want_outputs:
        return mean, concat(outs), concat(tgts)
    return mean, None, None


def trainable_prefixes(trainable) -> tuple | None:
    """``trainable`` (None, one parameter-name prefix, or several) as a tuple of prefixes or
    None: one normal form for the training loop and for the models that ask what was
    trained (a bare string would otherwise be read as its characters)."""
    if trainable is None:
        return None
    return (trainable,) if isinstance(trainable, str) else tuple(trainable)


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run, grouped by what they steer (the loop's hooks —
    inputs, targets, loss, metrics, log — stay arguments of :func:`train`).

    Why one object: a model's ``fit`` and ``specsift train`` pass the same settings on, and a
    run's settings can be stored, compared and replaced (``dataclasses.replace``) as one
    value.  ``train(..., epochs=3)`` still works: keywords become fields (:meth:`of`)."""

    # optimiser and schedule: AdamW, a learning-rate schedule per step, gradient clipping
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"            #: 'cosine' (warm-up then cosine), 'onecycle', 'constant'
    grad_clip: float | None = 5.0
    #: stop after this many epochs without a better validation loss (None: never)
    patience: int | None = None
    #: stop this call after that many epochs (the schedule is still planned for ``epochs``),
    #: so a long job can be split into resumable pieces
    max_epochs_this_run: int | None = None
    # data: shuffled chunks pooled in a buffer (memory ≈ chunk_size × buffer_chunks spectra)
    chunk_size: int = 512
    buffer_chunks: int = 4
    num_workers: int = 0
    train_indices: object = None        #: rows of ``train_data`` to use (None: all)
    val_indices: object = None          #: rows of ``val_data`` to use (None: all)
    # the run: seed, device, checkpoints
    seed: int = 0
    device: object = "auto"
    checkpoint_dir: object = None       #: ``last.pt`` written here every epoch
    resume: bool = False                #: continue from ``checkpoint_dir/last.pt``
    progress: bool = True
    #: names (or name prefixes, e.g. ``("cls",)``) of the parameters to train; None: all.
    #: The rest are frozen: no gradient, not in the optimiser, and their modules stay in
    #: eval mode, so BatchNorm statistics do not drift either.  Why: refitting one head on a
    #: fixed trunk keeps everything else's outputs bit-identical (the redshift of a network
    #: whose class head alone is refitted to new labels, for instance)
    trainable: tuple | None = None

    def __post_init__(self):
        _schedule(self.schedule, 1)     # an unknown schedule fails before any data is read
        object.__setattr__(self, "trainable", trainable_prefixes(self.trainable))

    @classmethod
    def of(cls, config: "TrainConfig | None" = None, **settings) -> "TrainConfig":
        """``config`` (default: the defaults above) with ``settings`` replacing fields; an
        unknown name is a TypeError naming it."""
        base = config if config is not None else cls()
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"train() got unknown setting(s) {', '.join(unknown)}")
        return replace(base, **settings) if settings else base


def train(module: torch.nn.Module, loss_fn: Callable, train_data, val_data=None, *,
          make_inputs: Callable, make_targets: Callable, config: TrainConfig | None = None,
          val_metrics_fn: Callable | None = None, val_reduce_fn: Callable | None = None,
          log: Callable | None = print, **settings) -> TrainResult:
    """Train ``module`` with AdamW; return the best epoch's weights (loaded) and the history.

    ``config``: the run's :class:`TrainConfig`; keyword ``settings`` replace its fields.
    ``train_data``/``val_data``: SpectralStore, store path, SpectraBatch, or a ready
    :class:`StoreDataset`.  ``val_metrics_fn(outputs, targets) -> dict`` gets the whole
    validation set's concatenated outputs/targets (CPU) after every epoch;
    ``val_reduce_fn(outputs, targets) -> (outputs, targets)`` shrinks each validation batch
    before it is kept (e.g. logits over many z bins → predicted z), bounding memory.  Without
    ``val_data`` the last epoch counts as best and early stopping is off.
    """
    cfg = TrainConfig.of(config, **settings)
    dev = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    train_ds = _dataset(train_data, cfg, make_inputs, make_targets, True, cfg.train_indices)
    val_ds = (_dataset(val_data, cfg, make_inputs, make_targets, False, cfg.val_indices)
              if val_data is not None else None)
    steps = train_ds.n_batches(cfg.num_workers)
    module.to(dev)
    opt = torch.optim.AdamW(_trainable_parameters(module, cfg.trainable), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.schedule, cfg.epochs * steps))
    ckpt_path = Path(cfg.checkpoint_dir) / "last.pt" if cfg.checkpoint_dir is not None else None
    run = RunState()
    if cfg.resume:
        run = resume(ckpt_path, module, opt, sched)
        if log:
            log(f"resumed from {ckpt_path} at epoch {run.epoch + 1}/{cfg.epochs}")
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    start = run.epoch + 1
    end = cfg.epochs if cfg.max_epochs_this_run is None else min(cfg.epochs,
                                                                  start + cfg.max_epochs_this_run)
    for epoch in range(start, end):
        if run.stopped:
            break
        t0 = time.perf_counter()
        row = _train_epoch(module, loss_fn, train_ds, opt, sched, dev, cfg, epoch, steps)
        if val_ds is not None:
            _validate(module, loss_fn, val_ds, dev, cfg, row, run, val_metrics_fn,
                      val_reduce_fn)
        else:
            run.best_loss, run.best_epoch = row["train_loss"], epoch + 1
            run.best_state = _cpu_state(module)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        run.history.append(row)
        run.epoch = epoch
        if log:
            log("  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, module, opt, sched, run)
        if run.stopped and log:
            log(f"early stop: no val-loss improvement for {cfg.patience} epochs "
                f"(best epoch {run.best_epoch})")
    if run.best_state is None:
        run.best_state = _cpu_state(module)
    module.load_state_dict(run.best_state)
    return TrainResult(best_state=run.best_state, best_epoch=run.best_epoch,
                       best_val_loss=run.best_loss, history=run.history,
                       stopped_early=run.stopped, device=str(dev))


def _selected(name: str, prefixes) -> bool:
    return prefixes is None or any(name == p or name.startswith(p + ".") for p in prefixes)


def _trainable_parameters(module, prefixes) -> list:
    """The parameters ``prefixes`` select (all when None); the others get
    ``requires_grad=False``.  A prefix that selects nothing is an error naming it."""
    if prefixes is None:
        return list(module.parameters())
    named = list(module.named_parameters())
    unused = [p for p in prefixes if not any(_selected(n, (p,)) for n, _ in named)]
    if unused:
        raise ValueError(f"trainable {', '.join(map(repr, unused))}: no parameter of "
                         f"{type(module).__name__} is named so (its top-level parts: "
                         f"{', '.join(dict(module.named_children()))})")
    for n, p in named:
        p.requires_grad_(_selected(n, prefixes))
    return [p for _, p in named if p.requires_grad]


def _freeze_modes(module, prefixes) -> None:
    """Frozen modules that hold state (parameters or buffers: BatchNorm, …) into eval mode;
    stateless ones (dropout, activations) keep the training mode."""
    if prefixes is None:
        return
    for name, m in module.named_modules():
        own = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        if own and not _selected(name, prefixes):
            m.eval()


def _dataset(data, cfg: TrainConfig, make_inputs, make_targets, shuffle: bool, indices):
    if isinstance(data, StoreDataset):
        return data
    return StoreDataset(data, make_inputs, make_targets, batch_size=cfg.batch_size,
                        chunk_size=cfg.chunk_size, buffer_chunks=cfg.buffer_chunks,
                        shuffle=shuffle, seed=cfg.seed, indices=indices)


def _train_epoch(module, loss_fn, ds: StoreDataset, opt, sched, dev, cfg: TrainConfig,
                 epoch: int, steps: int) -> dict:
    """One pass over the training data; the epoch's history row so far."""
    module.train()
    _freeze_modes(module, cfg.trainable)
    ds.set_epoch(epoch)
    total, n = 0.0, 0
    bar = _progress(cfg.progress, steps, f"epoch {epoch + 1}/{cfg.epochs}")
    for x, y in _loader(ds, cfg.num_workers):
        x, y = to_device(x, dev), to_device(y, dev)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(call(module, x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch + 1}; "
                                     f"lower the learning rate or check the inputs")
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.requires_grad],
                                           cfg.grad_clip)
        opt.step()
        if sched.last_epoch < cfg.epochs * steps - 1:
            sched.step()
        k = batch_len(x)
        total += float(loss.detach()) * k
        n += k
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / n:.4f}")
    if bar is not None:
        bar.close()
    return {"epoch": epoch + 1, "train_loss": total / max(n, 1), "lr": opt.param_groups[0]["lr"]}


def _validate(module, loss_fn, ds: StoreDataset, dev, cfg: TrainConfig, row: dict,
              run: RunState, metrics_fn, reduce_fn) -> None:
    """Validation loss (and metrics) into ``row``; best weights and early stopping in ``run``."""
    want = metrics_fn is not None
    vloss, outs, tgts = evaluate_loss(module, loss_fn, ds, dev, cfg.num_workers, want,
                                      reduce_fn)
    row["val_loss"] = vloss
    if want:
        row.update({k: _plain(v) for k, v in metrics_fn(outs, tgts).items()})
    if vloss < run.best_loss:
        run.best_loss, run.best_epoch, run.bad_epochs = vloss, row["epoch"], 0
        run.best_state = _cpu_state(module)
    else:
        run.bad_epochs += 1
    if cfg.patience is not None and run.bad_epochs >= cfg.patience:
        run.stopped = True


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
