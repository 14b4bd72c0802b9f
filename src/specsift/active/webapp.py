"""The labelling web page: a FastAPI app over a pool and a label database.

The browser only ever sends integer ids and class names; both are validated against the
pool and the class set, so no path or SQL from a page reaches the disk.  Labels are
appended to the SQLite (WAL) event log with who/when, so several people can label at once.
``token`` (required when serving beyond localhost) must arrive as ``?token=``, an
``Authorization: Bearer`` header or the cookie the page sets after the first visit.
Retraining started from the page runs in a background thread; its progress is in the
database's ``jobs`` table, which the page polls.
"""

import csv
import hmac
import io
import re
import threading
import traceback
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from .db import LabelDB
from .loop import ActiveLoop, LoopConfig
from .pool import Pool, open_pool

__all__ = ["create_app", "LINES", "plotly_js_path"]

#: Lines marked on the plot (vacuum Å): Balmer series first.
LINES = [("Hα", 6564.61), ("Hβ", 4862.68), ("Hγ", 4341.69), ("Hδ", 4102.89),
         ("He I", 5877.25), ("He I", 6679.99), ("Na D", 5891.58), ("Mg b", 5176.7),
         ("Ca II K", 3934.78), ("Ca II H", 3969.59), ("[N II]", 6585.27), ("[S II]", 6718.29),
         ("O I", 7774.2), ("Ca II", 8544.44)]
_WHO = re.compile(r"^[\w.@+-]{1,64}$")
_SHOW_META = ("TARGETID", "OBJNAME", "OBJECT", "DESIG", "CLASS", "SUBCLASS", "Z", "RA", "DEC",
              "MJD", "PLANID", "SPID", "FIBERID", "SURVEY", "SNR", "STYPE", "LABEL")
_MAX_POINTS = 6000


def plotly_js_path() -> Path:
    """plotly.min.js shipped inside the installed `plotly` Python package (no CDN)."""
    local = Path(__file__).with_name("static") / "plotly.min.js"
    if local.exists():
        return local
    try:
        p = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        p = None
    if p is None or not p.exists():
        raise FileNotFoundError("plotly.min.js not found: install the web extra "
                                "(pip install 'specsift[web]')")
    return p


def _clean(v):
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, int) and abs(v) > 2**53:      # JavaScript numbers would round it
        return str(v)
    return v


