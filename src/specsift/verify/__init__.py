"""Verification: the model proposes candidate solutions, a χ² fit with real-data templates
decides.  Stages, in order: :mod:`.templates` (built once from the SDSS pipeline's spEigen*
files), :mod:`.candidates` (what a model proposes, plus STAR at z = 0), :mod:`.fit`
(narrow-window χ², parabola refinement, ZERR from curvature), :mod:`.stage` (DELTACHI2,
catalog columns), :mod:`.starcheck` (a line-driven second look at GALAXY/QSO winners: a star
after all?), :mod:`.subtype` (star SUBTYPE from the named templates: spEigenStar, or a
survey's own star library, :mod:`.star_library`) and :mod:`.model_flux`
(the best-fit model spectrum).  docs/verify.md.
"""

from .candidates import Candidates, pz_peaks
from .model_flux import model_flux
from .stage import VerifyOptions, verify_catalog

__all__ = ["Candidates", "pz_peaks", "VerifyOptions", "verify_catalog", "model_flux",
           "verify_batch"]


def verify_batch(model, batch, verify_options: VerifyOptions | None = None, *, options=None):
    """``model.propose(batch, options=options)`` then :func:`verify_catalog`: the verified
    catalog of ``batch`` (``options``: the model's PredictOptions)."""
    batch = model.check_batch(batch)
    table, cands = model.propose(batch, options=options)
    return verify_catalog(batch, table, cands, verify_options, copy=False)  # table: ours
