"""Small spherical-geometry helpers (spherical Earth, R = 6371 km), all vectorised over rows."""
from __future__ import annotations

import h3
import numpy as np

from sinr_jax.world.assets import EARTH_RADIUS_KM


def unit_vectors(lonlat: np.ndarray) -> np.ndarray:
  """(N,2) lon/lat degrees -> (N,3) unit vectors."""
  lon, lat = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
  c = np.cos(lat)
  return np.stack([c * np.cos(lon), c * np.sin(lon), np.sin(lat)], axis=1)


def dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(B,3) x (M,3) -> (B,M) dot products, written out so results never depend on BLAS threading."""
  return a[:, None, 0] * b[None, :, 0] + a[:, None, 1] * b[None, :, 1] + a[:, None, 2] * b[None, :, 2]


def destination(lonlat: np.ndarray, bearing: np.ndarray, dist_km: np.ndarray) -> np.ndarray:
  """Points reached from (N,2) lon/lat going `dist_km` along initial bearings (radians from north)."""
  lon1, lat1 = np.radians(lonlat[:, 0]), np.radians(lonlat[:, 1])
  d = dist_km / EARTH_RADIUS_KM
  lat2 = np.arcsin(np.clip(np.sin(lat1) * np.cos(d) + np.cos(lat1) * np.sin(d) * np.cos(bearing), -1, 1))
  lon2 = lon1 + np.arctan2(np.sin(bearing) * np.sin(d) * np.cos(lat1),
                           np.cos(d) - np.sin(lat1) * np.sin(lat2))
  lon2 = (np.degrees(lon2) + 180.0) % 360.0 - 180.0
  return np.stack([lon2, np.degrees(lat2)], axis=1)


def inradius_km(cells: np.ndarray, centres_lonlat: np.ndarray) -> np.ndarray:
  """Distance from each H3 cell centre to the nearest edge of its boundary polygon, km.

  H3 edges are great-circle arcs (straight in the gnomonic face projection), so the distance to an
  edge is the angle between the centre and the edge's great circle.
  """
  owner, a_ll, b_ll = [], [], []
  for i, c in enumerate(cells.tolist()):
    ring = h3.api.basic_int.cell_to_boundary(c)  # ((lat, lng), ...)
    owner.extend([i] * len(ring))
    a_ll.extend(ring)
    b_ll.extend(ring[1:] + ring[:1])
  owner = np.asarray(owner)
  a = unit_vectors(np.asarray(a_ll, np.float64)[:, ::-1])
  b = unit_vectors(np.asarray(b_ll, np.float64)[:, ::-1])
  n = np.cross(a, b)
  n /= np.linalg.norm(n, axis=1, keepdims=True)
  p = unit_vectors(np.asarray(centres_lonlat, np.float64))[owner]
  ang = np.abs(np.arcsin(np.clip(np.sum(p * n, axis=1), -1, 1)))
  out = np.full(len(cells), np.inf)
  np.minimum.at(out, owner, ang)
  return out * EARTH_RADIUS_KM
