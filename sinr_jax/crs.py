"""Coordinate reference systems: a user's projected coordinates to lon/lat degrees and back.

All projection arithmetic is pyproj's (PROJ); this module only parses the user's CRS, names the
setting that was wrong when it does not parse, and keeps axis order fixed at (x, y) = (east,
north) = (lon, lat), whatever order the CRS's authority declares. pyproj is the optional extra
`sdm` (`pip install 'ecorep-jax[sdm]'`): runs that never name a CRS do not need it.
"""
from __future__ import annotations

import functools

import numpy as np

from sinr_jax.errors import SinrInputError

LONLAT = "EPSG:4326"


def _pyproj(field: str):
  try:
    import pyproj
  except ImportError:
    raise SinrInputError("a named CRS needs pyproj: pip install 'ecorep-jax[sdm]'",
                         field=field) from None
  return pyproj


@functools.lru_cache(maxsize=32)
def parse(crs: str, *, field: str = "data.crs", file=None):
  """A pyproj CRS from 'EPSG:32610', a PROJ string or WKT; SinrInputError when it does not parse."""
  pyproj = _pyproj(field)
  try:
    return pyproj.CRS.from_user_input(crs)
  except pyproj.exceptions.CRSError as e:
    raise SinrInputError(f"cannot parse the CRS {crs!r} ({e}); give e.g. 'EPSG:32610'",
                         file=file, field=field) from None


@functools.lru_cache(maxsize=32)
def _transformer(src: str, dst: str):
  return _pyproj("data.crs").Transformer.from_crs(parse(src), parse(dst), always_xy=True)


def to_lonlat(x, y, crs: str) -> tuple[np.ndarray, np.ndarray]:
  """(lon, lat) degrees of points (x, y) given in `crs`; inf where PROJ cannot project a point."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if not crs:
    return x, y
  lon, lat = _transformer(crs, LONLAT).transform(x, y)
  return np.asarray(lon, np.float64), np.asarray(lat, np.float64)


def from_lonlat(lon, lat, crs: str) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) in `crs` of points given in lon/lat degrees."""
  lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
  if not crs:
    return lon, lat
  x, y = _transformer(LONLAT, crs).transform(lon, lat)
  return np.asarray(x, np.float64), np.asarray(y, np.float64)
