"""Star SUBTYPE: the name of the best-fitting named stellar template at the verified z.

The SDSS pipeline names a star's SUBCLASS this way: each of the 40 spEigenStar-53724 templates
(A0, F5, F9, G2, K1, K3, K5, M2 …) alone, with a polynomial, at the star's redshift; the lowest
χ² names it (idlspec2d's ``spreduce1d``: "with only 1 eigen-template, fit more polynomial terms
for stars" — 4 terms).  Done once per STAR row at its integer pixel shift (one GEMM per chunk,
no scan), on the pixels every named template covers (3784–9270 Å rest, less 20 pixels each side)
so that the polynomial is not pulled by pixels where no template is.

A survey whose SUBCLASS comes from a library of its own gets its stars named from a library
made the same way (the reader's SURVEY column decides; :data:`.templates.SURVEY_LIBRARIES`).
LAMOST types stars by the best χ² match among templates built from LAMOST spectra (Wei et al.
2014; Luo et al. 2015), and those type stars earlier than their temperature, so no physical
template set follows them: with spEigenStar (6 terms) the A/F/G/K/M letter agreed with
LAMOST's SUBCLASS for 0.786 of the LAMOST stars with S/N_g ≥ 10 (0.761 held-out), a MILES
Teff read through Pecaut & Mamajek's scale for 0.62.  The LAMOST library
(``data/templates/lamost_stars.npz``, :mod:`.star_library`, built from the training split of
``lamost-real`` only) is fitted with :data:`LIBRARY_NPOLY` Legendre terms on rest
:data:`LIBRARY_RANGE` (the Balmer lines from Hβ blueward, Ca II H&K, the G band, Mg b, Na D;
left out: the red arm's telluric bands and far red — the whole 3800–9100 Å scored 0.77–0.80
against 0.88–0.89), chosen by a 5-fold cross-validation inside the
training split (``benchmarks/build_lamost_templates.py --cv``).  The letter is a vote of the
5 best templates (:func:`letter_vote`), except for stars typed by LAMOST's pipeline v2.6
(DR1), named by the best template alone as that version's labels are
(:data:`BEST_ONLY_VERSIONS`).  SDSS and every other survey keep spEigenStar with 4 terms (18
of the 20 SDSS stars of ``../shared``).  On the LAMOST stars with S/N_g ≥ 10 held out of both
the library and gasnet's fine-tuning (406), the verified letter agrees with LAMOST's for
0.879 / 0.879 / 0.877 (gasnet / speccznet / eigen candidates; 0.874 / 0.874 / 0.872 with the
best template alone; ``benchmarks/real_surveys.py --surveys LAMOST``), against a CV 0.909
inside the training split (0.889 best template alone) and LAMOST's own letter repeating
between two visits of a star for 0.907 (the verified one now for 0.947; docs/verify.md,
"Letter": the misses sit at the type borders).  Since letter3 a survey with a letter model
(:mod:`.star_letter`: LAMOST) has its library rows' letter picked by small trees on this
fit's Δχ², the vote's letter weights, line indices and colours (every pipeline version:
the version is one of its inputs), SUBTYPE the best template of that letter — CV inside the
training split by observing plan 0.899 → 0.916, held-out 0.909 at LAMOST's z (scored once).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..spectra import survey_of
from .cache import IdentityCache
from .fit import Prepared, legendre, polynomial_products, prepare, single_template_chi2
from .frames import Scratch
from .star_letter import LETTERS, letter_columns, letter_features, relative_dchi2, usable_trees
from .templates import bases_for

__all__ = ["STAR_NPOLY", "LIBRARY_NPOLY", "LIBRARY_RANGE", "LIBRARY_VOTE", "star_subtypes",
           "star_subtypes_at", "letter_vote", "letter_inputs"]

#: polynomial terms with one named spEigenStar template (the SDSS pipeline's)
STAR_NPOLY = 4
#: polynomial terms (Legendre over the whole grid) and rest-frame range (Å) of the fit with a
#: survey's own library (module docstring: chosen by a cross-validation on the training split)
LIBRARY_NPOLY = 6
LIBRARY_RANGE = (3800.0, 6500.0)
#: (k, τ) of the letter vote with a survey's library (:func:`letter_vote`; None: the single
#: best template names the star), chosen by the same cross-validation
LIBRARY_VOTE = (5, 200.0)
#: per survey, the pipeline versions (prefixes of the reader's VERSPIPE column) whose SUBCLASS
#: is named by the single best library template, not by the vote.  Why: LAMOST's own type
#: convention changed between pipeline versions — DR1's v2.6 typed stars with the library
#: before Wei et al. (2014) rebuilt it, the other files here are v2.9.7–2.9.8 — and a v2.6 F9
#: (12 of the 96 v2.6.4 stars of the cross-validation) is near-best matched by the v2.9 G0–G5
#: templates, so the vote turns it G: on the v2.6.4 stars the vote scores 0.81 against the
#: best template's 0.88, on the v2.9 stars it gains.  Following each version's convention is
#: fitting LAMOST's labels as the SDSS rules fit SDSS's: whole CV 0.900 → 0.909.  The
#: evidence is thin: every v2.6 star here is from one DR1 plate (`dr1-b6212`, B6212), so the
#: rule rests on one plate's 96 training stars; another DR1 plate should confirm it.
BEST_ONLY_VERSIONS = {"LAMOST": ("v2.6",)}


def star_subtypes(batch, basis, spec, shift, prep: Prepared, library: bool = True,
                  library_npoly: int = LIBRARY_NPOLY,
                  library_range: tuple = LIBRARY_RANGE,
                  library_vote: tuple | None = LIBRARY_VOTE,
                  best_only_versions: dict = BEST_ONLY_VERSIONS, at=None,
                  letter_trees: bool = True) -> np.ndarray:
    """SUBTYPE names (R,) of the spectra ``spec`` of ``batch`` at fractional pixel shifts
    ``shift`` (``basis``: the STAR basis with its named templates).  ``prep``: the stage's
    products of the whole batch (:func:`.fit.prepare`), whose cleaned and scaled weights are
    reused instead of cleaning the rows again (most of this step's time).  Rows whose survey
    (the batch's SURVEY column) has a library in ``basis.survey_named`` are named from it
    with ``library_npoly`` terms on rest ``library_range`` (Å), their letter by
    :func:`letter_vote` with ``library_vote`` = (k, τ), except where the batch's VERSPIPE
    starts with one of ``best_only_versions[survey]`` (``library=False``: every row from
    spEigenStar, the SDSS pipeline's way: the single best template).  Where the survey has a
    letter model (:mod:`.star_letter`, LAMOST) fitted to this library and ``letter_trees``,
    it picks every library row's letter instead of the vote and the version rule (SUBTYPE:
    the best template of that letter; its version input always from
    :data:`BEST_ONLY_VERSIONS`, what it was trained on); the library's CV
    (build_lamost_templates.py) turns it off, as the model was trained on those stars.
    ``at``: the row of ``prep`` of each of ``spec`` where ``prep`` holds only those rows
    (default: ``spec``, a ``prep`` of the whole batch)."""
    spec = np.asarray(spec, np.int64)
    at = spec if at is None else np.asarray(at, np.int64)
    shift = np.rint(np.asarray(shift, np.float64))
    out = np.zeros(len(spec), "U20")
    if not len(spec):
        return out
    survey = survey_of(batch.meta, len(batch))[spec]
    sdss = np.ones(len(spec), bool)
    for s, (_, names) in (basis.survey_named.items() if library else ()):
        sel = np.flatnonzero(survey == s)
        if not (len(sel) and len(names)):
            continue
        fit = _library_fit(batch, basis, s, spec[sel], at[sel], shift[sel], prep,
                           library_npoly, library_range)
        trees = _trees(s, names) if letter_trees and library_vote is not None else None
        if trees is not None:
            best = _tree_letter(trees, fit)
        elif library_vote is not None:
            rule = best_only_versions.get(s, ())
            voted = ~(fit.best_only if tuple(rule) == BEST_ONLY_VERSIONS.get(s, ())
                      else _versions(batch.meta, spec[sel], rule))
            best = _vote_letter(fit.chi2, fit.names, fit.ngood, library_vote, voted)
        else:
            best = np.argmin(fit.chi2, axis=1)
        out[sel] = _named(fit.names, fit.chi2, fit.ngood, best)
        sdss[sel] = False
    sel = np.flatnonzero(sdss)
    if len(sel):
        names = np.array([s.split()[0] for s in basis.star_names], dtype="U20")
        inside = _inside(basis, basis.star_named, batch.flux.shape[1], 20)
        chi2, ngood = _library_chi2(prep, basis, basis.star_named, at[sel], shift[sel], inside,
                                    STAR_NPOLY)
        out[sel] = _named(names, chi2, ngood, np.argmin(chi2, axis=1))
    return out


def star_subtypes_at(batch, rows, z) -> np.ndarray:
    """SUBTYPE (R,) of ``rows`` of ``batch`` at redshifts ``z``, named as the verification stage
    names its STAR rows (:func:`star_subtypes` on the stage's own cleaned products: its pixel
    mask and sky lines, the survey's library and letter vote where it has one, spEigenStar
    else).  Why: a model's unverified STAR rows (eigen's; gasnet's and speccznet's with the
    star-velocity head, :mod:`specsift.models.star_head`) get the verified catalogue's
    naming at their own z, so that ``--no-verify`` gives the verified letter, not one
    learnt from a simulator."""
    from .stage import sky_mask  # the stage imports this module
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros(0, "U20")
    basis = bases_for(batch.loglam)["STAR"]
    # only the rows' products, but not ``batch[rows]``: slicing the meta table cost ≈ 0.9 ms
    # of the ≈ 2.4 ms a one-spectrum batch took
    prep = prepare(batch.flux[rows], batch.ivar[rows], batch.mask[rows] | sky_mask(batch.loglam))
    return star_subtypes(batch, basis, rows, basis.shift_of(z), prep,
                         at=np.arange(len(rows)))


def _inside(basis, temps, npix: int, margin: int) -> np.ndarray:
    """(P,) data pixels inside the templates' coverage at shift 0, less ``margin`` pixels each
    side, so that the polynomial is not pulled by pixels where no template is.  Cached by the
    templates' identity (read-only): the coverage of (30, 6000) templates was ≈ 0.1 ms of
    every call, the same answer for every batch."""
    def build(_):
        cov = np.flatnonzero(np.abs(temps).sum(0) > 0)
        p = np.arange(npix) + basis.offset                 # template index at shift 0
        out = (p >= cov[0] + margin) & (p <= cov[-1] - margin)
        out.flags.writeable = False
        return out
    return _INSIDE.get(temps, (npix, margin, basis.offset), build)


_INSIDE = IdentityCache()


def _versions(meta, rows, prefixes) -> np.ndarray:
    """(R,) True where the VERSPIPE of ``rows`` starts with one of ``prefixes`` (no column:
    none does)."""
    if not prefixes or "VERSPIPE" not in meta.colnames:
        return np.zeros(len(rows), bool)
    col, pre = meta["VERSPIPE"], tuple(p.lower() for p in prefixes)
    return np.array([str(col[i]).strip().lower().startswith(pre) for i in rows], bool)


def _trees(survey: str, names):
    """The survey's letter model where it was trained on this library
    (:func:`.star_letter.usable_trees`: same templates, flux digest and feature count)."""
    return usable_trees(survey, tuple(map(str, names)))


@dataclass(frozen=True)
class LibraryFit:
    """One survey's library fit of some rows: what the letter pickers read.  ``chi2`` (R, J)
    and ``ngood`` (R,) of each template alone (:func:`_library_chi2`); ``names`` the templates;
    ``rows`` their rows of ``prep``, ``shift`` their integer pixel shifts; ``best_only`` (R,)
    the letter model's version input (:data:`BEST_ONLY_VERSIONS`, whatever rule the caller
    names its letters by); ``wave`` the grid's wavelengths."""
    prep: Prepared
    rows: np.ndarray
    shift: np.ndarray
    chi2: np.ndarray
    ngood: np.ndarray
    names: tuple
    best_only: np.ndarray
    wave: np.ndarray

    def features(self) -> np.ndarray:
        """The letter model's features (:func:`.star_letter.letter_features`) of the rows,
        from the stage's cleaned weights and scaled flux (the indices and colours are
        ratios, blind to the scale)."""
        w = self.prep.w[self.rows]
        good = w > 0
        f = np.divide(self.prep.x3[self.rows, self.prep.npoly - 1], w,
                      out=np.zeros(w.shape, np.float32), where=good)
        return letter_features(self.wave, f, good, self.shift.astype(np.int64), self.chi2,
                               self.names, self.ngood, self.best_only)


