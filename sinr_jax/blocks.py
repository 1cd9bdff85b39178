"""Spatial block cross-validation folds for presence and background points.

Every point, presence or background, gets exactly one fold in 0..k-1, so that a held-out fold is
a set of whole blocks and its background lies in the same places as its presences:
- k-means: k clusters of the presences (on unit vectors, so distances are chords of the sphere,
  not degrees); each background point joins its nearest cluster centre.
- grid: square lon/lat cells of `cell_deg`; the cells holding presences are shuffled (seeded) and
  dealt to the folds in turn, largest first, so folds get similar numbers of presences; the other
  cells are dealt out in the same shuffled order.
- user: a fold column the user gives in both files (any integer labels).
A fold without presences cannot be evaluated, so fewer presences (or presence blocks) than folds
is an error.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sinr_jax.errors import SinrInputError

METHODS = ("kmeans", "grid", "user")


@dataclasses.dataclass(frozen=True, eq=False)
class Folds:
  presence: np.ndarray     # (P,) int fold of each presence
  background: np.ndarray   # (B,) int fold of each background point
  k: int
  method: str

  def __post_init__(self):
    for name in ("presence", "background"):
      f = getattr(self, name)
      if f.ndim != 1 or (len(f) and (f.min() < 0 or f.max() >= self.k)):
        raise ValueError(f"{name} folds must be 1-d in 0..{self.k - 1}")
    missing = np.setdiff1d(np.arange(self.k), self.presence)
    if len(missing):
      raise SinrInputError(f"fold(s) {missing.tolist()} hold no presence, so they cannot be "
                           "evaluated; use fewer folds or larger blocks", field="folds")

  def split(self, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train presences, test presences, train background, test background) as bool masks."""
    p, b = self.presence == fold, self.background == fold
    return ~p, p, ~b, b

  def counts(self) -> list[tuple[int, int]]:
    """(presences, background points) per fold."""
    return [(int(np.sum(self.presence == f)), int(np.sum(self.background == f)))
            for f in range(self.k)]


def unit_vectors(lonlat) -> np.ndarray:
  lon, lat = np.radians(np.asarray(lonlat, np.float64).reshape(-1, 2)).T
  return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)


def _check_k(k: int, presence_lonlat: np.ndarray, what: str = "presences") -> None:
  if not isinstance(k, (int, np.integer)) or k < 2:
    raise SinrInputError(f"the number of folds must be an integer >= 2, got {k!r}", field="folds")
  distinct = len(np.unique(np.asarray(presence_lonlat).reshape(-1, 2), axis=0))
  if distinct < k:
    raise SinrInputError(f"{distinct} distinct {what} are fewer than the {k} folds asked for",
                         field="folds")


def kmeans_folds(presence_lonlat, background_lonlat, k: int, seed: int = 0) -> Folds:
  from sklearn.cluster import KMeans
  _check_k(k, presence_lonlat)
  km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(unit_vectors(presence_lonlat))
  bg = np.asarray(background_lonlat).reshape(-1, 2)
  bg_fold = km.predict(unit_vectors(bg)) if len(bg) else np.zeros(0, np.int64)
  return Folds(km.labels_.astype(np.int64), bg_fold.astype(np.int64), k, "kmeans")


def grid_folds(presence_lonlat, background_lonlat, k: int, cell_deg: float,
               seed: int = 0) -> Folds:
  if not cell_deg > 0:
    raise SinrInputError(f"grid cell size must be > 0 degrees, got {cell_deg}", field="folds")
  pres = np.asarray(presence_lonlat, np.float64).reshape(-1, 2)
  bg = np.asarray(background_lonlat, np.float64).reshape(-1, 2)
  cells = np.floor(np.vstack([pres, bg]) / cell_deg).astype(np.int64)
  keys, cell_of = np.unique(cells, axis=0, return_inverse=True)
  cell_of = cell_of.reshape(-1)
  pres_per_cell = np.bincount(cell_of[:len(pres)], minlength=len(keys))
  occupied = int(np.sum(pres_per_cell > 0))
  if occupied < k:
    raise SinrInputError(f"the presences fall in {occupied} grid cells of {cell_deg}°, fewer "
                         f"than the {k} folds asked for; use smaller cells or fewer folds",
                         field="folds")
  order = np.random.default_rng(seed).permutation(len(keys))
  # Presence cells by decreasing count (ties in shuffled order), each to the lightest fold.
  with_pres = order[np.argsort(-pres_per_cell[order], kind="stable")][:occupied]
  fold_of_cell = np.zeros(len(keys), np.int64)
  load = np.zeros(k, np.int64)
  for c in with_pres:
    f = int(np.argmin(load))
    fold_of_cell[c] = f
    load[f] += pres_per_cell[c]
  empty = order[pres_per_cell[order] == 0]
  fold_of_cell[empty] = np.arange(len(empty)) % k
  folds = fold_of_cell[cell_of]
  return Folds(folds[:len(pres)], folds[len(pres):], k, "grid")


def user_folds(presence_labels, background_labels, *, source: str = "") -> Folds:
  """Folds from the user's labels; background labels must be among the presences' labels."""
  p = np.asarray(presence_labels)
  b = np.asarray(background_labels)
  for name, values in (("presence", p), ("background", b)):
    if values.dtype.kind == "f" and (np.isnan(values).any() or np.any(values != np.round(values))):
      raise SinrInputError(f"{name} fold labels must be integers", file=source, field="fold")
  labels = np.unique(p)
  if len(labels) < 2:
    raise SinrInputError(f"the presences carry {len(labels)} fold label(s); need at least 2",
                         file=source, field="fold")
  unknown = np.setdiff1d(np.unique(b), labels)
  if len(unknown):
    raise SinrInputError(f"background fold labels {unknown[:5].tolist()} are not among the "
                         f"presences' {labels.tolist()}", file=source, field="fold")
  return Folds(np.searchsorted(labels, p).astype(np.int64),
               np.searchsorted(labels, b).astype(np.int64), len(labels), "user")


def make_folds(spec: str, presence_lonlat, background_lonlat, *, seed: int = 0,
               presence_labels=None, background_labels=None) -> Folds:
  """From a spec: 'kmeans:K', 'grid:K:CELL_DEG' or 'user' (labels given)."""
  name, *args = str(spec).split(":")
  try:
    if name == "kmeans" and len(args) == 1:
      return kmeans_folds(presence_lonlat, background_lonlat, int(args[0]), seed)
    if name == "grid" and len(args) == 2:
      return grid_folds(presence_lonlat, background_lonlat, int(args[0]), float(args[1]), seed)
  except ValueError as e:
    if isinstance(e, SinrInputError):
      raise
    raise SinrInputError(f"cannot read the fold spec {spec!r} ({e})", field="folds") from None
  if name == "user" and not args:
    if presence_labels is None or background_labels is None:
      raise SinrInputError("'user' folds need a fold column in the presence and background "
                           "files (--fold_column)", field="folds")
    return user_folds(presence_labels, background_labels)
  raise SinrInputError(f"unknown fold spec {spec!r}; use kmeans:K, grid:K:CELL_DEG or user",
                       field="folds")
