"""Train the star-velocity head of gasnet and speccznet (``specsift.models.star_head``).

    # 1. data: the real LAMOST stars (labels: LAMOST's RV = Z·c) and simulated SDSS/DESI stars
    nice -n 10 python benchmarks/train_star_rv.py prepare --out out/star_rv
    # 2. train (one thread, checkpoints every --ckpt-every steps; --resume continues)
    nohup nice -n 10 python benchmarks/train_star_rv.py train --out out/star_rv --steps 6000 \\
        --resume > out/star_rv/train.log 2>&1 &
    # 3. ZERR scale on the internal validation stars, write the head file, print the table
    python benchmarks/train_star_rv.py finish --out out/star_rv \\
        --save src/specsift/data/models/star_rv.pt
    # 4. the held-out LAMOST stars, scored once at the end (never used for any choice)
    python benchmarks/train_star_rv.py evaluate --head src/specsift/data/models/star_rv.pt --heldout

Data.  ``_lamost_real.load(fallback=True)`` (every lamost-real file); ``heldout_mask`` is
computed on the whole label table, exactly as ``lamost_finetune.py`` does, and the held-out stars
are never trained on.  The training split's stars are split again by star (DESIG, hashed) into
85 % fitting and 15 % internal validation: every setting (steps, ZERR scale) is chosen on that.
Simulated stars (``specsift.simulate`` thirteen-class blocks, STAR rows only) of the SDSS and DESI
instrument models keep the head honest at those resolutions (real SDSS stars are 20 spectra:
too few to train on, kept for ``benchmarks/real_surveys.py``).

Augmentation: every training spectrum is shifted by a known amount on the log-λ grid (integer
pixels exactly, the fraction by flux-conserving linear interpolation, as the readers resample),
labelled v + δ, so each star gives unlimited pairs across ±13 px (±900 km/s); plus a random
flux-calibration tilt, extra noise for a third of them, and a masked run.

Loss (pixels): cross-entropy of the shift curve against a Gaussian (σ 0.5 px) at the true
shift, a Huber loss of δ̂, and the Gaussian NLL of the truth given (δ̂, σ) — σ² + σ_label²
(LAMOST's own Z_ERR), so that σ is the head's error, not LAMOST's.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _lamost_real as LR  # noqa: E402
from _common import SHARED  # noqa: E402

from specsift.constants import C_KMS  # noqa: E402
from specsift.models.star_head import PIX_KMS  # noqa: E402

#: group codes in data.npz
FIT, VAL, HELD, SIM_SDSS, SIM_DESI = 0, 1, 2, 3, 4
SPAN = 13.0          # training shifts cover ±SPAN px
SIM_FRACTION = 0.3


def _internal_val(desig: str) -> bool:
    return int(hashlib.sha1(("rv:" + desig).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < 0.15


def prepare(a):
    from astropy.table import Table

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    flux, ivar, lab, counts = LR.load(fallback=True)
    held = LR.heldout_mask(lab)                       # on the whole table, as lamost_finetune
    zerr = {}
    for f in LR.FOLDERS:
        t = Table.read(SHARED / "lamost-real" / f / "labels.csv", format="ascii.csv")
        zerr.update({(f, str(r["file"])): float(r["Z_ERR"]) for r in t})
    ze = np.array([zerr.get((f, str(p)), np.nan) for f, p in zip(lab["folder"], lab["file"])])
    z = np.asarray(lab["Z"], float)
    star = (np.asarray(lab["CLASS"]) == "STAR") & np.isfinite(z) & (np.abs(z * C_KMS) < 900)
    grp = np.where(held, HELD, [VAL if _internal_val(d) else FIT for d in lab["DESIG"]])
    ze = np.where(np.isfinite(ze) & (ze > 0) & (ze < 1e-3), ze, 5 / C_KMS)
    print(f"real LAMOST read {counts}; stars {star.sum()}: fit {np.sum(star & (grp == FIT))}, "
          f"internal val {np.sum(star & (grp == VAL))}, held out {np.sum(star & (grp == HELD))}")
    parts = {"flux": [flux[star]], "ivar": [ivar[star]], "z": [z[star]], "zerr": [ze[star]],
             "group": [grp[star]], "snr": [np.asarray(lab["SNR_G"], float)[star]],
             "desig": [np.asarray(lab["DESIG"]).astype("U40")[star]]}
    sims = sim_stars(71, 72, a.n_sim)
    for k in parts:
        parts[k].append(sims[k])
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data["flux"] = data["flux"].astype(np.float32)
    data["ivar"] = data["ivar"].astype(np.float32)
    np.savez(out / "data.npz", **data)
    print(f"wrote {out / 'data.npz'} ({len(data['z'])} spectra, {time.process_time() - t0:.0f} CPU-s)")


def shift(flux, ivar, s):
    """Spectra moved redward by ``s`` pixels each (flux-conserving linear interpolation of the
    fraction, exact integer part); pixels shifted in from outside, or touching a bad pixel, get
    ivar 0.  new[i] = (1 − f)·old[i − n] + f·old[i − n − 1] for s = n + f."""
    n_, p = flux.shape
    nint = np.floor(s).astype(int)
    f = (s - nint)[:, None]
    i = np.arange(p)[None, :] - nint[:, None]
    a, b = i, i - 1
    ok = (a >= 0) & (a < p) & (b >= 0) & (b < p)
    a, b = np.clip(a, 0, p - 1), np.clip(b, 0, p - 1)
    rows = np.arange(n_)[:, None]
    fa, fb = flux[rows, a], flux[rows, b]
    ia, ib = ivar[rows, a], ivar[rows, b]
    ok &= (ia > 0) & (ib > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (1 - f) ** 2 / ia + f ** 2 / ib
        iv = np.where(ok, 1.0 / var, 0.0)
    return ((1 - f) * fa + f * fb).astype(np.float32), iv.astype(np.float32)


def augment(flux, ivar, rng):
    """Flux-calibration tilt for all, extra noise for a third, a masked run for half."""
    n, p = flux.shape
    x = np.linspace(-1, 1, p)[None]
    tilt = np.exp(rng.normal(0, 0.2, (n, 1)) * x + rng.normal(0, 0.1, (n, 1)) * x ** 2)
    flux, ivar = flux * tilt, ivar / tilt ** 2
    noisy = rng.random(n) < 1 / 3
    if noisy.any():
        k = rng.uniform(1.0, 3.0, noisy.sum())[:, None]      # noise × k
        sd = np.where(ivar[noisy] > 0, 1 / np.sqrt(np.maximum(ivar[noisy], 1e-30)), 0)
        flux[noisy] = flux[noisy] + rng.normal(0, 1, sd.shape) * sd * np.sqrt(k ** 2 - 1)
        ivar[noisy] = ivar[noisy] / k ** 2
    for r in np.flatnonzero(rng.random(n) < 0.5):
        w = int(rng.integers(10, 200))
        lo = int(rng.integers(0, p - w))
        ivar[r, lo:lo + w] = 0
    return flux.astype(np.float32), ivar.astype(np.float32)


def draw_batch(data, idx_real, idx_sim, size, rng, aug=True):
    """One training batch: spectra shifted to uniform true shifts in ±SPAN px; returns
    (features, target shift px, label σ px)."""
    from specsift.models.star_head import star_features
    nsim = rng.binomial(size, SIM_FRACTION) if len(idx_sim) else 0
    pick = np.concatenate([rng.choice(idx_real, size - nsim), rng.choice(idx_sim, nsim)]) \
        if nsim else rng.choice(idx_real, size)
    v_px = np.log10(1 + data["z"][pick]) / 1e-4
    target = rng.uniform(-SPAN, SPAN, len(pick))
    f, iv = shift(data["flux"][pick], data["ivar"][pick], target - v_px)
    if aug:
        f, iv = augment(f, iv, rng)
    lab_sig = data["zerr"][pick] * C_KMS / PIX_KMS
    return star_features(f, iv), target, lab_sig


def loss_fn(net, x, target, lab_sig):
    import torch
    from torch.nn import functional as F

    from specsift.models.star_head import decode
    logits, gate = net(x)
    d = net.max_shift
    pos = torch.arange(-d, d + 1, dtype=torch.float32)
    q = torch.exp(-0.5 * ((pos[None] - target[:, None]) / 0.5) ** 2)
    q = q / q.sum(1, keepdim=True)
    ce = -(q * F.log_softmax(logits, 1)).sum(1).mean()
    mean, logs, _ = decode(net, logits, gate, x)
    err = mean - target
    hub = F.smooth_l1_loss(mean, target, beta=0.5)
    var = torch.exp(2 * logs) + lab_sig ** 2
    nll = (0.5 * err.detach() ** 2 / var + 0.5 * torch.log(var)).mean()
    return ce + 2 * hub + 0.5 * nll, err.detach()


def _ckpt(out):
    return Path(out) / "ckpt.pt"


def train(a):
    import torch

    from specsift import torchfile
    from specsift.models.star_head import StarRVNet
    torch.set_num_threads(1)
    data = dict(np.load(Path(a.out) / "data.npz"))
    g = data["group"]
    idx_real = np.flatnonzero(g == FIT)
    idx_sim = np.flatnonzero((g == SIM_SDSS) | (g == SIM_DESI))
    torch.manual_seed(a.seed)
    net = StarRVNet(data["flux"].shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=1e-4)
    step, log = 0, []
    if a.resume and _ckpt(a.out).is_file():
        c = torchfile.load(_ckpt(a.out))
        net.load_state_dict(c["net"])
        opt.load_state_dict(c["opt"])
        step, log = int(c["step"]), list(c["log"])
        print(f"resumed at step {step}", flush=True)
    t0, errs = time.process_time(), []
    net.train()
    while step < a.steps:
        lr = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps)) if step > 200 \
            else a.lr * (step + 1) / 200
        for grp in opt.param_groups:
            grp["lr"] = lr
        rng = np.random.default_rng([a.seed, step])
        x, t, ls = draw_batch(data, idx_real, idx_sim, a.batch, rng)
        loss, err = loss_fn(net, torch.from_numpy(x), torch.from_numpy(t).float(),
                            torch.from_numpy(ls).float())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        errs.append(err.abs().numpy())
        step += 1
        if step % 50 == 0:
            e = np.concatenate(errs) * PIX_KMS
            errs = []
            line = (f"step {step}/{a.steps} loss {loss.item():.3f} lr {lr:.2e} train median |dv| "
                    f"{np.median(e):.1f} km/s, <=20: {np.mean(e <= 20):.3f}; "
                    f"{time.process_time() - t0:.0f} CPU-s this run")
            print(line, flush=True)
            log.append(line)
        if step % a.ckpt_every == 0 or step == a.steps:
            torchfile.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                            "log": log}, _ckpt(a.out))
    print("done", flush=True)


def _head_from_ckpt(out):
    from specsift import torchfile
    from specsift.models.star_head import StarRVNet, StarVelocityHead
    from specsift.spectra import DEFAULT_GRID
    c = torchfile.load(_ckpt(out))
    net = StarRVNet(DEFAULT_GRID.size)
    net.load_state_dict(c["net"])
    return StarVelocityHead(net, DEFAULT_GRID.to_dict()), int(c["step"])


def score(head, data, sel, shifts=(0.0,), seed=0, survey=None):
    """|Δv| and pull numbers of ``head`` on rows ``sel`` (each shifted by each of ``shifts``
    px; 0 = the spectrum as observed), its σ scale that of ``survey`` (None: the default)."""
    rng = np.random.default_rng(seed)
    dv, pull = [], []
    for s in shifts:
        f, iv = data["flux"][sel], data["ivar"][sel]
        zt = data["z"][sel]
        if s:
            ss = np.full(len(sel), float(s)) + rng.uniform(-0.5, 0.5, len(sel))
            f, iv = shift(f, iv, ss)
            zt = (1 + zt) * 10 ** (1e-4 * ss) - 1
        z, zerr, ok = head.measure(f, iv, surveys=None if survey is None else [survey] * len(sel))
        d = (z - zt) * C_KMS
        d[~ok] = np.inf
        dv.append(d)
        tot = np.hypot(zerr, data["zerr"][sel])
        pull.append(np.where(ok, (z - zt) / tot, np.nan))
    dv, pull = np.concatenate(dv), np.concatenate(pull)
    p = pull[np.isfinite(pull)]
    return {"n": int(dv.size), "le20": float(np.mean(np.abs(dv) <= 20)),
            "median": float(np.median(np.abs(dv))),
            "width": float(1.4826 * np.median(np.abs(p - np.median(p)))) if p.size else np.nan,
            "cov1": float(np.mean(np.abs(p) < 1)) if p.size else np.nan}, pull


def sim_stars(seed_sdss: int, seed_desi: int, n: int) -> dict:
    """The STAR rows of ``n`` simulated `thirteen` spectra per instrument (SDSS, DESI), in the
    layout of data.npz (zerr 0: the simulator's z is exact)."""
    from specsift.simulate import iter_blocks
    from specsift.spectra import SpectraBatch
    out = {k: [] for k in ("flux", "ivar", "z", "zerr", "group", "snr", "desig")}
    for inst, code, seed in (("sdss", SIM_SDSS, seed_sdss), ("desi", SIM_DESI, seed_desi)):
        b = SpectraBatch.concatenate(list(iter_blocks(n, "thirteen", seed, instrument=inst)))
        st = np.asarray(b.meta["SPECTYPE"]).astype(str) == "STAR"
        out["flux"].append(b.flux[st])
        out["ivar"].append(np.where(b.mask[st], 0, b.ivar[st]))
        out["z"].append(np.asarray(b.meta["Z"], float)[st])
        out["zerr"].append(np.zeros(st.sum()))
        out["group"].append(np.full(st.sum(), code))
        out["snr"].append(np.asarray(b.meta["SNR"], float)[st])
        out["desig"].append(np.full(st.sum(), inst, "U40"))
        print(f"simulated {inst}: {st.sum()} stars of {len(b)}")
    return {k: np.concatenate(v) for k, v in out.items()}


def fresh_sims(seed_sdss=73, seed_desi=74, n=1024):
    """Simulated SDSS and DESI stars never trained on (seeds apart from ``prepare``'s 71/72),
    for the default σ scale and the simulated rows of the table."""
    return sim_stars(seed_sdss, seed_desi, n)


def finish(a):
    import torch
    torch.set_num_threads(1)
    data = dict(np.load(Path(a.out) / "data.npz"))
    head, step = _head_from_ckpt(a.out)
    g, snr = data["group"], data["snr"]
    val = np.flatnonzero((g == VAL) & (snr >= 10))
    # LAMOST σ scale: the robust pull width (v − v_LAMOST)/√(σ² + Z_ERR²) of the internal
    # validation stars (as observed and moved by +5 / −7 px) set to 1
    head.sigma_scale = {"": 1.0, "LAMOST": 1.0}
    _, pull = score(head, data, val, shifts=(0.0, 5.0, -7.0), survey="LAMOST")
    p = pull[np.isfinite(pull)]
    lamost = float(1.4826 * np.median(np.abs(p - np.median(p))))
    # SDSS (BOSS) and DESI: 68.3 % of fresh simulated stars of that instrument within 1σ; any
    # other survey (or none, e.g. a simulated store): of both together
    sims = fresh_sims()
    z, zerr, ok = head.measure(sims["flux"], sims["ivar"])
    r = np.abs(z - sims["z"]) / zerr
    sg = sims["group"]

    def q68(sel):
        return float(np.quantile(r[sel & ok], 0.6827))
    sdss, desi = q68(sg == SIM_SDSS), q68(sg == SIM_DESI)
    head.sigma_scale = {"": q68(sg >= 0), "LAMOST": lamost, "SDSS": sdss, "BOSS": sdss,
                        "DESI": desi}
    print(f"step {step}: σ scale {head.sigma_scale} (LAMOST: internal validation, {val.size} "
          f"stars; SDSS/DESI: {ok.sum()} fresh simulated stars)")
    head.floor_kms = {"LAMOST": visit_floor_kms(head, data)}
    rows = _table(head, {"internal val LAMOST S/N_g ≥ 10": (data, val, "LAMOST"),
                         "fresh sim SDSS (seed 73)": (sims, np.flatnonzero(sg == SIM_SDSS), "SDSS"),
                         "fresh sim DESI (seed 74)": (sims, np.flatnonzero(sg == SIM_DESI), "DESI"),
                         "fresh sim, no SURVEY": (sims, np.flatnonzero(sg >= 0), None)})
    head.meta = {"trained_by": "benchmarks/train_star_rv.py", "steps": step,
                 "data": "LAMOST lamost-real training split (heldout_mask excluded) + "
                         "simulated SDSS/DESI stars", "internal_validation": rows}
    if a.save:
        head.save(a.save)
        print("wrote", a.save)


def visit_floor_kms(head, data) -> float:
    """The per-visit LAMOST floor (km/s) that makes the robust pull width of the training
    split's repeat visits (same DESIG, two spectra) 1: the wavelength-calibration error of a
    visit, which LAMOST's Z shares with ours (so the scale against LAMOST cannot see it)."""
    import itertools
    g = data["group"]
    idx = np.flatnonzero((g == FIT) | (g == VAL))
    z, ze, ok = head.measure(data["flux"][idx], data["ivar"][idx],
                             surveys=["LAMOST"] * len(idx))
    by = {}
    for k, d in enumerate(data["desig"][idx]):
        if ok[k]:
            by.setdefault(d, []).append(k)
    pairs = np.array([p for v in by.values() for p in itertools.combinations(v, 2)])
    if not len(pairs):
        return 0.0
    i, j = pairs.T
    grid = np.arange(0.0, 15.01, 0.1)
    widths = []
    for f in grid:
        p = (z[i] - z[j]) / np.sqrt(ze[i] ** 2 + ze[j] ** 2 + 2 * (f / C_KMS) ** 2)
        widths.append(1.4826 * np.median(np.abs(p - np.median(p))))
    best = float(grid[np.argmin(np.abs(np.array(widths) - 1))])
    print(f"LAMOST per-visit floor {best:.1f} km/s: robust pull width {widths[0]:.2f} → "
          f"{widths[int(np.argmin(np.abs(np.array(widths) - 1)))]:.2f} on {len(pairs)} "
          f"training-split repeat pairs")
    return best


def _table(head, sets):
    """``sets``: name → (data, rows, survey of the σ scale)."""
    print("| set | n | \\|Δv\\| ≤ 20 km/s | median \\|Δv\\| | pull width | 1σ coverage | CPU ms/star |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows = {}
    for name, (data, sel, survey) in sets.items():
        t0 = time.process_time()
        r, _ = score(head, data, sel, survey=survey)
        ms = 1e3 * (time.process_time() - t0) / max(len(sel), 1)
        rows[name] = {**r, "cpu_ms": ms}
        print(f"| {name} | {r['n']} | {r['le20']:.3f} | {r['median']:.1f} | {r['width']:.2f} | "
              f"{r['cov1']:.3f} | {ms:.2f} |")
    return rows


def evaluate(a):
    import torch

    from specsift.models.star_head import StarVelocityHead
    torch.set_num_threads(1)
    data = dict(np.load(Path(a.out) / "data.npz"))
    head = StarVelocityHead.load(a.head) if a.head else _head_from_ckpt(a.out)[0]
    g, snr = data["group"], data["snr"]
    sets = {"internal val LAMOST S/N_g ≥ 10":
            (data, np.flatnonzero((g == VAL) & (snr >= 10)), "LAMOST")}
    if a.heldout:
        sets["held-out LAMOST S/N_g ≥ 10"] = (data, np.flatnonzero((g == HELD) & (snr >= 10)),
                                               "LAMOST")
    _table(head, sets)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default="out/star_rv")
    p.add_argument("--n-sim", type=int, default=2048)
    p = sub.add_parser("train")
    p.add_argument("--out", default="out/star_rv")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--resume", action="store_true")
    p = sub.add_parser("finish")
    p.add_argument("--out", default="out/star_rv")
    p.add_argument("--save")
    p = sub.add_parser("evaluate")
    p.add_argument("--out", default="out/star_rv")
    p.add_argument("--head")
    p.add_argument("--heldout", action="store_true")
    a = ap.parse_args(argv)
    {"prepare": prepare, "train": train, "finish": finish, "evaluate": evaluate}[a.cmd](a)


if __name__ == "__main__":
    main()
