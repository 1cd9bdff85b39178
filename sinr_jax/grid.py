"""H3 helpers: land cells at a resolution, cell centres, and points to cells (h3 4.x, uint64 ids).

Cells are the integer form of H3 indexes (`h3.str_to_int`); coordinates are (lon, lat) degrees,
the order used everywhere else in the project (h3 itself takes (lat, lng)).
"""
from __future__ import annotations

import functools

import h3
import numpy as np

from sinr_jax.errors import SinrInputError


def _check_res(res: int) -> int:
  if not isinstance(res, (int, np.integer)) or not 0 <= int(res) <= 15:
    raise SinrInputError(f"H3 resolution must be an integer in 0..15, got {res!r}", field="res")
  return int(res)


def all_cells(res: int) -> np.ndarray:
  """Every H3 cell at `res`, uint64, sorted (122 at res 0, 2,016,842 at res 5)."""
  res = _check_res(res)
  roots = [h3.str_to_int(c) for c in h3.get_res0_cells()]
  kids = [np.asarray(h3.api.numpy_int.cell_to_children(c, res), np.uint64) for c in roots]
  return np.sort(np.concatenate(kids))


def cells_lonlat(cells) -> np.ndarray:
  """(M,2) float64 (lon, lat) of the centres of uint64 (or hex-string) H3 cells."""
  cells = np.asarray(cells).ravel()
  if cells.dtype.kind in "US":
    cells = np.array([h3.str_to_int(str(c)) for c in cells], np.uint64)
  to_latlng = h3.api.basic_int.cell_to_latlng
  try:
    flat = np.fromiter((x for c in cells.tolist() for x in to_latlng(c)), np.float64,
                       count=2 * len(cells))
  except (h3.H3BaseException, TypeError, ValueError) as e:
    raise SinrInputError(f"invalid H3 cell id ({e})", field="cells") from e
  return flat.reshape(-1, 2)[:, ::-1].copy()


def lonlat_to_cells(lonlat, res: int) -> np.ndarray:
  """uint64 H3 cells at `res` holding each (lon, lat) row of an (N,2) array in degrees."""
  res = _check_res(res)
  lonlat = np.asarray(lonlat, np.float64).reshape(-1, 2)
  if not np.isfinite(lonlat).all() or np.abs(lonlat[:, 1]).max(initial=0) > 90:
    raise SinrInputError("coordinates must be finite with |lat| <= 90", field="lonlat")
  to_cell = h3.api.basic_int.latlng_to_cell
  return np.fromiter((to_cell(lat, lon, res) for lon, lat in lonlat.tolist()), np.uint64,
                     count=len(lonlat))


@functools.lru_cache(maxsize=8)
def _land_cells(res: int) -> tuple[np.ndarray, np.ndarray]:
  from sinr_jax.world.assets import is_land  # lazy: sinr_jax.world imports this module
  cells = all_cells(res)
  lonlat = cells_lonlat(cells)
  keep = is_land(lonlat[:, 0], lonlat[:, 1])
  cells, lonlat = cells[keep], lonlat[keep]
  cells.flags.writeable = False
  lonlat.flags.writeable = False
  return cells, lonlat


def land_cells(res: int) -> tuple[np.ndarray, np.ndarray]:
  """Sorted uint64 H3 cells at `res` whose centre is land (packaged mask), and their (M,2) lon/lat.

  Cached per process; the arrays are read-only. Res 5 (~2M cells enumerated) takes a few seconds.
  """
  return _land_cells(_check_res(res))
