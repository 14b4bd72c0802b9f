"""Several line models' problems stacked into one fit, each row keeping its own model.

Why: a quasar batch reaches its Hβ and Hα windows with a few dozen spectra each, and a
fit on so few rows is numpy-call bound (~1 ms an iteration whatever its rows), so each
window paid its own ~20 iterations.  The two windows' models have the same layout (a broad
core and wings, one narrow group, four amplitudes, a sloped background, bins of 2, a
±15000 km/s window) and differ only in their narrow lines' wavelengths, tie ratios and
which amplitude each line feeds — all things a row can carry for itself: its line centres
(``c0``) and bins already are per row, the ratios go into per-row constants
(:attr:`Problem.ratio` (N, L)) and the amplitudes into a per-row gather
(:attr:`Problem.amp_rows`); where the models sum a line's profile into different block
rows, each kind's rows are written their own way (:class:`PerKind`).

Every row gets the numbers its own model's separate fit gives it, bit for bit: each kind's
problem is built on its own (the separate fit's arrays, gathered from the same data), the
solver's rows are independent, every per-row array and constant is the separate fit's, and
an evaluation set's wider span (the union of the kinds' spans) only adds bins where a line
is exactly 0 (:meth:`~.profiles.ModelEvaluation._reaches` says why).  Where the kinds'
evaluation sets differ (a narrow line evaluated over the whole window for one kind, alone
for another), nothing is stacked: :class:`NotStackable`, and the caller fits them apart.
"""

from __future__ import annotations

import copy

import numpy as np

from .problem import Problem
from .scatter import PerKind

__all__ = ["NotStackable", "stack_problems"]


class NotStackable(ValueError):
    """The problems' geometry or evaluation sets differ: they cannot be one fit."""


#: what every stacked problem must share (per-row arrays aside): the parameter layout,
#: the windows' bins, the groups' bounds
_SHARED = ("m", "np", "ka", "kb", "ks", "ku", "bin", "step", "kms_pix", "t", "u_max",
           "scale", "group", "n_lin", "back_rows", "_step_lim")


def stack_problems(probs: list[Problem]) -> Problem:
    """One problem of the rows of ``probs`` in order, row r of kind k fitted as ``probs[k]``
    fits it.  The models' components must match one to one in group, scale and window
    (only wavelengths, ratios and amplitudes may differ), and so must every window's
    evaluation sets; else :class:`NotStackable`."""
    first = probs[0]
    if len(probs) == 1:
        return first
    for p in probs[1:]:
        _check_shared(first, p)
    out = copy.copy(first)
    for name in Problem._ROW_ATTRS:
        setattr(out, name, np.concatenate([_rows(p, getattr(p, name)) for p in probs]))
    out.n = sum(p.n for p in probs)
    L = first.ratio.size
    out.ratio = np.concatenate([np.broadcast_to(p.ratio, (p.n, L)) for p in probs])
    out.amp_rows = np.concatenate([np.broadcast_to(p.amp, (p.n, L)) for p in probs])
    out.kinds = np.repeat(np.eye(len(probs), dtype=bool), [p.n for p in probs], axis=0)
    out._ROW_ATTRS = Problem._ROW_ATTRS + ("ratio", "amp_rows", "kinds")
    out.sets = [_stacked_sets([p.sets[k] for p in probs]) for k in range(len(first.sets))]
    out.merged = out._merge_groups()
    out._consts = {}
    return out


def _rows(p: Problem, arr: np.ndarray) -> np.ndarray:
    """``arr`` with one row per spectrum of ``p`` (a per-group array broadcast)."""
    return arr if arr.shape[0] == p.n else np.broadcast_to(arr, (p.n,) + arr.shape[1:])


def _check_shared(a: Problem, b: Problem) -> None:
    for name in _SHARED:
        if not _same(getattr(a, name), getattr(b, name)):
            raise NotStackable(f"stacked problems differ in {name}")
    if len(a.blocks) != len(b.blocks) or any(
            sa != sb or not np.array_equal(ca, cb)
            for (sa, ca), (sb, cb) in zip(a.blocks, b.blocks)):
        raise NotStackable("stacked problems differ in their windows' parameter blocks")
    ma, mb = a.model, b.model
    same = [(c.group, c.region, c.scale) for c in ma.components] == \
        [(c.group, c.region, c.scale) for c in mb.components]
    bounds = [[(g.sigma0, g.sigma_max, g.v_max) for g in m.groups] for m in (ma, mb)]
    if not same or bounds[0] != bounds[1] or ma.full_steps != mb.full_steps \
            or ma.white_fixed_background != mb.white_fixed_background \
            or ma.templates != mb.templates or ma.slope != mb.slope:
        raise NotStackable("stacked models differ in more than their lines' wavelengths, "
                           "ratios and amplitudes")


def _same(x, y) -> bool:
    """Equal values, arrays compared element by element (and by shape)."""
    if isinstance(x, (list, tuple)):
        return (isinstance(y, (list, tuple)) and len(x) == len(y)
                and all(_same(u, v) for u, v in zip(x, y)))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.shape(x) == np.shape(y) and bool(np.array_equal(x, y))
    return x == y


def _stacked_sets(per_kind: list) -> list:
    """One window's evaluation sets for every kind: the same components (else
    :class:`NotStackable`), each set over the union of the kinds' bins, its block-row
    writes shared where every kind's are the same and :class:`PerKind` where not."""
    if len({len(s) for s in per_kind}) != 1:
        raise NotStackable("stacked problems differ in their evaluation sets")
    out = []
    for sets in zip(*per_kind):
        cs = sets[0][0]
        if any(not np.array_equal(s[0], cs) for s in sets):
            raise NotStackable("stacked problems differ in their evaluation sets")
        lo = min(s[1] for s in sets)
        hi = max(s[1] + s[2] for s in sets)
        rows = tuple(spec[0] if all(_same(spec[0], x) for x in spec[1:]) else PerKind(spec)
                     for spec in zip(*(s[3] for s in sets)))
        out.append((cs, lo, hi - lo, rows))
    return out
