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

from sinr_jax import ranks


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


def host_ap_columns(keys, labels) -> np.ndarray:
  """numpy: AP of every row of (S, M) order keys against (S, M) bool labels → (S,) float32.

  Per row, AP = mean over positives of c_pos/c_all (see sinr_jax.ranks): one sort of the keys at
  or above the lowest positive, one sort of the positives, two binary searches.
  """
  keys, labels = ranks.host_array(keys), ranks.host_array(labels).astype(bool, copy=False)
  out = np.full(len(keys), np.nan, np.float32)

  def row(i):
    pk = np.sort(keys[i][labels[i]])
    if len(pk):
      cand = keys[i][keys[i] >= pk[0]]
      cand.sort()
      c_all = len(cand) - np.searchsorted(cand, pk, side="left")
      c_pos = len(pk) - np.searchsorted(pk, pk, side="left")
      out[i] = np.mean(c_pos / c_all)

  ranks._rows(row, len(keys))
  return out


def _xla_ap(keys: jax.Array, y: jax.Array) -> jax.Array:
  n = jnp.sum(y)
  thr = jnp.where(y, keys, ranks.PAD_KEY)
  c_all = keys.shape[0] - jnp.searchsorted(jax.lax.sort(keys), keys, side="left")
  c_pos = n - jnp.searchsorted(jax.lax.sort(thr), keys, side="left")
  ap = jnp.sum(jnp.where(y, c_pos / c_all.astype(jnp.float32), 0.0)) / jnp.maximum(n, 1)
  return jnp.where(n > 0, ap, jnp.nan)


@jax.jit
def average_precision_columns(scores: jax.Array, labels: jax.Array) -> jax.Array:
  """AP of every column: `scores`, `labels` (cells, species) → (species,), NaN without positives.

  Computed from rank counts of float32 order keys (sinr_jax.ranks): numpy on the CPU backend,
  lax.sort + searchsorted elsewhere.
  """
  keys = ranks.sortable_keys(scores.astype(jnp.float32)).T
  y = labels.astype(bool).T
  if ranks.default_impl() == "host":
    return jax.pure_callback(host_ap_columns, jax.ShapeDtypeStruct(keys.shape[:1], jnp.float32),
                             keys, y)
  return jax.vmap(_xla_ap)(keys, y)
