"""Spectral lines: the one line table, emission-line measurements and SDSS subclass rules.

* :mod:`.table` — vacuum rest wavelengths, names, kinds and fit ties (the simulator, the plots
  and the labelling page all read it);
* :mod:`.measure` — fluxes, equivalent widths and widths with errors for every galaxy and
  quasar of a batch at given redshifts, vectorised;
* :mod:`.rules` — STARFORMING / STARBURST / AGN / BROADLINE as SDSS's pipeline decides them;
* :mod:`.stage` — the pipeline stage adding line columns and rule-based subclasses to a catalog;
* :mod:`.plot` — draw the fitted line model on a matplotlib axis.
"""

from .measure import measure_lines
from .rules import sdss_subclass
from .stage import add_lines
from .table import C_KMS, LINES, MAJOR_LINES, TABLE, WAVE, Line, by_key, lines_in_range, observed

__all__ = ["Line", "TABLE", "WAVE", "LINES", "MAJOR_LINES", "C_KMS",
           "observed", "lines_in_range", "by_key", "measure_lines", "sdss_subclass", "add_lines"]
