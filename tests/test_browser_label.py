"""End to end in a real headless Chromium: label three spectra by keyboard, undo one,
reload, and find the page and the database in exactly the expected state; then the
visual-inspection label set on real SDSS spectra with a catalog: lines at the catalog's z,
moved by typing another z, axis titles, the full TARGETID, a VI label saved by keyboard.

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
from _spectra import emission_pool

from specsift.active.db import LabelDB
from specsift.active.loop import LoopConfig
from specsift.active.webapp import create_app

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


def _serve(app):
    import uvicorn
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    return srv, th, port


@pytest.fixture()
def server(tmp_path):
    store = emission_pool(tmp_path / "pool.h5", 30, 0.3, seed=7)
    db_path = tmp_path / "labels.sqlite"
    app = create_app(store, db_path, config=LoopConfig(batch=6, initial=6, width=0.125))
    srv, th, port = _serve(app)
    yield f"http://127.0.0.1:{port}/", db_path
    srv.should_exit = True
    th.join(timeout=10)


def _browser(p, tmp_path):
    return p.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
        args=FLAGS, viewport={"width": 1280, "height": 860})


def test_keyboard_labelling_undo_and_reload(server, tmp_path):
    url, db_path = server
    queue = [q["item"] for q in LabelDB(db_path).queue()]
    with playwright.sync_playwright() as p:
        ctx = _browser(p, tmp_path)
        page = ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        def shown(item):
            page.wait_for_selector(f"body[data-ready='1'][data-item='{item}']", timeout=20_000)

        page.goto(url)
        shown(queue[0])
        assert page.locator("#plot-full .main-svg").count() > 0          # plotly drew the spectrum
        assert page.locator("#plot-full .g-xtitle").text_content() == "observed wavelength [Å]"
        assert page.locator("#plot-full .g-ytitle").text_content() == "flux"
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


SDSS = ("spec-0266-51602-0013.fits", "spec-0266-51602-0107.fits")


def _annotation_x(page, div, text):
    return page.evaluate(
        "([d, t]) => document.getElementById(d).layout.annotations"
        ".filter(a => a.text === t).map(a => a.x)", [div, text])


def test_visual_inspection_lines_at_the_catalog_z(shared_data, tmp_path):
    from astropy.table import Table

    from specsift.io import read
    torch.set_num_threads(1)
    files = [shared_data / "sdss" / f for f in SDSS]
    metas = [read(f, grid=None).meta[0] for f in files]
    cat = tmp_path / "cat.fits"
    Table({"TARGETID": [int(m["TARGETID"]) for m in metas], "SOURCE": [str(f) for f in files],
           "ROW": [0, 0], "Z": [0.1213, 0.1231], "SPECTYPE": ["GALAXY", "GALAXY"],
           "Z_2": [0.65, 0.71], "SPECTYPE_2": ["QSO", "QSO"]}).write(cat)
    db_path = tmp_path / "vi.sqlite"
    app = create_app([str(f) for f in files], db_path, label_set="vi", catalog=cat,
                     config=LoopConfig(batch=2, initial=2, width=0.125))
    first = LabelDB(db_path).queue()[0]["item"]
    srv, th, port = _serve(app)
    try:
        with playwright.sync_playwright() as p:
            ctx = _browser(p, tmp_path)
            page = ctx.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector(f"body[data-ready='1'][data-item='{first}']", timeout=20_000)
            k = first >> 16
            z = (0.1213, 0.1231)[k]
            assert page.locator("#targetid").inner_text() == str(int(metas[k]["TARGETID"]))
            assert [b.inner_text().split("\n")[0] for b in page.locator("#buttons button").all()] == [
                "star", "galaxy", "qso"]
            assert page.locator("#zq button").count() == 5 and page.locator("#comment").is_visible()
            assert page.locator("#plot-full .g-xtitle").text_content() == "observed wavelength [Å]"
            assert page.locator("#plot-zoom .g-xtitle").text_content().startswith("Hα region")
            ha = _annotation_x(page, "plot-full", "Hα")
            assert len(ha) == 1 and abs(ha[0] - 6564.61 * (1 + z)) < 0.5   # at the catalog's z
            assert float(page.locator("#z").input_value()) == pytest.approx(z, abs=1e-5)
            second = _annotation_x(page, "plot-full", "[O II]")    # the 2nd solution's lines too
            assert any(abs(x - 3728.5 * 1.65 if k == 0 else x - 3728.5 * 1.71) < 2 for x in second)
            page.fill("#z", "0.2")
            page.wait_for_selector("body[data-z='0.20000']")
            ha = _annotation_x(page, "plot-full", "Hα")
            assert len(ha) == 1 and abs(ha[0] - 6564.61 * 1.2) < 0.5      # the lines moved
            page.select_option("#smooth", "9")
            page.locator("#comment").fill("Hα and [N II] clear")
            page.locator("body").click(position={"x": 5, "y": 300})
            page.keyboard.press("2")                                        # GALAXY
            page.keyboard.press("4")                                        # quality 4
            assert page.locator("#zq button.current").inner_text() == "4"
            page.keyboard.press("Enter")
            page.wait_for_selector("body[data-labelled='1']")
            assert errors == []
            ctx.close()
    finally:
        srv.should_exit = True
        th.join(timeout=10)
    rows = LabelDB(db_path).labeller_rows()
    assert [(r["item"], r["label"], r["who"], r["targetid"]) for r in rows] == [
        (first, "GALAXY", "anonymous", str(int(metas[first >> 16]["TARGETID"])))]
    assert rows[0]["data"] == {"z_quality": 4, "z_vi": 0.2, "comment": "Hα and [N II] clear"}
