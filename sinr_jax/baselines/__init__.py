"""Baselines of the SINR paper's Table 8.1: the best discretized grid and logistic regression.

  grid = baselines.grid.select_resolution(lonlat, labels, class_index, score_fn)  # best on val
  lr = baselines.lr.train_lr("env_coords", workdir)                              # a RangePredictor
Both are used wherever a `sinr_jax.RangePredictor` is (`.taxa`, `.columns`, `.predict`); the grid
has no location embedding, so the geo-feature task does not apply to it.
"""
from sinr_jax.baselines import grid, lr

__all__ = ["grid", "lr"]
