"""The run directory beside the catalog: plan, part files, progress record.

Layout of ``CATALOG.parts/``::

    plan.json              inputs cut into units, batch size, model, grid (fixed at start)
    u000012-b0003.arrow    catalog rows of batch 3 of unit 12 (written to a temp name, renamed;
                           Arrow IPC, LZ4; ``.parquet`` from versions before: read alike)
    u000012.done           unit 12 finished: its number of batches and rows
    progress.json          summary for people and monitors, rewritten atomically

Why files and renames rather than a database: a rename is atomic on every POSIX file
system, so after a SIGKILL each part is either complete or absent; nothing can be
half-recorded, and resuming needs no repair step.  The done markers are the progress
record; ``progress.json`` only summarises them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from astropy.table import Table

from ..io.catalog_sources import IPC_SUFFIX, arrow_to_table, part_rows
from ..lines.fit import FIT_VERSION
from .units import Unit, fingerprint

if TYPE_CHECKING:
    from .local import StageOptions

__all__ = ["RunDir", "table_to_arrow", "arrow_array", "arrow_to_table", "ResumeError"]

#: at most this many bytes of a run's parts held in memory for the merge (a run's catalog
#: rows are ~1 kB a spectrum: a run of up to ~60 000 spectra merges without reading back)
HELD_BYTES = 64 << 20

_PART = re.compile(r"^u(\d{6})-b(\d{4,})\.(?:arrow|parquet)$")
_DONE = re.compile(r"^u(\d{6})\.done$")


class ResumeError(ValueError):
    """An unfinished run is in the way, or ``--resume`` was asked with other settings."""


def table_to_arrow(t: Table) -> pa.Table:
    """Astropy catalog → Arrow (vector columns as fixed-size lists).

    Columns go in through :func:`arrow_array`, not ``pa.array``: pyarrow's ``pa.array`` on a
    numpy array consults its pandas shim, which imports pandas (~0.3 CPU-s, once per process,
    more than writing every part of a 2000-spectrum run)."""
    cols = {}
    for name in t.colnames:
        a = np.asarray(t[name])
        if a.ndim > 1:
            flat = arrow_array(np.ascontiguousarray(a).reshape(-1))
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(a.shape[1:])))
        else:
            cols[name] = arrow_array(a)
    return pa.table(cols)


def arrow_array(a: np.ndarray) -> pa.Array:
    """A 1-D numpy array (numbers, booleans, str/bytes) as an Arrow array, built from its
    buffers (zero-copy for native-endian numbers) instead of through ``pa.array``."""
    a = np.asarray(a)
    n = len(a)
    if a.dtype.kind in "US":
        enc = _utf8(a) if a.dtype.kind == "U" else a
        width = enc.dtype.itemsize
        offsets = np.zeros(n + 1, np.int32)
        if width and n:
            raw = np.ascontiguousarray(enc).view(np.uint8).reshape(n, width)
            # a value's length: past its last non-NUL byte (numpy pads with NULs), from the
            # bytes themselves — np.char.str_len called a method per value (~0.2 µs each)
            used = raw != 0
            lens = np.where(used.any(axis=1), width - np.argmax(used[:, ::-1], axis=1), 0)
            np.cumsum(lens, out=offsets[1:])
            data = raw[np.arange(width)[None, :] < lens[:, None]]
        else:
            data = np.zeros(0, np.uint8)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                      pa.py_buffer(data)])
    if a.dtype.kind == "b":
        bits = np.packbits(a.astype(bool), bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    if a.dtype.kind not in "iuf":
        return pa.array(a)
    a = np.ascontiguousarray(a, a.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), n, [None, pa.py_buffer(a)])


#: a part's IPC options: LZ4 frames (a 1024-row verified part ~0.41 MB, as its LZ4 Parquet
#: file was ~0.37; uncompressed it would be ~0.78) — from :data:`_LZ4_BYTES` of Arrow data
#: on; a smaller part is written uncompressed (a one-row part: ~27 kB either way, and LZ4's
#: frame a buffer, ~156 columns' worth, cost ~0.6 CPU-ms to write and as much to decode)
_IPC_OPTIONS = {True: pa.ipc.IpcWriteOptions(compression="lz4"), False: pa.ipc.IpcWriteOptions()}
_LZ4_BYTES = 1 << 16


def part_bytes(at: pa.Table) -> pa.Buffer:
    """``at`` as the bytes of an Arrow IPC file (a part file's content)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, at.schema, options=_IPC_OPTIONS[at.nbytes >= _LZ4_BYTES]) as w:
        w.write_table(at)
    return sink.getvalue()


def _utf8(a: np.ndarray) -> np.ndarray:
    """A str array's values as UTF-8 bytes (NUL-padded ``S``).

    Where every code point is ASCII — the catalog's labels and paths nearly always — each
    UCS-4 code unit is that byte: the bytes are the code units narrowed to uint8, the same
    bytes as ``a.astype("S<width>")``, whose per-value encoding cost ~0.3 CPU-ms for each
    string column of a 1024-row batch (~2.5 of a batch's ~4.5 ms ``table_to_arrow``; this is
    ~0.01).  Else ``np.char.encode``."""
    width = a.dtype.itemsize // 4
    if width and a.ndim == 1 and a.dtype.isnative:
        units = np.ascontiguousarray(a).view(np.uint32).reshape(len(a), width)
        if not units.size or int(units.max()) < 0x80:
            return units.astype(np.uint8).view(f"S{width}").reshape(len(a))
    try:
        return a.astype(f"S{max(width, 1)}")
    except UnicodeEncodeError:
        return np.char.encode(a, "utf-8")


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _verify_options_json(stages: "StageOptions") -> dict | None:
    """The run's verification options as the plain JSON its plan stores (tuples read back
    as lists, so a resume compares like with like)."""
    if not stages.verify:
        return None
    from dataclasses import asdict

    from ..verify import VerifyOptions
    return json.loads(json.dumps(asdict(stages.verify_options or VerifyOptions())))


def _inputs(units) -> list:
    """What a plan's units read, whatever their grouping into units: every path with its
    (size, mtime) and row range (a store's rows are split by the batch size).  A resume
    compares this, not the grouping, and keeps the interrupted run's units: its part files
    are named by them, and an older version grouped files differently (256 a unit)."""
    return [(p, str(fp), u["unit"].get("start", 0), u["unit"].get("stop"))
            for u in units or [] for p, fp in zip(u["unit"]["paths"], u["files"])]


class RunDir:
    """Parts and progress of one predict run, in ``<catalog>.parts/``."""

    def __init__(self, catalog: Path):
        self.catalog = Path(catalog)
        self.path = self.catalog.with_name(self.catalog.name + ".parts")
        self.started = time.time()
        self._done: dict[int, dict] | None = None     # the .done markers, once read
        self._held: dict[Path, pa.Table] | None = {}  # this run's parts (see held_parts)
        self._held_bytes = 0

    # -- starting / resuming -------------------------------------------------------
    def start(self, plan: dict, resume: bool) -> list[Unit]:
        """Create the directory for a new run, or check ``plan`` against the one on disk."""
        self._done = None
        plan_file = self.path / "plan.json"
        if plan_file.exists():
            if not resume:
                raise ResumeError(f"{self.path}: an unfinished run of this catalog is here; "
                                  f"add --resume to continue it, or delete the folder to start again")
            old = json.loads(plan_file.read_text())
            keys = ["batch_size", "model", "grid", "save_chi2", "verify", "lines", "lines_fit"]
            if "verify_options" in old:        # plans of older versions did not record them
                keys.append("verify_options")
            for key in keys:
                if old.get(key) != plan.get(key):
                    raise ResumeError(f"{self.path}: cannot resume, the {key} differ from the "
                                      f"interrupted run ({key}: {str(old.get(key))[:80]} …); "
                                      f"delete the folder to start again")
            if _inputs(old.get("units")) != _inputs(plan.get("units")):
                raise ResumeError(f"{self.path}: cannot resume, the inputs (or their sizes / "
                                  f"dates) differ from the interrupted run; delete the folder "
                                  f"to start again")
            plan = {**plan, "units": old["units"]}      # the run's own grouping (_inputs)
        else:
            if self.path.exists():
                shutil.rmtree(self.path)          # a folder without a plan: nothing to keep
            self.path.mkdir(parents=True)
            _write_json_atomic(plan_file, plan)
        self.plan = plan
        for tmp in [*self.path.glob(".*.tmp"),   # temp files of a killed writer
                    *self.catalog.parent.glob(f".{self.catalog.name}.*.tmp")]:
            tmp.unlink(missing_ok=True)
        return [Unit.from_dict(u["unit"]) for u in plan["units"]]

    @staticmethod
    def make_plan(units: list[Unit], batch_size: int, model: str, grid: dict,
                  stages: "StageOptions") -> dict:
        """What a resumed run must share with the interrupted one, the stages included.  The
        verification options are recorded too (the :class:`~specsift.verify.VerifyOptions`
        fields as plain JSON, None without verification), so a resume with other search
        windows or ZERR scales cannot mix two answers in one catalog; so is the line fit's
        version with the lines stage (a plan without it, of an older version, is refused)."""
        return {"format": "specsift-predict-run-1", "batch_size": batch_size, "model": model,
                "grid": grid, "save_chi2": stages.predict.save_chi2, "verify": stages.verify,
                "lines": stages.lines, "verify_options": _verify_options_json(stages),
                "lines_fit": FIT_VERSION if stages.lines else None,
                "units": [{"unit": u.to_dict(), "files": fingerprint(u)} for u in units]}

    # -- state -------------------------------------------------------------------
    def done_units(self) -> dict[int, dict]:
        """{unit: its .done marker}: read from the folder once, then kept as
        :meth:`finish_unit` writes them (this object is the folder's only writer: engines
        only compute), so the progress written after every unit does not read every marker
        again — O(units²) file reads for a run of many units."""
        if self._done is None:
            out = {}
            for p in self.path.iterdir():
                m = _DONE.match(p.name)
                if m:
                    out[int(m.group(1))] = json.loads(p.read_text())
            self._done = out
        return dict(self._done)

    def done_batches(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for p in self.path.iterdir():
            m = _PART.match(p.name)
            if m:
                out.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        return out

    # -- writing -----------------------------------------------------------------
    def part_path(self, unit: int, batch: int) -> Path:
        """Where batch ``batch`` of unit ``unit`` is written (see :meth:`existing_part`)."""
        return self.path / f"u{unit:06d}-b{batch:04d}{IPC_SUFFIX}"

    def existing_part(self, unit: int, batch: int) -> Path:
        """The part file of (``unit``, ``batch``) on disk: :meth:`part_path`, or the Parquet
        part an older version wrote there (a resumed run of it keeps its parts)."""
        path = self.part_path(unit, batch)
        old = path.with_suffix(".parquet")
        return old if not path.exists() and old.exists() else path

    def write_part(self, unit: int, batch: int, table: Table | pa.Table) -> int:
        """Write one batch's catalog rows atomically; returns the number of rows.

        An Arrow IPC file (LZ4), not Parquet: a part lives only until the merge, which reads
        rows back and writes the catalog (Parquet, zstd, statistics) itself, and Parquet's
        column writers cost per column chunk — ~156 of them in a verified part, ~8 CPU-ms
        for a 1024-row part and ~5 for one row, against ~1.8 and ~0.2 here; the file's
        bytes are also what the merge holds (:meth:`_hold`), decoded once."""
        at = table if isinstance(table, pa.Table) else table_to_arrow(table)
        final = self.part_path(unit, batch)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        data = part_bytes(at)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        self._hold(final, at, data)
        return at.num_rows

    def _hold(self, part: Path, at: pa.Table, data: pa.Buffer) -> None:
        """Keep part ``part``'s rows in memory for the merge while the run's parts held stay
        under :data:`HELD_BYTES` in all; past that none are (the merge then reads them all).

        What is held is read from ``data``, the part file's bytes: a copy in Arrow's own
        memory (LZ4 decoded, or slices of ``data``), not ``at``, whose number columns are
        zero-copy views of the batch's numpy arrays (:func:`arrow_array`) — a view held
        until the merge would let anything that later writes into such an array change the
        catalog but not the part file, and keep the whole base array alive beyond what
        :data:`HELD_BYTES` counts."""
        if self._held is None:
            return
        self._held_bytes += at.nbytes
        if self._held_bytes > HELD_BYTES:
            self._held = None
        else:
            self._held[part] = pa.ipc.open_file(data).read_all()

    def held_parts(self) -> dict[Path, pa.Table]:
        """{part file: its Arrow table} for the parts this object wrote, while a run's parts
        fit in :data:`HELD_BYTES`: what :func:`~specsift.io.catalog.merge_parts` merges
        without reading the parts back (reading every part twice, its string widths then its
        rows, was ~5 CPU-ms a part); empty past the limit, and for the parts of an
        interrupted run that a resume did not write."""
        return dict(self._held or {})

    def finish_unit(self, unit: int, n_batches: int, known: dict[int, int] | None = None) -> None:
        """Mark ``unit`` done; ``known`` rows per batch spare re-reading fresh parts."""
        known = known or {}
        rows = sum(known[b] if b in known else part_rows(self.existing_part(unit, b))
                   for b in range(n_batches))
        marker = {"batches": n_batches, "rows": rows}
        _write_json_atomic(self.path / f"u{unit:06d}.done", marker)
        if self._done is not None:
            self._done[unit] = json.loads(json.dumps(marker))   # as read back from the file

    def write_progress(self, n_units: int, rows_this_run: int, errors: int) -> None:
        done = self.done_units()
        _write_json_atomic(self.path / "progress.json", {
            "units_done": len(done), "units_total": n_units,
            "rows_done": int(sum(d["rows"] for d in done.values())),
            "rows_this_run": rows_this_run, "read_errors_this_run": errors,
            "seconds_this_run": round(time.time() - self.started, 1),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    # -- finishing -----------------------------------------------------------------
    def ordered_parts(self, n_units: int) -> list[Path]:
        """Every part in (unit, batch) order; raises if any unit is unfinished."""
        done = self.done_units()
        missing = [u for u in range(n_units) if u not in done]
        if missing:
            raise RuntimeError(f"{self.path}: units {missing[:5]} not finished")
        return [self.existing_part(u, b) for u in range(n_units)
                for b in range(done[u]["batches"])]

    def remove(self) -> None:
        self._done = None
        self._held, self._held_bytes = {}, 0
        shutil.rmtree(self.path, ignore_errors=True)
