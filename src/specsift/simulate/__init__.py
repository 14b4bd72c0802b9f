"""Survey simulator: labelled SDSS-like spectra (see docs/simulator.md).

    from specsift.simulate import simulate_batch, simulate_to_store
    batch = simulate_batch(n=1000, class_set="five", seed=1)

Building blocks for other simulations: :func:`make_galaxies`, :func:`galaxy_with_lines`,
:func:`make_quasars`, :func:`make_stars` / :func:`star_spectrum`, and the instrument model
:func:`apply_instrument` (any grid, any resolving power).
"""

from .galaxies import galaxy_with_lines, make_galaxies, make_galaxy_types
from .instrument import Resolution, add_gaussian_lines, apply_instrument, apply_lsf, redshift_rest
from .lines import LINES, kauffmann03, kewley01, sdss_agn_line
from .quasars import lya_forest_transmission, make_quasars
from .stars import make_stars, star_spectrum, subtype_rows
from .survey import BLOCK, LABEL_SPECS, iter_blocks, simulate_batch, simulate_to_store
from .twins import simulate_like

__all__ = ["simulate_batch", "simulate_to_store", "simulate_like", "iter_blocks", "BLOCK",
           "LABEL_SPECS",
           "make_galaxies", "make_galaxy_types", "galaxy_with_lines", "make_quasars",
           "lya_forest_transmission", "make_stars", "star_spectrum", "subtype_rows",
           "apply_instrument", "apply_lsf", "add_gaussian_lines", "redshift_rest", "Resolution",
           "LINES", "kauffmann03", "kewley01", "sdss_agn_line"]
