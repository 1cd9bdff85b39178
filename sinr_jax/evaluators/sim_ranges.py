"""Simulated S&T and IUCN tasks from a world's true ranges (see README.md for the design).

S&T-like: presence/absence of each species at surveyed cells of a region (North America by
default). Surveys follow the world's observer intensity (cells near cities are surveyed more
often); a species is labelled at the surveyed cells within `extent_km` of its true range, so its
absences lie near the range, as in an expert's study extent.
IUCN-like: an "expert" range per species = its true range closed by one H3 ring (dilate, then
erode), the smoothing of a hand-drawn polygon, on every land cell of the world.
"""
from __future__ import annotations

import h3
import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from sinr_jax.world import assets, observers
from sinr_jax.world.sphere import unit_vectors

NORTH_AMERICA = (-170.0, 7.0, -50.0, 75.0)  # lon_min, lat_min, lon_max, lat_max


def _intensity(world) -> np.ndarray:
  cfg = world.config
  city_lonlat, city_pop = assets.cities()
  return observers.observer_intensity(world.cell_lonlat, city_lonlat, city_pop,
                                      cfg.observer_bandwidth_km, cfg.observer_floor,
                                      cfg.observer_bias_exponent)


def snt_task(world, rng: np.random.Generator, *, region=NORTH_AMERICA, survey_fraction: float = 0.5,
             extent_km: float = 1000.0, min_per_label: int = 4) -> dict:
  """The contents of an `snt_res_5.npy` dict (cells at the world's H3 resolution)."""
  lon, lat = world.cell_lonlat[:, 0], world.cell_lonlat[:, 1]
  in_region = np.flatnonzero((lon >= region[0]) & (lat >= region[1]) & (lon <= region[2])
                             & (lat <= region[3]))
  p = _intensity(world)[in_region]
  n_survey = max(1, int(round(survey_fraction * len(in_region))))
  surveyed = np.sort(rng.choice(in_region, n_survey, replace=False, p=p / p.sum()))
  # near[i, m]: surveyed cell i lies within extent_km of cell m (chord distance on the unit sphere).
  chord = 2 * np.sin(min(extent_km / assets.EARTH_RADIUS_KM, np.pi) / 2)
  xyz = unit_vectors(world.cell_lonlat)
  near = cKDTree(xyz[surveyed]).sparse_distance_matrix(cKDTree(xyz), chord,
                                                       output_type="coo_matrix")
  near = sp.csr_matrix((np.ones(near.nnz, np.float32), (near.row, near.col)), near.shape)
  presence = world.presence.astype(np.float32)
  in_extent = (presence @ near.T).tocsr()            # (S, surveyed): within extent of the range
  present = presence[:, surveyed].tocsr()            # (S, surveyed): truly present
  taxa, loc_idx, labels = [], [], []
  for s in range(len(world.taxa)):
    idx = np.union1d(in_extent[s].indices, present[s].indices)
    y = np.isin(idx, present[s].indices)
    if y.sum() >= min_per_label and (~y).sum() >= min_per_label:
      taxa.append(int(world.taxa[s]))
      loc_idx.append(idx.astype(np.int64))
      labels.append(y.astype(np.uint8))
  return {"taxa": np.asarray(taxa, np.int64),
          "obs_locs": world.cell_lonlat[surveyed].astype(np.float32),
          "obs_locs_idx": world.cells[surveyed].astype(np.int64),  # the cells' H3 indexes
          "loc_indices_per_species": loc_idx, "labels_per_species": labels}


def ring_adjacency(cells: np.ndarray) -> sp.csr_matrix:
  """(M, M) bool: cells i, j (sorted uint64 H3 ids, one resolution) one ring apart, or i = j."""
  rows, cols = [], []
  for i, c in enumerate(cells.tolist()):
    ring = np.asarray(h3.api.basic_int.grid_disk(c, 1), np.uint64)
    j = np.searchsorted(cells, ring)
    ok = (j < len(cells)) & (cells[np.minimum(j, len(cells) - 1)] == ring)
    rows.append(np.full(ok.sum(), i))
    cols.append(j[ok])
  r, c = np.concatenate(rows), np.concatenate(cols)
  return sp.csr_matrix((np.ones(len(r), bool), (r, c)), shape=(len(cells), len(cells)))


def expert_ranges(presence: sp.csr_matrix, adjacency: sp.csr_matrix) -> sp.csr_matrix:
  """Truth ∪ closing(truth): dilate by one ring, keep cells whose whole land ring is dilated."""
  a = adjacency.astype(np.int32)
  dilated = (presence.astype(np.int32) @ a) > 0
  ring_size = np.asarray(a.sum(axis=0)).ravel()
  covered = dilated.astype(np.int32) @ a                      # dilated cells in each cell's ring
  full = sp.csr_matrix(covered.multiply(1 / ring_size[None, :]) >= 1.0)
  return ((full.multiply(dilated) + presence) > 0).tocsr()


def iucn_task(world) -> dict:
  """The contents of an `iucn_res_5.json` (every land cell of the world at its H3 resolution)."""
  expert = expert_ranges(world.presence.tocsr(), ring_adjacency(world.cells))
  return {"locs": np.round(world.cell_lonlat, 6).tolist(),
          "taxa_presence": {str(int(t)): expert[s].indices.tolist()
                            for s, t in enumerate(world.taxa) if expert[s].nnz}}
