"""End to end in a real headless Chromium: label three spectra by keyboard, undo one,
reload, and find the page and the database in exactly the expected state.

Needs /usr/bin/chromium and the `playwright` package (tests/browser_setup.sh installs both;
Playwright drives the system Chromium, its own browser download is never used).
"""

import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from specsift.active.db import LabelDB
from specsift.active.loop import LoopConfig
from specsift.active.webapp import create_app
from specsift.io.store import SpectralStore
from specsift.simulate.emission_stars import simulate_emission_stars

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if os.environ.get("CI") and not Path(CHROMIUM).exists():  # `make test` installs it: never skip in CI
    raise RuntimeError(f"{CHROMIUM} missing although `make test` should have installed it "
                       "(tests/browser_setup.sh)")
playwright = pytest.importorskip("playwright.sync_api", reason="run tests/browser_setup.sh")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing: run tests/browser_setup.sh", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    import uvicorn
    torch.set_num_threads(1)
    store = tmp_path / "pool.h5"
    with SpectralStore(store, "w") as s:
        s.append(simulate_emission_stars(30, rare_fraction=0.3, seed=7))
    db_path = tmp_path / "labels.sqlite"
    app = create_app(store, db_path, config=LoopConfig(batch=6, initial=6, width=0.125))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", db_path
    srv.should_exit = True
    th.join(timeout=10)


def test_keyboard_labelling_undo_and_reload(server, tmp_path):
    url, db_path = server
    queue = [q["item"] for q in LabelDB(db_path).queue()]
    with playwright.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 860})
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def shown(item):
            page.wait_for_selector(f"body[data-ready='1'][data-item='{item}']", timeout=20_000)

        page.goto(url)
        shown(queue[0])
        assert page.locator("#plot-full .main-svg").count() > 0          # plotly drew the spectrum
        for key, nxt in (("2", queue[1]), ("1", queue[2]), ("3", queue[3])):
            page.keyboard.press(key)
            shown(nxt)
        page.keyboard.press("u")                                          # undo DOUBLE_PEAK
        shown(queue[2])
        page.wait_for_selector("body[data-labelled='2']")
        page.reload()
        shown(queue[2])                                                   # state kept
        page.wait_for_selector("body[data-labelled='2']")
        assert page.locator("#history li").count() == 2
        assert errors == []
        ctx.close()
    db = LabelDB(db_path)
    assert db.current_labels() == {queue[0]: "EMISSION", queue[1]: "ABSORPTION"}
    events = db.events()
    assert [(e["item"], e["label"], e["undone_at"] is not None) for e in events] == [
        (queue[0], "EMISSION", False), (queue[1], "ABSORPTION", False), (queue[2], "DOUBLE_PEAK", True)]
    assert {e["who"] for e in events} == {"anonymous"}
