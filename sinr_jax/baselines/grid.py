"""Discretized-grid baseline: per species, the number of training observations in each H3 cell.

A location's score for species s is (count_s(cell) + ε) / (max_cell count_s + ε): in (0, 1],
ordered like the counts (so AP is that of the binned counts), and never exactly 0, so that as a
geo prior it down-weights unobserved classes without zeroing every class of an image. The paper
reports the best of several resolutions; `select_resolution` picks it on validation data.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from sinr_jax import grid as h3grid
from sinr_jax.errors import SinrInputError
from sinr_jax.observations import ClassIndex

_log = logging.getLogger(__name__)
RESOLUTIONS = (0, 1, 2, 3, 4)
EPS = 1e-2


class GridBaseline:
  """Binned counts at one H3 resolution, usable like a RangePredictor (no `embed`)."""

  def __init__(self, res: int, class_index: ClassIndex, cells: np.ndarray, counts: sp.csr_matrix):
    self.res, self.class_index = res, class_index
    self.cells = cells        # (C,) sorted uint64 cells holding at least one observation
    self.counts = counts      # (C, S) observation counts
    self.max_count = np.asarray(counts.max(axis=0).todense()).ravel().astype(np.float64)

  @classmethod
  def fit(cls, lonlat: np.ndarray, labels: np.ndarray, class_index: ClassIndex,
          res: int) -> GridBaseline:
    """lonlat (N, 2) degrees and class indices (N,) of the training observations."""
    lonlat = np.asarray(lonlat, np.float64)
    labels = np.asarray(labels)
    if lonlat.ndim != 2 or lonlat.shape[1] != 2 or len(labels) != len(lonlat):
      raise SinrInputError(f"expected (N, 2) lonlat and (N,) labels, got {lonlat.shape} and "
                           f"{labels.shape}", field="lonlat")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_index)):
      raise SinrInputError(f"class indices must be in [0, {len(class_index)})", field="labels")
    obs_cells = h3grid.lonlat_to_cells(lonlat, res)
    cells, row = np.unique(obs_cells, return_inverse=True)
    counts = sp.csr_matrix((np.ones(len(labels), np.float32), (row.ravel(), labels)),
                           shape=(len(cells), len(class_index)))
    counts.sum_duplicates()
    return cls(res, class_index, cells, counts)

  @property
  def taxa(self) -> np.ndarray:
    return self.class_index.taxa

  def columns(self, taxa=None) -> np.ndarray:
    if taxa is None:
      return np.arange(len(self.class_index))
    return self.class_index.encode(np.asarray(taxa, np.int64), source="taxa argument")

  def predict(self, lon, lat, taxa=None, **_) -> np.ndarray:
    """(N, len(taxa)) float32 scores in (0, 1] at (lon, lat) degrees."""
    cols = self.columns(taxa)
    lonlat = np.stack([np.atleast_1d(np.asarray(lon, np.float64)),
                       np.atleast_1d(np.asarray(lat, np.float64))], axis=1)
    q = h3grid.lonlat_to_cells(lonlat, self.res)
    at = np.minimum(np.searchsorted(self.cells, q), max(len(self.cells) - 1, 0))
    seen = self.cells[at] == q if len(self.cells) else np.zeros(len(q), bool)
    counts = np.zeros((len(q), len(cols)), np.float64)
    if seen.any():
      counts[seen] = self.counts[at[seen]][:, cols].toarray()
    return ((counts + EPS) / (self.max_count[cols] + EPS)).astype(np.float32)


def select_resolution(lonlat, labels, class_index: ClassIndex,
                      score_fn: Callable[[GridBaseline], float],
                      resolutions: Sequence[int] = RESOLUTIONS) -> tuple[GridBaseline, dict]:
  """Fits a grid at each resolution; returns the one with the highest `score_fn` (validation
  data, e.g. S&T validation MAP) and {resolution: score}."""
  if not resolutions:
    raise SinrInputError("no resolutions to choose from", field="resolutions")
  scores, best = {}, None
  for res in resolutions:
    model = GridBaseline.fit(lonlat, labels, class_index, res)
    scores[int(res)] = float(score_fn(model))
    _log.info("grid baseline: H3 res %d, validation score %.4f", res, scores[int(res)])
    if best is None or scores[int(res)] > scores[best.res]:
      best = model
  return best, scores
