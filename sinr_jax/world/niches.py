"""Species niches in env space and their true presence on H3 land cells.

A species has a home land cell, an env optimum (the env vector of its home), per-channel Gaussian
tolerances and a dispersal radius. It is present in a cell when the Gaussian suitability at the cell
reaches the threshold AND the cell centre lies within the radius of home. The home cell always
qualifies (distance 0, suitability 1), so every species has at least one presence cell.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from sinr_jax.world.assets import EARTH_RADIUS_KM, temperature_proxy_c
from sinr_jax.world.config import WorldConfig
from sinr_jax.world.sphere import dot_rows

_BLOCK_ELEMENTS = 1 << 22  # species x cells per block: bounds memory whatever S and M are


def home_weights(cell_lonlat: np.ndarray, elevation_m: np.ndarray, greenness_z: np.ndarray,
                 cfg: WorldConfig) -> np.ndarray:
  """Probability of each land cell being a species' home.

  Lower-latitude and greener cells are preferred (latitudinal diversity gradient, productivity:
  weight exp(-|lat|/cfg.home_tropics_deg + cfg.home_greenness_weight * greenness_z)); ice caps (below
  cfg.home_min_temperature_c on the temperature proxy) are excluded; and within each lat/lon block
  the weight is divided by sqrt(#eligible cells) so small land masses are not starved of species.
  """
  lat = cell_lonlat[:, 1]
  eligible = temperature_proxy_c(lat, elevation_m) >= cfg.home_min_temperature_c
  if not eligible.any():
    eligible[:] = True
  w = np.exp(-np.abs(lat) / cfg.home_tropics_deg + cfg.home_greenness_weight * greenness_z) * eligible
  nlon = int(np.ceil(360.0 / cfg.home_region_deg))
  block = (np.floor((lat + 90.0) / cfg.home_region_deg).astype(np.int64) * nlon
           + np.floor((cell_lonlat[:, 0] + 180.0) / cfg.home_region_deg).astype(np.int64))
  n = np.bincount(block, weights=eligible.astype(np.float64))
  w = w / np.sqrt(np.maximum(n[block], 1.0))
  return w / w.sum()


def draw_niches(rng: np.random.Generator, num_species: int, num_channels: int,
                cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
  """Dispersal radius (S,) km and tolerances (S, C), log-normal with a shared 'breadth' factor.

  Generalists get both a wide niche and a long radius, which makes range sizes heavy-tailed.
  """
  z = rng.standard_normal(num_species)
  own = rng.standard_normal(num_species)
  rho = cfg.breadth_correlation
  log_r = np.log(cfg.radius_km_median) + cfg.radius_log_sigma * (rho * z + np.sqrt(1 - rho * rho) * own)
  jitter = rng.standard_normal((num_species, num_channels))
  log_t = (np.log(cfg.tolerance_median) + cfg.tolerance_log_sigma * z[:, None]
           + cfg.tolerance_channel_sigma * jitter)
  return np.exp(log_r), np.exp(log_t)


def presence_matrix(home: np.ndarray, radius_km: np.ndarray, tolerance: np.ndarray,
                    cell_xyz: np.ndarray, cell_env: np.ndarray, threshold: float) -> sp.csr_matrix:
  """(S, M) boolean CSR of true presence, computed in blocks of species (never dense S x M)."""
  num_species, num_cells = len(home), len(cell_xyz)
  optimum = cell_env[home].astype(np.float32)
  inv_tol = (1.0 / tolerance).astype(np.float32)
  cos_r = np.cos(np.minimum(radius_km / EARTH_RADIUS_KM, np.pi)).astype(np.float32)
  xyz = cell_xyz.astype(np.float32)  # float32 angles resolve ~2 km, far below the cell size
  max_d2 = np.float32(-2.0 * np.log(threshold))
  env = cell_env.astype(np.float32)
  block = max(1, _BLOCK_ELEMENTS // max(num_cells, 1))
  rows, cols = [], []
  for s0 in range(0, num_species, block):
    s1 = min(s0 + block, num_species)
    d2 = np.zeros((s1 - s0, num_cells), np.float32)
    for c in range(env.shape[1]):
      d2 += np.square((env[None, :, c] - optimum[s0:s1, c, None]) * inv_tol[s0:s1, c, None])
    ok = d2 <= max_d2
    ok &= dot_rows(xyz[home[s0:s1]], xyz) >= cos_r[s0:s1, None]
    ok[np.arange(s1 - s0), home[s0:s1]] = True  # guard against rounding at the home cell
    r, c = np.nonzero(ok)
    rows.append((r + s0).astype(np.int64))
    cols.append(c.astype(np.int32))
  r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  c = np.concatenate(cols) if cols else np.zeros(0, np.int32)
  indptr = np.zeros(num_species + 1, np.int64)
  np.cumsum(np.bincount(r, minlength=num_species), out=indptr[1:])
  data = np.ones(len(c), bool)
  return sp.csr_matrix((data, c, indptr), shape=(num_species, num_cells))
