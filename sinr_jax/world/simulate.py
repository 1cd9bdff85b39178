"""make_world: a simulated presence-only data set with known true ranges, on real geography.

Steps (each with its own SeedSequence child, so changing one knob does not reshuffle the others):
land cells at cfg.h3_res -> species homes and niches -> true presence (niches.py) -> observation
counts, observer-biased cells, points, users and dates (observers.py).
"""
from __future__ import annotations

import dataclasses
import os

import h3
import numpy as np
import pandas as pd
import scipy.sparse as sp

from sinr_jax import grid
from sinr_jax.world import assets, niches, observers, seasons as seasonal
from sinr_jax.world.config import WorldConfig
from sinr_jax.world.sphere import unit_vectors

OBS_COLUMNS = ["id", "latitude", "longitude", "taxon_id", "user_id", "observed_on"]
_QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class World:
  """A simulated world: training observations plus the truth they were drawn from.

  taxa (S,) int64 sorted unique ids; observations in the published SINR CSV layout (OBS_COLUMNS);
  env (540,1080,C) float32 raster (NaN over ocean, z-scored over land) named by env_channels;
  cells (M,) uint64 sorted H3 land cells at config.h3_res with centres cell_lonlat (M,2) lon/lat;
  presence (S,M) bool CSR, row s = species taxa[s]; summary: the statistics written to world.json.
  """

  config: WorldConfig
  taxa: np.ndarray
  observations: pd.DataFrame
  env: np.ndarray
  env_channels: list[str]
  cells: np.ndarray
  cell_lonlat: np.ndarray
  presence: sp.csr_matrix
  summary: dict
  seasons: seasonal.Seasons | None = None  # migrants' seasonal ranges (cfg.migratory_fraction)

  def taxon_names(self) -> list[str]:
    return [species_name(int(t)) for t in self.taxa]

  def write(self, directory: str | os.PathLike) -> None:
    """Writes train.csv, env.npy, taxa.json, truth_h3_res{r}.npz, world.json atomically."""
    from sinr_jax.world.io import write_world
    write_world(self, directory)


def species_name(taxon_id: int) -> str:
  return f"Simulata species {taxon_id}"


def _quantiles(x: np.ndarray) -> dict[str, float]:
  q = np.quantile(x, _QUANTILES) if len(x) else np.zeros(len(_QUANTILES))
  return {f"q{int(round(p * 100)):02d}": float(v) for p, v in zip(_QUANTILES, q)}


def summarize(cfg: WorldConfig, obs: pd.DataFrame, taxa: np.ndarray, cells: np.ndarray,
              presence: sp.csr_matrix) -> dict:
  """Counts and quantiles written to world.json (range sizes in cells and km^2)."""
  range_cells = np.diff(presence.indptr)
  per_species = pd.Series(obs["taxon_id"]).value_counts().reindex(taxa, fill_value=0).to_numpy()
  cell_km2 = h3.average_hexagon_area(cfg.h3_res, unit="km^2")
  return {
      "num_species": int(len(taxa)), "num_observations": int(len(obs)),
      "num_cells": int(len(cells)), "num_presences": int(presence.nnz),
      "num_users": int(obs["user_id"].nunique()),
      "range_cells": _quantiles(range_cells),
      "range_area_km2": _quantiles(range_cells * cell_km2),
      "obs_per_species": _quantiles(per_species),
  }


# One random stream per step. The first eight are the original ones; the geo-prior extensions
# draw from the last three only, so a world with them off is bit-identical to one made before.
STREAMS = ("taxa", "homes", "niche", "counts", "cells", "jitter", "users", "dates", "season",
           "prefs", "redate")


def streams(cfg: WorldConfig) -> dict[str, np.random.Generator]:
  """Fresh generators of every step of `make_world(cfg)` (replayable, e.g. species phenology)."""
  children = np.random.SeedSequence(cfg.seed).spawn(len(STREAMS))
  return {name: np.random.default_rng(c) for name, c in zip(STREAMS, children)}


def make_world(cfg: WorldConfig | None = None) -> World:
  """Simulates the world described by `cfg`; identical configs give bit-identical worlds."""
  cfg = cfg or WorldConfig()
  (s_taxa, s_homes, s_niche, s_counts, s_cells, s_jitter, s_users, s_dates, s_season, s_prefs,
   s_redate) = streams(cfg).values()
  num_species = cfg.num_species
  env, channels = assets.env_raster()
  cells, cell_lonlat = grid.land_cells(cfg.h3_res)
  rows, cols = assets.raster_index(cell_lonlat[:, 0], cell_lonlat[:, 1])
  cell_env = env[rows, cols]
  elev = assets.grids()["elevation_m"][rows, cols].astype(np.float64)
  cell_xyz = unit_vectors(cell_lonlat)

  taxa = np.sort(s_taxa.choice(np.arange(1, 2_000_000), num_species, replace=False)).astype(np.int64)
  home_p = niches.home_weights(cell_lonlat, elev, cell_env[:, channels.index("greenness")], cfg)
  home = s_homes.choice(len(cells), num_species, p=home_p)
  radius, tolerance = niches.draw_niches(s_niche, num_species, len(channels), cfg)
  presence = niches.presence_matrix(home, radius, tolerance, cell_xyz, cell_env,
                                    cfg.suitability_threshold)
  seasons = None
  if cfg.migratory_fraction > 0:
    seasons = seasonal.draw_seasons(s_season, home, radius, tolerance, presence, cell_lonlat,
                                    cell_xyz, cell_env, home_p, cfg)
    presence = seasons.presence

  city_lonlat, city_pop = assets.cities()
  intensity = observers.observer_intensity(cell_lonlat, city_lonlat, city_pop,
                                           cfg.observer_bandwidth_km, cfg.observer_floor,
                                           cfg.observer_bias_exponent)
  counts = observers.obs_counts(s_counts, num_species, cfg)
  species, cell_idx = observers.sample_obs_cells(s_cells, presence, counts, intensity)
  lonlat = np.round(observers.jitter_points(s_jitter, cells, cell_lonlat, cell_idx,
                                            cfg.jitter_fraction), 6)
  user_idx, user_ids = observers.assign_users(s_users, lonlat, city_lonlat, city_pop, cfg,
                                              species=species, num_species=num_species,
                                              prefs_rng=s_prefs)
  dates = observers.draw_dates(s_dates, species, num_species, cfg)
  if seasons is not None:
    dates = seasons.redate(s_redate, dates, species, cell_idx, cfg.season_kappa)

  order = np.lexsort((s_dates.random(len(dates)), dates))  # iNat-like: ids increase with date
  obs = pd.DataFrame({
      "id": np.arange(1, len(order) + 1, dtype=np.int64),
      "latitude": lonlat[order, 1], "longitude": lonlat[order, 0],
      "taxon_id": taxa[species[order]], "user_id": user_ids[user_idx[order]],
      "observed_on": dates[order].tolist(),
  })
  summary = summarize(cfg, obs, taxa, cells, presence)
  if seasons is not None:
    summary["num_migratory"] = int(seasons.migratory.sum())
  return World(config=cfg, taxa=taxa, observations=obs, env=env, env_channels=channels,
               cells=np.array(cells), cell_lonlat=np.array(cell_lonlat), presence=presence,
               summary=summary, seasons=seasons)
