"""File names with ANSI escapes, newlines or undecodable bytes never reach the terminal raw."""

from __future__ import annotations

import os

from _pipeline_data import HALPHA_STORE_GRID, make_model, make_store

from specsift.cli import main
from specsift.term import printable

EVIL = "x\x1b[2J\x1b[31mred\nspecsift: all 10 files read fine \u202eevil.fits"


def test_printable_escapes_controls_and_keeps_text():
    assert printable("a\x1b[31mb\nc\td\x7f\x9b") == "a\\x1b[31mb\\nc\\td\\x7f\\x9b"
    assert printable("Ångström λ 6563 Å, ☃") == "Ångström λ 6563 Å, ☃"
    assert printable("a\u202eb\u200fc") == "a\\u202eb\\u200fc"
    assert printable(os.fsdecode(b"spec-\xff.fits")) == "spec-\\xff.fits"   # would not print
    assert printable("abcdef", limit=4) == "abc…"


def test_info_and_predict_escape_a_hostile_file_name(tmp_path, capsys):
    bad = tmp_path / EVIL
    bad.write_bytes(b"SIMPLE  =  T" + b"\x00junk" * 40)
    rc = main(["info", str(bad)])
    out, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "\x1b" not in err + out and "\\x1b[2J" in err and "red\\nspecsift" in err

    store = make_store(tmp_path / "s.h5", 5, grid=HALPHA_STORE_GRID)
    model = make_model(tmp_path / "m.pt", window=True)
    rc = main(["predict", str(bad), str(store), "-o", str(tmp_path / "c.parquet"), "--model",
               str(model), "--no-progress", "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0 and "6 rows" in out
    assert "\x1b" not in err + out and "\u202e" not in err + out
    flagged = [ln for ln in err.splitlines() if "could not be read" in ln]
    assert len(flagged) == 1 and "red\\nspecsift" in flagged[0]   # one line, newline shown


def test_error_naming_a_file_is_one_escaped_line(tmp_path, capsys):
    rc = main(["predict", str(tmp_path / "no\nsuch\x1b[0m.fits"), "-o",
               str(tmp_path / "c.fits"), "--model", "vgg1d"])
    _, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "\x1b" not in err
