"""Simulated geo-feature rasters: real and derived layers from the packaged grids, as GeoTIFFs.

We cannot ship the nine published US rasters, so the task regresses what the packaged data
supports (README.md names the mapping). Rasters cover the globe like the published ones (pixel
(i, j) at lon = linspace(-180, 180, W)[j], lat = linspace(90, -90, H)[i]; NaN over water) and
USA_MASK.tif is the land inside the contiguous-US box (it includes northern Mexico and a
sliver of Canada: no border data is packaged).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from sinr_jax.evaluators.geo_feature import pixel_lonlat
from sinr_jax.world import assets
from sinr_jax.world.sphere import unit_vectors

US_BOX = (-125.0, 24.5, -66.5, 49.5)  # lon_min, lat_min, lon_max, lat_max
LOG1P = ("POPULATION_DENSITY",)
LAYERS = ("ELEVATION", "TEMPERATURE_PROXY", "GREENNESS", "BRIGHTNESS", "DISTANCE_TO_COAST",
          "RUGGEDNESS", "POPULATION_DENSITY")


def population_density(lonlat: np.ndarray, bandwidth_km: float = 50.0) -> np.ndarray:
  """People per km² from the packaged cities (≥ 100k people), each spread as a 2-d Gaussian."""
  city_lonlat, city_pop = assets.cities()
  chord = 2 * np.sin(4 * bandwidth_km / assets.EARTH_RADIUS_KM / 2)
  pairs = cKDTree(unit_vectors(lonlat)).sparse_distance_matrix(
      cKDTree(unit_vectors(city_lonlat.astype(np.float64))), chord, output_type="ndarray")
  d_km = 2 * assets.EARTH_RADIUS_KM * np.arcsin(np.clip(pairs["v"] / 2, 0, 1))
  w = city_pop[pairs["j"]] * np.exp(-0.5 * (d_km / bandwidth_km) ** 2)
  return np.bincount(pairs["i"], weights=w, minlength=len(lonlat)) / (2 * np.pi * bandwidth_km ** 2)


def geo_feature_rasters(shape: tuple[int, int] = (540, 1080)) -> tuple[dict[str, np.ndarray],
                                                                           np.ndarray]:
  """({layer: (H, W) float32, NaN off land}, (H, W) uint8 mask) on the reference's pixel grid."""
  lon, lat = pixel_lonlat(shape)
  glon, glat = np.meshgrid(lon, lat)
  rows, cols = assets.raster_index(glon, glat)
  raw = assets.raw_env()
  elev = raw["elevation"]
  rugged = np.sqrt(np.maximum(ndimage.uniform_filter(elev ** 2, 3, mode="wrap")
                              - ndimage.uniform_filter(elev, 3, mode="wrap") ** 2, 0))
  land = assets.land_mask()[rows, cols]
  layers = {"ELEVATION": elev, "TEMPERATURE_PROXY": raw["temperature_proxy"],
            "GREENNESS": raw["greenness"], "BRIGHTNESS": raw["brightness"],
            "DISTANCE_TO_COAST": np.expm1(raw["log_dist_coast"]), "RUGGEDNESS": rugged}
  out = {k: np.where(land, v[rows, cols], np.nan).astype(np.float32) for k, v in layers.items()}
  pop = np.full(shape, np.nan, np.float32)
  pop[land] = population_density(np.stack([glon[land], glat[land]], 1))
  out["POPULATION_DENSITY"] = pop
  box = (glon >= US_BOX[0]) & (glat >= US_BOX[1]) & (glon <= US_BOX[2]) & (glat <= US_BOX[3])
  return {k: out[k] for k in LAYERS}, (land & box).astype(np.uint8)


def write_geotiff(path, raster: np.ndarray) -> None:
  """Single-band GeoTIFF (zlib), georeferenced as EPSG:4326 with pixel centres on the grid above."""
  import tifffile
  h, w = raster.shape
  scale = (360.0 / (w - 1), 180.0 / (h - 1), 0.0)
  tiepoint = (0.0, 0.0, 0.0, -180.0, 90.0, 0.0)
  # GeoKeyDirectory: version 1.1.0, 4 keys: geographic model, PixelIsPoint, WGS 84, degrees.
  keys = (1, 1, 0, 4, 1024, 0, 1, 2, 1025, 0, 1, 2, 2048, 0, 1, 4326, 2054, 0, 1, 9102)
  tifffile.imwrite(path, raster, compression="zlib", extratags=[
      (33550, "d", 3, scale, False), (33922, "d", 6, tiepoint, False),
      (34735, "H", len(keys), keys, False)])