def _library_fit(batch, basis, survey: str, spec, rows, shift, prep: Prepared, npoly: int,
                 fit_range: tuple) -> LibraryFit:
    """The fit of rows ``spec`` of ``batch`` (rows ``rows`` of ``prep``) at integer pixel
    shifts ``shift`` to ``basis``'s library of ``survey``, ``npoly`` terms on the pixels its
    templates cover inside rest ``fit_range`` (Å): the one place both the stage
    (:func:`star_subtypes`) and the letter model's builder (:func:`letter_inputs`) make it."""
    temps, names = basis.survey_named[survey]
    wave = 10.0 ** np.asarray(batch.loglam, np.float64)
    inside = (_inside(basis, temps, batch.flux.shape[1], 0)
              & (wave > fit_range[0]) & (wave < fit_range[1]))
    chi2, ngood = _library_chi2(prep, basis, temps, rows, shift, inside, npoly)
    best_only = _versions(batch.meta, spec, BEST_ONLY_VERSIONS.get(survey, ()))
    return LibraryFit(prep, rows, shift, chi2, ngood, tuple(names), best_only, wave)


def letter_inputs(batch, basis, spec, shift, prep: Prepared, survey: str = "LAMOST",
                  library_npoly: int = LIBRARY_NPOLY, library_range: tuple = LIBRARY_RANGE):
    """(features (R, F) of :func:`.star_letter.letter_features`, template names) of rows
    ``spec`` of ``batch`` at pixel shifts ``shift`` against ``basis``'s library of ``survey``
    — exactly what :func:`star_subtypes` gives the letter model (the builder trains on it)."""
    spec = np.asarray(spec, np.int64)
    shift = np.rint(np.asarray(shift, np.float64))
    fit = _library_fit(batch, basis, survey, spec, spec, shift, prep, library_npoly,
                       library_range)
    return fit.features(), fit.names


