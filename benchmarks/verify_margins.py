"""How far the fine-stage margins of the verification stage are from fitting every window finely.

    .venv/bin/python benchmarks/verify_margins.py [--model gasnet] [--surveys store SDSS LAMOST DESI]

For each input (the 2000 simulated spectra of predict_speed.py's store, the real SDSS, LAMOST
and DESI spectra of ``../shared`` as ``real_surveys.py`` reads them) the stage is run with
every window refined (``fine_margin=None``: the reference) and with several
(``fine_margin``, ``partner_margin``) pairs (:class:`specsift.verify.stage.VerifyOptions`,
:mod:`specsift.verify.windows`).  Prints per pair the fine fits made and the rows whose
SPECTYPE, Z (> 10 km/s), DELTACHI2 (relative 1e-3), ZWARN or SUBTYPE differ from the
reference, and per input the largest relative coarse-χ² gap (χ²_coarse − best)/|best| of a
fine winner that is neither the network's answer nor the STAR window (those two are always
refined): the margin the winners need.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import sim_store  # noqa: E402

PAIRS = ((0.3, None), (0.3, 0.01), (0.2, 0.01), (0.15, None), (0.15, 0.01), (0.1, 0.01))
COLS = ("Z", "SPECTYPE", "DELTACHI2", "ZWARN", "SUBTYPE")


def _items(model, which):
    import torch

    from specsift.pipeline.units import iter_unit, plan_units
    if which == "store":
        batches = [model.check_batch(b) for unit in plan_units([sim_store(2000)], 1024)
                   for _, b in iter_unit(unit, 1024, model.grid)]
    else:
        import real_surveys as RS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batches = [model.check_batch(getattr(RS, which.lower())()[0])]
    out = []
    for b in batches:
        with torch.inference_mode():
            out.append((b, *model.propose(b)))
    return out


class _Spy:
    """Counts fine fits and, on the exhaustive run, the winners' coarse gaps."""

    def __init__(self):
        import specsift.verify.windows as W
        import specsift.verify.zfind as zf
        self.fine, self.gaps, self.res = 0, [], None
        fine_stage, best_rows = W.fine_stage, zf.best_rows
        spy = self

        def fs(prep, basis, c):
            spy.fine += len(c.spec)
            return fine_stage(prep, basis, c)

        def br(spec, typ, z, chi2, n, net_t=None, net_z=None, margin=0.0):
            best, other, far = best_rows(spec, typ, z, chi2, n, net_t, net_z, margin)
            if spy.record and np.isfinite(chi2).all():        # every window refined
                spy.gap(spec, typ, z, best, n, net_t, net_z)
            return best, other, far
        W.fine_stage, zf.best_rows = fs, br
        for cls in (zf.Windows, zf.Reusing):
            self._wrap(cls)
        self.record = False

    def _wrap(self, cls):
        refine, spy = cls.refine, self

        def r(w, rows):
            refine(w, rows)
            spy.res = w.res
        cls.refine = r

    def gap(self, spec, typ, z, best, n, net_t, net_z):
        from specsift.verify.zfind import is_net
        c = self.res["coarse"]
        low = np.full(n, np.inf)
        np.minimum.at(low, spec, c)
        w = best[best >= 0]
        plain = ~is_net(spec, typ, z, net_t, net_z)[w] & (typ[w] != "STAR")
        self.gaps.extend(((c[w] - low[spec[w]]) / np.abs(low[spec[w]]))[plain].tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gasnet")
    ap.add_argument("--surveys", nargs="+", default=["store", "SDSS", "LAMOST", "DESI"])
    a = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    from specsift import load_model
    from specsift.constants import C_KMS
    from specsift.verify.stage import VerifyOptions, verify_catalog
    torch.set_num_threads(1)
    threadpool_limits(1, "blas")
    model = load_model(a.model).prepare("cpu", 1)
    spy = _Spy()
    print(f"{a.model} candidates; differences from every window refined\n")
    print("| input | fine_margin | partner_margin | fine fits | SPECTYPE | Z > 10 km/s | "
          "DELTACHI2 | ZWARN | SUBTYPE |\n|---|---|---|---|---|---|---|---|---|")
    for which in a.surveys:
        items = _items(model, which)

        def run(opt):
            spy.fine = 0
            outs = [verify_catalog(b, cat, c, opt) for b, cat, c in items]
            return {k: np.concatenate([np.asarray(o[k]) for o in outs]) for k in COLS}, spy.fine
        spy.record, spy.gaps = True, []
        ref, nf = run(VerifyOptions(fine_margin=None))
        spy.record = False
        gaps = np.array(spy.gaps)
        print(f"| {which} | None | – | {nf} | – | – | – | – | – |")
        for fm, pm in PAIRS:
            got, nf = run(VerifyOptions(fine_margin=fm, partner_margin=pm))
            with np.errstate(invalid="ignore"):
                dz = np.abs(got["Z"] - ref["Z"]) / (1 + ref["Z"]) * C_KMS
            dd = ~np.isclose(got["DELTACHI2"], ref["DELTACHI2"], rtol=1e-3, atol=0.1,
                             equal_nan=True)
            print(f"| {which} | {fm} | {pm} | {nf} | "
                  f"{np.sum(got['SPECTYPE'] != ref['SPECTYPE'])} | {np.sum(dz > 10)} | "
                  f"{dd.sum()} | {np.sum(got['ZWARN'] != ref['ZWARN'])} | "
                  f"{np.sum(got['SUBTYPE'] != ref['SUBTYPE'])} |")
        print(f"| {which}: largest gap of {len(gaps)} winners neither the network's nor STAR | "
              f"{gaps.max() if len(gaps) else float('nan'):.4f} | | | | | | | |")


if __name__ == "__main__":
    main()
