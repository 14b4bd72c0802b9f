"""Streaming, resumable, multi-core and distributed `specsift predict` (see docs/scaling.md).

``predict(inputs, output, model=None, ...)`` is the whole job; :mod:`.units` cuts inputs
into work units, :mod:`.local` / :mod:`.dask_engine` compute them,
:mod:`.parts` records progress and :func:`specsift.io.catalog.merge_parts` merges the
catalog atomically; :mod:`.preflight` checks outputs before any work.
"""

from .run import ENGINES, PredictResult, StageOptions, default_model_name, predict

__all__ = ["predict", "default_model_name", "PredictResult", "ENGINES", "StageOptions"]
