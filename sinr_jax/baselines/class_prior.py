"""Count-based geo priors P(y|x) from the training observations (baselines of seed Table 7.1).

Each baseline is fitted once and returns, for query locations and each image's candidate classes,
P(c|x) under every hyperparameter of its grid at once (`scores(lonlat, cols) -> {label: (n, k)}`),
so that the hyperparameter and the uniform floor are chosen on a validation split (the geo prior
evaluation does that: sinr_jax/geo_prior/evaluate.py). `cols` holds the prior's class indices of
the candidates; −1 (a classifier class the prior lacks) gets 0 and is masked by the caller.

The floor: P'(c|x) = (1 − ε)·P(c|x) + ε/C, so that a class never seen near x is down-weighted
rather than ruled out (a zero would veto the classifier outright).

This module holds the grid baseline (class frequencies in the H3 cell of x, reusing
baselines/grid.py's binning); neighbours.py and kde.py the others.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sinr_jax import grid as h3grid
from sinr_jax.baselines.grid import GridBaseline
from sinr_jax.observations import ClassIndex

FLOORS = (1e-4, 1e-3, 1e-2, 1e-1, 0.5)


def with_floor(p: np.ndarray, eps: float, num_classes: int) -> np.ndarray:
  return (1.0 - eps) * p + eps / num_classes


def gather(table, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """(n, k) entries table[rows[i], cols[i, j]] of a scipy sparse (or dense) matrix; cols −1 → 0."""
  r = np.repeat(rows, cols.shape[1])
  c = np.maximum(cols, 0).ravel()
  if hasattr(table, "tocsr"):
    return np.asarray(table.tocsr()[r, c]).reshape(cols.shape).astype(np.float64)
  return np.asarray(table)[r, c].reshape(cols.shape).astype(np.float64)


class GridPrior:
  """P(c | x) = the share of class c among the training observations in x's H3 cell (uniform
  where the cell holds none), for each resolution of the grid."""
  name = "grid"

  def __init__(self, lonlat: np.ndarray, labels: np.ndarray, class_index: ClassIndex,
               resolutions: Sequence[int] = (0, 1, 2, 3, 4)):
    self.num_classes = len(class_index)
    self.grids = [GridBaseline.fit(lonlat, labels, class_index, r) for r in resolutions]

  def scores(self, lonlat: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for g in self.grids:
      cells = h3grid.lonlat_to_cells(lonlat, g.res)
      at = np.minimum(np.searchsorted(g.cells, cells), max(len(g.cells) - 1, 0))
      seen = g.cells[at] == cells if len(g.cells) else np.zeros(len(cells), bool)
      total = np.asarray(g.counts.sum(1)).ravel()
      p = np.full(cols.shape, 1.0 / self.num_classes)
      rows = np.flatnonzero(seen)
      if len(rows):
        p[rows] = gather(g.counts, at[rows], cols[rows]) / total[at[rows]][:, None]
      out[f"res={g.res}"] = p
    return out
