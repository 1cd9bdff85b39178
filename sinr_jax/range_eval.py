"""Range-map MAP against known true ranges on H3 cells (the simulated world's truth)."""
from __future__ import annotations

import numpy as np
import scipy.sparse

from sinr_jax.ap import average_precision_columns


def evaluate_ranges(predictor, cell_lonlat: np.ndarray, presence: scipy.sparse.spmatrix,
                    taxa: np.ndarray, *, species_block: int = 256) -> dict:
  """Per-species AP of the predicted P(presence) over all cells, and their mean (MAP).

  `presence` is (species, cells) with rows in the order of `taxa`. Taxa the model does not know
  are skipped and counted; species without a true presence cell have no AP and are counted.
  """
  presence = scipy.sparse.csr_matrix(presence)
  known = np.isin(taxa, predictor.taxa)
  rows = np.flatnonzero(known)
  aps = np.full(len(taxa), np.nan)
  for start in range(0, len(rows), species_block):
    block = rows[start:start + species_block]
    scores = predictor.predict(cell_lonlat[:, 0], cell_lonlat[:, 1], taxa=taxa[block])
    labels = presence[block].toarray().T
    aps[block] = np.asarray(average_precision_columns(scores, labels))
  valid = ~np.isnan(aps)
  return {
      "map": float(aps[valid].mean()) if valid.any() else float("nan"),
      "num_species_evaluated": int(valid.sum()),
      "num_species_unknown_to_model": int((~known).sum()),
      "num_species_without_presence": int((known & ~valid).sum()),
      "num_cells": int(len(cell_lonlat)),
      "per_species_ap": {int(t): float(a) for t, a in zip(taxa[valid], aps[valid])},
  }
