"""Mean average precision over classes, tie-aware as scikit-learn computes it (ecorep.ranking).

AP of one class = Σ over distinct score thresholds t (descending) of (R_t − R_{t−1})·P_t, all
examples tied at a threshold entering together (sklearn's `average_precision_score`). Classes
without a positive have no defined AP: they are left out of the mean and counted (the reference
scores them 0, which drags MAP down on small splits).
"""
from __future__ import annotations

import numpy as np

from ecorep import ranking
from ecorep.ranking import MAPResult
from vision_jax.errors import VisionInputError
from vision_jax.spml.labels import check_binary

__all__ = ["MAPResult", "mean_average_precision"]


def mean_average_precision(labels, scores) -> MAPResult:
  """MAP of (N, L) `scores` against (N, L) {0, 1} `labels`."""
  y = check_binary(labels, field="labels")
  s = np.asarray(scores, np.float64)
  if s.shape != y.shape:
    raise VisionInputError(f"scores {s.shape} and labels {y.shape} differ in shape",
                           field="scores")
  if not np.isfinite(s).all():
    r, c = np.argwhere(~np.isfinite(s))[0]
    raise VisionInputError(f"non-finite score at row {r}, column {c}", row=int(r), field="scores")
  return ranking.mean_average_precision(y, s)
