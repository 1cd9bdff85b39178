"""IUCN: per-species AP of the predicted range over every cell of the file (expert-range cells are
presences, all others absences), averaged over species (MAP). AP is scikit-learn's, on logits.

Models with a linear species head go through the streaming scorer (sinr_jax.scoring.score_species:
cells encoded once, species in blocks, AP from exact rank counts; no cells × species matrix).
Others (e.g. baselines) are scored by `predict` in dense blocks, AP from ecorep.ranking.

Taxa the model does not know, species without a range cell (AP undefined) and species whose range
covers every cell (AP = 1 whatever the model does) are left out of the MAP and counted.
"""
from __future__ import annotations

import numpy as np

from ecorep import ranking
from sinr_jax.evaluators.readers import IUCN_FILE, IUCNData, locate, read_iucn
from sinr_jax.scoring import CellScorer, LocationScores, has_linear_head, score_species


class IUCN:
  name = "iucn"

  def __init__(self, data_dir: str):
    self.data = read_iucn(locate(data_dir, "iucn", IUCN_FILE))

  @classmethod
  def from_data(cls, data: IUCNData) -> "IUCN":
    """An evaluator on data already in memory (e.g. a benchmark's)."""
    ev = cls.__new__(cls)
    ev.data = data
    return ev

  def per_species_ap(self, predictor, *, cells: CellScorer | None = None) -> np.ndarray:
    """(S,) AP per taxon in file order; NaN where not evaluated.

    cells: a CellScorer of the file's cells already encoded by this predictor (reused, not built).
    """
    d = self.data
    n = len(d.locs)
    sizes = np.array([len(p) for p in d.presence])
    rows = np.flatnonzero(np.isin(d.taxa, predictor.taxa) & (sizes > 0) & (sizes < n))
    aps = np.full(len(d.taxa), np.nan)
    if not len(rows):
      return aps
    taxa, positives = d.taxa[rows], [d.presence[i] for i in rows]
    if has_linear_head(predictor):
      cells = CellScorer.for_predictor(predictor, d.locs) if cells is None else cells
      aps[rows] = score_species(predictor, scorer=cells, taxa=taxa, labels=positives,
                                ranges=False).ap
    else:
      aps[rows] = LocationScores(predictor, d.locs).column_ap(taxa, positives)
    return aps

  def run(self, predictor) -> dict[str, float]:
    d = self.data
    result = ranking.MAPResult.from_per_class(self.per_species_ap(predictor))
    known = np.isin(d.taxa, predictor.taxa)
    sizes = np.array([len(p) for p in d.presence])
    return {"map": result.map,
            "num_species": float(len(d.taxa)),
            "num_species_evaluated": float(len(d.taxa) - result.num_excluded),
            "num_species_unknown_to_model": float((~known).sum()),
            "num_species_without_presence": float((known & (sizes == 0)).sum()),
            "num_species_without_absence": float((known & (sizes == len(d.locs))).sum()),
            "num_cells": float(len(d.locs))}
