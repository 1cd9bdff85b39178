"""The simulated geo-prior task of the SINR evaluation: images at new draws of the world's
observation process (presence cell ~ observer intensity, jittered inside the cell), so they are
not training points, classified by the look-alike classifier of `sinr_jax.world.classifier`
(see README.md for the design).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sinr_jax.evaluators.sim_ranges import _intensity
from sinr_jax.world import observers
from sinr_jax.world.classifier import classify, genera


def geo_prior_task(world, rng: np.random.Generator, *, images_per_species: int = 20,
                   top_k: int = 10, target_top1: float = 0.68, genus_size: int = 5,
                   genus_affinity: float = 3.0, missing_location: float = 0.02):
  """(preds dict for geo_prior_model_preds.npz, meta DataFrame for geo_prior_model_meta.csv)."""
  s_loc, s_jit, s_order, s_noise, s_missing = rng.spawn(5)
  num_species = len(world.taxa)
  counts = np.full(num_species, images_per_species, np.int64)
  species, cell_idx = observers.sample_obs_cells(s_loc, world.presence.tocsr(), counts,
                                                 _intensity(world))
  lonlat = np.round(observers.jitter_points(s_jit, world.cells, world.cell_lonlat, cell_idx,
                                            world.config.jitter_fraction), 6)
  order = s_order.permutation(len(species))
  labels, lonlat = species[order], lonlat[order]
  lonlat[s_missing.random(len(labels)) < missing_location] = np.nan
  genus = genera(world, genus_size)
  probs, inds, a = classify(s_noise, labels, genus, target_top1=target_top1,
                            genus_affinity=genus_affinity, top_k=top_k)
  preds = {"probs": probs, "inds": inds,
           "labels": labels.astype(np.int64), "model_to_taxa": world.taxa.astype(np.int64)}
  meta = pd.DataFrame({"id": np.arange(1, len(labels) + 1), "latitude": lonlat[:, 1],
                       "longitude": lonlat[:, 0]})
  return preds, meta, {"a": a, "b": genus_affinity, "genus_size": genus_size}
