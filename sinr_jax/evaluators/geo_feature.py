"""Geo feature: how much of an environmental raster does a linear probe on f_θ(x) recover?

Per layer (reference procedure): valid pixels = mask & not NaN; POPULATION_DENSITY (or the layers a
manifest marks) is log1p-transformed after subtracting its minimum; values are min-max scaled to
[0, 1] over valid pixels; a checkerboard of `cell_size`-pixel blocks splits them (test where
block row + block column is even); pixel (i, j) sits at lon = linspace(-180, 180, W)[j], lat =
linspace(90, -90, H)[i] (the reference's coordinate grid, the whole globe); features f_θ are
min-max scaled on the train pixels; RidgeCV(alphas=(0.1, 1, 10), cv=10) is fitted on the train
pixels in row-major order; R² on each split. Reported: mean test R² and per-layer R²/alpha.
"""
from __future__ import annotations

import numpy as np

from sinr_jax.errors import SinrInputError
from sinr_jax.evaluators.readers import locate, locate_mask, read_geo_feature

ALPHAS = (0.1, 1.0, 10.0)


def checkerboard_split(valid: np.ndarray, cell_size: int = 25) -> np.ndarray:
  """(H, W) int8: 0 outside `valid`, 1 train, 2 test (blocks whose row + column index is even)."""
  h, w = valid.shape
  even = (np.arange(h)[:, None] // cell_size + np.arange(w)[None, :] // cell_size) % 2 == 0
  return np.where(even, 2, 1).astype(np.int8) * valid.astype(np.int8)


def pixel_lonlat(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Longitude (W,) and latitude (H,) of the pixel grid, as the reference's coord_grid lays it."""
  h, w = shape
  return np.linspace(-180, 180, w), np.linspace(90, -90, h)


def scale_layer(raster: np.ndarray, valid: np.ndarray, log1p: bool, source: str) -> np.ndarray:
  """Values of the valid pixels (row-major), log1p'd if asked, min-max scaled to [0, 1]."""
  v = raster[valid].astype(np.float32)
  if log1p:
    v = np.log1p(v - v.min())
  lo, hi = v.min(), v.max()
  if not hi > lo:
    raise SinrInputError("layer is constant over the mask; R² is undefined", file=source)
  return (v - lo) / (hi - lo)


class GeoFeature:
  name = "geo_feature"

  def __init__(self, data_dir: str, *, cell_size: int = 25, layers: tuple[str, ...] | None = None):
    layer_dir = locate(data_dir, "geo_feature", "")  # the directory itself
    self.data = read_geo_feature(layer_dir, locate_mask(data_dir), layers)
    self.cell_size = cell_size

  def run(self, predictor) -> dict[str, float]:
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import MinMaxScaler
    from threadpoolctl import threadpool_limits  # installed with scikit-learn
    if not callable(getattr(predictor, "embed", None)):
      raise SinrInputError("geo_feature probes the location embedding f_θ(x); this model has no "
                           "embed() (e.g. a grid or kernel-density baseline)", field="model")
    d = self.data
    ys, xs = np.nonzero(d.mask)
    lon, lat = pixel_lonlat(d.mask.shape)
    feats = np.asarray(predictor.embed(lon[xs], lat[ys]))  # every mask pixel, once
    at = np.full(d.mask.shape, -1, np.int64)
    at[ys, xs] = np.arange(len(ys))
    out, tests = {}, []
    for name, raster in d.layers.items():
      source = f"{d.layer_dir}/{name}.tif"
      valid = d.mask & ~np.isnan(raster)
      y = scale_layer(raster, valid, name in d.log1p, source)
      split = checkerboard_split(valid, self.cell_size)[valid]
      x = feats[at[valid]]
      tr, te = split == 1, split == 2
      if tr.sum() < 10 or te.sum() < 1:
        raise SinrInputError(f"{tr.sum()} train / {te.sum()} test pixels: too few for a 10-fold "
                             f"ridge fit", file=source)
      scaler = MinMaxScaler().fit(x[tr])
      x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
      # 31 small least-squares fits: threaded BLAS gains little on them and slows them 10x or
      # more when the cores are shared with other work, so they run on one thread.
      with threadpool_limits(1, user_api="blas"):
        clf = RidgeCV(alphas=ALPHAS, cv=10, scoring="r2").fit(x_tr, y[tr])
      r2 = float(clf.score(x_te, y[te]))
      tests.append(r2)
      out.update({f"test_r2_{name}": r2, f"train_r2_{name}": float(clf.score(x_tr, y[tr])),
                  f"alpha_{name}": float(clf.alpha_)})
    out.update({"mean_test_r2": float(np.mean(tests)), "num_layers": float(len(tests)),
                "num_mask_pixels": float(len(ys))})
    return out
