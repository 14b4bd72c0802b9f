"""The arrays one line fit works on: its geometry, data, weights and parameter bounds.

Why a module of its own: the fit's geometry (each spectrum's windows gathered into one
(N, M) array of bins at its redshift, the parameter columns each window touches, its
evaluation sets), its data and weights are one job; the model's profiles and Jacobian
(:mod:`.profiles`, which :class:`Problem` inherits) another; the Levenberg–Marquardt loop
(:mod:`.solver`) and the error propagation (:mod:`.fit`) others.
"""

from __future__ import annotations

import copy

import numpy as np

from .profiles import DT, GRAM, LINES, MERGED, REACH, SET, ModelEvaluation, n_below
from .scatter import first_writers, scatter_spec
from .table import C_KMS

__all__ = ["DT", "Problem", "bin_sum", "regions"]

_LN10 = np.log(10.0)


def bin_sum(x: np.ndarray) -> np.ndarray:
    """``x.sum(2)`` over the short last axis as a chain of slice additions: the same
    left-to-right float32 sum numpy does for fewer than 8 terms (bit for bit), at a
    quarter of the time (numpy's reduction over a 6-long inner axis pays a loop set-up
    per bin)."""
    out = x[..., 0] + x[..., 1]
    for j in range(2, x.shape[-1]):
        out += x[..., j]
    return out


def _bin_widths(loglam: np.ndarray, step: float, b: int, idx: np.ndarray) -> np.ndarray:
    """Width in Å of the bins of ``b`` pixels starting at pixels ``idx`` (pixels off the
    spectrum count as its edge pixel): one sum per possible start, then a gather (the
    (N, M, b) gather of pixel widths and its sum were a tenth of a window's set-up; every
    start before −b or past the end has the same clipped pixels as −b or the end)."""
    p = loglam.size
    dl = 10.0 ** loglam * (_LN10 * step)
    starts = np.arange(-b, p + 1)
    table = bin_sum(dl[np.clip(starts[:, None] + np.arange(b), 0, p - 1)])
    return table[np.clip(idx, -b, p) + b]


def regions(model, loglam: np.ndarray, z: np.ndarray):
    """First pixel (N, M) of every fit bin of every region at each redshift, and the
    regions' column slices."""
    start, step = loglam[0], loglam[1] - loglam[0]
    b = model.bin
    cols, slices, m0 = [], [], 0
    for lo, hi in model.regions:
        w = int(np.ceil(np.log10(hi / lo) / step / b)) + 1
        i0 = np.floor((np.log10(lo) + np.log10(1 + z) - start) / step).astype(np.int64)
        cols.append(i0[:, None] + b * np.arange(w)[None, :])
        slices.append(slice(m0, m0 + w))
        m0 += w
    return np.concatenate(cols, axis=1), slices


def _pixels(arr: np.ndarray, idx: np.ndarray, slices, b: int, rows=None) -> np.ndarray:
    """``arr`` (N, P) — or its rows ``rows`` (N,) of a larger array — at the b pixels of
    every fit bin of :func:`regions` (first pixels ``idx`` (N, M)), 0 off the spectrum:
    (N, M, b).  A window's pixels are one contiguous run per spectrum, so rows whose window
    lies inside the spectrum (nearly all) are copied as runs; a fancy-indexed gather of
    every pixel was a tenth of a fit's set-up."""
    n, p = idx.shape[0], arr.shape[1]
    out = np.empty((n, idx.shape[1] * b), arr.dtype)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    for sl in slices:
        width = b * (sl.stop - sl.start)
        i0 = idx[:, sl.start]
        dst = out[:, b * sl.start:b * sl.stop]
        ok = (i0 >= 0) & (i0 + width <= p)
        if ok.any():
            runs = np.lib.stride_tricks.sliding_window_view(arr, width, axis=1)
            dst[ok] = runs[rows[ok], i0[ok]]
        if not ok.all():
            fine = i0[~ok, None] + np.arange(width)
            inside = (fine >= 0) & (fine < p)
            dst[~ok] = np.where(inside, arr[rows[~ok, None], np.clip(fine, 0, p - 1)], 0)
    return out.reshape(n, -1, b)


