"""IUCN: per-species AP of the predicted range over every cell of the file (expert-range cells are
presences, all others absences), averaged over species (MAP). AP is scikit-learn's, on logits.

Taxa the model does not know, species without a range cell (AP undefined) and species whose range
covers every cell (AP = 1 whatever the model does) are left out of the MAP and counted.
"""
from __future__ import annotations

import numpy as np

from sinr_jax.evaluators.readers import IUCN_FILE, locate, read_iucn
from sinr_jax.evaluators.scores import Scorer


class IUCN:
  name = "iucn"

  def __init__(self, data_dir: str):
    self.data = read_iucn(locate(data_dir, "iucn", IUCN_FILE))

  def per_species_ap(self, predictor) -> np.ndarray:
    """(S,) AP per taxon in file order; NaN where not evaluated."""
    d = self.data
    n = len(d.locs)
    sizes = np.array([len(p) for p in d.presence])
    ok = np.isin(d.taxa, predictor.taxa) & (sizes > 0) & (sizes < n)
    rows = np.flatnonzero(ok)
    aps = np.full(len(d.taxa), np.nan)
    if len(rows):
      aps[rows] = Scorer(predictor, d.locs).all_cells_ap(d.taxa[rows],
                                                          [d.presence[i] for i in rows])
    return aps

  def run(self, predictor) -> dict[str, float]:
    d = self.data
    aps = self.per_species_ap(predictor)
    known = np.isin(d.taxa, predictor.taxa)
    sizes = np.array([len(p) for p in d.presence])
    ok = ~np.isnan(aps)
    return {"map": float(aps[ok].mean()) if ok.any() else float("nan"),
            "num_species": float(len(d.taxa)),
            "num_species_evaluated": float(ok.sum()),
            "num_species_unknown_to_model": float((~known).sum()),
            "num_species_without_presence": float((known & (sizes == 0)).sum()),
            "num_species_without_absence": float((known & (sizes == len(d.locs))).sum()),
            "num_cells": float(len(d.locs))}
