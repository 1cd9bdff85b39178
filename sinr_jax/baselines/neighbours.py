"""Nearest-neighbour geo priors (seed Table 7.1), on scikit-learn's ball tree (haversine).

  "num":     P(c | x) = the share of class c among the k training observations nearest to x
  "spatial": P(c | x) = the share of class c among the training observations within r km of x
             (uniform when there are none)
Distances are great circles on a sphere of radius 6371 km. Every k (or r) of the grid is scored
from one neighbour query (the largest), so choosing it on validation costs one search.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

from sinr_jax.baselines.class_prior import gather
from sinr_jax.errors import SinrInputError

EARTH_RADIUS_KM = 6371.0088
KS = (5, 10, 25, 50, 100, 250)
RADII_KM = (25.0, 50.0, 100.0, 200.0, 400.0)
_QUERY_CHUNK = 512  # queries per radius search (bounds the neighbour lists held at once)


def radians_latlon(lonlat: np.ndarray) -> np.ndarray:
  """(N, 2) lon/lat degrees → (N, 2) [lat, lon] radians, the order sklearn's haversine wants."""
  return np.radians(np.asarray(lonlat, np.float64)[:, ::-1])


class NeighbourPrior:
  def __init__(self, lonlat: np.ndarray, labels: np.ndarray, num_classes: int, mode: str, *,
               ks: Sequence[int] = KS, radii_km: Sequence[float] = RADII_KM):
    if mode not in ("num", "spatial"):
      raise SinrInputError(f"mode must be 'num' or 'spatial', got {mode!r}", field="mode")
    if len(labels) == 0:
      raise SinrInputError("no training observations", field="labels")
    self.mode, self.name = mode, f"nn_{mode}"
    self.labels = np.asarray(labels, np.int64)
    self.num_classes = int(num_classes)
    self.ks = tuple(k for k in ks if k <= len(labels)) or (len(labels),)
    self.radii_km = tuple(radii_km)
    self.index = NearestNeighbors(metric="haversine", algorithm="ball_tree").fit(
        radians_latlon(lonlat))

  def _counts(self, query_rows, neighbour_labels, keep, n) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(int(keep.sum())), (query_rows[keep], neighbour_labels[keep])),
                         shape=(n, self.num_classes))

  def scores(self, lonlat: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    n = len(lonlat)
    rows = np.arange(n)
    out = {}
    if n == 0:
      grid = [f"k={k}" for k in self.ks] if self.mode == "num" else [
          f"r={r:g}km" for r in self.radii_km]
      return {g: np.zeros(cols.shape) for g in grid}
    q = radians_latlon(lonlat)
    if self.mode == "num":
      idx = self.index.kneighbors(q, n_neighbors=max(self.ks), return_distance=False)
      lab = self.labels[idx]                                   # (n, kmax) nearest first
      rank = np.broadcast_to(np.arange(idx.shape[1]), idx.shape).ravel()
      qr = np.repeat(rows, idx.shape[1])
      for k in self.ks:
        out[f"k={k}"] = gather(self._counts(qr, lab.ravel(), rank < k, n), rows, cols) / k
      return out
    radii = np.asarray(self.radii_km) / EARTH_RADIUS_KM
    parts = {r: [] for r in self.radii_km}
    for start in range(0, n, _QUERY_CHUNK):
      dist, idx = self.index.radius_neighbors(q[start:start + _QUERY_CHUNK], radius=radii.max())
      qr = np.repeat(np.arange(len(idx)), [len(i) for i in idx])
      d = np.concatenate(dist) if len(dist) else np.zeros(0)
      lab = self.labels[np.concatenate(idx).astype(np.int64)] if len(idx) else np.zeros(0, int)
      chunk_rows = np.arange(len(idx))
      for r_km, r in zip(self.radii_km, radii):
        counts = self._counts(qr, lab, d <= r, len(idx))
        total = np.asarray(counts.sum(1)).ravel()
        p = np.full((len(idx), cols.shape[1]), 1.0 / self.num_classes)
        seen = np.flatnonzero(total > 0)
        if len(seen):
          p[seen] = gather(counts, chunk_rows[seen], cols[start:start + len(idx)][seen]) / \
              total[seen][:, None]
        parts[r_km].append(p)
    return {f"r={r:g}km": np.concatenate(parts[r]) for r in self.radii_km}
