"""S&T: per-species AP of presence/absence at surveyed locations (eBird Status & Trends style).

Each species' labelled locations are split 50/50 into val/test by a permutation from one
generator (seed 7499) that advances species by species, in file order, over the species the model
knows only: the reference draws no permutation for an unknown taxon. So the split of a species
depends on which earlier taxa the model knows, exactly as in the reference, and our MAPs are
comparable with its numbers. Both splits come from the same permutation (val = its first
floor(n/2) entries). AP is scikit-learn's (tie-aware), computed on logits.

A split with no presence (AP undefined) or no absence (AP = 1 whatever the model does) is left out
of the MAP and counted; the reference keeps the latter as AP = 1.
"""
from __future__ import annotations

import numpy as np

from ecorep import ranking
from sinr_jax.evaluators.readers import SNT_FILE, locate, read_snt
from sinr_jax.scoring import LocationScores

SPLIT_SEED = 7499


class SnT:
  name = "snt"

  def __init__(self, data_dir: str, *, allow_pickle: bool = False, split_seed: int = SPLIT_SEED,
               val_frac: float = 0.5):
    self.data = read_snt(locate(data_dir, "snt", SNT_FILE), allow_pickle=allow_pickle)
    self.split_seed, self.val_frac = split_seed, val_frac

  def per_species_ap(self, predictor) -> dict[str, np.ndarray]:
    """{"val": (S,), "test": (S,)} AP per taxon in file order; NaN where not evaluated."""
    return self._evaluate(predictor)[0]

  def _evaluate(self, predictor):
    d = self.data
    known = np.isin(d.taxa, predictor.taxa)
    aps = {s: np.full(len(d.taxa), np.nan) for s in ("val", "test")}
    why = {s: np.zeros(len(d.taxa), np.int8) for s in aps}  # 1: no presence, 2: no absence
    scorer = LocationScores(predictor, d.obs_locs)
    rng = np.random.default_rng(self.split_seed)
    rows = np.flatnonzero(known)
    block = scorer.block_size()
    for start in range(0, len(rows), block):
      sel = rows[start:start + block]
      scores = scorer.scores(d.taxa[sel])
      for j, i in enumerate(sel):
        idx, y = d.loc_indices[i], d.labels[i]
        n_val = int(np.floor(len(y) * self.val_frac))
        perm = rng.permutation(len(y))
        for split, part in (("val", perm[:n_val]), ("test", perm[n_val:])):
          yy = y[part]
          if not yy.any():
            why[split][i] = 1
          elif yy.all():
            why[split][i] = 2
          else:
            aps[split][i] = ranking.average_precision(yy, scores[idx[part], j])
    return aps, why

  def run(self, predictor) -> dict[str, float]:
    aps, why = self._evaluate(predictor)
    known = np.isin(self.data.taxa, predictor.taxa)
    out = {"num_species": float(len(self.data.taxa)),
           "num_species_unknown_to_model": float((~known).sum()),
           "num_locations": float(len(self.data.obs_locs))}
    for split in ("test", "val"):
      result = ranking.MAPResult.from_per_class(aps[split])
      out[f"{split}_map"] = result.map
      out[f"num_species_evaluated_{split}"] = float(len(aps[split]) - result.num_excluded)
      out[f"num_species_without_presence_{split}"] = float((why[split] == 1).sum())
      out[f"num_species_without_absence_{split}"] = float((why[split] == 2).sum())
    return out