def _library_chi2(prep, basis, temps, spec, shift, inside, npoly: int):
    """χ² (R, J) of each template alone with ``npoly`` terms on pixels ``inside``, and each
    row's fitted pixels (R,)."""
    uniq, inv = np.unique(spec, return_inverse=True)
    pk = _restricted(prep, uniq, inside, npoly)
    return single_template_chi2(pk, basis, temps, inv, shift), np.asarray(pk.ngood)[inv]


def _tree_letter(trees, fit: LibraryFit) -> np.ndarray:
    """Index (R,) of each row's template: the best one of the letter the letter model picks
    (a letter with no template in the library: the best of all)."""
    k = np.argmax(trees.predict_raw(fit.features()), axis=1)
    col = np.array([LETTERS.find(c) for c in trees.classes])[k]      # -1: not a letter
    # (L + 1, J): per letter of LETTERS its templates, and a last row of none for -1
    mask = np.vstack([letter_columns(fit.names).T > 0, np.zeros(len(fit.names), bool)])
    mine = np.where(mask[col], fit.chi2, np.inf)
    best = np.argmin(fit.chi2, axis=1)
    return np.where(np.isinf(mine).all(axis=1), best, np.argmin(mine, axis=1))


def _vote_letter(chi2, names, ngood, vote: tuple, voted) -> np.ndarray:
    """Index (R,) of each row's template: :func:`letter_vote`'s with ``vote`` = (k, τ) on the
    rows ``voted``, the single best template on the others."""
    v = np.asarray(voted, bool)
    if v.all():
        return letter_vote(chi2, names, ngood, *vote)
    best = np.argmin(chi2, axis=1)
    if v.any():
        best[v] = letter_vote(chi2[v], names, ngood[v], *vote)
    return best


