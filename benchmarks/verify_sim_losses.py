"""Where verification loses on simulated spectra: GF(0.003) with and without it, and the
rows it loses by class, kind (small z offset or catastrophic) and redshift.

    PYTHONPATH=src .venv/bin/python benchmarks/verify_sim_losses.py [--n 2000] [--model gasnet ...]
                                                   [--no-posterior]

The simulated ``thirteen`` test store of ``predict_speed.py`` (seed 11, cached under
out/bench/).  "Small offset": the verified z is off by 0.003 < |Δz|/(1+z) < 0.01 where the
model was within 0.003; the quasar rows are also summarised as the median and 1.4826·MAD of
the velocity offset per z bin (S/N > 3, |Δv| < 3000 km/s), model and verified.  Each model
also gets a summary line: GF(0.003), GF(0.01) and SPECTYPE accuracy, unverified and verified.
``--no-posterior``: verified without the quasar posterior (``VerifyOptions.quasar_posterior``:
the line-shift systematic and the model's z as prior, :func:`specsift.verify.zfind.quasar_posterior`).
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402

from specsift.constants import C_KMS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--model", nargs="+", default=["gasnet"])
    ap.add_argument("--no-posterior", action="store_true")
    a = ap.parse_args()
    for name in a.model:
        _one(name, a.n, a.no_posterior)


def _one(name: str, n: int, no_posterior: bool) -> None:
    import torch

    from specsift import load_model
    from specsift.classes import spectype_of
    from specsift.io import SpectralStore
    from specsift.verify import VerifyOptions, verify_batch
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with SpectralStore(sim_store(n, seed=11)) as st:
        b = st.read(slice(0, n))
    model = load_model(name)
    opt = VerifyOptions(quasar_posterior=not no_posterior)
    with torch.inference_mode():
        net, ver = model.predict(b), verify_batch(model, b, opt)
    zt = np.asarray(b.meta["Z"], float)
    tt = np.array([spectype_of(x) for x in np.asarray(b.meta["CLASS_LABEL"]).astype(str)])
    dz = {k: np.abs(np.asarray(c["Z"]) - zt) / (1 + zt) for k, c in (("net", net), ("ver", ver))}
    gn, gv = dz["net"] < 0.003, dz["ver"] < 0.003
    lost = gn & ~gv
    acc = {k: (np.asarray(c["SPECTYPE"]).astype(str) == tt).mean() for k, c in (("net", net),
                                                                               ("ver", ver))}
    print(f"\n{name}, {n} simulated: GF(0.003) model {gn.mean():.4f}, verified {gv.mean():.4f}; "
          f"GF(0.01) {(dz['net'] < 0.01).mean():.4f} → {(dz['ver'] < 0.01).mean():.4f}; "
          f"SPECTYPE {acc['net']:.4f} → {acc['ver']:.4f}; "
          f"lost {lost.sum()}, gained {(~gn & gv).sum()}")
    kind = np.where(dz["ver"] < 0.01, "small offset", "catastrophic")
    vt = np.asarray(ver["SPECTYPE"]).astype(str)
    print("lost rows by (true type, verified type, kind):",
          dict(collections.Counter(zip(tt[lost].tolist(), vt[lost].tolist(),
                                   kind[lost].tolist()))))
    cat = lost & (kind == "catastrophic")
    print("catastrophic verified z:", np.sort(np.asarray(ver["Z"])[cat]).round(3).tolist())
    flip = (vt != tt) & (np.asarray(net["SPECTYPE"]).astype(str) == tt)
    label = np.asarray(b.meta["CLASS_LABEL"]).astype(str)
    print("SPECTYPE lost (true label, verified):",
          dict(collections.Counter(zip(label[flip].tolist(), vt[flip].tolist()))))
    snr = b.median_snr()
    print("\n| quasars, z | n | model median Δv | model 1.4826·MAD | verified median Δv | "
          "verified 1.4826·MAD |\n|---|---|---|---|---|---|")
    for lo, hi in ((0, 1.0), (1.0, 1.6), (1.6, 2.5), (2.5, 7)):
        row = [f"{lo}–{hi}"]
        for k, c in (("net", net), ("ver", ver)):
            dv = (np.asarray(c["Z"]) - zt) / (1 + zt) * C_KMS
            s = (tt == "QSO") & (zt >= lo) & (zt < hi) & (np.abs(dv) < 3000) & (snr > 3)
            if k == "net":
                row.append(str(int(s.sum())))
            med = np.median(dv[s])
            row += [f"{med:+.0f}", f"{1.4826 * np.median(np.abs(dv[s] - med)):.0f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
