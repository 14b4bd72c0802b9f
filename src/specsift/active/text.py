"""Text that leaves the program: to a terminal and into spreadsheet cells.

A file name may hold ANSI escape sequences or newlines (``ls`` of a hostile directory
can rewrite a terminal, fake a log line or hide one); a label export opened in a
spreadsheet runs any cell that starts like a formula.  Both are neutralised here, once,
for everything the labelling server prints or exports.
"""

from __future__ import annotations

__all__ = ["printable", "csv_cell"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def printable(text) -> str:
    """``text`` with control and other non-printable characters (ESC, CR, LF, BEL, the
    C1 range, bidi overrides) written as ``\\xNN``/``\\uNNNN`` escapes."""
    out = []
    for ch in str(text):
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: strings starting with = + - @ (or a tab or
    CR, which some spreadsheets skip before a formula) get a leading apostrophe, as OWASP
    recommends.  Numbers are written as numbers (a negative number is not a formula)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
