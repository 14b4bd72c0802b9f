"""The labelling web page: HTTP routes over a :class:`~.service.LabelService`.

The routes only translate: they take the labeller's name from the request, hand ids and
bodies to the service (which validates them against the pool and the label set) and turn
its :class:`~.service.ServiceError` into an HTTP status.  Requests are screened before any
route by :class:`~.webguard.Guard` (Host/Origin checks against DNS rebinding and
cross-site writes, the token, a body-size limit).  Labels are appended to the SQLite (WAL)
event log with who/when, so several people can label at once; retraining runs in a
background thread whose progress the page polls.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from .db import LabelDB
from .loop import LoopConfig
from .pool import Pool
from .service import LabelService, ServiceError
from .webguard import MAX_BODY, Guard, check_token_text

__all__ = ["create_app", "plotly_js_path"]

_WHO = re.compile(r"^[\w.@+-]{1,64}$", re.ASCII)
_STATIC = Path(__file__).with_name("static")


def plotly_js_path() -> Path:
    """plotly.min.js shipped inside the installed `plotly` Python package (no CDN)."""
    local = _STATIC / "plotly.min.js"
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


def who_of(request: Request) -> str:
    """The labeller's name (header set by the page, or its cookie), stored with each label."""
    who = request.headers.get("x-labeller") or request.cookies.get("specsift_who") or "anonymous"
    if not _WHO.match(who):
        raise HTTPException(400, "labeller name: 1–64 letters, digits or . _ @ + -")
    return who


def _call(fn, *args):
    try:
        return fn(*args)
    except ServiceError as exc:
        raise HTTPException(exc.status, str(exc)) from None


def create_app(pool: Pool | str, db: LabelDB | str, token: str | None = None,
               config: LoopConfig | None = None, *, label_set: str | None = None,
               catalog=None, port: int | None = None, max_body: int = MAX_BODY, log=print):
    """Build the app (``specsift label`` serves it with uvicorn).

    ``port`` (when known) is required in the Host header of token-less requests;
    ``label_set`` chooses the labels of a new database (see :mod:`.labelsets`);
    ``catalog`` is a catalog of the pool's spectra whose redshifts and fits are overlaid.
    """
    if token:
        check_token_text(token)                  # before any work: it travels in a cookie
    svc = LabelService(pool, db, config=config, label_set=label_set, catalog=catalog, log=log)
    app = FastAPI(title="specsift label", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.pool, app.state.db = svc, svc.pool, svc.db
    app.state.loop = svc.loop
    app.add_middleware(Guard, token=token, port=port, max_body=max_body)
    _page_routes(app)
    _api_routes(app, svc)
    return app


def _page_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    def index():
        return (_STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/static/plotly.min.js")
    def plotly_js():
        return FileResponse(plotly_js_path(), media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")


def _api_routes(app: FastAPI, svc: LabelService) -> None:
    def state(request):
        return svc.state(who_of(request))

    @app.get("/api/config")
    def get_config(request: Request):
        return svc.config(who_of(request))

    @app.get("/api/next")
    def next_items(request: Request, n: int = 1):
        items, skipped = _call(svc.next_items, who_of(request), n)
        return {"items": items, "skipped": skipped, "state": state(request)}

    @app.get("/api/spectrum/{item}")
    def spectrum(item: str):
        return _call(lambda: svc.describe(svc.item_of(item)))

    @app.post("/api/label")
    def label(request: Request, body: dict = Body(...)):
        event = _call(svc.label, who_of(request), body)
        return {"ok": True, "event": event, "state": state(request)}

    @app.post("/api/skip")
    def skip(request: Request, body: dict = Body(...)):
        _call(svc.skip, who_of(request), body)
        return {"ok": True, "state": state(request)}

    @app.post("/api/undo")
    def undo(request: Request):
        return {"undone": svc.undo(who_of(request)), "state": state(request)}

    @app.get("/api/state")
    def get_state(request: Request):
        return state(request)

    @app.get("/api/export.{fmt}")
    def export(fmt: str):
        content, media, name = _call(svc.export, fmt)
        return Response(content, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/api/retrain")
    def retrain():
        return {"job": _call(svc.start_retrain)}

    @app.get("/api/job")
    def job_status():
        return svc.job()
