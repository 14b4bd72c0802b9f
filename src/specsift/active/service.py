"""The labelling session as a plain object: what the web page can ask and do, with no web
framework in it (``webapp.py`` maps HTTP routes onto these methods, tests call them too).

Everything a browser sends is checked here before it touches the pool or the database:
item ids must be integers naming a spectrum that exists and can be read, labels must fit
the session's label set (:mod:`.labelsets`).  Problems are raised as
:class:`ServiceError` carrying the HTTP status the route answers with.
"""

from __future__ import annotations

import math
import threading
import traceback
from dataclasses import asdict, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..lines import LINES, by_key
from .db import LabelDB
from .exports import export_labels
from .labelsets import LabelError, LabelSet, get_label_set
from .loop import ActiveLoop, LoopConfig
from .overlay import CatalogOverlay
from .pool import Pool, open_pool
from .text import printable

__all__ = ["LabelService", "ServiceError"]

_SHOW_META = ("TARGETID", "OBJNAME", "OBJECT", "DESIG", "CLASS", "SUBCLASS", "Z", "ZERR", "RA",
              "DEC", "PLATE", "MJD", "FIBERID", "PLANID", "SPID", "OBSID", "SURVEY", "SNR",
              "STYPE", "LABEL")
_MAX_POINTS = 6000
_ID_COLUMNS = ("TARGETID", "OBSID")          # int64 ids: always strings in JSON


#: lines emission-line stars show that the plot table leaves out (the old page marked them)
STAR_EXTRA_LINES = ("HeI_5876", "HeI_6678", "OI_7774")


def page_lines(extra: tuple[str, ...] = ()) -> list[dict]:
    """The package's line table as the page draws it: ``absorption`` marks lines seen in
    stars' spectra (drawn on a star's whole-spectrum plot), ``emission`` the others;
    ``extra``: keys of further lines of the full table."""
    out = []
    for ln in (*LINES, *(by_key(k) for k in extra)):
        kinds = set(str(ln.kind).split("+"))
        absorption = bool(kinds & {"absorption", "both"})
        out.append({"name": ln.name, "wave": round(float(ln.wave), 3), "major": bool(ln.major),
                    "absorption": absorption, "emission": kinds != {"absorption"}})
    return out


