"""Active-learning benchmark: labels needed by each query strategy vs random (simulated oracle).

Full setting of the issue (hours on a CPU, minutes on a GPU):
    .venv/bin/python benchmarks/active_learning.py --out out/active-bench
Reduced setting measured for docs/active-learning.md on a 2-core machine:
    nice -n 10 .venv/bin/python benchmarks/active_learning.py --out out/active-bench-20k \
        --pool 20000 --test 10000 --width 0.25 --train-steps 200

This is ``specsift active benchmark`` (:func:`specsift.commands.active.benchmark`, same flags;
``--pool``/``--test`` are ``--pool-size``/``--test-size``) with the figures written to
docs/figures unless ``--figdir`` says otherwise.  Prints a markdown table and writes
docs/figures/active_*.png.  Every run is a label database under OUT/runs, so stopping and
re-running resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from specsift.cli import main as cli
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--figdir" or a.startswith("--figdir=") for a in argv):
        argv += ["--figdir", str(ROOT / "docs" / "figures")]
    return cli(["active", "benchmark", *argv])


if __name__ == "__main__":
    sys.exit(main())
