"""Star SUBTYPE: the name of the best-fitting named stellar template at the verified z.

The SDSS pipeline names a star's SUBCLASS this way: each of the 40 spEigenStar-53724 templates
(A0, F5, F9, G2, K1, K3, K5, M2 …) alone, with a polynomial, at the star's redshift; the lowest
χ² names it (idlspec2d's ``spreduce1d``: "with only 1 eigen-template, fit more polynomial terms
for stars" — 4 terms).  Done once per STAR row at its integer pixel shift (one GEMM per chunk,
no scan), on the pixels every named template covers (3784–9270 Å rest, less 20 pixels each side)
so that the polynomial is not pulled by pixels where no template is.

Per survey, the polynomial order follows how the survey calibrates its flux (the reader's
SURVEY column, as the star ZERR floor): SDSS's spectrophotometric calibration keeps the SDSS
pipeline's 4 terms — and with them the SDSS SUBCLASS of the SDSS stars in ``../shared`` (18 of
20); LAMOST calibrates its flux only relatively (one smooth response per spectrograph, two arms
joined near 5800 Å), so its stars get 6 terms: the broad shape a template's colour is read
from is then the calibration's, and the lines decide.  On the LAMOST stars with S/N_g ≥ 10 the
A/F/G/K/M letter agrees with LAMOST's SUBCLASS for 0.782 (gasnet's held-out split 0.756)
instead of 0.710 (0.660) with 4 terms (docs/verify.md: a grid of 4–6 terms and fit ranges was
tried on those same stars, 6 chosen).  Why not 0.9: LAMOST's own template library types
stars earlier than their temperature (its F9 stars have LASP Teff ≈ 5600 K, G5 ≈ 4900 K);
even LAMOST's own Teff, cut at the best thresholds, reproduces its letters for only 0.76 of
the dr10-afg stars, and a Teff read from the best of 983 MILES stars (mapped to types with
Pecaut & Mamajek 2013, Table 5) for 0.62.
"""

from __future__ import annotations

import numpy as np

from ..spectra import survey_of
from .fit import Prepared, legendre, prepare, single_template_chi2

__all__ = ["STAR_NPOLY", "SURVEY_NPOLY", "star_subtypes"]

#: polynomial terms with one named stellar template (the SDSS pipeline's)
STAR_NPOLY = 4
#: surveys whose flux calibration is relative only get more terms (module docstring)
SURVEY_NPOLY = {"LAMOST": 6}


def star_subtypes(batch, basis, spec, shift, npoly=None, prep=None) -> np.ndarray:
    """SUBTYPE names (R,) of the spectra ``spec`` of ``batch`` at fractional pixel shifts
    ``shift`` (``basis``: the STAR basis with its named templates); ``npoly`` (R,) terms per
    row (default: per the batch's SURVEY column, :data:`SURVEY_NPOLY`, else 4).  ``prep``:
    the stage's own products of the whole batch (:func:`.fit.prepare`), whose cleaned and
    scaled weights are reused instead of cleaning the rows again (most of this step's time)."""
    spec = np.asarray(spec, np.int64)
    out = np.zeros(len(spec), "U20")
    if not len(spec):
        return out
    if npoly is None:
        npoly = survey_npoly(batch, spec)
    cov = np.flatnonzero(np.abs(basis.star_named).sum(0) > 0)
    p = np.arange(batch.flux.shape[1]) + basis.offset          # template index at shift 0
    inside = (p >= cov[0] + 20) & (p <= cov[-1] - 20)
    names = np.array([s.split()[0] for s in basis.star_names], dtype="U20")
    shift = np.rint(np.asarray(shift, np.float64))
    for k in np.unique(npoly):
        sel = np.flatnonzero(npoly == k)
        uniq, inv = np.unique(spec[sel], return_inverse=True)
        if prep is None:
            pk = prepare(batch.flux[uniq], np.where(inside, batch.ivar[uniq], 0),
                         batch.mask[uniq], npoly=int(k))
        else:
            pk = _restricted(prep, uniq, inside, int(k))
        chi2 = single_template_chi2(pk, basis, basis.star_named, inv, shift[sel])
        out[sel] = names[np.argmin(chi2, axis=1)]
    return out


def _restricted(prep, rows, inside, npoly: int) -> Prepared:
    """The fit products of ``rows`` on the pixels ``inside`` with ``npoly`` polynomial terms,
    from the stage's products (weights already 0 where masked, flux already scaled: χ² is
    invariant to the scale)."""
    w = prep.w[rows] * inside.astype(np.float32)
    wf = prep.x3[rows, prep.npoly - 1] * inside.astype(np.float32)
    P = legendre(w.shape[1], npoly).astype(np.float32)
    iu = np.triu_indices(npoly)
    g = (w @ (P[iu[0]] * P[iu[1]]).T).astype(np.float64)
    G = np.zeros((len(w), npoly, npoly))
    G[:, iu[0], iu[1]] = g
    G[:, iu[1], iu[0]] = g
    x3 = np.empty((len(w), npoly, w.shape[1]), np.float32)
    for j in range(1, npoly):
        np.multiply(w, P[j], out=x3[:, j - 1])
    x3[:, npoly - 1] = wf
    f = np.divide(wf, w, out=np.zeros_like(wf), where=w > 0)
    F = np.einsum("np,np->n", wf, f, dtype=np.float64)
    return Prepared.from_parts(w, x3, G, (wf @ P.T).astype(np.float64), F,
                               np.count_nonzero(w, axis=1), np.ones(len(w)), P)


def survey_npoly(batch, spec) -> np.ndarray:
    """Polynomial terms for each of the rows ``spec`` from the batch's SURVEY column."""
    n = np.full(len(spec), STAR_NPOLY)
    survey = survey_of(batch.meta, len(batch))[spec]
    for s, k in SURVEY_NPOLY.items():
        n[survey == s] = k
    return n
