"""Active-learning benchmark: labels needed by each query strategy vs random (simulated oracle).

Full setting of the issue (hours on a CPU, minutes on a GPU):
    .venv/bin/python benchmarks/active_learning.py --out out/active-bench
Reduced setting measured for docs/active-learning.md on a 2-core machine:
    nice -n 10 .venv/bin/python benchmarks/active_learning.py --out out/active-bench-20k \
        --pool 20000 --test 10000 --width 0.25 --train-steps 200

Prints a markdown table and writes docs/figures/active_*.png (``--figdir``).  Every run is a
label database under OUT/runs, so stopping and re-running resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/active-bench")
    p.add_argument("--pool", type=int, default=100_000)
    p.add_argument("--test", type=int, default=20_000)
    p.add_argument("--rare", type=float, default=0.01)
    p.add_argument("--max-labels", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--width", type=float, default=1.0, help="vgg1d width (1 = the paper's net)")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--strategies", default="entropy,margin,least-confidence,diverse,random")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figdir", default=str(ROOT / "docs" / "figures"))
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from specsift.active.benchmark import run_benchmark, summarise
    path = run_benchmark(a.out, strategies=tuple(a.strategies.split(",")), seeds=range(a.seeds),
                         pool_size=a.pool, test_size=a.test, rare_fraction=a.rare,
                         max_labels=a.max_labels, batch=a.batch, width=a.width,
                         train_steps=a.train_steps)
    table = summarise(json.loads(path.read_text()), a.figdir)
    print(f"\npool {a.pool} ({a.rare:.1%} rare), test {a.test}, vgg1d width {a.width}, "
          f"{a.train_steps} steps/retraining, batch {a.batch}, {a.seeds} seeds\n")
    print(table)
    (Path(a.out) / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
