"""Who observes what, where and when: counts per species, observer-biased cells, points, users, dates."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from sinr_jax.world.assets import EARTH_RADIUS_KM
from sinr_jax.world.config import WorldConfig
from sinr_jax.world.sphere import destination, dot_rows, inradius_km, unit_vectors


def observer_intensity(cell_lonlat: np.ndarray, city_lonlat: np.ndarray, city_pop: np.ndarray,
                       bandwidth_km: float, floor: float, exponent: float = 1.0) -> np.ndarray:
  """Relative observer effort per cell: Gaussian kernels around real cities + a floor.

  Each city contributes sqrt(population) * exp(-d^2 / 2 bw^2) (d great-circle, cut at 4 bw); the
  kernel sum is raised to `exponent` (> 1 sharpens the pull of cities) and scaled to mean 1 over
  the cells, then `floor` is added so remote cells keep a small chance of being visited.
  """
  cells = unit_vectors(cell_lonlat)
  towns = cKDTree(unit_vectors(city_lonlat.astype(np.float64)))
  chord = 2 * np.sin(min(4.0 * bandwidth_km / EARTH_RADIUS_KM, np.pi) / 2)
  sqrt_pop = np.sqrt(city_pop.astype(np.float64))
  k = np.zeros(len(cells))
  for i in range(0, len(cells), 32_768):  # chunks keep the pair list small at fine resolutions
    pairs = cKDTree(cells[i:i + 32_768]).sparse_distance_matrix(towns, chord, output_type="ndarray")
    d_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(pairs["v"] / 2, 0, 1))
    w = sqrt_pop[pairs["j"]] * np.exp(-0.5 * (d_km / bandwidth_km) ** 2)
    k[i:i + 32_768] = np.bincount(pairs["i"], weights=w, minlength=len(cells[i:i + 32_768]))
  mean = k.mean()
  k = (k / mean if mean > 0 else k) ** exponent
  mean = k.mean()
  return (k / mean if mean > 0 else k) + floor


def obs_counts(rng: np.random.Generator, num_species: int, cfg: WorldConfig) -> np.ndarray:
  """(S,) observations per species: Zipf n ~ C rank^-a clipped to [min, max], C set by bisection
  so the total is close to cfg.num_observations. Ranks are a random permutation of the species."""
  rank = rng.permutation(num_species) + 1.0
  base = rank ** -cfg.zipf_exponent
  lo, hi = cfg.min_obs_per_species, cfg.max_obs_per_species
  counts = lambda c: np.clip(np.floor(c * base + 0.5), lo, hi)
  a, b = 0.0, float(max(hi, 1)) * num_species ** cfg.zipf_exponent + 1.0
  for _ in range(100):  # the total is monotone in C
    mid = 0.5 * (a + b)
    a, b = (mid, b) if counts(mid).sum() < cfg.num_observations else (a, mid)
  return counts(b).astype(np.int64)


def sample_obs_cells(rng: np.random.Generator, presence: sp.csr_matrix, counts: np.ndarray,
                     intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Species index and presence-cell index of each observation, cell chosen ~ observer intensity.

  Vectorised over all species: one cumulative sum of intensity over the CSR entries, then each
  observation inverts the CDF of its own species' row.
  """
  species = np.repeat(np.arange(len(counts)), counts)
  indptr, indices = presence.indptr.astype(np.int64), presence.indices.astype(np.int64)
  cum = np.concatenate([[0.0], np.cumsum(intensity[indices])])
  start, total = cum[indptr[:-1]], cum[indptr[1:]] - cum[indptr[:-1]]
  target = start[species] + rng.random(len(species)) * total[species]
  pos = np.searchsorted(cum, target, side="right") - 1
  pos = np.clip(pos, indptr[species], indptr[species + 1] - 1)
  return species, indices[pos]


def jitter_points(rng: np.random.Generator, cells: np.ndarray, cell_lonlat: np.ndarray,
                  cell_idx: np.ndarray, fraction: float) -> np.ndarray:
  """(N,2) lon/lat uniform in a disc of `fraction` x the inscribed radius around each cell centre,
  so every point stays inside its hexagon (or pentagon)."""
  used, inv = np.unique(cell_idx, return_inverse=True)
  r_in = inradius_km(cells[used], cell_lonlat[used])[inv]
  n = len(cell_idx)
  bearing = rng.uniform(0.0, 2 * np.pi, n)
  dist = fraction * r_in * np.sqrt(rng.random(n))
  return destination(cell_lonlat[cell_idx], bearing, dist)