class Problem(ModelEvaluation):
    """The arrays one fit needs, gathered once: data, weights and geometry of the windows."""

    def __init__(self, model, loglam, resid, ivar, z, sigma_inst, extra=None, rows=None):
        # ``rows``: the rows of ``resid`` / ``ivar`` to fit (default all; a quasar window's
        # subset gathered here, its pixels only, not copied whole first)
        p = resid.shape[1]
        n = resid.shape[0] if rows is None else len(rows)
        self.model = model
        self.step = loglam[1] - loglam[0]
        self.kms_pix = C_KMS * _LN10 * self.step
        idx, self.slices = regions(model, loglam, z)
        self.idx = idx
        self.bin = b = model.bin
        self.x = idx.astype(DT)
        resid, ivar = np.asarray(resid), np.asarray(ivar)
        if b == 1:
            ic = np.clip(idx, 0, p - 1)
            self.y = _pixels(resid, idx, self.slices, 1, rows)[..., 0].astype(DT)
            self.w = _pixels(ivar, idx, self.slices, 1, rows)[..., 0].astype(DT)
            self.inv_dlam = (1.0 / (10.0 ** loglam * _LN10 * self.step))[ic].astype(DT)  # 1/Å
        else:
            # a bin: ivar-weighted mean of its pixels, weight the sum of their ivars; the
            # model is the line's integral over the whole bin / the bin's width in Å
            wf = _pixels(ivar, idx, self.slices, b, rows)
            self.w = bin_sum(wf).astype(DT)
            yw = bin_sum(wf * _pixels(resid, idx, self.slices, b, rows))
            self.y = np.where(self.w > 0, yw / np.where(self.w > 0, self.w, 1), 0).astype(DT)
            self.inv_dlam = (1.0 / _bin_widths(loglam, self.step, b, idx)).astype(DT)
        start = loglam[0]
        self.c0 = np.stack([(np.log10(c.wave) + np.log10(1 + z) - start) / self.step
                            for c in model.components], axis=1).astype(DT)   # (N, L) pixels
        # instrumental σ (pixels) at each component's centre: scalar, (N,), (P,) or (N, P)
        # (read at the centres first, then scaled: scaling a broadcast (N, P) view first
        # materialised it, a tenth of the problem's set-up)
        si = np.asarray(sigma_inst)
        cpix = np.clip(np.rint(self.c0).astype(np.int64), 0, p - 1)
        if si.ndim == 2:
            si = si[np.arange(n)[:, None], cpix]
        elif si.ndim == 1 and si.size == p and p != n:
            si = si[cpix]
        else:
            si = np.broadcast_to(np.reshape(si, (-1, 1)) if si.ndim else si, self.c0.shape)
        self.s_inst_l = np.asarray(si, float) / self.kms_pix
        g = len(model.groups)
        self.n, self.m = n, idx.shape[1]
        self.ka, self.kb = model.n_amp, model.n_back
        self.ks = self.ka + self.kb
        self.ku = self.ks + g
        self.np = self.ku + g
        self.t = np.concatenate([np.linspace(-1, 1, sl.stop - sl.start)
                                 for sl in self.slices]).astype(DT)
        self.s_inst_l = np.ascontiguousarray(self.s_inst_l, dtype=DT)
        n_t = len(model.templates)
        self.extra = (np.zeros((n, self.m, 0), DT) if not n_t else
                      np.ascontiguousarray(extra, dtype=DT))
        if self.extra.shape != (n, self.m, n_t):
            raise ValueError(f"extra: {self.extra.shape} for {n} spectra × {self.m} bins × "
                             f"{n_t} templates")
        comps = model.components
        self.scale = np.array([c.scale for c in comps], DT)
        self.ratio = np.array([c.ratio for c in comps], DT)
        self.group = np.array([c.group for c in comps], np.int64)
        self.amp = np.array([c.amp for c in comps], np.int64)
        self.blocks = self._blocks()
        #: leading rows of each window's block that are linear parameters (cols sorted)
        self.n_lin = [n_below(cols, self.ks) for _, cols in self.blocks]
        self.lin_groups = self._lin_groups()
        self.merged = self._merge_groups()
        self._consts = {}                                    # per evaluation set
        # group widths are intrinsic σ in pixels; a line's width adds its instrument's σ
        self.s_min = np.full((n, g), 0.02)
        self.s_max = np.broadcast_to(np.array([gr.sigma_max for gr in model.groups])
                                     / self.kms_pix, (n, g))
        self.u_max = np.array([gr.v_max for gr in model.groups]) / self.kms_pix
        self.s_start = np.broadcast_to(np.array([gr.sigma0 for gr in model.groups])
                                       / self.kms_pix, (n, g)).copy()
        u = np.broadcast_to(self.u_max, (n, g))
        self.lo = np.concatenate([self.s_min, -u], 1)
        self.hi = np.concatenate([self.s_max, u], 1)
        #: (N, G) narrowest instrumental σ (pixels) of each group's lines
        self.inst_min = np.full((n, g), np.inf)
        for j, c in enumerate(model.components):
            self.inst_min[:, c.group] = np.minimum(self.inst_min[:, c.group],
                                                   self.s_inst_l[:, j])
        self.inst_min[~np.isfinite(self.inst_min)] = 0.0
        self._inst_min2 = self.inst_min ** 2
        # the bounds less / plus 1e-6 of their range: a parameter there sits at its bound
        # (:meth:`inner_bounds`)
        tol = 1e-6 * (self.hi - self.lo)
        self._lo_in, self._hi_in = self.lo + tol, self.hi - tol
        self._step_lim = np.repeat([self.STEP_WIDTH, self.STEP_VELOCITY], g)

    #: the attributes holding one row per spectrum (everything else is the windows'
    #: geometry, the same for every row); :meth:`take` slices these
    _ROW_ATTRS = ("idx", "x", "y", "w", "inv_dlam", "c0", "s_inst_l", "extra", "s_min",
                  "s_max", "s_start", "lo", "hi", "inst_min", "_inst_min2", "_lo_in", "_hi_in")

    def take(self, rows: np.ndarray) -> "Problem":
        """The same problem for the spectra ``rows`` only (a shallow copy with every
        per-row array and the evaluation constants sliced, :func:`_take_constants`): the
        fit's active set, so that rows which have converged stop costing."""
        sub = copy.copy(self)
        for name in self._ROW_ATTRS:
            arr = getattr(self, name)
            setattr(sub, name, arr[rows] if arr.shape[0] == self.n else arr)
        sub.n = len(rows)
        sub._consts = _take_constants(self._consts, rows)
        return sub

    def _blocks(self):
        """(slice, parameter columns) of each region: the only parameters whose Jacobian
        is non-zero on its pixels (its lines' amplitudes, widths and velocities, its
        background), so that the Jacobian is stored as one small dense block per window
        and JᵀWJ is a sum of small blocks (a galaxy's 19 × 19 normal matrix is ~7 × 7 per
        window: fourteen times fewer products).  Also, per region, its components and the
        (3L, Q) matrix saying which block row each component's profile, width and centre
        derivative is summed into (:meth:`_sets` turns it into the rows each evaluation
        set writes)."""
        mdl = self.model
        out, self.comp_of, self.sets, self.back_rows = [], [], [], []
        n_t = len(mdl.templates)
        for k, sl in enumerate(self.slices):
            col = self.ka + (2 * k if mdl.slope else k)
            cols = {col, col + 1} if mdl.slope else {col}
            cols |= set(range(self.ks - n_t, self.ks))                   # template terms
            comps = [j for j, c in enumerate(mdl.components) if c.region == k]
            for j in comps:
                c = mdl.components[j]
                cols |= {c.amp, self.ks + c.group, self.ku + c.group}
            cols = np.array(sorted(cols))
            pos = {int(q): i for i, q in enumerate(cols)}
            L = len(comps)
            mix = np.zeros((3 * L, cols.size), DT)
            for i, j in enumerate(comps):
                c = mdl.components[j]
                mix[i, pos[c.amp]] += 1.0
                mix[L + i, pos[self.ks + c.group]] += 1.0
                mix[2 * L + i, pos[self.ku + c.group]] += 1.0
            out.append((sl, cols))
            self.comp_of.append(np.array(comps, np.int64))
            self.sets.append(first_writers(self._sets(sl, comps, mix)))
            back = [pos[col]] + ([pos[col + 1]] if mdl.slope else [])
            self.back_rows.append(back + [pos[q] for q in range(self.ks - n_t, self.ks)])
        return out

    def _lin_groups(self):
        """The linear parameters split into the sets no pixel couples (the windows that
        share none of them: a galaxy's six windows each have their own lines and
        background), each an index array.  Every linear parameter is in some window (each
        line and background term belongs to one), so the sets cover them all:
        :func:`.linear._block_inverse` relies on it.
        Their normal matrix is block diagonal along these sets, so it is inverted block
        by block (a galaxy's 15 × 15 inverse was a tenth of its fit)."""
        sets = []
        for (_, cols), nl in zip(self.blocks, self.n_lin):
            new = set(int(c) for c in cols[:nl])
            for old in [t for t in sets if t & new]:
                sets.remove(old)
                new |= old
            sets.append(new)
        return [np.array(sorted(t), np.int64) for t in sets if t]

    def _sets(self, sl, comps, mix):
        """Window k's components in evaluation sets (components, first bin, bins, mix
        rows): the lines that can be anywhere in the window together over all of it, and
        each narrow line of a wide window (a quasar's [O III] or narrow Hα in its ±15000
        km/s window) alone over the bins within 8 σ of anywhere its centre may go (at
        the largest width allowed): beyond that its profile is 0 in float32, and
        evaluating it over the whole window was a third of a low-z quasar's fit."""
        w = sl.stop - sl.start
        L = len(comps)
        full, out = [], []
        for i, j in enumerate(comps):
            c = self.model.components[j]
            gr = self.model.groups[c.group]
            s_max = np.hypot(c.scale * gr.sigma_max / self.kms_pix, self.s_inst_l[:, j].max())
            reach = (8.0 * s_max + gr.v_max / self.kms_pix) / self.bin + 2.0       # bins
            rel = (self.c0[:, j] - self.x[:, sl.start] + 0.5) / self.bin         # bins
            lo = int(max(np.floor(rel.min() - reach), 0))
            hi = int(min(np.ceil(rel.max() + reach) + 1, w))
            if hi - lo < 0.7 * w:
                out.append((np.array([j]), lo, hi - lo,
                            scatter_spec(mix[[i, L + i, 2 * L + i]], 1)))
            else:
                full.append(i)
        if full:
            f = np.array(full)
            out.insert(0, (np.asarray(comps)[f], 0, w,
                           scatter_spec(mix[np.concatenate([f, L + f, 2 * L + f])], f.size)))
        return out

    def _merge_groups(self):
        """Which evaluation sets :meth:`_all_profiles` evaluates together: every narrow
        line of a wide window (single lines, sub-ranges of ~35 bins, :meth:`_reaches`) in
        one group, and the other sets greedily by width, a set joining a group while the
        group's padded size stays within 1.1 × its sets' own."""
        narrow, wide = [], []
        for k, (sl, _) in enumerate(self.blocks):
            for e, (cs, _, ws, _) in enumerate(self.sets[k]):
                (narrow if ws < sl.stop - sl.start else wide).append((ws, cs.size, (k, e)))
        groups = [[key for _, _, key in narrow]] if narrow else []
        cur, area, lines, width = [], 0, 0, 0
        for ws, nl, key in sorted(wide, key=lambda t: -t[0]):
            if cur and (lines + nl) * max(width, ws) > 1.1 * (area + nl * ws):
                groups.append(cur)
                cur, area, lines, width = [], 0, 0, 0
            cur.append(key)
            area, lines, width = area + nl * ws, lines + nl, max(width, ws)
        if cur:
            groups.append(cur)
        return groups

    def prior(self):
        """Weak Gaussian priors on width and velocity (keep them defined for absent lines)."""
        g = len(self.model.groups)
        prec = np.zeros((self.n, self.np))
        mean = np.zeros((self.n, self.np))
        prec[:, self.ks:self.ku] = 1.0 / self.s_start ** 2          # 100 % of the start width
        mean[:, self.ks:self.ku] = self.s_start
        prec[:, self.ku:] = 1.0 / (0.5 * np.maximum(self.u_max, 1.0)[None, :]) ** 2
        return prec, mean, g

    #: largest move of one step, in units of each group's total width (intrinsic ⊕ the
    #: narrowest instrumental σ of its lines): a width by half of it, a velocity by all
    STEP_WIDTH, STEP_VELOCITY = 0.5, 1.0

    def step_bound(self, theta, step):
        """(N,) factor ≤ 1 that shortens each row's width/velocity ``step`` (N, 2G) to
        the largest move :data:`STEP_WIDTH` / :data:`STEP_VELOCITY` allow.

        Why: with the amplitudes solved at every trial (variable projection), a
        Gauss–Newton step of a broad line's width taken where its core and wing
        amplitudes nearly cancel is far outside where the linearisation holds (it can
        jump to the width floor, where the broad line vanishes and the width has no
        gradient, and the fit ends far above its minimum).  Bounded steps keep the
        direction and come back to it."""
        s = theta[:, self.ks:self.ku]
        w = np.sqrt(s * s + self._inst_min2)                                   # (N, G)
        over = np.abs(step) / (np.concatenate([w, w], axis=1) * self._step_lim)
        return 1.0 / np.maximum(over.max(1), 1.0)

    def bounds(self):
        """(low, high) (N, 2G) of the widths and velocities (:meth:`clamp`'s)."""
        return self.lo, self.hi

    def inner_bounds(self):
        """:meth:`bounds` moved in by 1e-6 of their range: a width or velocity at or past
        them sits at its bound (:func:`.solver._held_at_bounds`); made once, not at every
        step."""
        return self._lo_in, self._hi_in

    def clamp(self, theta):
        theta[:, self.ks:] = np.minimum(np.maximum(theta[:, self.ks:], self.lo), self.hi)
        return theta