def _named(names, chi2, ngood, best) -> np.ndarray:
    """The names (R,) of templates ``best``; '' where no pixel was in the fit range (or no
    χ² is finite): every template ties, and a name would be arbitrary."""
    out = np.asarray(names, "U20")[best]
    out[(ngood == 0) | ~np.isfinite(chi2).any(axis=1)] = ""
    return out


def letter_vote(chi2: np.ndarray, names, ngood, k: int, tau: float) -> np.ndarray:
    """Index (R,) of each row's template: the best one of the letter (first character of
    ``names``) that wins a vote of the row's ``k`` best templates, each weighted
    exp(−Δχ²/(2τ·χ²_min/N)) — Δχ² from the best, in units of the best fit's χ² per pixel
    (``ngood``: N, the row's fitted pixels) so that the weights follow the residuals' own
    level, template mismatch included, instead of the noise alone.

    Why: the letter, not the subclass, is what has to agree, and a survey's library has
    several templates per letter.  Where a star sits at a type border (LAMOST's F9/G0–G3,
    A9/F0, K/G9), the single best template is a coin toss between two neighbours, while how
    many of its near-best templates carry each letter is not: this vote raised the letter
    agreement of the 5-fold cross-validation inside the LAMOST training split from 0.889 to
    0.900 with the shipped fit (6 terms, 3800–6500 Å; k = 5, τ = 200: the best mean over the
    8 fit settings scored, 0.889–0.904 for every (k, τ) in 3–30 × 50–200 against 0.878–0.889
    for the best template alone; dr8-ccf 0.82 → 0.89, but dr1 0.88 → 0.81, hence
    :data:`BEST_ONLY_VERSIONS`: 0.909 with it; ``benchmarks/build_lamost_templates.py --cv
    --quick``)."""
    if k < 1 or not tau > 0:
        raise ValueError(f"letter_vote: k must be ≥ 1 and τ > 0, not k={k}, τ={tau}")
    chi2 = np.asarray(chi2, np.float64)
    onehot, mask = _letter_onehot(names if isinstance(names, tuple) else tuple(map(str, names)))
    d = relative_dchi2(chi2, ngood)
    if k < d.shape[1]:                         # the k best (ties at the k-th: all of them)
        kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
        weight = np.where(d <= kth, np.exp(-d / (2.0 * tau)), 0.0)
    else:
        weight = np.exp(-d / (2.0 * tau))
    win = np.argmax(weight @ onehot, axis=1)
    return np.argmin(np.where(mask[win], chi2, np.inf), axis=1)


