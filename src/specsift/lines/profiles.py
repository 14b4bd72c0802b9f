"""The line model on a :class:`~.problem.Problem`'s bins: profiles, model and Jacobian.

Why a module of its own (split from :mod:`.problem`, which was past 600 lines doing two
jobs): the erf/exp profiles of every evaluation set, the linear design they make, the model
and its block-sparse Jacobian, and the normal matrices built from its blocks are the
evaluation; :mod:`.problem` gathers the data and geometry it runs on.  :class:`Problem`
inherits :class:`ModelEvaluation`; the attributes used here (``blocks``, ``sets``,
``merged``, ``comp_of``, ``n_lin`` …) are made there.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .scatter import PerKind, blend_into, summed_into

try:                                # the clip ufunc itself: np.clip's wrapper costs ~5 µs
    from numpy._core.umath import clip as _clip
except ImportError:                                   # pragma: no cover
    _clip = np.clip

__all__ = ["DT", "ModelEvaluation", "integrated"]


#: tags of the ``_consts`` cache's keys (each key is (tag, …)):
#: :meth:`ModelEvaluation._set_constants`, ``_merged_constants``, ``_gram_index``,
#: ``_line_constants`` and ``_reach_constants``; :func:`.problem._take_constants` slices
#: each kind by its tag
SET, MERGED, GRAM, LINES, REACH = "set", "merged", "gram", "lines", "reach"

#: |(edge − centre) / (σ√2)| beyond which a profile's wing is held at its value there
#: (erf(5.5) = 1 in float32, exp(−5.5²) = 7e-14): keeps subnormals out of the fit
_V_MAX = np.float32(5.5)
_SQRT2 = np.float32(np.sqrt(2.0))
#: σ from a narrow line's centre beyond which its bins are exact zeros (> _V_MAX √2 = 7.78)
_REACH = np.float32(8.0)
#: working precision of the model and Jacobian (the normal equations are solved in float64)
DT = np.float32


def _erf(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array through torch (vectorised: 1.4 ns an element against scipy's
    20, which was half the line stage; equal to float32 rounding)."""
    try:
        import torch
    except ImportError:                                   # pragma: no cover
        return erf(x)
    return torch.erf(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _edges(first, width: int, b: int = 1):
    """Bin edges (pixels) of ``width`` consecutive bins of ``b`` pixels from pixel ``first``
    (N, 1, 1): (N, 1, width + 1)."""
    return (first - DT(0.5)) + DT(b) * np.arange(width + 1, dtype=DT)


def integrated(first, width, c, s, b: int = 1):
    """Unit Gaussian of centre c and width s (pixels) integrated over each of ``width``
    consecutive bins of ``b`` pixels from pixel ``first`` (N, 1): erf at the W+1 shared
    edges only."""
    E = _erf((_edges(first, width, b) - c) / s / _SQRT2)
    return 0.5 * (E[..., 1:] - E[..., :-1])


class ModelEvaluation:
    """The model's evaluation on a :class:`~.problem.Problem` (a mixin: no state of its
    own but the cache ``_consts``, keyed by :data:`SET`, :data:`MERGED` or :data:`GRAM`
    first: the per-set and merged groups' constants and the gram's index)."""

    #: a stacked problem's (:mod:`.stack`) per-row amplitude of each component (N, L)
    #: and each row's kind (N, K); None in a problem of one model
    amp_rows = kinds = None

    def gram(self, J, r=None, limit=None):
        """JᵀWJ (N, P, P) and, if ``r``, JᵀW r (N, P) in float64 from the Jacobian's
        blocks (:meth:`evaluate`); ``limit``: only parameters < limit (the linear start).

        Several windows' products are summed into their parameters' places in one
        ``np.bincount`` (:meth:`_gram_index`), not one fancy-indexed ``+=`` per window
        (a third of a galaxy's gram): it adds each place's terms in the same order, window
        by window from 0, so the sums are the same bit for bit."""
        n, P = self.n, self.np if limit is None else limit
        one = len(self.blocks) == 1
        parts_h, parts_g = [], []
        for k, ((sl, cols), Jr) in enumerate(zip(self.blocks, J)):
            if limit is not None:                 # ``cols`` is sorted: a prefix
                nk = self.n_lin[k] if limit == self.ks else n_below(cols, limit)
                cols, Jr = cols[:nk], Jr[:, :nk]
            one = one and cols.size == P
            Jw = Jr * self.w[:, None, sl]
            # batched matmuls, not einsum: numpy's einsum on these shapes was 15× slower
            parts_h.append(np.matmul(Jw, Jr.transpose(0, 2, 1)))
            if r is not None:
                parts_g.append(np.matmul(Jw, r[:, sl, None].astype(DT, copy=False))[..., 0])
        if one:                                                          # one window: dense
            return (parts_h[0].astype(float),
                    parts_g[0].astype(float) if r is not None else None)
        idx_h, idx_g = self._gram_index(limit)
        H = np.bincount(idx_h, np.concatenate([h.reshape(n, -1) for h in parts_h], 1).ravel(),
                        minlength=n * P * P).reshape(n, P, P)
        g = (np.bincount(idx_g, np.concatenate(parts_g, 1).ravel(), minlength=n * P)
             .reshape(n, P) if r is not None else None)
        return H, g

    def _gram_index(self, limit):
        """(flat (N·ΣQ²,) and (N·ΣQ,) places in the (N, P, P) normal matrix and the (N, P)
        gradient of every window's products, rows in order) for :meth:`gram`, made on
        first use."""
        key = (GRAM, limit)
        hit = self._consts.get(key)
        if hit is None:
            P = self.np if limit is None else limit
            cs = [cols[:n_below(cols, limit)] for _, cols in self.blocks]
            fh = np.concatenate([(c[:, None] * P + c[None, :]).ravel() for c in cs])
            fg = np.concatenate(cs)
            rows = np.arange(self.n)[:, None]
            hit = self._consts[key] = ((rows * (P * P) + fh).ravel(), (rows * P + fg).ravel())
        return hit

    def evaluate(self, theta, jac=True):
        """Model (N, M) and, if ``jac``, the Jacobian as a list of per-window blocks
        (N, Q_k, W_k): row q is the derivative in parameter ``cols[q]`` of :attr:`blocks`
        over the window's bins.

        Why blocks, one call per window and rows along the bins: every component of a
        window is evaluated in one (N, L, W) erf/exp call, and its profile and its width
        and centre derivatives are summed straight into the contiguous rows of the block
        they belong to (:func:`.scatter.scatter_spec`) — only the rows a line touches are
        written, where a (N, W, Q) block filled by a matmul with a 0/1 matrix wrote every
        column of every bin (a quasar's narrow line, 3 non-zero columns of 10, paid for all
        10), and a component-by-component loop writing strided columns of a dense (N, M, P)
        Jacobian was most of the fit's time before that.

        The fit's joint steps call it; its projected steps go through :meth:`profiles`,
        :meth:`linear_design` and :meth:`complete` (the linear parameters solved between the
        last two).  ``jac=False`` (the model alone, ``None`` for the blocks) is for callers
        that only draw the model: the tests' finite differences and noiseless spectra."""
        profs = self.profiles(theta)
        out, blocks = self.complete(theta, profs, self.linear_design(profs), jac)
        return out, blocks if jac else None

    def profiles(self, theta):
        """Every evaluation set's unit-amplitude profiles and their width and centre
        derivatives at ``theta``'s widths and velocities (:meth:`_all_profiles`): the
        erf/exp work of an evaluation, which the linear parameters do not enter."""
        return self._all_profiles(np.asarray(theta).astype(DT))

    def linear_design(self, profs):
        """Per window the Jacobian block (N, Q, W) with the rows of the linear parameters
        filled — each amplitude's summed profiles, the background and template terms —
        and the width and velocity rows zero: the model is linear in those parameters
        with these rows as its design (:attr:`n_lin` leading rows of each block)."""
        blocks = []
        for k, (sl, cols) in enumerate(self.blocks):
            blk = self._new_block(k, sl, cols)
            for e, (_, _, _, rows) in enumerate(self.sets[k]):
                off, ws, (prof, _, _) = profs[k, e]
                seg = blk[:, :, off:off + ws]
                if type(rows[0]) is PerKind:
                    blend_into(seg, prof, rows[0], None, self.kinds)
                    continue
                for q, sel, first in rows[0]:
                    summed_into(seg[:, q], prof, sel, None, first)
            blocks.append(blk)
        return blocks

    def complete(self, theta, profs, blocks, jac=True):
        """Model (N, M) at ``theta`` from the linear rows of ``blocks``
        (:meth:`linear_design` at the same profiles: one matmul per window), and, if
        ``jac``, the width and velocity rows added in place (they scale with the
        amplitudes): ``blocks`` becomes the full Jacobian."""
        theta = np.asarray(theta).astype(DT)
        out = np.empty((self.n, self.m), DT)
        # each component's amplitude: θ's columns, or in a stacked problem each row's own
        amps = theta if self.amp_rows is None else \
            theta[np.arange(self.n)[:, None], self.amp_rows]                   # (N, L)
        index = self.amp if self.amp_rows is None else np.arange(self.amp.size)
        for k, (sl, cols) in enumerate(self.blocks):
            blk, nl = blocks[k], self.n_lin[k]
            out[:, sl] = np.matmul(theta[:, None, cols[:nl]], blk[:, :nl])[:, 0]
            if not jac:
                continue
            for e, (cs, _, _, rows) in enumerate(self.sets[k]):
                off, ws, (_, xs, xc) = profs[k, e]
                a = amps[:, index[cs]]                                          # (N, L)
                seg = blk[:, :, off:off + ws]
                for arr, spec in ((xs, rows[1]), (xc, rows[2])):
                    if type(spec) is PerKind:
                        blend_into(seg, arr, spec, a, self.kinds)
                        continue
                    for q, sel, first in spec:
                        summed_into(seg[:, q], arr, sel, a, first)
        return out, blocks

    def _all_profiles(self, theta):
        """{(window, set): (first bin, bins, (profile, width and centre derivatives))} of
        every evaluation set at ``theta``, the sets of one :attr:`merged` group in one
        (N, L, W) call (:meth:`_profiles_at`).

        Why merged: a galaxy's six windows hold 1–3 lines over 30–80 bins each, and a
        quasar's narrow lines ~35 bins each, so most of the time of their ~25 numpy
        calls per set was the calls' own cost, not the arrays' (a galaxy fit of 2
        spectra cost 16 ms, of 300: 77).  A group's lines are stacked along L, each with
        its own bin edges, the shorter sets padded to the longest (their padding is
        never read)."""
        out = {}
        for grp in self.merged:
            spans = [self.sets[k][e][1:3] for k, e in grp]
            narrow = [i for i, (k, e) in enumerate(grp)    # narrow lines: where they are now
                      if self.sets[k][e][2] < self.blocks[k][0].stop - self.blocks[k][0].start]
            if narrow:
                cut = self._reaches(theta, [(self.sets[grp[i][0]][grp[i][1]][0],
                                             self.blocks[grp[i][0]][0].start) + spans[i]
                                            for i in narrow])
                for i, span in zip(narrow, cut):
                    spans[i] = span
            if len(grp) == 1:
                (k, e), (off, ws) = grp[0], spans[0]
                edges, cst = self._sub_constants(k, e, off, ws)
                out[k, e] = (off, ws, self._profiles_at(theta, self.sets[k][e][0], edges, cst))
                continue
            cs, edges, cst, pos = self._merged_constants(grp, tuple(spans))
            prof, xs, xc = self._profiles_at(theta, cs, edges, cst)
            for (k, e), (off, ws), (l0, l1) in zip(grp, spans, pos):
                out[k, e] = (off, ws, (prof[:, l0:l1, :ws], xs[:, l0:l1, :ws],
                                       xc[:, l0:l1, :ws]))
        return out

    def _merged_constants(self, grp, spans):
        """(components, bin edges (N, L, W + 1), ½ ratio / bin width (N, L, W) with 0 in
        the padding, each set's (first, last) component row) of one merged group at the
        sets' sub-ranges ``spans``, made on first use; each set's values are those
        :meth:`_set_constants` gives it."""
        key = (MERGED, tuple(grp), spans)
        hit = self._consts.get(key)
        if hit is not None:
            return hit
        width = max(ws for _, ws in spans)
        cs = np.concatenate([self.sets[k][e][0] for k, e in grp])
        edges = np.empty((self.n, cs.size, width + 1), DT)
        cst = np.zeros((self.n, cs.size, width), DT)
        pos, l0 = [], 0
        for (k, e), (off, ws) in zip(grp, spans):
            c = self.sets[k][e][0]
            first = self.blocks[k][0].start + off
            edges[:, l0:l0 + c.size] = _edges(self.x[:, first, None, None], width, self.bin)
            cst[:, l0:l0 + c.size, :ws] = self._sub_constants(k, e, off, ws)[1]
            pos.append((l0, l0 + c.size))
            l0 += c.size
        hit = self._consts[key] = (cs, edges, cst, tuple(pos))
        return hit

    def _profiles_at(self, theta, cs, edges, cst):
        """Unit-amplitude profiles of components ``cs`` at bin ``edges`` (N, 1 or L, W + 1),
        with the bins' ½ ratio / Å width ``cst`` (N, L, W) (:meth:`_set_constants`,
        :meth:`_sub_constants`, :meth:`_merged_constants`), and their width and centre
        derivatives, each (N, L, W).

        With v = (edge − centre) / (s√2) at the W+1 bin edges and g = exp(−v²), a bin's
        integral is ½ ΔE (E = erf v), its centre derivative Δg / (√(2π) s) and its width
        derivative Δ(v g) / (√π s): every per-(N, L) factor (the ½, 1/s, the line's ratio
        and the chain rule to the intrinsic width) is folded into one multiplication, and
        the bins' ratio / Å width (the same at every step) is made once per set
        (:meth:`_set_constants`) — a third fewer passes over the (N, L, W) arrays than
        computing φ, e·φ and each derivative on its own.  (Folding the derivatives'
        factors into the amplitudes instead saved two passes more, but moved the
        Jacobian by float rounding, and with it some quasar fits' LM paths: up to 0.3σ.)

        v is clipped at ±:data:`_V_MAX`: beyond it erf is ±1 in float32 and exp(−v²) below
        1e-13 of the peak, but exp(−v²) of a line's far wings (up to ~1e-44) and their
        products in JᵀWJ were float32 subnormals, which the CPU handles in microcode: the
        line stage ran 1.2× faster with them flushed to zero, with identical results."""
        sc, wcol, ucol, inst2, c0 = self._line_constants(cs)
        sg = theta[:, wcol] * sc                                               # (N, L)
        s = np.sqrt(sg * sg + inst2)
        cen = c0 + theta[:, ucol]
        inv_s = 1.0 / s
        v = edges - cen[..., None]
        v *= (inv_s / _SQRT2)[..., None]
        _clip(v, -_V_MAX, _V_MAX, out=v)                       # no subnormal tails
        E = _erf(v)
        g = np.multiply(v, v)
        np.negative(g, out=g)
        np.exp(g, out=g)
        np.multiply(v, g, out=v)                                # v g
        prof = np.subtract(E[..., 1:], E[..., :-1])
        prof *= cst
        xc = np.subtract(g[..., :-1], g[..., 1:])              # ∂/∂centre
        xc *= cst
        xc *= (inv_s * DT(2.0 / np.sqrt(2.0 * np.pi)))[..., None]
        xs = np.subtract(v[..., :-1], v[..., 1:])              # ∂/∂width (intrinsic)
        xs *= cst
        xs *= (sc * sg * inv_s * inv_s * DT(2.0 / np.sqrt(np.pi)))[..., None]
        return prof, xs, xc

    def _reaches(self, theta, sets):
        """[(first bin, bins)] of narrow lines' sets ``sets`` ([(components, window's
        first bin ``start``, ``off``, ``ws``)]) that can be non-zero at ``theta``: the bins
        within :data:`_REACH` σ of each line's centre in any row, inside the set's own span
        ``off``, ``ws`` (relative to ``start``); all the sets' lines in one (N, S) pass
        (one pass per line was a fifteenth of a quasar window's Hβ fit).

        Why: a narrow line's set spans the bins its centre may reach at the *largest*
        width allowed (8 σ_max + v_max; :meth:`_sets`), ~120 bins of a quasar's Hβ or Hα
        window, while the fitted narrow lines (σ 150–250 km/s) are ~40 bins wide.  Beyond
        :data:`_V_MAX` √2 σ both edges of a bin have v clipped to the same ±5.5, so its
        profile and both derivatives are exactly 0: leaving those bins out gives the
        same block, bit for bit, at a third of the narrow lines' profile work."""
        (sc, wcol, ucol, inst2, c0), x0 = self._reach_constants(sets)
        sg = theta[:, wcol] * sc
        s = np.sqrt(sg * sg + inst2)
        rel = (c0 + theta[:, ucol] - x0 + DT(0.5)) / DT(self.bin)
        r = _REACH * s / DT(self.bin)
        firsts, lasts = (rel - r).min(0).tolist(), (rel + r).max(0).tolist()
        out = []
        for (_, _, off, ws), first, last in zip(sets, firsts, lasts):
            if not (np.isfinite(first) and np.isfinite(last)):     # NaN anywhere: all of it
                out.append((off, ws))
                continue
            lo = max(int(np.floor(first)) - 1, 0)
            hi = min(int(np.ceil(last)) + 2, ws)
            # off the set (cannot be: clamped): all of it
            out.append((off + lo, hi - lo) if hi > lo else (off, ws))
        return out

    def _line_constants(self, cs):
        """(scale (L,), width and velocity columns of θ (L,), instrumental σ² (N, L),
        centre c0 (N, L)) of components ``cs``, made on first use.

        Why kept: the same per-line gathers were made at every evaluation of every set
        (eight small numpy calls of each :meth:`_profiles_at`), a share of an
        iteration's fixed cost that a fit's tail and a small window pay for few rows
        (``benchmarks/lines_profile.py``); the values are the same numbers."""
        key = (LINES, cs.tobytes())
        hit = self._consts.get(key)
        if hit is None:
            g = self.group[cs]
            hit = self._consts[key] = (self.scale[cs], self.ks + g, self.ku + g,
                                       self.s_inst_l[:, cs] ** 2, self.c0[:, cs])
        return hit

    def _reach_constants(self, sets):
        """(:meth:`_line_constants` of the sets' first components, each set's first bin
        (N, S)) for :meth:`_reaches`, made on first use."""
        key = (REACH, tuple((int(cs[0]), start + off) for cs, start, off, _ in sets))
        hit = self._consts.get(key)
        if hit is None:
            c = np.array([q for q, _ in key[1]])
            hit = self._consts[key] = (self._line_constants(c),
                                       self.x[:, [col for _, col in key[1]]])
        return hit

    def _sub_constants(self, k, e, off, ws):
        """:meth:`_set_constants` of set ``e`` of window ``k`` over its bins ``off`` …
        ``off + ws`` (a narrow line's :meth:`_reaches`), as views of the whole set's.

        Why views: a narrow line's span moves at nearly every step, and every new span
        was a new set of constants to make (most of the lookups of a quasar fit missed);
        the whole set's, sliced, are the same numbers: bin edges are exact in float32
        (integers and halves) and the ratios / bin widths are per bin."""
        cs, off0, ws0, _ = self.sets[k][e]
        edges, cst = self._set_constants(cs, self.blocks[k][0].start + off0, ws0)
        lo = off - off0
        if lo == 0 and ws == ws0:
            return edges, cst
        return edges[..., lo:lo + ws + 1], cst[..., lo:lo + ws]

    def _set_constants(self, cs, first, ws):
        """(bin edges (N, 1, ws + 1), ½ × ratio / bin width in Å (N, L, ws)) of one
        evaluation set, made on first use."""
        key = (SET, first, ws, tuple(cs.tolist()))
        hit = self._consts.get(key)
        if hit is None:
            # one bin-column offset for every row: ``x`` steps by ``bin`` along a window,
            # so a narrow line's sub-range (:meth:`_reaches`) keeps the edges of the row's
            # own bins
            edges = _edges(self.x[:, first, None, None], ws, self.bin)
            # the ratios: (L,), or (N, L) in a stacked problem (:mod:`.stack`)
            ratio = self.ratio[cs] if self.ratio.ndim == 1 else self.ratio[:, cs]
            cst = ((0.5 * ratio)[..., None]
                   * self.inv_dlam[:, None, first:first + ws]).astype(DT)
            hit = self._consts[key] = (edges, cst)
        return hit

    def _new_block(self, k, sl, cols):
        """Window k's Jacobian block (N, Q, W) with its background and template rows set
        (the same at every step) and its line rows zero, for :meth:`evaluate` to add to."""
        mdl = self.model
        n, w = self.n, sl.stop - sl.start
        blk = np.zeros((n, cols.size, w), DT)
        rows = self.back_rows[k]
        blk[:, rows[0]] = 1.0
        if mdl.slope:
            blk[:, rows[1]] = self.t[None, sl]
        n_t = self.extra.shape[2]
        for e in range(n_t):
            blk[:, rows[-n_t + e]] = self.extra[:, sl, e]
        return blk


def n_below(cols: np.ndarray, limit) -> int:
    """How many of a window's sorted parameter columns ``cols`` are < ``limit`` (None: all
    of them): its linear parameters' rows are a prefix of its Jacobian block."""
    return cols.size if limit is None else int(np.searchsorted(cols, limit))

