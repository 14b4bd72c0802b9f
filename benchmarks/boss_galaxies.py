"""Galaxies at BOSS/eBOSS redshifts: a line of the gasnet and eigen benchmarks, and a script.

    python benchmarks/boss_galaxies.py gasnet speccznet eigen [PATH.pt …]

The main simulated test sets follow the SDSS-I/II catalogue mix, where 6 of 7888 galaxies
are above z = 0.45. Real SDSS-III/IV spectra are mostly BOSS galaxies at z 0.4–0.8, so a
model is also scored on simulated galaxies at z 0.4–1.0 and S/N 1.5–10
(``simulate_batch(..., boss_fraction=1.0)``)."""

from __future__ import annotations

import argparse

import numpy as np

from specsift.metrics import delta_z


def boss_galaxy_quality(model, n: int = 1024, seed: int = 901) -> dict:
    """GF(0.003), GF(0.01) and the fraction called GALAXY, over the galaxies of ``n``
    balanced thirteen-class simulations at BOSS redshifts."""
    from specsift.simulate import simulate_batch
    from specsift.simulate.survey import BOSS_SNR, BOSS_Z
    batch = simulate_batch(n, "thirteen", seed, boss_fraction=1.0)
    gal = np.nonzero(np.char.startswith(np.asarray(batch.meta["CLASS_LABEL"], str), "GALAXY"))[0]
    batch = batch[gal]
    cat = model.predict(batch)
    zt = np.asarray(batch.meta["Z"], float)
    dz = delta_z(cat["Z"], zt)
    return {"n": int(len(gal)), "seed": seed, "z_range": BOSS_Z, "snr_range": BOSS_SNR,
            "GF_0.003": float(np.mean(dz < 0.003)), "GF_0.01": float(np.mean(dz < 0.01)),
            "galaxy_fraction": float(np.mean(np.asarray(cat["SPECTYPE"], str) == "GALAXY"))}


def boss_row(q: dict) -> str:
    """One markdown table cell text for :func:`boss_galaxy_quality`."""
    return (f"GF(0.003) {q['GF_0.003']:.3f}, GF(0.01) {q['GF_0.01']:.3f}, "
            f"called GALAXY {q['galaxy_fraction']:.3f} (n={q['n']}, seed {q['seed']})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model names or files")
    ap.add_argument("--n", type=int, default=1024, help="thirteen-class simulations drawn")
    ap.add_argument("--seed", type=int, default=901)
    args = ap.parse_args(argv)
    import specsift
    print("| model | galaxies at BOSS z 0.4–1.0, S/N 1.5–10 |\n|---|---|")
    for name in args.models:
        q = boss_galaxy_quality(specsift.load_model(name), args.n, args.seed)
        print(f"| {name} | {boss_row(q)} |")


if __name__ == "__main__":
    main()