def assign_users(rng: np.random.Generator, obs_lonlat: np.ndarray, city_lonlat: np.ndarray,
                 city_pop: np.ndarray, cfg: WorldConfig, *, species: np.ndarray | None = None,
                 num_species: int = 0,
                 prefs_rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
  """User index (N,) per observation and the (U,) distinct user ids.

  Users live in real cities (drawn ~ sqrt(population)), have Zipf-like activity, and are picked per
  observation with probability ~ activity * (exp(-d/travel) + floor): mostly locals, a few travellers.
  With cfg.user_travel_log_sigma > 0 each user's home range (travel) is log-normal around
  cfg.user_travel_km; with cfg.user_groups > 0 the species fall into that many taxon groups and
  the weight is multiplied by the user's preference for the observation's group (Dirichlet with
  cfg.user_group_concentration, scaled to mean 1). Both draw from `prefs_rng` only, so the other
  draws, and the default world, stay as they were.
  """
  u = cfg.num_users
  p_city = np.sqrt(city_pop.astype(np.float64))
  home = unit_vectors(city_lonlat[rng.choice(len(city_pop), u, p=p_city / p_city.sum())].astype(np.float64))
  activity = (rng.permutation(u) + 1.0) ** -cfg.user_activity_exponent
  ids = np.sort(rng.choice(np.arange(1, 1_000_000), u, replace=False)).astype(np.int64)
  xyz = unit_vectors(obs_lonlat)
  draws = rng.random(len(xyz))
  travel, obs_pref = cfg.user_travel_km, None
  if prefs_rng is not None and cfg.user_travel_log_sigma > 0:
    travel = cfg.user_travel_km * np.exp(cfg.user_travel_log_sigma * prefs_rng.standard_normal(u))
  if prefs_rng is not None and cfg.user_groups > 0 and species is not None:
    num_species = max(num_species, int(species.max(initial=0)) + 1)
    group = prefs_rng.integers(0, cfg.user_groups, num_species)
    pref = prefs_rng.dirichlet(np.full(cfg.user_groups, cfg.user_group_concentration), u)
    obs_pref = (pref * cfg.user_groups + 1e-6)[:, group[species]]  # (U, N)
  out = np.empty(len(xyz), np.int64)
  step = max(1, (1 << 21) // u)
  for i in range(0, len(xyz), step):
    d = EARTH_RADIUS_KM * np.arccos(np.clip(dot_rows(xyz[i:i + step], home), -1, 1))
    w = activity * (np.exp(-d / travel) + cfg.user_travel_floor)
    if obs_pref is not None:
      w = w * obs_pref[:, i:i + step].T
    c = np.cumsum(w, axis=1)
    pick = (c < draws[i:i + step, None] * c[:, -1:]).sum(axis=1)
    out[i:i + step] = np.minimum(pick, u - 1)
  return out, ids


def species_phenology(rng: np.random.Generator, num_species: int,
                      cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
  """(peak year angle, von Mises concentration) of every species' observation dates."""
  peak = rng.uniform(-np.pi, np.pi, num_species)
  return peak, rng.exponential(cfg.seasonality_mean_kappa, num_species)


def draw_dates(rng: np.random.Generator, species: np.ndarray, num_species: int,
               cfg: WorldConfig,
               phenology: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
  """YYYY-MM-DD strings: year grows geometrically, day of year ~ von Mises around a species' peak.

  The species' peaks and concentrations are drawn first from `rng` unless `phenology` gives them
  (new draws of an existing world's observation process, e.g. evaluation images)."""
  peak, kappa = species_phenology(rng, num_species, cfg) if phenology is None else phenology
  years = np.arange(cfg.first_year, cfg.last_year + 1)
  p_year = cfg.yearly_growth ** (years - cfg.first_year)
  year = years[rng.choice(len(years), len(species), p=p_year / p_year.sum())]
  angle = rng.vonmises(peak[species], kappa[species])
  jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
  length = ((year + 1 - 1970).astype("datetime64[Y]").astype("datetime64[D]") - jan1).astype(np.int64)
  frac = (angle + np.pi) / (2 * np.pi)
  doy = np.minimum((frac * length).astype(np.int64), length - 1)
  return np.datetime_as_string(jan1 + doy, unit="D")
