"""Mean average precision over classes, tie-aware as scikit-learn computes it.

AP of one class = Σ over distinct score thresholds t (descending) of (R_t − R_{t−1})·P_t, all
examples tied at a threshold entering together (sklearn's `average_precision_score`). Classes
without a positive have no defined AP: they are left out of the mean and counted (the reference
scores them 0, which drags MAP down on small splits).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vision_jax.errors import VisionInputError
from vision_jax.spml.labels import check_binary


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
  """AP of scores `s` for binary targets `y` (1-d); nan when `y` has no positive."""
  y = np.asarray(y, np.float64)
  s = np.asarray(s, np.float64)
  if y.sum() == 0:
    return float("nan")
  order = np.argsort(-s, kind="mergesort")
  s, y = s[order], y[order]
  tp = np.cumsum(y)
  ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
  tps = tp[ends]
  precision = tps / (ends + 1)
  recall = tps / tps[-1]
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclasses.dataclass
class MAPResult:
  map: float               # mean AP over the classes that have a positive (nan if none has)
  per_class: np.ndarray    # (L,) AP, nan for excluded classes
  excluded: np.ndarray     # indices of classes with no positive

  @property
  def num_excluded(self) -> int:
    return len(self.excluded)


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
  per_class = np.array([average_precision(y[:, j], s[:, j]) for j in range(y.shape[1])])
  excluded = np.flatnonzero(np.isnan(per_class))
  valid = per_class[~np.isnan(per_class)]
  return MAPResult(map=float(valid.mean()) if len(valid) else float("nan"),
                   per_class=per_class, excluded=excluded)