def create_app(pool: Pool | str, db: LabelDB | str, token: str | None = None,
               config: LoopConfig | None = None):
    """Build the FastAPI app (``specsift label`` serves it with uvicorn)."""
    pool = open_pool(pool)
    db = db if isinstance(db, LabelDB) else LabelDB(db)
    loop = ActiveLoop(db, pool, config, log=None)
    classes = list(loop._labels())
    if db.last_iteration() is None:
        loop.step()                              # first batch: random, no model yet
    with db.write() as c:                        # a job left 'running' by a stopped server
        c.execute("UPDATE jobs SET state = 'failed', message = 'server stopped' "
                  "WHERE state = 'running'")
    static = Path(__file__).with_name("static")
    app = FastAPI(title="specsift label", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.loop, app.state.db, app.state.pool = loop, db, pool
    lock = threading.Lock()

    # -- access control -------------------------------------------------------------
    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if token:
            given = (request.query_params.get("token") or request.cookies.get("specsift_token")
                     or request.headers.get("authorization", "").removeprefix("Bearer ").strip())
            if not given or not hmac.compare_digest(given, token):
                return JSONResponse({"detail": "a valid token is required (?token=…)"}, 401)
            response = await call_next(request)
            if request.query_params.get("token"):
                response.set_cookie("specsift_token", token, httponly=True, samesite="strict")
            return response
        return await call_next(request)

    def who_of(request: Request) -> str:
        who = request.headers.get("x-labeller") or request.cookies.get("specsift_who") or "anonymous"
        if not _WHO.match(who):
            raise HTTPException(400, "labeller name: 1–64 letters, digits or . _ @ + -")
        return who

    def item_of(value) -> int:
        try:
            item = int(value)
        except (TypeError, ValueError):
            raise HTTPException(400, f"spectrum id must be an integer, not {str(value)[:40]!r}")
        if not pool.valid(item):
            raise HTTPException(404, f"no spectrum with id {item} in this pool")
        return item

    # -- pages and static files -----------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def index():
        return (static / "index.html").read_text(encoding="utf-8")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/static/plotly.min.js")
    def plotly_js():
        return FileResponse(plotly_js_path(), media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=static), name="static")

    # -- API --------------------------------------------------------------------------
    @app.get("/api/config")
    def get_config(request: Request):
        return {"classes": classes, "keys": {c: str(i + 1) for i, c in enumerate(classes)},
                "pool": pool.spec, "n_pool": len(pool), "who": who_of(request),
                "lines": [{"name": n, "wave": w} for n, w in LINES],
                "window": loop.config.window, "strategy": loop.config.strategy}

    def queue_row(item: int) -> dict | None:
        for q in db.queue():
            if q["item"] == item:
                return q
        return None

    def describe(item: int, row: dict | None = None, points: int = _MAX_POINTS) -> dict:
        try:
            b = pool.read_native(item)
        except (OSError, ValueError, KeyError) as exc:
            raise HTTPException(422, f"spectrum {item} cannot be read: {exc}")
        wave, flux, mask = b.wave, b.flux[0].astype(float), b.mask[0]
        if points < _MAX_POINTS:                     # gallery thumbnails: the Hα region only
            near = np.abs(wave - LINES[0][1]) < 90
            if near.sum() > 10:
                wave, flux, mask = wave[near], flux[near], mask[near]
        if wave.size > points:                       # thin very long spectra for the browser
            step = int(np.ceil(wave.size / points))
            wave, flux, mask = wave[::step], flux[::step], mask[::step]
        meta = {c: _clean(b.meta[c][0]) for c in _SHOW_META if c in b.meta.colnames}
        source = str(b.meta["SOURCE"][0]) if "SOURCE" in b.meta.colnames else ""
        row = row if row is not None else queue_row(item)
        current = db.current_labels().get(item)
        return {"item": item, "ident": pool.ident(item), "source": Path(source).name if source else "",
                "meta": meta,
                "wave": np.round(wave, 3).tolist(),
                "flux": [None if m or not np.isfinite(f) else round(float(f), 6)
                         for f, m in zip(flux, mask)],
                "probs": (dict(zip(classes, row["probs"])) if row and row.get("probs") else None),
                "score": row.get("score") if row else None,
                "model": bool(db.latest_checkpoint()), "label": current}

    @app.get("/api/next")
    def next_items(request: Request, n: int = 1):
        n = max(1, min(int(n), 60))
        rows = db.next_for(who_of(request), n)
        return {"items": [describe(r["item"], r, points=_MAX_POINTS if n == 1 else 400)
                          for r in rows], "state": state_of(request)}

    @app.get("/api/spectrum/{item}")
    def spectrum(item: str):
        return describe(item_of(item))

    @app.post("/api/label")
    def label(request: Request, body: dict = Body(...)):
        who = who_of(request)
        item = item_of(body.get("item"))
        lab = body.get("label")
        if lab not in classes:
            raise HTTPException(400, f"label must be one of {', '.join(classes)}")
        it = db.latest_queue_iteration()
        db.add_label(item, lab, who, ident=pool.ident(item), iteration=it)
        return {"ok": True, "state": state_of(request)}

    @app.post("/api/skip")
    def skip(request: Request, body: dict = Body(...)):
        who = who_of(request)
        item = item_of(body.get("item"))
        db.add_label(item, None, who, ident=pool.ident(item), iteration=db.latest_queue_iteration())
        return {"ok": True, "state": state_of(request)}

    @app.post("/api/undo")
    def undo(request: Request):
        ev = db.undo(who_of(request))
        return {"undone": ev, "state": state_of(request)}

    def state_of(request: Request) -> dict:
        who = who_of(request)
        last = db.last_iteration()
        mine = [e for e in db.events(who) if e["undone_at"] is None][-12:]
        return {"counts": db.counts(), "labelled": sum(db.counts().values()),
                "iteration": last["iteration"] if last else None,
                "loop_state": last["state"] if last else None,
                "pending": len(db.pending()), "job": db.job(),
                "history": [{"item": e["item"], "ident": e["ident"], "label": e["label"],
                             "at": e["at"]} for e in reversed(mine)]}

    @app.get("/api/state")
    def get_state(request: Request):
        return state_of(request)

    @app.get("/api/export.{fmt}")
    def export(fmt: str):
        rows = db.label_rows()
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["item", "ident", "label", "who", "at", "source", "iteration"])
            for r in rows:
                w.writerow([r["item"], r["ident"], r["label"], r["who"], r["at"], r["source"],
                            r["iteration"]])
            return Response(buf.getvalue(), media_type="text/csv", headers={
                "Content-Disposition": 'attachment; filename="labels.csv"'})
        if fmt == "fits":
            from astropy.io import fits
            from astropy.table import Table
            t = Table({"ITEM": np.array([r["item"] for r in rows], np.int64),
                       "IDENT": np.array([r["ident"] for r in rows], dtype=str),
                       "LABEL": np.array([r["label"] for r in rows], dtype=str),
                       "WHO": np.array([r["who"] for r in rows], dtype=str),
                       "AT": np.array([r["at"] for r in rows], dtype=str)})
            buf = io.BytesIO()
            fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(t)]).writeto(buf)
            return Response(buf.getvalue(), media_type="application/fits", headers={
                "Content-Disposition": 'attachment; filename="labels.fits"'})
        raise HTTPException(404, "export formats: csv, fits")

    # -- background retraining -------------------------------------------------------------
    def retrain_job(job: int):
        def progress(frac, msg):
            db.update_job(job, progress=frac, message=msg)
        bg = ActiveLoop(db, pool, log=None, progress=progress)
        try:
            with lock:
                last = db.last_iteration()
                if last and last["state"] == "labelling":
                    db.set_iteration(last["iteration"], "training")
                for _ in range(4):
                    state = bg.step()
                    if state == "labelling":
                        break
            db.update_job(job, progress=1.0, state="done",
                          message=f"new batch of {bg.config.batch} queued (iteration "
                                  f"{db.latest_queue_iteration()})")
        except Exception as exc:  # shown on the page; the server keeps running
            traceback.print_exc()
            db.update_job(job, state="failed", message=f"{exc.__class__.__name__}: {exc}")

    @app.post("/api/retrain")
    def retrain():
        if not db.current_labels():
            raise HTTPException(409, "label some spectra first")
        job = db.start_job("retrain")
        if job is None:
            raise HTTPException(409, "a retraining is already running")
        threading.Thread(target=retrain_job, args=(job,), daemon=True).start()
        return {"job": job}

    @app.get("/api/job")
    def job_status():
        return db.job() or {}

    return app
