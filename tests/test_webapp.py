"""The labelling web app through its HTTP API (FastAPI TestClient; no browser)."""

import io
import time

import numpy as np
import pytest
import torch
from astropy.io import fits
from fastapi.testclient import TestClient

from specsift.active.db import LabelDB
from specsift.active.loop import LoopConfig
from specsift.active.webapp import create_app
from specsift.io.store import SpectralStore
from specsift.simulate.emission_stars import simulate_emission_stars

CFG = LoopConfig(batch=8, initial=8, width=0.125, train_steps=20, max_epochs=8)


@pytest.fixture()
def store(tmp_path):
    torch.set_num_threads(1)
    path = tmp_path / "pool.h5"
    with SpectralStore(path, "w") as s:
        s.append(simulate_emission_stars(60, rare_fraction=0.3, seed=5))
    return path


LOCAL = "http://127.0.0.1:8765"


def client(app, who="ann", **kw):
    """A client as the page on this machine is: Host 127.0.0.1 (the DNS-rebinding guard
    refuses any other name when there is no token)."""
    return TestClient(app, base_url=LOCAL, headers={"X-Labeller": who}, **kw)


def test_label_skip_undo_export(store, tmp_path):
    app = create_app(store, tmp_path / "l.sqlite", config=CFG)
    c = client(app)
    assert c.get("/").status_code == 200 and "specsift" in c.get("/").text
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000       # bundled, no CDN
    cfg = c.get("/api/config").json()
    assert cfg["classes"] == ["ABSORPTION", "EMISSION", "DOUBLE_PEAK"]
    first = c.get("/api/next").json()["items"][0]
    assert len(first["wave"]) == len(first["flux"]) == 280 and first["ident"].startswith("pool.h5#")
    assert c.post("/api/label", json={"item": first["item"], "label": "EMISSION"}).json()["ok"]
    second = c.get("/api/next").json()["items"][0]
    assert second["item"] != first["item"]
    c.post("/api/skip", json={"item": second["item"]})
    assert c.post("/api/undo").json()["undone"]["item"] == second["item"]
    assert c.get("/api/next").json()["items"][0]["item"] == second["item"]   # back after undo
    other = client(app, "bob").get("/api/next").json()["items"][0]
    assert other["item"] not in (first["item"], second["item"])             # claimed by ann
    csv = c.get("/api/export.csv").text.splitlines()
    assert csv[0].startswith("item,ident,label,who,at") and len(csv) == 2 and ",EMISSION,ann," in csv[1]
    t = fits.open(io.BytesIO(c.get("/api/export.fits").content))[1].data
    assert list(t["LABEL"]) == ["EMISSION"] and list(t["WHO"]) == ["ann"]
    assert c.get("/api/export.xml").status_code == 404


def test_ids_names_and_paths_are_validated(store, tmp_path):
    c = client(create_app(store, tmp_path / "l.sqlite", config=CFG))
    assert c.get("/api/spectrum/..%2F..%2Fetc%2Fpasswd").status_code == 404   # no such route
    assert c.get("/api/spectrum/..%5C..%5Cetc%5Cpasswd").status_code == 400   # not an id
    assert c.get("/api/spectrum/-1").status_code == 404
    assert c.get("/api/spectrum/99999").status_code == 404
    assert c.get("/static/../webapp.py").status_code == 404
    assert c.get("/static/%2e%2e/db.py").status_code == 404
    assert c.post("/api/label", json={"item": 0, "label": "ALIEN"}).status_code == 400
    assert c.post("/api/label", json={"item": "0; DROP TABLE events", "label": "EMISSION"}).status_code == 400
    bad = client(c.app, "../../root")
    assert bad.get("/api/next").status_code == 400


def test_token_is_required_when_set(store, tmp_path):
    app = create_app(store, tmp_path / "l.sqlite", token="s3cret", config=CFG)
    c = TestClient(app)
    assert c.get("/").status_code == 401
    assert c.get("/api/config", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = c.get("/?token=s3cret")
    assert r.status_code == 200 and "specsift_token" in r.cookies
    assert c.get("/api/config").status_code == 200          # the cookie now carries the token


def test_retrain_runs_in_the_background_with_progress(store, tmp_path):
    app = create_app(store, tmp_path / "l.sqlite", config=CFG)
    c = client(app)
    assert c.post("/api/retrain").status_code == 409        # nothing labelled yet
    truth = np.asarray(SpectralStore(store).read_meta(["LABEL"])["LABEL"])
    for _ in range(8):
        item = c.get("/api/next").json()["items"][0]["item"]
        c.post("/api/label", json={"item": item, "label": str(truth[item])})
    assert c.post("/api/retrain").json()["job"] == 1
    seen = []
    for _ in range(300):
        job = c.get("/api/job").json()
        seen.append(job["progress"])
        if job["state"] != "running":
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    assert seen[-1] == 1.0
    db = LabelDB(tmp_path / "l.sqlite")
    assert db.latest_queue_iteration() == 1 and len(db.queue()) == 8
    nxt = c.get("/api/next").json()["items"][0]
    assert nxt["model"] and abs(sum(nxt["probs"].values()) - 1) < 1e-3


def test_real_lamost_and_ondrejov_files(shared_data, tmp_path):
    lam = shared_data / "lamost"
    files = [lam / "spec-55916-B5591606_sp01-001.fits", lam / "oe270005.fits",
             lam / "ondrejov-pairs" / "gamma-cas-emission.fits",
             lam / "ondrejov-pairs" / "bt-cmi-lamost.fits"]
    app = create_app([str(f) for f in files], tmp_path / "l.sqlite",
                     config=LoopConfig(batch=4, initial=4, width=0.125))
    c = client(app)
    seen = {}
    for _ in range(4):
        d = c.get("/api/next").json()["items"][0]
        seen[d["ident"]] = d
        c.post("/api/label", json={"item": d["item"], "label": "ABSORPTION"})
    assert sorted(seen) == sorted(f"ondrejov-pairs/{f.name}" if "pairs" in str(f) else f.name
                                  for f in files)
    oe = next(d for k, d in seen.items() if k.endswith("oe270005.fits"))
    assert 6260 < oe["wave"][0] < 6270 and len(oe["wave"]) == 1997          # native Ondřejov grid
    lm = next(d for k, d in seen.items() if k.startswith("spec-55916"))
    assert lm["meta"]["CLASS"] == "STAR" and isinstance(lm["meta"]["TARGETID"], str)
    assert c.get("/api/state").json()["labelled"] == 4