def _take_constants(consts: dict, rows) -> dict:
    """The cached constants of :meth:`~.profiles.ModelEvaluation._set_constants` and
    ``_merged_constants`` for the rows ``rows`` only (each per-row array sliced; the
    gram's places, which depend on the number of rows, are left to be made again), by
    the tag their key starts with; a kind without a rule here is an error, not a guess.

    Why: the fit re-slices its problem each time a tenth of its rows, and at least
    :data:`.solver.RESLICE_MIN`, have converged, and making every set's constants afresh
    was most of the lookups' misses (a galaxy's six windows, at every re-slice); slicing
    gives the same numbers."""
    out = {}
    for key, val in consts.items():
        if key[0] == GRAM:
            continue
        if key[0] == SET:                                  # (edges, ½ ratio / bin width)
            out[key] = (val[0][rows], val[1][rows])
        elif key[0] == MERGED:                             # (components, edges, cst, rows)
            out[key] = (val[0], val[1][rows], val[2][rows], val[3])
        elif key[0] == LINES:                     # (scale, columns, columns, σ_inst², c0)
            out[key] = val[:3] + (val[3][rows], val[4][rows])
        elif key[0] == REACH:                              # (line constants, first bins)
            out[key] = (val[0][:3] + (val[0][3][rows], val[0][4][rows]), val[1][rows])
        else:
            raise KeyError(f"no rule to slice the cached constants {key[0]!r} to rows")
    return out

