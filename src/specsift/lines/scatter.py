"""How an evaluation set's profiles are written into the rows of its window's Jacobian
block: which block rows each set's profiles and width and centre derivatives are summed
into (made once per problem: :func:`scatter_spec`, :func:`first_writers`), and the writes
themselves (:func:`summed_into`; :func:`blend_into` where a stacked problem's kinds write
different rows, :mod:`.stack`).

Why a module of its own: the problem (:mod:`.problem`) makes these lists and the
evaluation (:mod:`.profiles`) follows them; both were past 400 lines.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["PerKind", "scatter_spec", "first_writers", "summed_into", "blend_into"]


class PerKind(tuple):
    """One evaluation set's block-row writes that differ between the kinds of a stacked
    problem (:mod:`.stack`): per kind, its own (block row, components, first writer) list,
    applied to that kind's rows only (:func:`blend_into`)."""


def first_writers(sets):
    """A window's evaluation sets with each (block row, components) of their scatter
    lists marked True where it is the first to write that row (in the order
    :meth:`~.profiles.ModelEvaluation.linear_design` and ``complete`` go: set by set,
    profiles, width then centre derivatives): the rows start as zeros, so the first
    writer stores its sum instead of adding it (:func:`summed_into`)."""
    seen, out = set(), []
    for cs, off, ws, rows in sets:
        marked = []
        for spec in rows:
            marked.append(tuple((q, sel, q not in seen) for q, sel in spec))
            seen.update(q for q, _ in spec)
        out.append((cs, off, ws, tuple(marked)))
    return out


def scatter_spec(mix, L: int):
    """Which block rows a set of L components writes, from its (3L, Q) 0/1 matrix (rows:
    the L profiles, the L width derivatives, the L centre derivatives): for each of the
    three, a list of (block row, components summed into it), the components an int when
    one, else a slice or an index array.  Made once per matrix (:func:`_spec_of`: a
    model's sets are the same in every batch, and making them was a sixth of a fit's
    set-up); the lists are only read."""
    mix = np.ascontiguousarray(mix)
    return _spec_of(mix.tobytes(), mix.shape, mix.dtype.str, L)


@lru_cache(maxsize=256)
def _spec_of(data: bytes, shape: tuple, dtype: str, L: int):
    """:func:`scatter_spec` of the matrix with these bytes, shape and dtype."""
    mix = np.frombuffer(data, dtype).reshape(shape)
    out = []
    for t in range(3):
        part = mix[t * L:(t + 1) * L]
        spec = []
        for q in np.flatnonzero(part.any(0)):
            sel = np.flatnonzero(part[:, q])
            if sel.size == 1:
                spec.append((int(q), int(sel[0])))
            elif np.all(np.diff(sel) == 1):
                spec.append((int(q), slice(int(sel[0]), int(sel[-1]) + 1)))
            else:
                sel.flags.writeable = False               # shared by every cached use
                spec.append((int(q), sel))
        out.append(tuple(spec))
    return tuple(out)


def _summed(arr, sel, amp):
    """Σ over components ``sel`` of ``arr`` (N, L, W), each times its amplitude ``amp``
    (N, L) when given: the block row those components add to."""
    if isinstance(sel, int):
        return arr[:, sel] if amp is None else arr[:, sel] * amp[:, sel, None]
    if amp is None:
        return arr[:, sel].sum(1)
    return np.matmul(amp[:, None, sel], arr[:, sel])[:, 0]


def summed_into(dst, arr, sel, amp, first: bool):
    """:func:`_summed` added to the block row ``dst`` (N, W) — or, by the row's first
    writer (``first``: the row is still the zeros :meth:`.profiles.ModelEvaluation._new_block` made), written
    straight into it: one pass over the row and no temporary instead of two and one."""
    if not first:
        dst += _summed(arr, sel, amp)
    elif isinstance(sel, int):
        if amp is None:
            dst[...] = arr[:, sel]
        else:
            np.multiply(arr[:, sel], amp[:, sel, None], out=dst)
    elif amp is None:
        np.sum(arr[:, sel], axis=1, out=dst)
    else:              # (a matmul into a strided row may take another kernel: other rounding)
        dst[...] = np.matmul(amp[:, None, sel], arr[:, sel])[:, 0]


def blend_into(seg, arr, per_kind, amp, kinds):
    """A stacked problem's block-row writes that differ between its kinds
    (:class:`PerKind`): each kind's own writes (as :func:`summed_into` makes
    them) on its rows only, the other rows left as they are."""
    for k, spec in enumerate(per_kind):
        mine = kinds[:, k, None]
        for q, sel, first in spec:
            new = _summed(arr, sel, amp)
            seg[:, q] = np.where(mine, new if first else seg[:, q] + new, seg[:, q])
