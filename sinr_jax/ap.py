"""Exact average precision, as scikit-learn's `average_precision_score` computes it.

AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct score thresholds k (descending). Tied scores form
one threshold: every positive in a tie group is credited with the precision at the group's end.
(The reference SINR code's sort-based shortcut credits ties in sort order instead, and so differs
from sklearn when scores tie.)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """AP of `scores` for binary `labels` (float64 numpy). NaN when there is no positive."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(bool)
  n_pos = labels.sum()
  if n_pos == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], labels[order]
  tp = np.cumsum(y)
  # Index of the last element of each element's tie group.
  group_end = np.searchsorted(-s, -s, side="right") - 1
  precision_at_end = tp[group_end] / (group_end + 1)
  return float(np.sum(precision_at_end[y]) / n_pos)


def _ap_sorted(s_desc: jax.Array, y: jax.Array) -> jax.Array:
  tp = jnp.cumsum(y.astype(jnp.float32))
  group_end = jnp.searchsorted(-s_desc, -s_desc, side="right") - 1
  precision_at_end = tp[group_end] / (group_end + 1).astype(jnp.float32)
  n_pos = tp[-1]
  ap = jnp.sum(jnp.where(y, precision_at_end, 0.0)) / jnp.maximum(n_pos, 1.0)
  return jnp.where(n_pos > 0, ap, jnp.nan)


@jax.jit
def average_precision_columns(scores: jax.Array, labels: jax.Array) -> jax.Array:
  """AP of every column: `scores`, `labels` (cells, species) → (species,), NaN without positives."""
  def one(s, y):
    order = jnp.argsort(-s, stable=True)
    return _ap_sorted(s[order], y[order])
  return jax.vmap(one, in_axes=1)(scores, labels.astype(bool))
