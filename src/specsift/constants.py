"""Numbers more than one module needs (as Redrock's ``constants.py``): one definition each."""

from __future__ import annotations

__all__ = ["C_KMS", "SAME_GRID_ATOL", "RESAMPLE_IDENTITY_ATOL", "GRID_MATCH_PIXELS"]

#: speed of light, km/s
C_KMS = 299_792.458

# -- when two log10-λ grids count as one (a pixel is 1e-4 on the default grid) -------------
#: native grids of batches that are stacked, stored or read together: every log10 λ agrees
#: to this (≈ 0.001 px), else they must be resampled to one grid first
SAME_GRID_ATOL = 1e-7
#: ``SpectraBatch.resample`` onto the grid the batch is already on returns it unchanged
RESAMPLE_IDENTITY_ATOL = 1e-9
#: a batch is on a model's grid (no resampling) when within this fraction of a pixel
GRID_MATCH_PIXELS = 0.01
