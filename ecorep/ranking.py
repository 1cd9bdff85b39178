"""Exact average precision with ties, as scikit-learn's `average_precision_score` computes it.

AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct score thresholds k (descending). Tied scores form
one threshold: every positive in a tie group is credited with the precision at the group's end.
(The reference SINR code's sort-based shortcut credits ties in sort order instead, and so differs
from sklearn when scores tie.) Equivalently AP = mean over positives i of c_pos[i] / c_all[i], the
rank counts of rank_counts.py; every path here computes that.

Arguments are in scikit-learn's order, `(labels, scores)`. Two paths:
  average_precision(labels, scores)           numpy, one column, scores compared in their own dtype
  average_precision_columns(labels, scores)   jitted, (N, C) → (C,), on float32 order keys
Columns without a positive have no AP (NaN); `MAPResult` averages the others and counts them.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ecorep import rank_counts


def average_precision(labels, scores) -> float:
  """AP of 1-d `scores` (any real dtype, compared exactly in it: float64 scores are not rounded
  to float32) for binary `labels`; NaN without a positive. ValueError on mismatched shapes or NaN."""
  y = np.asarray(labels).astype(bool, copy=False)
  s = np.asarray(scores)
  if s.dtype.kind not in "iuf":
    s = s.astype(np.float64)
  if y.ndim != 1 or y.shape != s.shape:
    raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-d of equal length")
  if s.dtype.kind == "f" and np.isnan(s).any():
    raise ValueError("scores contain NaN")
  return _ap(y, rank_counts.order_keys_np(s))


def _ap(y: np.ndarray, s: np.ndarray) -> float:
  """AP from integer order keys `s` (see rank_counts.order_keys_np)."""
  pos = np.sort(s[y])
  if not len(pos):
    return float("nan")
  c_all = rank_counts.count_at_or_above(s, pos)
  c_pos = len(pos) - np.searchsorted(pos, pos, side="left")
  return float(np.mean(c_pos / c_all))


def ap_from_counts(c_pos: np.ndarray, c_all: np.ndarray, num_pos: np.ndarray) -> np.ndarray:
  """(B, K) rank counts of each row's positives (the first num_pos[b] entries are real) → (B,)
  float64 AP, NaN where num_pos is 0."""
  n = np.asarray(num_pos)
  real = np.arange(c_pos.shape[1])[None, :] < n[:, None]
  ratio = np.where(real, c_pos / np.maximum(c_all, 1), 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(n > 0, ratio.sum(axis=1) / n, np.nan)


def _host_ap_columns(labels, keys) -> np.ndarray:
  y, k = rank_counts.host_array(labels), rank_counts.host_array(keys)
  out = np.empty(len(k), np.float32)

  def column(i):
    out[i] = _ap(y[i], k[i])

  rank_counts.map_rows(column, len(k))
  return out


def _xla_ap(y: jax.Array, keys: jax.Array) -> jax.Array:
  n = jnp.sum(y)
  thr = jnp.where(y, keys, rank_counts.PAD_KEY)
  c_all, c_pos = rank_counts.xla_counts(keys, thr)
  c_pos = c_pos - (keys.shape[0] - n)  # the padding thresholds counted themselves
  ap = jnp.sum(jnp.where(y, c_pos / c_all.astype(jnp.float32), 0.0)) / jnp.maximum(n, 1)
  return jnp.where(n > 0, ap, jnp.nan)


@functools.partial(jax.jit, static_argnames="impl")
def average_precision_columns(labels: jax.Array, scores: jax.Array, *,
                              impl: str | None = None) -> jax.Array:
  """AP of every column of (N, C) `scores` (as float32) against (N, C) binary `labels` → (C,)
  float32, NaN without a positive. Works under jit and on sharded inputs.

  Rank counts on float32 order keys; impl (rank_counts.IMPLS): 'host' (numpy, the default on the
  CPU backend) or 'xla' (lax.sort + searchsorted, the default elsewhere).
  """
  impl = impl or rank_counts.default_impl()
  if impl not in rank_counts.IMPLS:
    raise ValueError(f"unknown rank-count implementation {impl!r}; choose one of "
                     f"{rank_counts.IMPLS}")
  keys = rank_counts.order_keys(scores).T
  y = labels.astype(bool).T
  if impl == "host":
    return jax.pure_callback(_host_ap_columns, jax.ShapeDtypeStruct(keys.shape[:1], jnp.float32),
                             y, keys)
  return jax.vmap(_xla_ap)(y, keys)


@dataclasses.dataclass(frozen=True)
class MAPResult:
  map: float               # mean AP over the classes that have one (NaN if none has)
  per_class: np.ndarray    # (C,) float64 AP, NaN for excluded classes
  excluded: np.ndarray     # indices of the classes without an AP (no positive, or left out)

  @property
  def num_excluded(self) -> int:
    return len(self.excluded)

  @classmethod
  def from_per_class(cls, per_class) -> "MAPResult":
    """Averages the non-NaN entries of `per_class`; the NaN ones are excluded and counted."""
    per_class = np.asarray(per_class, np.float64)
    valid = ~np.isnan(per_class)
    return cls(map=float(per_class[valid].mean()) if valid.any() else float("nan"),
               per_class=per_class, excluded=np.flatnonzero(~valid))


def mean_average_precision(labels, scores) -> MAPResult:
  """Column-wise AP of (N, C) `scores` against (N, C) binary `labels` (numpy path, columns in
  parallel threads) and their mean; columns without a positive are excluded and counted."""
  y = np.asarray(labels).astype(bool, copy=False)
  s = np.asarray(scores)
  if y.ndim != 2 or y.shape != s.shape:
    raise ValueError(f"labels {y.shape} and scores {s.shape} must be 2-d of equal shape")
  y, s = np.ascontiguousarray(y.T), np.ascontiguousarray(s.T)
  per_class = np.empty(len(y))

  def column(j):
    per_class[j] = average_precision(y[j], s[j])

  rank_counts.map_rows(column, len(y))
  return MAPResult.from_per_class(per_class)
