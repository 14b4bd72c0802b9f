"""LAMOST stars verified with and without the templates broadened to the spectrum's LSF
(``specsift.verify.resolution``; LAMOST has no per-pixel resolution in its files, so its
nominal σ(λ): 0.5 px beyond SDSS's).

    PYTHONPATH=src .venv/bin/python benchmarks/verify_resolution.py [--models gasnet eigen]

Stars with S/N_g ≥ 10 as in ``real_surveys.py`` (all, and gasnet's fine-tuning held-out
split): called STAR, |Δv| ≤ 20 km/s against LAMOST's Z, median |Δv| of those called STAR.
"Without" replaces the per-spectrum σ by 0 (the templates' own SDSS resolution).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_surveys as RS  # noqa: E402

from specsift.constants import C_KMS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["gasnet", "eigen"])
    a = ap.parse_args()
    import torch

    from specsift import load_model
    from specsift.verify import stage as S
    from specsift.verify import verify_batch
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    b, _ = RS.lamost()
    m = b.meta
    star = (np.char.strip(np.asarray(m["CLASS"]).astype(str)) == "STAR") & (np.asarray(m["SN_G"]) >= 10)
    held = star & np.asarray(m["HELDOUT"], bool)
    zt = np.asarray(m["Z"], float)
    own = S.extra_sigma_pix
    print("| model | templates | called STAR | \\|Δv\\| ≤ 20 (all) | \\|Δv\\| ≤ 20 (held-out) | median \\|Δv\\| |")
    print("|---|---|---|---|---|---|")
    for name in a.models:
        model = load_model(name)
        for label, fn in (("at the LSF", own), ("SDSS resolution", lambda bb: np.zeros(len(bb)))):
            S.extra_sigma_pix = fn
            with torch.inference_mode():
                v = verify_batch(model, b)
            st = np.asarray(v["SPECTYPE"]).astype(str)
            dv = np.abs(np.asarray(v["Z"]) - zt) / (1 + zt) * C_KMS
            ok = (st == "STAR") & (dv <= 20)
            print(f"| {name} | {label} | {(st[star] == 'STAR').mean():.4f} | {ok[star].mean():.4f} | "
                  f"{ok[held].mean():.4f} | {np.median(dv[star & (st == 'STAR')]):.2f} |")
    S.extra_sigma_pix = own


if __name__ == "__main__":
    main()
