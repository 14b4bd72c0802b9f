"""The robust STAR comparison shared by eigen's own class decision and the verification stage:
where in the spectrum does a galaxy or quasar fit beat a star?

Why (issue 18; docs/eigen.md "Robust star check"): on real spectra one artefact — a cosmic
ray, a hump at the join of LAMOST's two arms, a bad red or blue end — is a large χ² term that
no star template can have and that a galaxy or quasar basis absorbs, so a plain χ² calls a
clean star extragalactic "decisively".  A real extragalactic spectrum shows its nature over
the whole range.  So the per-pixel χ² gap g_p = χ²_star,p − χ²_other,p is capped at ±``cap``
(one pixel cannot carry more than a 5σ miss at 25), summed in ``nblock`` blocks of equal
numbers of good pixels, and the other fit's best block is left out: the star is preferred when
what remains is still negative by more than a margin (the caller's ``tau``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROBUST_DEFAULT", "robust_settings", "block_sums", "robust_star_gap"]

#: cap, blocks and margin (χ²) chosen for eigen's own decision on the LAMOST training split
#: and simulated spectra of every class (docs/eigen.md "Robust star check"), and kept for the
#: verification's STAR check (docs/verify.md "Robust STAR check"); only rows of ``surveys``
#: are checked: a lone real emission line (a Lyα emitter on DESI) is indistinguishable from an
#: artefact by this test.  ``surveys`` a tuple, so that a copy of this dict (a model's
#: ``robust_star_``) shares nothing mutable with it
ROBUST_DEFAULT = {"cap": 25.0, "nblock": 12, "tau": 50.0, "surveys": ("LAMOST",)}


def robust_settings(settings: dict | None) -> dict:
    """The defaults updated by ``settings`` (None or {}: the defaults), ``surveys`` as an
    upper-case tuple: a fresh dict that a model may own and change."""
    s = {**ROBUST_DEFAULT, **(settings or {})}
    s["surveys"] = tuple(str(x).upper() for x in (s["surveys"] or ()))
    return s


def block_sums(gap: np.ndarray, good: np.ndarray, cap: float, nblock: int) -> np.ndarray:
    """(N, nblock) sums of the capped per-pixel gaps ``gap`` (N, P) over ``nblock`` runs of
    equal numbers of ``good`` pixels of each row: a spectrum with gaps (or a survey with a
    shorter range) still gets blocks of equal weight."""
    n, _ = gap.shape
    g = np.where(good, np.clip(gap, -cap, cap), 0.0)
    ngood = np.maximum(good.sum(1), 1)
    rank = np.cumsum(good, axis=1) - 1
    block = np.minimum(rank * nblock // ngood[:, None], nblock - 1)
    key = (np.arange(n)[:, None] * nblock + block)[good]
    return np.bincount(key, weights=g[good], minlength=n * nblock).reshape(n, nblock)


def robust_star_gap(gap: np.ndarray, good: np.ndarray, cap: float, nblock: int) -> np.ndarray:
    """(N,) Σ of the capped per-pixel χ² gaps (χ²_star,p − χ²_other,p) without the block where
    they sum highest — where the other fit gains most (:func:`block_sums`)."""
    sums = block_sums(gap, good, cap, nblock)
    return sums.sum(1) - sums.max(1)
