"""Simulated-oracle benchmark: how many labels does each query strategy need to find the rare
emission-line stars, compared with random sampling?

A pool of LAMOST-like stellar spectra (default 100k, 1 % rare: half single-, half
double-peaked Hα/Hβ emission; :mod:`specsift.simulate.emission_stars`) and an independent test
set with the same rarity are simulated once into ``outdir``.  For every strategy and seed the
full loop runs with a truth oracle, each in its own label database, so an interrupted
benchmark resumes where it stopped.  After every retraining the model is scored on the test
set: F1 of each rare class, their mean, and the rare-class error (fraction of rare test
spectra not given their exact class).  ``summarise`` turns the databases into curves, a table
and figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .db import LabelDB
from .loop import ActiveLoop, LoopConfig
from .oracle import TruthOracle
from .pool import open_pool

__all__ = ["make_data", "run_benchmark", "collect", "summarise", "labels_to_reach"]


def make_data(outdir, pool_size: int = 100_000, test_size: int = 20_000,
              rare_fraction: float = 0.01, seed: int = 0, chunk: int = 10_000, log=print) -> tuple[Path, Path]:
    """Simulate pool and test stores once (reused when the parameters match)."""
    from ..io.store import SpectralStore
    from ..simulate.emission_stars import simulate_emission_stars
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    params = {"pool_size": pool_size, "test_size": test_size, "rare_fraction": rare_fraction,
              "seed": seed, "version": 1}
    stamp = outdir / "data.json"
    pool, test = outdir / "pool.h5", outdir / "test.h5"
    if stamp.exists() and json.loads(stamp.read_text()) == params and pool.exists() and test.exists():
        return pool, test
    for path, n, s, start in ((pool, pool_size, seed, 0), (test, test_size, seed + 10_000, 10**9)):
        tmp = path.with_suffix(".tmp.h5")
        with SpectralStore(tmp, "w") as store:
            for lo in range(0, n, chunk):
                m = min(chunk, n - lo)
                store.append(simulate_emission_stars(m, rare_fraction, seed=s * 1000 + lo // chunk,
                                                     start_id=start + lo))
                if log:
                    log(f"simulated {lo + m}/{n} spectra into {path.name}")
        tmp.replace(path)
    stamp.write_text(json.dumps(params))
    return pool, test


def make_evaluator(test_path, rare=("EMISSION", "DOUBLE_PEAK"), batch: int = 4096):
    """Callback for the loop: metrics of a model on the test store (read once into memory)."""
    from ..io.store import SpectralStore
    from ..metrics import classification_metrics
    with SpectralStore(test_path) as s:
        test = s.read(slice(0, len(s)))
    truth = np.asarray(test.meta["LABEL"]).astype(str)
    window_cache: dict = {}

    def evaluate(model) -> dict:
        key = model.grid
        if key not in window_cache:
            window_cache.clear()
            window_cache[key] = model.to_window(test)
        w = window_cache[key]
        probs = np.concatenate([model.predict_proba(w[lo:lo + batch]) for lo in range(0, len(w), batch)])
        pred = np.asarray(model.labels)[probs.argmax(1)]
        m = classification_metrics(truth, pred, model.labels)
        out = {"accuracy": m["accuracy"]}
        for c in rare:
            out[f"f1_{c}"] = m["per_class"][c]["f1"]
            out[f"recall_{c}"] = m["per_class"][c]["recall"]
            out[f"precision_{c}"] = m["per_class"][c]["precision"]
        out["f1_rare"] = float(np.mean([out[f"f1_{c}"] for c in rare]))
        is_rare = np.isin(truth, rare)
        out["rare_error"] = float(np.mean(pred[is_rare] != truth[is_rare])) if is_rare.any() else None
        # rare detected as *some* rare class (emission vs double-peak confusion forgiven)
        out["rare_miss"] = float(np.mean(~np.isin(pred[is_rare], rare))) if is_rare.any() else None
        return out

    return evaluate


def run_benchmark(outdir, strategies=("entropy", "margin", "least-confidence", "diverse", "random"),
                  seeds=(0, 1, 2, 3, 4), pool_size: int = 100_000, test_size: int = 20_000,
                  rare_fraction: float = 0.01, max_labels: int = 2000, batch: int = 100,
                  width: float = 1.0, train_steps: int = 300, log=print) -> Path:
    """Run (or resume) every strategy × seed; returns the results JSON path."""
    outdir = Path(outdir)
    pool_path, test_path = make_data(outdir, pool_size, test_size, rare_fraction, log=log)
    evaluate = make_evaluator(test_path)
    pool = open_pool(pool_path)
    oracle = TruthOracle(pool)
    for seed in seeds:
        for strategy in strategies:
            db_path = outdir / "runs" / f"{strategy}-seed{seed}.sqlite"
            db = LabelDB(db_path)
            cfg = LoopConfig(strategy=strategy, batch=batch, initial=batch, seed=seed,
                             width=width, train_steps=train_steps)
            loop = ActiveLoop(db, pool, cfg, workdir=outdir / "runs" / f"{strategy}-seed{seed}",
                              oracle=oracle, evaluate=evaluate, log=None)
            t0 = time.perf_counter()
            loop.run(max_labels=max_labels)
            last = db.last_iteration()
            if log:
                m = last["metrics"] if last else {}
                log(f"{strategy:>16} seed {seed}: {m.get('n_labelled')} labels, "
                    f"F1 rare {m.get('f1_rare', float('nan')):.3f}, "
                    f"rare error {m.get('rare_error', float('nan')):.3f}, "
                    f"{m.get('rare_found')} rare found ({time.perf_counter() - t0:.0f} s)")
            _prune_checkpoints(outdir / "runs" / f"{strategy}-seed{seed}")
            db.close()
    results = collect(outdir)
    path = outdir / "results.json"
    path.write_text(json.dumps(results, indent=1))
    return path


def _prune_checkpoints(d: Path, keep: int = 1) -> None:
    """The benchmark needs only the last checkpoint of a run for resuming (disk is finite)."""
    files = sorted(d.glob("iter*.pt"))
    for f in files[:-keep]:
        f.unlink()


def collect(outdir) -> dict:
    """{strategy: {seed: [iteration metrics...]}} from the run databases."""
    out: dict = {}
    for db_path in sorted((Path(outdir) / "runs").glob("*-seed*.sqlite")):
        strategy, seed = db_path.stem.rsplit("-seed", 1)
        db = LabelDB(db_path, create=False)
        rows = [it["metrics"] for it in db.iterations() if it["metrics"].get("n_labelled")]
        out.setdefault(strategy, {})[seed] = rows
        db.close()
    return out


def _curve(runs: dict, key: str):
    """Mean and std over seeds of ``key`` on the common label counts."""
    runs = {k: v for k, v in runs.items() if v}
    longest = max((rows[-1]["n_labelled"] for rows in runs.values()), default=0)
    # an unfinished run (benchmark still going) would cut every curve short: leave it out
    series = [{r["n_labelled"]: r.get(key) for r in rows} for rows in runs.values()
              if rows[-1]["n_labelled"] >= longest]
    xs = sorted(set.intersection(*[set(s) for s in series])) if series else []
    ys = np.array([[s[x] if s[x] is not None else np.nan for x in xs] for s in series], float)
    return np.array(xs), np.nanmean(ys, 0) if len(xs) else ys, np.nanstd(ys, 0) if len(xs) else ys


def labels_to_reach(xs, ys, target: float) -> float | None:
    """First label count at which the mean curve reaches ``target`` (linear interpolation)."""
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= target:
            if i == 0:
                return float(x)
            x0, y0 = xs[i - 1], ys[i - 1]
            return float(x0 + (target - y0) * (x - x0) / (y - y0)) if y != y0 else float(x)
    return None


def summarise(results: dict, figdir=None, error_budget: int = 2000) -> str:
    """Markdown table + figures (F1 of rare classes and rare objects found vs labels)."""
    lines = []
    rnd = results.get("random")
    target = None
    if rnd:
        xs, ys, _ = _curve(rnd, "f1_rare")
        target = float(ys[-1]) if len(ys) else None
    head = ("| strategy | seeds | labels | F1 rare (mean ± sd) | rare error | rare found | "
            f"labels to reach random's final F1{f' ({target:.3f})' if target else ''} | saving vs random |")
    lines += [head, "|" + "---|" * 8]
    rnd_need = None
    if rnd and target is not None:
        rnd_need = labels_to_reach(*_curve(rnd, "f1_rare")[:2], target)
    for name, runs in sorted(results.items(), key=lambda kv: kv[0] != "entropy"):
        xs, f1, f1sd = _curve(runs, "f1_rare")
        if not len(xs):
            continue
        _, err, _ = _curve(runs, "rare_error")
        _, found, _ = _curve(runs, "rare_found")
        within = np.flatnonzero(xs <= error_budget)
        i = within[-1] if within.size else len(xs) - 1
        need = labels_to_reach(xs, f1, target) if target is not None else None
        saving = f"{rnd_need / need:.1f}×" if need and rnd_need else "–"
        lines.append(f"| {name} | {len(runs)} | {int(xs[i])} | {f1[i]:.3f} ± {f1sd[i]:.3f} | "
                     f"{err[i]:.3f} | {found[i]:.0f} | {need if need is None else int(round(need))} | {saving} |")
    if figdir is not None:
        _figures(results, Path(figdir))
    return "\n".join(lines)


def _figures(results: dict, figdir: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figdir.mkdir(parents=True, exist_ok=True)
    colours = {"entropy": "C0", "margin": "C1", "least-confidence": "C2", "diverse": "C4",
               "random": "k"}
    for key, ylabel, fname in (("f1_rare", "mean F1 of EMISSION and DOUBLE_PEAK (test set)",
                                "active_learning_f1.png"),
                               ("rare_found", "rare objects found (labelled)", "active_rare_found.png"),
                               ("rare_error", "rare-class error (test set)", "active_rare_error.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for name, runs in sorted(results.items()):
            xs, m, sd = _curve(runs, key)
            if not len(xs):
                continue
            c = colours.get(name)
            ax.plot(xs, m, label=f"{name} ({len(runs)} seeds)", color=c,
                    ls="--" if name == "random" else "-")
            ax.fill_between(xs, m - sd, m + sd, color=c, alpha=0.15, lw=0)
        if key == "rare_error":
            ax.axhline(0.065, color="r", lw=0.8, ls=":", label="6.5 % (Škoda et al.)")
        ax.set_xlabel("labels spent")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figdir / fname, dpi=110)
        plt.close(fig)
