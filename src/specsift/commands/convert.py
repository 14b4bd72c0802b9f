"""`specsift convert INPUT... -o OUT.h5`: read spectra files onto one grid into a
SpectralStore, streaming in batches with a progress bar.  ``--resume`` continues an
interrupted conversion of the same inputs (it skips the spectra already stored)."""

from __future__ import annotations

import hashlib
import json
import warnings

from tqdm import tqdm


def register(subparsers, name, help_):
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="spectra files, directories or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="store to write")
    p.add_argument("--grid", default="default",
                   help="'default' (log10 λ 3.5563–3.9638, step 1e-4), 'native' (inputs must "
                        "share one grid) or START:STOP:STEP in log10 Å")
    p.add_argument("--batch-size", type=int, default=1024, help="spectra per batch (memory bound)")
    p.add_argument("--on-error", choices=("flag", "raise"), default="flag",
                   help="unreadable file: placeholder row flagged READ_ERROR, or stop")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted conversion into OUT.h5")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.h5 if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_grid(text: str):
    from ..spectra import DEFAULT_GRID, LogGrid

    if text == "default":
        return DEFAULT_GRID
    if text == "native":
        return None
    try:
        start, stop, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--grid {text!r}: use 'default', 'native' or START:STOP:STEP") from None
    if step <= 0 or stop <= start:
        raise ValueError(f"--grid {text!r}: need START < STOP and STEP > 0 (log10 Å)")
    return LogGrid.from_range(start, stop, step)


def run(args) -> int:
    from ..io import SpectralStore, iter_read
    from ..pipeline.preflight import check_file, input_files
    from ..progress import GrowingBar, expected_spectra

    out = check_file(args.output)                 # before any work; never one of the inputs
    grid = parse_grid(args.grid)
    files = input_files(args.inputs, out)
    key = hashlib.sha1(json.dumps([str(f) for f in files] + [args.grid]).encode()).hexdigest()
    skip = 0
    if out.exists():
        if args.resume:
            with SpectralStore(out, "r") as st:
                if st.attrs.get("convert_inputs") != key:
                    raise ValueError(f"{out}: was made from other inputs or grid; cannot resume")
                if st.attrs.get("convert_done", False):
                    print(f"{out}: already complete ({len(st)} spectra)")
                    return 0
                skip = len(st)
        elif not args.overwrite:
            raise ValueError(f"{out}: exists; pass --overwrite to replace it or --resume")
        else:
            out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    n_written = skip
    n_err = 0
    total = expected_spectra(files)
    with SpectralStore(out, "a") as store, \
            tqdm(desc=f"convert → {out.name}", unit="spectra", initial=skip, total=total,
                 dynamic_ncols=True, disable=args.no_progress) as tq, \
            warnings.catch_warnings(record=True) as caught:
        bar = GrowingBar(tq, None)
        warnings.simplefilter("always")
        store.attrs["convert_inputs"] = key
        store.attrs["convert_done"] = False
        for batch in iter_read(files, batch_size=args.batch_size, grid=grid,
                               on_error=args.on_error):
            if skip >= len(batch):
                skip -= len(batch)
                continue
            if skip:
                batch, skip = batch[skip:], 0
            store.append(batch)
            n_written += len(batch)
            n_err += int(((batch.meta["INPUT_FLAGS"] & 16) != 0).sum())
            bar.update(len(batch))
        store.attrs["convert_done"] = True
    for w in caught:
        if "could not be read" in str(w.message):
            tqdm.write(f"warning: {w.message}")
    print(f"{out}: {n_written} spectra from {len(files)} file(s)"
          + (f", {n_err} unreadable (flagged READ_ERROR)" if n_err else ""))
    return 0
