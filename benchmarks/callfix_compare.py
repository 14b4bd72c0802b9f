"""Are this checkout's predict catalogs those of a git revision?  Parquet and FITS, on the
2000-spectrum simulated store and on ../shared/data/sdss (and a one-spectrum store).

    .venv/bin/python benchmarks/callfix_compare.py --base main [--formats parquet fits]

Why a script: the fixed-cost work of branch callfix changes how a call writes its parts and
its catalog (string columns to Arrow, row groups), never what a user reads back.  Each
revision runs ``specsift.pipeline.predict`` in its own process (the base from ``git
archive``); the catalogs are then read back with astropy's ``Table.read`` and compared in
every column (name, dtype, shape, unit, description, values — NaNs where NaNs, bit for bit)
and every keyword (DATE excepted: the time of the run); for Parquet also the schema's
metadata byte for byte (``table_meta_yaml``, string widths, ``specsift.*``; DATE masked), the
Arrow schema and row count; for FITS every header card of every HDU (DATE masked) and every
HDU's data bytes.  Prints one line a catalog and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _predict_common import ROOT, sim_store  # noqa: E402

CHILD = """
import sys
import torch
torch.set_num_threads(1)
from specsift.pipeline import predict
predict([sys.argv[1]], sys.argv[2], model="gasnet", batch_size=int(sys.argv[3]), threads=1,
        progress=False)
"""
_DATE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def run(src: Path, inputs: Path, out: Path, batch: int) -> None:
    """predict in a child of ``src``'s package, in ``out``'s folder under the same file name
    for every revision (COMMAND records the command line)."""
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", CHILD, str(inputs), out.name, str(batch)],
                   check=True, env=env, cwd=str(out.parent), capture_output=True)


def _read(path: Path):
    """The catalog's tables as astropy's ``Table.read`` reads them (FITS: each table HDU)."""
    from astropy.table import Table
    if path.suffix == ".parquet":
        return [Table.read(path)]
    from astropy.io import fits
    with fits.open(path) as h:
        n = len(h)
    return [Table.read(path, hdu=k) for k in range(1, n)]


def _masked(b: bytes) -> bytes:
    return _DATE.sub(rb"<date>", b)


def compare(a: Path, b: Path) -> list[str]:
    """Differences between catalogs ``a`` and ``b`` (empty: identical)."""
    bad = []
    tas, tbs = _read(a), _read(b)
    if len(tas) != len(tbs):
        return ["table count differs"]
    for ta, tb in zip(tas, tbs):
        bad += _compare_tables(ta, tb)
    bad += _compare_files(a, b)
    return bad


def _compare_tables(ta, tb) -> list[str]:
    import numpy as np
    bad = []
    if ta.colnames != tb.colnames or len(ta) != len(tb):
        return [f"columns/rows differ: {len(ta)} vs {len(tb)} rows"]
    for n in ta.colnames:
        ca, cb = ta[n], tb[n]
        if (ca.dtype, ca.shape, str(ca.unit), ca.description) != \
                (cb.dtype, cb.shape, str(cb.unit), cb.description):
            bad.append(f"{n}: dtype/shape/unit/description differ")
        elif np.asarray(ca).tobytes() != np.asarray(cb).tobytes():
            bad.append(f"{n}: values differ")
    ma = {k: v for k, v in ta.meta.items() if k != "DATE"}
    mb = {k: v for k, v in tb.meta.items() if k != "DATE"}
    if ma != mb:
        bad.append(f"meta differs: {set(ma.items()) ^ set(mb.items())}")
    return bad


def _compare_files(a: Path, b: Path) -> list[str]:
    import numpy as np
    bad = []
    if a.suffix == ".parquet":
        import pyarrow.parquet as pq
        sa, sb = pq.read_schema(a), pq.read_schema(b)
        if not sa.equals(sb, check_metadata=False):
            bad.append("Arrow schema differs")
        for k in set(sa.metadata) | set(sb.metadata):
            if _masked(sa.metadata.get(k, b"")) != _masked(sb.metadata.get(k, b"")):
                bad.append(f"schema metadata {k!r} differs")
        if pq.read_metadata(a).num_rows != pq.read_metadata(b).num_rows:
            bad.append("row count differs")
    else:
        from astropy.io import fits
        with fits.open(a) as ha, fits.open(b) as hb:
            if len(ha) != len(hb):
                bad.append("HDU count differs")
            for k, (x, y) in enumerate(zip(ha, hb)):
                if _masked(x.header.tostring().encode()) != _masked(y.header.tostring().encode()):
                    bad.append(f"HDU {k} header differs")
                dx = b"" if x.data is None else np.asarray(x.data).tobytes()
                dy = b"" if y.data is None else np.asarray(y.data).tobytes()
                if dx != dy:
                    bad.append(f"HDU {k} data differs")
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="main", help="git revision to compare with")
    ap.add_argument("--formats", nargs="+", default=["parquet", "fits"])
    ap.add_argument("--batch", type=int, default=1024)
    a = ap.parse_args()
    sdss = ROOT.parent / "shared" / "data" / "sdss"
    cache = ROOT / "out" / "bench"
    big = sorted(cache.glob("sim-thirteen-2000-s11-raw-*.h5"))   # any simulator version:
    one = sorted(cache.glob("sim-thirteen-1-s11-raw*.h5"))       # both revisions read it
    inputs = {"2000 store": big[0] if big else sim_store(2000), "sdss": sdss}
    if one:
        inputs["1-spectrum store"] = one[0]
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.base, "src/specsift"],
                             check=True, capture_output=True).stdout
        (tmp / "base").mkdir()
        subprocess.run(["tar", "-x", "-C", str(tmp / "base")], input=tar, check=True)
        for label, src in inputs.items():
            for fmt in a.formats:
                outs = []
                for rev, path in (("base", tmp / "base" / "src"), ("this", ROOT / "src")):
                    out = tmp / rev / f"{label.replace(' ', '_')}.{fmt}"
                    run(path, src, out, a.batch)
                    outs.append(out)
                bad = compare(*outs)
                failed |= bool(bad)
                print(f"{label} .{fmt}: " + ("identical" if not bad else "; ".join(bad[:8])))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
