"""Range-map MAP against known true ranges on H3 cells (the simulated world's truth)."""
from __future__ import annotations

import numpy as np
import scipy.sparse

from sinr_jax.scoring.species import score_species


def evaluate_ranges(predictor, cell_lonlat: np.ndarray, presence: scipy.sparse.spmatrix,
                    taxa: np.ndarray, *, species_block: int = 64) -> dict:
  """Per-species AP of the predicted presence over all cells, and their mean (MAP).

  `presence` is (species, cells) with rows in the order of `taxa`. Taxa the model does not know
  are skipped and counted; species without a true presence cell have no AP and are counted.
  AP ranks cells by logit, which orders them as the probabilities do without float32 saturation.
  """
  taxa = np.asarray(taxa)
  scores = score_species(predictor, cell_lonlat, taxa=taxa, labels=presence,
                         max_block=species_block, ranges=False)
  s = scores.summary()
  valid = ~np.isnan(scores.ap)
  return {
      "map": s["map"],
      "num_species_evaluated": s["num_species_evaluated"],
      "num_species_unknown_to_model": s["num_species_unknown_to_model"],
      "num_species_without_presence": s["num_species_without_positives"],
      "num_cells": s["num_cells"],
      "per_species_ap": {int(t): float(a) for t, a in zip(taxa[valid], scores.ap[valid])},
  }
