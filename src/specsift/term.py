"""Text safe to print on a terminal: file names and messages with control characters escaped.

Why: a file name is any byte string.  Printed raw, an ANSI escape sequence in one can
recolour or rewrite the terminal (or hide the line that names it), a newline can forge a
second, innocent-looking message, a right-to-left override can reverse what is shown, and an
undecodable byte (a surrogate after ``os.fsdecode``) makes ``print`` raise.  Every message
the command line prints goes through :func:`printable`, which shows such characters as Python
escapes (``\\x1b``, ``\\n``, ``\\u202e``) and leaves all other text, accents included, as is.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

#: Unicode format characters that reorder or hide text (bidi controls, zero-width marks)
_INVISIBLE = {0x200B, 0x200E, 0x200F, 0x061C, 0xFEFF, *range(0x202A, 0x202F),
              *range(0x2066, 0x206A)}


def _escape(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:                  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def printable(text, limit: int | None = None) -> str:
    """``text`` (any object, via str) with control, bidi and surrogate characters escaped;
    cut to ``limit`` characters (with …) when given."""
    s = str(text)
    out = "".join(_escape(c) if (unicodedata.category(c) in ("Cc", "Cs")
                                 or ord(c) in _INVISIBLE) else c for c in s)
    if limit is not None and len(out) > limit:
        out = out[:max(limit - 1, 0)] + "…"
    return out
