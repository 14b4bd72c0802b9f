"""Bit flags: problems found in the input, and Redrock-compatible ZWARN bits.

ZWARN keeps Redrock's meanings for bits 0–11 and uses bits 16–23 for specsift's own.
Input problems are recorded per spectrum in ``meta['INPUT_FLAGS']`` by readers and
:class:`~specsift.spectra.SpectraBatch`; :func:`zwarn_from_input` turns them into ZWARN.
"""

from enum import IntFlag

import numpy as np

__all__ = ["ZWARN", "InputFlag", "zwarn_from_input"]


class ZWARN(IntFlag):
    """Redshift warning bits (Redrock's, then ours from bit 16)."""

    SKY = 1 << 0
    LITTLE_COVERAGE = 1 << 1      # too little wavelength coverage
    SMALL_DELTA_CHI2 = 1 << 2     # Δχ² to the next-best solution too small
    NEGATIVE_MODEL = 1 << 3
    MANY_OUTLIERS = 1 << 4
    Z_FITLIMIT = 1 << 5           # χ² minimum at the edge of the redshift range
    NEGATIVE_EMISSION = 1 << 6
    UNPLUGGED = 1 << 7
    BAD_TARGET = 1 << 8
    NODATA = 1 << 9               # no good pixels at all
    BAD_MINFRAC = 1 << 10
    POORDATA = 1 << 11            # data too poor to trust (e.g. very low S/N)
    ANOMALY = 1 << 16             # spectrum unlike anything in training
    LOW_CLASS_CONFIDENCE = 1 << 17
    BAD_INPUT = 1 << 18           # could not be read, or NaN/inf/negative-ivar input
    NET_DISAGREE = 1 << 19        # verified fit and network differ in SPECTYPE or > 1000 km/s


class InputFlag(IntFlag):
    """Per-spectrum input problems (``meta['INPUT_FLAGS']``)."""

    NONFINITE_FLUX = 1 << 0       # NaN or inf flux pixels (masked)
    BAD_IVAR = 1 << 1             # negative or non-finite ivar (masked)
    NO_GOOD_PIXELS = 1 << 2       # nothing left after masking
    LITTLE_COVERAGE = 1 << 3      # less than half of the target grid covered
    READ_ERROR = 1 << 4           # the file or row could not be read: placeholder row
    ESTIMATED_IVAR = 1 << 5       # the file carried no errors; ivar was estimated


def zwarn_from_input(input_flags) -> np.ndarray:
    """ZWARN bits implied by INPUT_FLAGS (vectorised)."""
    f = np.asarray(input_flags, dtype=np.int64)
    z = np.zeros_like(f)
    z[(f & InputFlag.NO_GOOD_PIXELS) != 0] |= ZWARN.NODATA
    z[(f & InputFlag.LITTLE_COVERAGE) != 0] |= ZWARN.LITTLE_COVERAGE
    z[(f & (InputFlag.READ_ERROR | InputFlag.NONFINITE_FLUX | InputFlag.BAD_IVAR)) != 0] |= ZWARN.BAD_INPUT
    return z
