"""One species' predicted range at an H3 resolution, as the viewer serves it, with caches.

The land cells of a resolution are encoded once per run (`sinr_jax.scoring.CellScorer`: the
jitted location encoder, sharded over the devices); a species then costs one matvec over the
cached embeddings. Its logits, AP and F1-optimal threshold (`sinr_jax.scoring.score_species`
against the true range, where the run has one) are kept in a small LRU, so moving the threshold
slider only re-filters. A cell counts as inside the true range when its centre lies in a true
(or expert) range cell, whatever the two resolutions.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
import threading

import numpy as np

from sinr_jax import grid
from sinr_jax.scoring import CellScorer, cell_areas_km2, score_species
from sinr_jax.viewer.sources import RunSource

DEFAULT_THRESHOLD = 0.5  # without a true range there is no F1-optimal threshold
SPECIES_CACHE = 32       # species (per run) whose logits are kept: 2.3 MB each at res 5


@functools.lru_cache(maxsize=8)
def _areas(res: int) -> np.ndarray:
  return cell_areas_km2(grid.land_cells(res)[0])


@dataclasses.dataclass
class _ResCells:
  cells: np.ndarray            # (M,) uint64 land cells at the resolution
  area_km2: np.ndarray         # (M,)
  scorer: CellScorer           # their cached embeddings
  truth_cell: np.ndarray | None  # (M,) uint64: the truth-resolution cell holding each centre


@dataclasses.dataclass(frozen=True, eq=False)
class SpeciesMap:
  """One species over the land cells at `res` (cached; thresholds applied by `view`)."""
  taxon: int
  res: int
  cells: np.ndarray        # (M,) uint64, shared with the resolution's cache
  area_km2: np.ndarray     # (M,)
  logits: np.ndarray       # (M,) float32
  f1_threshold: float | None   # None without a true range
  f1_logit: float | None       # the same threshold as a logit (what cells are compared with)
  ap: float | None
  best_f1: float | None
  num_true_cells: int

  def view(self, threshold: float | None, max_cells: int) -> dict:
    """The cells with P(presence) >= threshold (default: F1-optimal, else 0.5), the most probable
    `max_cells` of them when there are more."""
    if threshold is not None:
      source, limit = "request", np.float32(math.log(threshold / (1 - threshold)))
    elif self.f1_logit is not None:
      threshold, source, limit = self.f1_threshold, "f1", np.float32(self.f1_logit)
    else:
      threshold, source = DEFAULT_THRESHOLD, "default"
      limit = np.float32(math.log(threshold / (1 - threshold)))
    # Compared as logits, as the export does: no float32 sigmoid ties near 0 and 1.
    above = self.logits >= limit
    inside = np.flatnonzero(above)
    total = len(inside)
    if total > max_cells:
      inside = np.sort(inside[np.argsort(-self.logits[inside], kind="stable")[:max_cells]])
    prob = 1.0 / (1.0 + np.exp(-self.logits[inside].astype(np.float64)))
    return {
        "taxon_id": self.taxon, "res": self.res, "threshold": float(threshold),
        "threshold_source": source, "f1_threshold": self.f1_threshold,
        "default_threshold": DEFAULT_THRESHOLD, "ap": self.ap, "best_f1": self.best_f1,
        "num_true_cells": self.num_true_cells, "num_land_cells": int(len(self.cells)),
        "num_cells": int(total), "truncated": bool(total > len(inside)),
        "area_km2": float(self.area_km2[above].sum()),
        "cells": [format(c, "x") for c in self.cells[inside].tolist()],
        "probability": np.round(prob, 4).tolist(),
    }


class RangeService:
  """Species maps of one run, with the encoded cells cached per resolution."""

  def __init__(self, source: RunSource):
    self.source = source
    self._res: dict[int, _ResCells] = {}
    self._species: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()       # guards the two dicts
    self._build_lock = threading.Lock()  # one resolution encoded at a time

  def _cells(self, res: int) -> _ResCells:
    with self._build_lock:
      if res not in self._res:
        cells, lonlat = grid.land_cells(res)
        truth = self.source.truth
        self._res[res] = _ResCells(
            cells=cells, area_km2=_areas(res),
            scorer=CellScorer.for_predictor(self.source.predictor, lonlat),
            truth_cell=None if truth is None else grid.lonlat_to_cells(lonlat, truth[0]))
      return self._res[res]

  def warm(self, res: int) -> None:
    """Encodes the land cells at `res` now (the viewer does it for its default resolution at
    start, so that the first map does not wait for it)."""
    self._cells(res)

  def species(self, taxon: int, res: int) -> SpeciesMap:
    """The taxon's map at `res` (the taxon must be known to the model: predictor.columns)."""
    key = (int(taxon), int(res))
    with self._lock:
      if key in self._species:
        self._species.move_to_end(key)
        return self._species[key]
    predictor = self.source.predictor
    col = predictor.columns([taxon])  # an unknown taxon raises here, naming it
    rc = self._cells(res)
    head = np.asarray(predictor.params["species_embedding"], np.float32)[col]
    logits = rc.scorer.logits(head)[0]
    f1 = f1_logit = ap = best_f1 = None
    num_true = 0
    truth = self.source.truth
    true_cells = None if truth is None else truth[1].get(int(taxon))
    if true_cells is not None and len(true_cells):
      labels = np.flatnonzero(np.isin(rc.truth_cell, true_cells))
      num_true = len(labels)
      if num_true:
        s = score_species(predictor, scorer=rc.scorer, taxa=np.array([taxon], np.int64),
                          labels=[labels], max_block=1, ranges=False)
        f1, f1_logit = float(s.threshold[0]), float(s.threshold_logit[0])
        ap, best_f1 = float(s.ap[0]), float(s.best_f1[0])
    sm = SpeciesMap(taxon=int(taxon), res=int(res), cells=rc.cells, area_km2=rc.area_km2,
                    logits=logits, f1_threshold=f1, f1_logit=f1_logit, ap=ap, best_f1=best_f1,
                    num_true_cells=num_true)
    with self._lock:
      self._species[key] = sm
      while len(self._species) > SPECIES_CACHE:
        self._species.popitem(last=False)
    return sm
