"""The active-learning loop as a resumable state machine whose every state lives in the
label database.

One iteration ``i``::

    labelling  ── all of queue i labelled or skipped ──▶  training
    training   ── model i trained on every label so far, checkpoint path stored ──▶  trained
    trained    ── pool scored, batch chosen: queue i+1 ──▶  done; i+1 is labelling

Each transition is one SQLite transaction (:meth:`LabelDB.write`): a new iteration is
written together with its queue, and the previous iteration is marked done in the same
commit, so a kill at any point leaves the database in one of the states above.  Checkpoint
paths are stored relative to the database's folder.

Iteration 0 has no model: its queue is a seeded random batch.  Labels arrive from the web
page (``specsift label``) or from an oracle (simulated truth).  Stopping at any point and
running again continues where the database says it was: an interrupted training is redone,
a finished one is reloaded from its checkpoint, an interrupted scoring is redone.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .db import LabelDB
from .pool import Pool, open_pool
from .strategies import TopK, get_strategy

__all__ = ["LoopConfig", "ActiveLoop", "RARE_DEFAULT"]

RARE_DEFAULT = ("EMISSION", "DOUBLE_PEAK")


@dataclass
class LoopConfig:
    """Everything that defines a run; stored in the database on the first start."""

    strategy: str = "entropy"
    batch: int = 100                     # spectra asked about per iteration
    initial: int = 100                   # size of the random first batch
    seed: int = 0
    class_set: str = "ondrejov"
    rare: tuple = RARE_DEFAULT
    width: float = 1.0                   # vgg1d width multiplier (1 = the paper's net)
    window: list | None = field(default_factory=lambda: [6519.0, 140, 1e-4])
    train_steps: int = 300               # gradient steps per retraining
    max_epochs: int = 60
    train_batch: int = 64
    lr: float = 1e-3
    warm_start: bool = True              # continue from the previous iteration's weights
    score_batch: int = 4096
    oversample: int = 10                 # diverse strategy short-list factor

    @classmethod
    def from_dict(cls, d: dict) -> "LoopConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "rare" in known:
            known["rare"] = tuple(known["rare"])
        return cls(**known)


class ActiveLoop:
    """Drive one run; ``oracle(ids) -> labels`` answers queries when given (simulations),
    else the loop stops at 'labelling' and waits for the web page."""

    def __init__(self, db: LabelDB | str | Path, pool: Pool | str, config: LoopConfig | None = None,
                 workdir: str | Path | None = None, oracle: Callable | None = None,
                 evaluate: Callable | None = None, log: Callable | None = print,
                 progress: Callable | None = None):
        self.db = db if isinstance(db, LabelDB) else LabelDB(db)
        self.pool = open_pool(pool)
        stored = self.db.get_meta("loop_config")
        if stored is None:
            self.config = config or LoopConfig()
            self.db.set_meta("loop_config", asdict(self.config))
            self.db.set_meta("pool", self.pool.spec)
            self.db.set_meta("pool_fingerprint", self.pool.fingerprint())
            self.db.set_meta("classes", list(self._labels()))
        else:
            self.config = LoopConfig.from_dict(stored)
            if config is not None and asdict(config) != asdict(self.config):
                changed = [k for k, v in asdict(config).items() if stored.get(k) != v
                           and not (isinstance(v, tuple) and list(v) == stored.get(k))]
                if changed and log:
                    log(f"note: resuming with the configuration stored in {self.db.path} "
                        f"(ignoring new values for {', '.join(changed)})")
            fp = self.db.get_meta("pool_fingerprint")
            if fp is not None and fp != self.pool.fingerprint():
                raise ValueError(f"{self.db.path}: this label database belongs to another pool "
                                 f"({self.db.get_meta('pool')}); ids would not match")
        self.workdir = Path(workdir) if workdir else self.db.path.with_suffix(".models")
        self.oracle, self.evaluate = oracle, evaluate
        self.log = log or (lambda *a: None)
        self.progress = progress or (lambda frac, msg: None)
        self.strategy = get_strategy(self.config.strategy, seed=self.config.seed,
                                     oversample=self.config.oversample)
        self.model = None

    # -- helpers ----------------------------------------------------------------
    def _labels(self):
        from ..classes import labels
        return labels(self.config.class_set)

    def new_model(self):
        from ..models.vgg1d import VGG1D
        c = self.config
        return VGG1D(class_set=c.class_set, window=tuple(c.window) if c.window else None,
                     width=c.width, seed=c.seed)

    def load_checkpoint(self, path) -> None:
        from ..models.base import load_model
        self.model = load_model(path)

    def resolved(self) -> set[int]:
        """Items that will not be asked again: labelled or skipped by anyone."""
        return self.db.resolved_items()

    # -- the state machine --------------------------------------------------------
    def status(self) -> dict:
        last = self.db.last_iteration()
        labelled = self.db.current_labels()
        pending = self.db.pending() if last else []
        resolved = self.resolved()
        return {"iteration": None if last is None else last["iteration"],
                "state": None if last is None else last["state"],
                "labelled": len(labelled), "pending": len([p for p in pending if p["item"] not in resolved]),
                "counts": self.db.counts()}

    def step(self) -> str:
        """Advance by one state transition; returns the new state ('waiting' = needs labels)."""
        last = self.db.last_iteration()
        if last is None:
            return self._queue_random(0)
        it, state = last["iteration"], last["state"]
        if state == "labelling":
            resolved = self.resolved()
            unresolved = [q["item"] for q in self.db.queue(it) if q["item"] not in resolved]
            if unresolved and self.oracle is None:
                return "waiting"
            labels = self.oracle(np.array(unresolved, np.int64)) if unresolved else []
            with self.db.write():                  # the oracle's labels and the transition
                if unresolved:
                    self.db.add_labels([(i, l, self.pool.ident(i))
                                        for i, l in zip(unresolved, labels)],
                                       who="oracle", source="oracle", iteration=it)
                self.db.set_iteration(it, "training")
            return "training"
        if state == "training":
            return self._train(it)
        if state == "trained":
            return self._score(it, last["checkpoint"])
        raise ValueError(f"{self.db.path}: unknown loop state {state!r} at iteration {it}")

    def run(self, iterations: int | None = None, max_labels: int | None = None,
            wait: bool = False, poll: float = 5.0) -> dict:
        """Run until ``iterations`` more batches were queued, ``max_labels`` labels exist,
        or (without ``wait``) labels are needed from a person."""
        queued = 0
        last = self.db.last_iteration()
        if (last is not None and last["state"] == "trained" and max_labels is not None
                and len(self.db.current_labels()) >= max_labels):
            return self.status()                      # already finished: resuming is a no-op
        while True:
            state = self.step()
            if (state == "trained" and max_labels is not None
                    and len(self.db.current_labels()) >= max_labels):
                break
            if state == "labelling":
                queued += 1
                if iterations is not None and queued >= iterations:
                    break
            if state == "waiting":
                if not wait:
                    break
                time.sleep(poll)
        return self.status()

    # -- transitions ----------------------------------------------------------------
    def _queue_random(self, it: int) -> str:
        rng = np.random.default_rng(self.config.seed)
        ids = np.concatenate(list(self.pool.iter_ids()))
        pick = rng.choice(ids, size=min(self.config.initial, ids.size), replace=False)
        k = len(self._labels())
        with self.db.write():                      # an iteration never exists without its queue
            self.db.set_iteration(it, "labelling", n_labelled=len(self.db.current_labels()))
            self.db.set_queue(it, pick, np.zeros(pick.size), np.full((pick.size, k), 1.0 / k))
        self.log(f"iteration {it}: {pick.size} random spectra queued for labelling")
        return "labelling"

    def _train(self, it: int) -> str:
        c = self.config
        labelled = self.db.current_labels()
        if not labelled:
            raise ValueError(f"{self.db.path}: no labels yet; label the first batch before training")
        ids = np.array(sorted(labelled), np.int64)
        t0 = time.perf_counter()
        self.progress(0.05, f"reading {ids.size} labelled spectra")
        if self.model is None or not c.warm_start:
            prev = self.db.latest_checkpoint()
            if c.warm_start and prev and Path(prev).exists():
                self.load_checkpoint(prev)
            else:
                self.model = self.new_model()
        ids, batch, unreadable = self.pool.read_readable(ids, grid=self.model.grid)
        for msg in unreadable:                   # one bad file must not stop the retraining
            self.log(f"skipped a labelled spectrum: {msg}")
        if batch is None:
            raise ValueError(f"{self.db.path}: none of the labelled spectra can be read")
        batch.meta["LABEL"] = [labelled[int(i)] for i in ids]
        epochs = int(np.clip(math.ceil(c.train_steps * c.train_batch / ids.size), 3, c.max_epochs))
        self.progress(0.15, f"training on {ids.size} labels ({epochs} epochs)")
        self.model.fit(batch, label_column="LABEL", epochs=epochs, batch_size=c.train_batch,
                       lr=c.lr, seed=c.seed + it, device="cpu", log=None)
        ckpt = self.workdir / f"iter{it:04d}.pt"
        self.model.save(ckpt)
        metrics = {"n_labelled": int(ids.size), "train_seconds": round(time.perf_counter() - t0, 2),
                   "epochs": epochs}
        rare = set(c.rare)
        metrics["rare_found"] = int(sum(1 for l in labelled.values() if l in rare))
        if self.evaluate is not None:
            metrics.update(self.evaluate(self.model))
        self.db.set_iteration(it, "trained", checkpoint=str(ckpt), n_labelled=int(ids.size),
                              metrics=metrics)
        self.log(f"iteration {it}: trained on {ids.size} labels in {metrics['train_seconds']} s"
                 + "".join(f", {k} {v:.3f}" for k, v in metrics.items()
                           if k.startswith(("f1_", "rare_err")) and isinstance(v, float)))
        return "trained"

    def _score(self, it: int, checkpoint: str | None) -> str:
        c = self.config
        if self.model is None:
            if not checkpoint or not Path(checkpoint).exists():
                self.db.set_iteration(it, "training")        # checkpoint lost: retrain
                return "training"
            self.load_checkpoint(checkpoint)
        t0 = time.perf_counter()
        skip = self.resolved()     # unlabelled rows of an earlier queue may be asked again
        top = TopK(self.strategy.candidates(c.batch))
        n_total, done = max(len(self.pool), 1), 0
        for ids, b in self.pool.iter_batches(c.score_batch, grid=self.model.grid):
            keep = np.array([int(i) not in skip for i in ids]) if skip else np.ones(ids.size, bool)
            if keep.any():
                ids, b = ids[keep], b[np.flatnonzero(keep)] if not keep.all() else b
                if self.strategy.needs_features:
                    p, e = self.model.predict_proba(b, return_embedding=True)
                else:
                    p, e = self.model.predict_proba(b), None
                top.add(ids, self.strategy.score(p, ids), p, e)
            done += keep.size
            self.progress(min(0.99, done / n_total), f"scoring pool {done}/{len(self.pool)}")
        cids, cscores, cprobs, cfeat = top.result()
        pick = self.strategy.select(cids, cscores, cprobs, cfeat, c.batch)
        nxt = it + 1
        m = next((r["metrics"] for r in self.db.iterations() if r["iteration"] == it), {})
        m["score_seconds"] = round(time.perf_counter() - t0, 2)
        with self.db.write():                      # queue i+1 and "i done": one commit
            self.db.set_iteration(nxt, "labelling", n_labelled=len(self.db.current_labels()))
            self.db.set_queue(nxt, cids[pick], cscores[pick], cprobs[pick])
            self.db.set_iteration(it, "done", metrics=m)
        self.log(f"iteration {nxt}: {pick.size} spectra queued by {c.strategy} "
                 f"(scored {top.seen} in {m['score_seconds']} s)")
        return "labelling"