class ServiceError(Exception):
    """A request the session refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _clean(v):
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, int) and abs(v) > 2**53:      # JavaScript numbers would round it
        return str(v)
    return v


def _label_set_for(db: LabelDB, requested: str | None) -> LabelSet:
    """The session's label set: the one the database was started with wins; asking for
    another is an error (the stored labels and the model would not match)."""
    stored = db.get_meta("label_set")
    if stored is None and db.get_meta("loop_config") is not None:
        stored = "vi" if db.get_meta("loop_config").get("class_set") == "three" else "emission"
    if stored is not None and requested is not None and requested != stored:
        raise ValueError(f"{printable(db.path)}: this label database was started with the "
                         f"{stored!r} label set, not {requested!r}")
    ls = get_label_set(stored or requested or "emission")
    if stored is None:
        db.set_meta("label_set", ls.name)
    return ls


class LabelService:
    """One labelling session over a pool, a label database and optionally a catalog."""

    def __init__(self, pool: Pool | str, db: LabelDB | str, config: LoopConfig | None = None,
                 label_set: str | None = None, catalog=None, log=print):
        self.pool = open_pool(pool)
        self.db = db if isinstance(db, LabelDB) else LabelDB(db)
        self.log = log or (lambda *a: None)
        self.label_set = _label_set_for(self.db, label_set)
        if self.db.get_meta("loop_config") is None:     # a new database: the set decides
            config = replace(config or LoopConfig(), class_set=self.label_set.class_set,
                             window=list(self.label_set.window) if self.label_set.window else None)
        self.loop = ActiveLoop(self.db, self.pool, config, log=None)
        self.classes = list(self.label_set.classes)
        if self.loop.config.class_set != self.label_set.class_set:
            raise ValueError(f"{printable(self.db.path)}: its loop learns "
                             f"{self.loop.config.class_set}, not the {self.label_set.name} set")
        if self.db.last_iteration() is None:
            self.loop.step()                             # first batch: random, no model yet
        self.db.fail_running_jobs("server stopped")      # a job of a server that was stopped
        self.overlay = CatalogOverlay(catalog) if catalog is not None else None
        self._unreadable: dict[int, str] = {}
        self._retrain_lock = threading.Lock()
        self._read = lru_cache(maxsize=128)(self._read_uncached)

    # -- ids and spectra -------------------------------------------------------------
    def item_of(self, value) -> int:
        """A pool id from what a page sent: 400 not a number, 422 not an integer,
        404 no such spectrum."""
        if isinstance(value, bool):
            raise ServiceError(422, "spectrum id must be an integer, not a boolean")
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                raise ServiceError(422, f"spectrum id must be a finite integer, not {value!r}")
            value = int(value)
        if isinstance(value, str):
            if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 20:
                raise ServiceError(400, f"spectrum id must be an integer, not {value[:40]!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ServiceError(400, "spectrum id must be an integer")
        if not self.pool.valid(value):
            raise ServiceError(404, f"no spectrum with id {value} in this pool")
        return value

    def _read_uncached(self, item: int):
        return self.pool.read_native(item)

    def read(self, item: int):
        """One spectrum on its own grid; 404 when the row does not exist, 422 when its file
        cannot be read."""
        try:
            return self._read(item)
        except KeyError as exc:
            raise ServiceError(404, printable(str(exc).strip("'\""))) from None
        except (OSError, ValueError, IndexError, TypeError) as exc:
            raise ServiceError(422, printable(f"spectrum {item} cannot be read: {exc}")) from None

    def existing_item(self, value) -> int:
        """An id that names a spectrum that exists and can be read (labels for anything
        else would make every retraining fail)."""
        item = self.item_of(value)
        self.read(item)
        return item

    # -- what the page shows ---------------------------------------------------------
    def config(self, who: str) -> dict:
        c = self.loop.config
        return {"classes": self.classes, "keys": {k: str(i + 1) for i, k in enumerate(self.classes)},
                "label_set": self.label_set.public(), "pool": printable(self.pool.spec),
                "n_pool": len(self.pool), "who": who,
                "lines": page_lines(STAR_EXTRA_LINES if self.label_set.name == "emission" else ()),
                "window": c.window, "strategy": c.strategy,
                "catalog": printable(self.overlay.path.name) if self.overlay else None}

    def _redshift(self, item: int, b, meta: dict) -> dict:
        """Where the page draws lines: the catalog's answer, else the file's own Z, else 0."""
        info: dict = {"z": 0.0, "z_source": "none", "solutions": []}
        if "Z" in meta and isinstance(meta["Z"], (int, float)) and meta["Z"] > -0.5:
            info.update(z=float(meta["Z"]), z_source="file")
        if self.overlay is not None:
            source, row = self.pool.origin(item)
            i = self.overlay.index_of(source, row, meta.get("TARGETID"))
            if i is not None:
                fit = self.overlay.describe(i)
                info.update(fit, catalog_row=int(i))
                if fit["solutions"]:
                    info.update(z=fit["solutions"][0]["z"], z_source="catalog")
        return info

    def describe(self, item: int, row: dict | None = None, points: int = _MAX_POINTS) -> dict:
        b = self.read(item)
        wave, flux, mask = b.wave, b.flux[0].astype(float), b.mask[0]
        meta = {c: _clean(b.meta[c][0]) for c in _SHOW_META if c in b.meta.colnames}
        for c in _ID_COLUMNS:
            if c in meta and meta[c] is not None:
                meta[c] = str(meta[c])
        z = self._redshift(item, b, meta)
        model = None
        if self.overlay is not None and "catalog_row" in z:
            model = self.overlay.model_flux(z["catalog_row"], b.loglam)
        keep = np.arange(wave.size)
        if points < _MAX_POINTS:                     # gallery thumbnails: the Hα region only
            near = np.flatnonzero(np.abs(wave - 6564.61 * (1 + z["z"])) < 90 * (1 + z["z"]))
            if near.size > 10:
                keep = near
        if keep.size > points:                       # thin very long spectra for the browser
            keep = keep[::int(np.ceil(keep.size / points))]
        wave, flux, mask = wave[keep], flux[keep], mask[keep]
        if model is not None:
            model = [round(float(v), 6) if math.isfinite(v) else None for v in model[keep]]
        source = str(b.meta["SOURCE"][0]) if "SOURCE" in b.meta.colnames else ""
        row = row if row is not None else self.db.queued(item)
        return {"item": item, "ident": printable(self.pool.ident(item)),
                "source": printable(Path(source).name) if source else "", "meta": meta,
                "wave": np.round(wave, 3).tolist(),
                "flux": [None if m or not np.isfinite(f) else round(float(f), 6)
                         for f, m in zip(flux, mask)],
                "model_flux": model, "redshift": z,
                "probs": (dict(zip(self.classes, row["probs"])) if row and row.get("probs")
                          else None),
                "score": row.get("score") if row else None,
                "model": bool(self.db.latest_checkpoint()),
                "label": self.db.current_labels().get(item)}

    def next_items(self, who: str, n: int = 1) -> tuple[list[dict], list[dict]]:
        """The next ``n`` spectra for ``who`` and the unreadable ones passed over on the
        way (each named once, with its error), so one bad file never blocks the queue."""
        n = max(1, min(int(n), 60))
        points = _MAX_POINTS if n == 1 else 400
        skipped: list[dict] = []
        for _ in range(50):
            rows = self.db.next_for(who, n + len(self._unreadable))
            out, new_bad = [], False
            for r in rows:
                if r["item"] in self._unreadable:
                    continue
                try:
                    out.append(self.describe(r["item"], r, points))
                except ServiceError as exc:
                    self._unreadable[r["item"]] = str(exc)
                    skipped.append({"item": r["item"], "ident": printable(self.pool.ident(r["item"])),
                                    "error": str(exc)})
                    self.log(f"specsift label: passed over an unreadable spectrum: {exc}")
                    new_bad = True
                if len(out) >= n:
                    break
            if not new_bad or len(out) >= n:
                return out, skipped
        return out, skipped

    # -- labels ----------------------------------------------------------------------
    def label(self, who: str, body: dict) -> int:
        item = self.existing_item(body.get("item"))
        try:
            label, data = self.label_set.validate(body)
        except LabelError as exc:
            raise ServiceError(400, str(exc)) from None
        tid = self.targetid(item)
        return self.db.add_label_record(item, label, who, ident=self.pool.ident(item),
                                        targetid=tid, data=data,
                                        iteration=self.db.latest_queue_iteration())

    def skip(self, who: str, body: dict) -> int:
        item = self.item_of(body.get("item"))      # an unreadable spectrum may be skipped
        return self.db.add_label(item, None, who, ident=self.pool.ident(item),
                                 iteration=self.db.latest_queue_iteration())

    def undo(self, who: str) -> dict | None:
        return self.db.undo(who)

    def targetid(self, item: int) -> str:
        b = self.read(item)
        return str(_clean(b.meta["TARGETID"][0])) if "TARGETID" in b.meta.colnames else ""

    def state(self, who: str) -> dict:
        last = self.db.last_iteration()
        mine = [e for e in self.db.events(who) if e["undone_at"] is None][-12:]
        counts = self.db.counts()
        return {"counts": counts, "labelled": sum(counts.values()),
                "iteration": last["iteration"] if last else None,
                "loop_state": last["state"] if last else None,
                "pending": len(self.db.pending()), "job": self.db.job(),
                "unreadable": len(self._unreadable),
                "history": [{"item": e["item"], "ident": printable(e["ident"]),
                             "label": e["label"], "at": e["at"]} for e in reversed(mine)]}

    def export(self, fmt: str) -> tuple[bytes, str, str]:
        """(content, media type, file name) of every labeller's labels in ``fmt``."""
        rows = self.db.labeller_rows()
        for r in rows:                 # labels stored before TARGETIDs were: look them up
            if not r["targetid"]:
                try:
                    r["targetid"] = self.targetid(r["item"])
                except ServiceError:
                    pass
        try:
            return export_labels(rows, fmt, label_set=self.label_set.name, pool=self.pool.spec)
        except KeyError:
            raise ServiceError(404, "export formats: csv, json, fits") from None

    # -- background retraining -------------------------------------------------------
    def start_retrain(self) -> int:
        if not self.db.current_labels():
            raise ServiceError(409, "label some spectra first")
        job = self.db.start_job("retrain")
        if job is None:
            raise ServiceError(409, "a retraining is already running")
        threading.Thread(target=self._retrain, args=(job,), daemon=True).start()
        return job

    def _retrain(self, job: int) -> None:
        def progress(frac, msg):
            self.db.update_job(job, progress=frac, message=printable(msg))
        skipped: list[str] = []

        def log(msg):
            if msg.startswith("skipped"):
                skipped.append(msg)
                self.log(printable(msg))
        bg = ActiveLoop(self.db, self.pool, log=log, progress=progress)
        try:
            with self._retrain_lock:
                last = self.db.last_iteration()
                if last and last["state"] == "labelling":
                    self.db.set_iteration(last["iteration"], "training")
                for _ in range(4):
                    if bg.step() == "labelling":
                        break
            note = f"; {len(skipped)} unreadable labelled spectra skipped" if skipped else ""
            last = self.db.last_iteration()
            queued = len(self.db.queue(last["iteration"]))
            self.db.update_job(job, progress=1.0, state="done", message=(
                f"iteration {last['iteration']}: {queued} spectra queued" if queued
                else "every readable spectrum of the pool is labelled") + note)
        except Exception as exc:  # shown on the page; the server keeps running
            self.log(printable(traceback.format_exc()))
            self.db.update_job(job, state="failed",
                               message=printable(f"{exc.__class__.__name__}: {exc}"))

    def job(self) -> dict:
        return self.db.job() or {}

    def loop_config(self) -> dict:
        return asdict(self.loop.config)
