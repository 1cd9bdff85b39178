"""A simulated image classifier for the geo-prior task (see README.md for the design).

Species are grouped into "genera" of look-alikes: species adjacent along the first principal axis of
their niche centroids (mean environment over the true range), so look-alikes live in similar
climates, often on different continents. Each image of species y gets classifier scores
  s_c = a·[c = y] + b·[genus(c) = genus(y)] + ε_c,   ε_c ~ N(0, 1) i.i.d. over all classes,
probabilities softmax(s), and the top-k of them (top-1 last). `a` is set from the drawn noise so
the classifier's top-1 equals `target_top1`; most of its mistakes are genus-mates. Images sit at
new draws of the world's observation process (presence cell ~ observer intensity, jittered
inside the cell), so they are not training points.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from sinr_jax.world import assets, observers
from sinr_jax.evaluators.sim_ranges import _intensity

_CHUNK = 2048  # images per block of the (images x classes) score matrix


def genera(world, genus_size: int) -> np.ndarray:
  """(S,) genus id: rank along the main axis of the species' niche centroids // genus_size."""
  rows, cols = assets.raster_index(world.cell_lonlat[:, 0], world.cell_lonlat[:, 1])
  cell_env = np.nan_to_num(world.env[rows, cols].astype(np.float64))
  p = world.presence.astype(np.float64)
  centroid = (p @ cell_env) / np.maximum(np.asarray(p.sum(1)), 1.0)
  centred = centroid - centroid.mean(0)
  axis = np.linalg.svd(centred, full_matrices=False)[2][0]
  order = np.lexsort((world.taxa, centred @ axis))
  genus = np.empty(len(order), np.int64)
  genus[order] = np.arange(len(order)) // genus_size
  return genus


def _scores(rng, labels, genus, a, b):
  s = rng.standard_normal((len(labels), len(genus)))
  s += b * (genus[None, :] == genus[labels][:, None])
  s[np.arange(len(labels)), labels] += a
  return s


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
  # Pass 1: the margin a must beat for each image to be right; pass 2 replays the same noise.
  seeds = [g.bit_generator.seed_seq for g in s_noise.spawn(-(-len(labels) // _CHUNK))]
  margin = []
  for i, seed in enumerate(seeds):
    lab = labels[i * _CHUNK:(i + 1) * _CHUNK]
    s = _scores(np.random.default_rng(seed), lab, genus, 0.0, genus_affinity)
    own = s[np.arange(len(lab)), lab].copy()
    s[np.arange(len(lab)), lab] = -np.inf
    margin.append(s.max(1) - own)
  a = float(np.quantile(np.concatenate(margin), target_top1))
  k = min(top_k, num_species)
  probs, inds = [], []
  for i, seed in enumerate(seeds):
    lab = labels[i * _CHUNK:(i + 1) * _CHUNK]
    s = _scores(np.random.default_rng(seed), lab, genus, a, genus_affinity)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    logp = np.take_along_axis(s, top, 1) - logsumexp(s, axis=1, keepdims=True)
    asc = np.argsort(logp, axis=1, kind="stable")  # ascending: the top-1 ends up last
    probs.append(np.exp(np.take_along_axis(logp, asc, 1)).astype(np.float32))
    inds.append(np.take_along_axis(top, asc, 1).astype(np.int64))
  preds = {"probs": np.concatenate(probs), "inds": np.concatenate(inds),
           "labels": labels.astype(np.int64), "model_to_taxa": world.taxa.astype(np.int64)}
  meta = pd.DataFrame({"id": np.arange(1, len(labels) + 1), "latitude": lonlat[:, 1],
                       "longitude": lonlat[:, 0]})
  return preds, meta, {"a": a, "b": genus_affinity, "genus_size": genus_size}
