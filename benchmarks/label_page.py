"""The labelling page on real spectra: request latencies of its API and (with Chromium) the
screenshot in docs/figures/active_label_vi.png.

Serves the 68 real SDSS spectra of ../shared/data/sdss in the visual-inspection label set
with the catalog ``specsift predict`` writes for them (so the lines sit at the catalog's z),
then times what the page does per spectrum: /api/next, /api/spectrum/{id}, /api/label, and
an export of every labeller's labels.  Prints a markdown table.

    python benchmarks/label_page.py [--figure docs/figures/active_label_vi.png]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

from _common import SHARED

CHROMIUM = "/usr/bin/chromium"


def _catalog(out: Path) -> Path:
    from specsift.cli import main
    cat = out / "cat.fits"
    if main(["predict", str(SHARED / "sdss"), "-o", str(cat)]) != 0:
        raise SystemExit("predict failed")
    return cat


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def _figure(app, path: Path) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=8797, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
            page = b.new_page(viewport={"width": 1400, "height": 950})
            page.goto("http://127.0.0.1:8797/")
            page.wait_for_selector("body[data-ready='1']")
            page.keyboard.press("1")                 # the first spectrum is an F5 star
            page.keyboard.press("4")
            page.wait_for_timeout(300)
            page.screenshot(path=str(path))
            b.close()
    finally:
        srv.should_exit = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--figure", default=None, help="write a screenshot of the page here")
    args = ap.parse_args()
    import torch
    from fastapi.testclient import TestClient

    from specsift.active.loop import LoopConfig
    from specsift.active.webapp import create_app
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cat = _catalog(tmp)
        t0 = time.perf_counter()
        app = create_app(str(SHARED / "sdss"), tmp / "vi.sqlite", label_set="vi", catalog=cat,
                         config=LoopConfig(batch=40, initial=40, width=0.25), log=None)
        start_ms = 1e3 * (time.perf_counter() - t0)
        c = TestClient(app, base_url="http://127.0.0.1", headers={"X-Labeller": "bench"})
        items = [q["item"] for q in app.state.db.queue()]       # one per file: 10
        cold = _time(lambda: c.get(f"/api/spectrum/{items.pop()}"), len(items))
        nxt = _time(lambda: c.get("/api/next"), args.rounds)
        todo = [q["item"] for q in app.state.db.queue()]
        args.rounds = min(args.rounds, len(todo))

        def label():
            c.post("/api/label", json={"item": todo.pop(), "label": "GALAXY", "z_quality": 3,
                                       "z_vi": 0.1, "comment": "bench"})
        lab = _time(label, args.rounds)
        exp = _time(lambda: c.get("/api/export.csv"), 5)
        z_cat = sum(c.get(f"/api/spectrum/{i}").json()["redshift"]["z_source"] == "catalog"
                    for i in [q["item"] for q in app.state.db.queue()])
        print(f"| request (real SDSS files, VI set, catalog of {len(app.state.service.overlay)} "
              f"rows) | median ms | max ms |")
        print("| --- | --- | --- |")
        print(f"| start (pool, database, first batch) | {start_ms:.0f} | |")
        for name, v in ((f"/api/spectrum/{{id}}, first read of a file ({len(cold)} files)", cold),
                        ("/api/next (spectrum + state)", nxt),
                        ("/api/label (VI: class, quality, z, comment)", lab),
                        (f"/api/export.csv ({args.rounds} labels)", exp)):
            print(f"| {name} | {statistics.median(v):.1f} | {max(v):.1f} |")
        print(f"\nlines at the catalog's z for {z_cat} of {len(app.state.db.queue())} queued spectra")
        if args.figure:                          # a fresh session: nothing labelled yet
            fresh = create_app(str(SHARED / "sdss"), tmp / "fig.sqlite", label_set="vi",
                               catalog=cat, config=LoopConfig(batch=40, initial=40), log=None)
            _figure(fresh, Path(args.figure))
            print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
