"""Per-batch fixed cost of the verify and line stages: thread time (best of 60) of
``verify_catalog`` and ``add_lines`` as ``predict_batch`` calls them, on one-row batches (a
QSO and a STAR of the simulated store) and a 16-row batch (``--one-row``: those two only).

Run it under each checkout in turn to compare them:
``PYTHONPATH=CHECKOUT/src python benchmarks/stage_fixed_cost.py --one-row``."""
import inspect
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from _predict_common import sim_store  # noqa: E402

from specsift.io import SpectralStore  # noqa: E402
from specsift.lines import add_lines  # noqa: E402
from specsift.models.base import load_model  # noqa: E402
from specsift.verify import verify_catalog  # noqa: E402

kw = {"copy": False} if "copy" in inspect.signature(verify_catalog).parameters else {}
st = SpectralStore(sim_store(200))
m = load_model("gasnet").prepare("cpu", 1)
for n0, n in ((0, 1), (5, 1), (0, 16)):
    if n > 1 and "--one-row" in sys.argv:
        continue
    b = m.check_batch(st.read(slice(n0, n0 + n)))
    with torch.inference_mode():
        t, c = m.propose(b)
    tv, tl = [], []
    for _ in range(60):
        tt = t.copy()
        a = time.thread_time()
        v = verify_catalog(b, tt, c, **kw)
        tv.append(time.thread_time() - a)
        a = time.thread_time()
        add_lines(b, v, **kw)
        tl.append(time.thread_time() - a)
    types = [str(x) for x in v["SPECTYPE"][:3]]
    print(f"rows {n0}:{n0 + n} {types} verify {np.min(tv) * 1e3:.2f} ms "
          f"lines {np.min(tl) * 1e3:.2f} ms")