@lru_cache(maxsize=16)
def _letter_onehot(names: tuple) -> tuple:
    """(J, L) 1.0 where template j's name starts with letter l (letters sorted) and its
    (L, J) boolean transpose, cached (read-only): a run meets the same library in every
    batch."""
    letters = [n[:1] for n in names]
    uniq = sorted(set(letters))
    onehot = np.array([[float(t == u) for u in uniq] for t in letters])
    mask = onehot.T > 0
    onehot.flags.writeable = mask.flags.writeable = False
    return onehot, mask


#: memory for :func:`_restricted`'s products, reused call after call: they are dead once the
#: fit that reads them returns, and ~40 MB of fresh pages a batch (half of 1024 spectra
#: stars, 5 rows of 4000 float32 each) was most of the stage's system time on the store
_RESTRICTED = Scratch()


def _restricted(prep: Prepared, rows, inside, npoly: int) -> Prepared:
    """The fit products of ``rows`` on the pixels ``inside`` with ``npoly`` polynomial terms,
    from the stage's products (weights already 0 where masked, flux already scaled); held in
    :data:`_RESTRICTED` (valid until the next call).  Each row's two planes are multiplied
    by the mask straight from ``prep`` into the buffer, and ``f`` divided into
    :data:`_RESTRICTED_F`: a fancy-indexed copy of each plane first and a fresh zeroed
    ``f`` were ≈ 10 % of this function's time (550 stars of the simulated store: ≈ 25 →
    23 ms, one process alternating both); the same products, bit for bit."""
    keep = inside.astype(np.float32)
    n, P = len(rows), prep.npix
    d = _RESTRICTED.take((n, npoly + 1, P))
    w, wf = d[:, 0], d[:, npoly]
    src = prep.d
    for i, r in enumerate(np.asarray(rows, np.int64).tolist()):   # beats a gather, then ×
        np.multiply(src[r, 0], keep, out=w[i])
        np.multiply(src[r, prep.npoly], keep, out=wf[i])
    f = _RESTRICTED_F.take((n, P))
    f.fill(0.0)
    np.divide(wf, w, out=f, where=w > 0)
    F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    idx = np.flatnonzero(inside)
    P = _fit_legendre(prep.npix, int(idx[0]), int(idx[-1]), npoly)
    return polynomial_products(d, F, np.count_nonzero(w, axis=1), prep.scale[rows], P)


#: the flux of :func:`_restricted`'s rows (w·f / w), reused call after call as its products
_RESTRICTED_F = Scratch()


@lru_cache(maxsize=16)
def _fit_legendre(npix: int, lo: int, hi: int, npoly: int) -> np.ndarray:
    """(npoly, npix) Legendre polynomials over the fitted pixels ``lo``…``hi``, zero outside —
    not over the whole grid: 10 terms of the whole grid on its blue half are near-degenerate
    in the float32 products.  Cached (read-only): a run meets the same few (grid, range,
    terms) in every batch, and ``legvander`` over ~4000 pixels was ≈ 80 µs of the ≈ 250 µs
    each star's SUBTYPE fit took to set up (one SDSS file is a batch of one)."""
    P = np.zeros((npoly, npix))
    P[:, lo:hi + 1] = legendre(hi - lo + 1, npoly)
    P.flags.writeable = False
    return P
