"""Spatial block folds: every point in exactly one fold, background with its nearest presence
block, same-cell points together, and too few presences for the folds refused."""
import numpy as np
import pytest

from sinr_jax import blocks
from sinr_jax.errors import SinrInputError


def _points(seed=0):
  rng = np.random.default_rng(seed)
  centres = np.array([[-120, 37], [-118, 35], [-122, 40], [-116, 33]], float)
  pres = centres[rng.integers(0, 4, 300)] + rng.normal(0, 0.4, (300, 2))
  bg = np.stack([rng.uniform(-124, -114, 800), rng.uniform(32, 42, 800)], 1)
  return pres, bg


def _check_partition(folds, n_pres, n_bg, k):
  assert folds.presence.shape == (n_pres,) and folds.background.shape == (n_bg,)
  for f in (folds.presence, folds.background):
    assert f.min() >= 0 and f.max() < k
  # split() puts every point in exactly one of train/test, and every point is tested once.
  tested_p, tested_b = np.zeros(n_pres, int), np.zeros(n_bg, int)
  for i in range(k):
    tr_p, te_p, tr_b, te_b = folds.split(i)
    assert not (tr_p & te_p).any() and (tr_p | te_p).all() and te_p.any()
    assert not (tr_b & te_b).any() and (tr_b | te_b).all()
    tested_p += te_p
    tested_b += te_b
  assert (tested_p == 1).all() and (tested_b == 1).all()


def test_kmeans_folds_assign_background_to_the_nearest_presence_block():
  pres, bg = _points()
  folds = blocks.kmeans_folds(pres, bg, 4, seed=0)
  _check_partition(folds, len(pres), len(bg), 4)
  # Independent check: centres = mean unit vector of each presence block; nearest by brute force.
  u_p, u_b = blocks.unit_vectors(pres), blocks.unit_vectors(bg)
  centres = np.stack([u_p[folds.presence == f].mean(0) for f in range(4)])
  nearest = np.argmin(((u_b[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
  assert np.mean(nearest == folds.background) > 0.995    # k-means' centres are these means
  # The four presence clusters are recovered as the four blocks.
  labels = np.argmin(((pres[:, None] - np.array([[-120, 37], [-118, 35], [-122, 40],
                                                   [-116, 33]])[None]) ** 2).sum(-1), 1)
  assert all(len(np.unique(folds.presence[labels == c])) == 1 for c in range(4))


def test_grid_folds_keep_cells_together_and_balance_presences():
  pres, bg = _points(1)
  folds = blocks.grid_folds(pres, bg, 3, cell_deg=1.0, seed=0)
  _check_partition(folds, len(pres), len(bg), 3)
  cells = np.floor(np.vstack([pres, bg])).astype(int)
  fold = np.r_[folds.presence, folds.background]
  for cell in np.unique(cells, axis=0):
    same = (cells == cell).all(1)
    assert len(np.unique(fold[same])) == 1
  counts = np.bincount(folds.presence, minlength=3)
  assert counts.max() - counts.min() <= np.bincount(
      np.unique(np.floor(pres).astype(int), axis=0, return_inverse=True)[1].ravel()).max()


def test_user_folds_and_bad_fold_requests():
  folds = blocks.user_folds([3, 7, 3, 9], [7, 9, 9, 3, 3])
  np.testing.assert_array_equal(folds.presence, [0, 1, 0, 2])
  np.testing.assert_array_equal(folds.background, [1, 2, 2, 0, 0])
  _check_partition(folds, 4, 5, 3)
  with pytest.raises(SinrInputError, match="not among"):
    blocks.user_folds([1, 2], [1, 5])
  pres, bg = _points()
  with pytest.raises(SinrInputError, match="3 distinct presences are fewer than the 5 folds"):
    blocks.kmeans_folds(pres[:3], bg, 5)
  with pytest.raises(SinrInputError, match="fewer than the 4 folds"):
    blocks.grid_folds(pres, bg, 4, cell_deg=50.0)
  with pytest.raises(SinrInputError, match="unknown fold spec"):
    blocks.make_folds("voronoi:3", pres, bg)
