"""Adaptive kernel density geo prior (after Berg et al., Birdsnap, CVPR 2014; seed Table 7.1).

Per class c, p(x | c) is a Gaussian kernel density on the sphere (scikit-learn's KernelDensity,
haversine metric, ball tree) whose bandwidth adapts to each observation: the great-circle
distance to its k-th nearest observation of the same class, clipped to [25, 3200] km, times a
global scale chosen on validation. Sparse classes get wide kernels, dense clusters narrow ones.
scikit-learn's kernel sums take one bandwidth per call, so the bandwidths are rounded to a ladder
of powers of two (25, 50, ..., 3200 km): each class is a mixture of one ball tree per rung, queried
with `BallTree.kernel_density` (the sum behind `KernelDensity.score_samples`, normalised for two
dimensions) at that rung's bandwidth. The trees are built once and serve every scale. Then
P(c | x) = (n_c / N) p(x | c) / p(x) = Σ_rungs K_{c,rung}(x) / Σ_rungs K_{all,rung}(x).
Spatial only: Birdsnap's prior also had a time term, left out here as in the other count-based
baselines (the date is the learned prior's advantage, measured by its no_date variant).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import BallTree, NearestNeighbors

from sinr_jax.baselines.neighbours import EARTH_RADIUS_KM, radians_latlon
from sinr_jax.errors import SinrInputError

LADDER_KM = 25.0 * 2.0 ** np.arange(8)  # 25 ... 3200 km
SCALES = (0.5, 1.0, 2.0)
_RTOL = 1e-2  # relative tolerance of sklearn's tree sums: 1% of a density moves no ranking here


def adaptive_bandwidths(x_rad: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """(N,) km: distance from each observation to its k-th nearest same-class observation (the
  farthest one when the class has k or fewer others; the ladder's top for a lone point)."""
  bw = np.full(len(labels), LADDER_KM[-1])
  order = np.argsort(labels, kind="stable")
  bounds = np.flatnonzero(np.diff(labels[order])) + 1
  for members in np.split(order, bounds):
    if len(members) < 2:
      continue
    nn = NearestNeighbors(metric="haversine", algorithm="ball_tree").fit(x_rad[members])
    d = nn.kneighbors(n_neighbors=min(k, len(members) - 1))[0][:, -1]  # self excluded
    bw[members] = d * EARTH_RADIUS_KM
  return np.clip(bw, LADDER_KM[0], LADDER_KM[-1])


class AdaptiveKDEPrior:
  name = "kde"

  def __init__(self, lonlat: np.ndarray, labels: np.ndarray, num_classes: int, *, k: int = 5,
               scales: Sequence[float] = SCALES):
    if len(labels) == 0:
      raise SinrInputError("no training observations", field="labels")
    self.x = radians_latlon(lonlat)
    self.labels = np.asarray(labels, np.int64)
    self.num_classes, self.scales = int(num_classes), tuple(scales)
    bw = adaptive_bandwidths(self.x, self.labels, k)
    self.rung = np.abs(np.log(bw)[:, None] - np.log(LADDER_KM)[None, :]).argmin(1)
    key = self.labels * len(LADDER_KM) + self.rung
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    self.trees: dict[int, list[tuple[int, BallTree]]] = {}   # class -> [(rung, tree)]
    for members in np.split(order, bounds):
      c, r = divmod(int(key[members[0]]), len(LADDER_KM))
      self.trees.setdefault(c, []).append((r, BallTree(self.x[members], metric="haversine")))
    self.all_trees = [(r, BallTree(self.x[self.rung == r], metric="haversine"))
                      for r in np.unique(self.rung)]

  @staticmethod
  def _kernel_sum(tree: BallTree, rung: int, scale: float, q: np.ndarray) -> np.ndarray:
    """Σ over the tree's points of the normalised Gaussian kernel at bandwidth rung · scale."""
    return tree.kernel_density(q, h=LADDER_KM[rung] * scale / EARTH_RADIUS_KM,
                               kernel="gaussian", rtol=_RTOL)

  def scores(self, lonlat: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    q = radians_latlon(lonlat)
    n = len(q)
    flat = cols.ravel()
    order = np.argsort(flat, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(flat[order])) + 1) if n else []
    out = {}
    for scale in self.scales:
      p_x = np.zeros(n)
      for r, tree in self.all_trees if n else []:
        p_x += self._kernel_sum(tree, r, scale, q)
      joint = np.zeros(flat.shape)
      for slots in groups:
        c = int(flat[slots[0]])
        if c < 0 or c not in self.trees:
          continue
        rows = slots // cols.shape[1]
        for r, tree in self.trees[c]:
          joint[slots] += self._kernel_sum(tree, r, scale, q[rows])
      p = np.full(cols.shape, 1.0 / self.num_classes)
      ok = p_x > 0
      p[ok] = np.clip(joint.reshape(cols.shape)[ok] / p_x[ok, None], 0.0, 1.0)
      out[f"scale={scale:g}"] = p
    return out
