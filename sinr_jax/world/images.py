"""New draws of a world's observation process, with dates: the images a geo prior is tested on.

The same process as the training observations (presence cell ~ observer intensity, a point
jittered inside the cell, the year and each species' phenology, migrants dated by the season of
their cell), from a separate generator, so no image is a training point. Species phenology is
replayed from the world's own date stream, so residents keep the seasonality they were trained on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sinr_jax.world import assets, observers
from sinr_jax.world.simulate import streams


def observer_intensity(world) -> np.ndarray:
  cfg = world.config
  city_lonlat, city_pop = assets.cities()
  return observers.observer_intensity(world.cell_lonlat, city_lonlat, city_pop,
                                      cfg.observer_bandwidth_km, cfg.observer_floor,
                                      cfg.observer_bias_exponent)


def draw_images(world, rng: np.random.Generator, *, per_species: int,
                missing_location: float = 0.0, missing_date: float = 0.0) -> pd.DataFrame:
  """`per_species` images of every species in random order: columns label (species index),
  cell (index into world.cells), longitude, latitude (NaN where "missing"), observed_on
  (YYYY-MM-DD; "" where missing) and day (day-of-year fraction; NaN where missing)."""
  s_loc, s_jit, s_dates, s_redate, s_order, s_missing = rng.spawn(6)
  cfg, num_species = world.config, len(world.taxa)
  counts = np.full(num_species, per_species, np.int64)
  species, cell_idx = observers.sample_obs_cells(s_loc, world.presence.tocsr(), counts,
                                                 observer_intensity(world))
  lonlat = np.round(observers.jitter_points(s_jit, world.cells, world.cell_lonlat, cell_idx,
                                            cfg.jitter_fraction), 6)
  phenology = observers.species_phenology(streams(cfg)["dates"], num_species, cfg)
  dates = observers.draw_dates(s_dates, species, num_species, cfg, phenology=phenology)
  if world.seasons is not None:
    dates = world.seasons.redate(s_redate, dates, species, cell_idx, cfg.season_kappa)
  order = s_order.permutation(len(species))
  species, cell_idx, lonlat, dates = species[order], cell_idx[order], lonlat[order], dates[order]
  u = s_missing.random((len(species), 2))
  lonlat[u[:, 0] < missing_location] = np.nan
  dates = np.where(u[:, 1] < missing_date, "", dates)
  return pd.DataFrame({"label": species.astype(np.int64), "cell": cell_idx.astype(np.int64),
                       "longitude": lonlat[:, 0], "latitude": lonlat[:, 1],
                       "observed_on": dates})
