"""Values derived from a template array, cached by the array's identity.

The verification fit derives several tables from each template basis (binned copies, products
TᵢTⱼ, shifted frames, resolution-broadened copies).  The bases are immutable arrays shared by
every batch, so the derived tables are built once and looked up by ``id(array)``: hashing the
array's bytes on every call would cost more than some of the fits.  An entry keeps a
reference to its array, so the id cannot be reused by another array while the entry lives,
and the cache is bounded (least recently used out), so a long run over many resolutions or
bases keeps constant memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["IdentityCache"]


class IdentityCache:
    """``get(array, extra, build)``: the value for (``array``, ``extra``), made by
    ``build(old)`` where there is none yet or ``valid(value)`` says the cached one no longer
    serves (``old`` is then the stale value, else None)."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, array, extra, build, valid=None):
        key = (id(array), extra)
        with self._lock:
            hit = self._d.get(key)
            if hit is not None and hit[0] is array:
                self._d.move_to_end(key)
                if valid is None or valid(hit[1]):
                    return hit[1]
        value = build(None if hit is None or hit[0] is not array else hit[1])
        with self._lock:
            self._d[key] = (array, value)
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._d)
