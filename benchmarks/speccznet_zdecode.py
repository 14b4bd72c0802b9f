"""How SpecCZ-Net should read z off its bins: compare decoders on one trained model.

    python benchmarks/speccznet_zdecode.py out/bench-speccznet/speccznet-five-20000-e6-s0.pt \
        out/bench-speccznet/five-test-4000.h5

Decoders: (1) gated mixture, ±4-bin window mean around the peak (what predict uses);
(2) the top class's branch alone, same window; (3) mean over all bins of the mixture
(plain soft-argmax); (4) peak bin centre of the mixture (no interpolation).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from specsift.io.store import SpectralStore
from specsift.metrics import redshift_metrics
from specsift.models.base import load_model


def window_mean(p: torch.Tensor, centres: torch.Tensor, w: int = 4) -> torch.Tensor:
    peak = p.argmax(1)
    offs = torch.arange(-w, w + 1)
    raw = peak[:, None] + offs
    idx = raw.clamp(0, p.shape[1] - 1)
    pw = p.gather(1, idx) * ((raw >= 0) & (raw < p.shape[1]))   # no double counting at edges
    return (pw * centres[idx]).sum(1) / pw.sum(1).clamp_min(1e-12)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("store")
    ap.add_argument("--limit", type=int, default=4000)
    args = ap.parse_args(argv)
    model = load_model(args.model)
    c = model.bin_centres
    est = {k: [] for k in ("gated window (predict)", "top-class branch window",
                           "mixture soft-argmax", "mixture peak bin")}
    zt = []
    with SpectralStore(args.store) as s, torch.no_grad():
        for b in s.iter_batches(512, stop=args.limit):
            logits, zlog = model.net(model.make_inputs(b))
            probs, pz = torch.softmax(logits, 1), torch.softmax(zlog, 2)
            mix = (probs[:, :, None] * pz).sum(1)
            top = pz[torch.arange(len(b)), probs.argmax(1)]
            est["gated window (predict)"].append(window_mean(mix, c))
            est["top-class branch window"].append(window_mean(top, c))
            est["mixture soft-argmax"].append((mix * c).sum(1))
            est["mixture peak bin"].append(c[mix.argmax(1)])
            zt.append(np.asarray(b.meta["Z"], float))
    zt = np.concatenate(zt)
    print("| decoder | GF(0.001) | GF(0.003) | GF(0.01) | NMAE | σ_NMAD |\n|---|---|---|---|---|---|")
    for name, parts in est.items():
        zp = np.expm1(torch.cat(parts).numpy().astype(float))
        r = redshift_metrics(zp, zt)
        print(f"| {name} | {r['GF_0.001']:.4f} | {r['GF_0.003']:.4f} | {r['GF_0.01']:.4f} | "
              f"{r['NMAE']:.5f} | {r['sigma_NMAD']:.5f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
