"""The packaged real grids (elevation, land, colour, cities) and the environmental raster built from them.

All grids share one global 1/3-degree plate-carree layout: 540 rows x 1080 cols, row 0 = the band
90N..89.667N, col 0 = the band 180W..179.667W. Provenance of every grid: assets/PROVENANCE.md.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np
from scipy import ndimage

from sinr_jax.errors import SinrInputError

H, W = 540, 1080
CELLS_PER_DEGREE = 3
EARTH_RADIUS_KM = 6371.0088
LAND_THRESHOLD = 128  # land_fraction >= 128/255 is exactly "at least half of the 30'' pixels are land"
ASSET_PATH = pathlib.Path(__file__).parent / "assets" / "world_grids.npz"
_KEYS = {"elevation_m": ((H, W), np.int16), "land_fraction": ((H, W), np.uint8),
         "rgb": ((H, W, 3), np.uint8), "city_lonlat": (None, np.float32),
         "city_population": (None, np.int32)}

ENV_CHANNELS = ["elevation", "temperature_proxy", "greenness", "brightness", "log_dist_coast"]


def _frozen(a: np.ndarray) -> np.ndarray:
  a.flags.writeable = False
  return a


@functools.lru_cache(maxsize=1)
def grids() -> dict[str, np.ndarray]:
  """The packaged grids, read-only: elevation_m, land_fraction (0..255), rgb, city_lonlat, city_population."""
  try:
    with np.load(ASSET_PATH, allow_pickle=False) as z:
      out = {k: z[k] for k in _KEYS}
  except (OSError, KeyError, ValueError) as e:
    raise SinrInputError(f"cannot read packaged world grids ({e})", file=ASSET_PATH) from e
  for k, (shape, dtype) in _KEYS.items():
    if out[k].dtype != dtype or (shape is not None and out[k].shape != shape):
      raise SinrInputError(f"unexpected {out[k].dtype}{out[k].shape}", file=ASSET_PATH, field=k)
  return {k: _frozen(v) for k, v in out.items()}


@functools.lru_cache(maxsize=1)
def land_mask() -> np.ndarray:
  """(540, 1080) bool, read-only: True where at least half the cell is land (GLOBE 30'' mask)."""
  return _frozen(grids()["land_fraction"] >= LAND_THRESHOLD)


def raster_index(lon, lat) -> tuple[np.ndarray, np.ndarray]:
  """Row and column of the 1/3-degree cell holding each (lon, lat) in degrees; lon wraps, lat clips."""
  lon = np.asarray(lon, np.float64)
  lat = np.asarray(lat, np.float64)
  rows = np.clip(np.floor((90.0 - lat) * CELLS_PER_DEGREE), 0, H - 1).astype(np.int64)
  cols = np.floor((lon + 180.0) * CELLS_PER_DEGREE).astype(np.int64) % W
  return rows, cols


def is_land(lon, lat) -> np.ndarray:
  """Vectorised land test (degrees) against `land_mask()`; returns a bool array shaped like lon."""
  rows, cols = raster_index(lon, lat)
  return land_mask()[rows, cols]


def cities() -> tuple[np.ndarray, np.ndarray]:
  """(K,2) float32 (lon, lat) and (K,) int32 population of GeoNames cities with >= 100,000 people."""
  g = grids()
  return g["city_lonlat"], g["city_population"]


def pixel_lonlat() -> tuple[np.ndarray, np.ndarray]:
  """Centre longitude (W,) and latitude (H,) of the raster columns and rows, degrees."""
  lon = -180.0 + (np.arange(W) + 0.5) / CELLS_PER_DEGREE
  lat = 90.0 - (np.arange(H) + 0.5) / CELLS_PER_DEGREE
  return lon, lat


def temperature_proxy_c(lat: np.ndarray, elevation_m: np.ndarray) -> np.ndarray:
  """DERIVED, NOT MEASURED: a rough mean annual air temperature in deg C.

  Sea-level value 26 - 0.05|lat| - 0.0059 lat^2 (a quadratic that roughly follows the zonal-mean
  climatology: ~26 C at the equator, ~19 C at 30 deg, ~2 C at 60 deg, ~-26 C at the poles), minus a
  standard-atmosphere lapse rate of 6.5 C per km above sea level (land below sea level is not warmed).
  It gives the simulated niches a temperature-like axis that mixes latitude and altitude.
  """
  a = np.abs(lat)
  return 26.0 - 0.05 * a - 0.0059 * a * a - 6.5e-3 * np.maximum(elevation_m, 0.0)


def distance_to_coast_km(land: np.ndarray) -> np.ndarray:
  """Great-circle km from each land cell centre to the nearest water cell centre (0 over water).

  The nearest water cell is found by a Euclidean distance transform in pixel space (the grid wraps
  in longitude), then its distance is measured on the sphere, which corrects for cos(lat).
  """
  pad = W // 4
  wrapped = np.concatenate([land[:, -pad:], land, land[:, :pad]], axis=1)
  _, (ri, ci) = ndimage.distance_transform_edt(wrapped, return_indices=True)
  ri, ci = ri[:, pad:pad + W], (ci[:, pad:pad + W] - pad) % W
  lon, lat = pixel_lonlat()
  lon1, lat1 = np.radians(np.broadcast_to(lon, (H, W))), np.radians(lat)[:, None]
  lon2, lat2 = np.radians(lon[ci]), np.radians(lat[ri])
  h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
  return np.where(land, 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1))), 0.0)


def raw_env() -> dict[str, np.ndarray]:
  """The unscaled (540, 1080) float64 channels of `env_raster`, keyed by ENV_CHANNELS names.

  - elevation: ETOPO20 relief in metres (NOAA, public domain), cell mean at 20 arc-minutes.
  - temperature_proxy: derived from latitude and elevation (see `temperature_proxy_c`), NOT measured.
  - greenness: (G - R) / (G + R + 1) of the cell-mean NASA Blue Marble colour (vegetated land > 0).
  - brightness: (R + G + B) / 765 of the same colour (deserts and ice are bright, forests dark).
  - log_dist_coast: log1p of the great-circle distance to the coast in km, from the land mask.
  """
  g = grids()
  elev = g["elevation_m"].astype(np.float64)
  rgb = g["rgb"].astype(np.float64)
  r, gr, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  _, lat = pixel_lonlat()
  lat2d = np.broadcast_to(lat[:, None], (H, W))
  return {
      "elevation": elev,
      "temperature_proxy": temperature_proxy_c(lat2d, elev),
      "greenness": (gr - r) / (gr + r + 1.0),
      "brightness": (r + gr + b) / 765.0,
      "log_dist_coast": np.log1p(distance_to_coast_km(land_mask())),
  }


@functools.lru_cache(maxsize=1)
def _env() -> np.ndarray:
  land = land_mask()
  raw = raw_env()
  out = np.full((H, W, len(ENV_CHANNELS)), np.nan, np.float32)
  for c, name in enumerate(ENV_CHANNELS):
    v = raw[name][land]
    out[land, c] = ((v - v.mean()) / v.std()).astype(np.float32)
  return _frozen(out)


def env_raster() -> tuple[np.ndarray, list[str]]:
  """(540, 1080, C) float32 read-only env raster and its channel names (cached per process).

  Same layout as the published bioclim_elevation_scaled.npy: plate carree, row 0 north, NaN over
  the ocean (land = `land_mask()`), each channel z-scored over land cells. Channels: see `raw_env`.
  """
  return _env(), list(ENV_CHANNELS)
