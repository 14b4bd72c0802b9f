"""Text that leaves the labelling server: to a terminal and into spreadsheet cells.

A file name may hold ANSI escape sequences or newlines (they could rewrite a terminal or
forge a log line): :func:`printable` is the package's one escaper (:mod:`specsift.term`).
A label export opened in a spreadsheet runs any cell that starts like a formula:
:func:`csv_cell` neutralises those.
"""

from __future__ import annotations

from ..term import printable

__all__ = ["printable", "csv_cell"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: strings starting with = + - @ (or a tab or
    CR, which some spreadsheets skip before a formula) get a leading apostrophe, as OWASP
    recommends.  Numbers are written as numbers (a negative number is not a formula)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
