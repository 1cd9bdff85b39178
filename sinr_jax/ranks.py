"""Rank counts behind exact AP and F1: for each positive's score t, how many scores are >= t.

Every per-species quantity of the scorer is a function of two counts per positive i:
  c_all[i] = #{cells j: s_j >= t_i}      c_pos[i] = #{positives q: t_q >= t_i}
AP = mean_i c_pos/c_all (scikit-learn's tie rule: a tie group is credited with the precision at its
end), F1 at threshold t_i = 2·c_pos / (n_pos + c_all). Neither needs the cells in sorted order with
labels attached, only a sort of the scores' values, after which each positive is found by binary
search: O(M log M + K log M) per species and no gather of M labels.

Scores travel as int32 keys with the order of the float32 logits (`sortable_keys`): comparisons
and sorts are exact and integer sorts are faster (numpy ~30%, XLA:CPU ~4×, radix-friendly on GPUs).

Two implementations with one contract:
  'xla'   lax.sort + searchsorted and jnp reductions; for GPUs/TPUs.
  'host'  numpy through `jax.pure_callback`, rows in parallel threads; for the CPU backend, where
          XLA's comparator-based sort is ~50× slower than numpy's (0.23 s vs 4.5 ms for 572k
          floats) and its row reductions ~4× slower than numpy's. Only cells scoring at least
          the lowest threshold are sorted: the others can never be counted.
Padding cells have the key of -inf; padding thresholds are PAD_KEY (above every real key).
"""
from __future__ import annotations

import concurrent.futures
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

IMPLS = ("xla", "host")
PAD_KEY = np.iinfo(np.int32).max


def sortable_keys(x: jax.Array) -> jax.Array:
  """int32 keys with the order of float32 `x` (-0.0 and 0.0 map to one key, as they compare equal)."""
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  bits = jax.lax.bitcast_convert_type(x, jnp.int32)
  return bits ^ ((bits >> 31) & jnp.int32(0x7FFFFFFF))


def keys_to_float(k: jax.Array) -> jax.Array:
  """Inverse of `sortable_keys` (the transform is its own inverse on the bits)."""
  return jax.lax.bitcast_convert_type(k ^ ((k >> 31) & jnp.int32(0x7FFFFFFF)), jnp.float32)


# ---- numpy (host) implementation ----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _pool() -> concurrent.futures.ThreadPoolExecutor:
  # numpy releases the GIL in sorts and vector loops, so rows run in parallel on the host's cores.
  return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                               thread_name_prefix="sinr-rank")


def host_array(x) -> np.ndarray:
  """A callback argument as numpy (the callback receives jax Arrays; this copies them once)."""
  return x if isinstance(x, np.ndarray) else np.asarray(x)


def _rows(fn, n: int) -> None:
  if n > 1:
    list(_pool().map(fn, range(n)))
  elif n:
    fn(0)


def host_counts(keys, thr_keys) -> tuple[np.ndarray, np.ndarray]:
  """(..., M) keys, (..., K) threshold keys → (c_all, c_pos), each (..., K) int32."""
  keys, thr_keys = host_array(keys), host_array(thr_keys)
  s = keys.reshape(-1, keys.shape[-1])
  t = thr_keys.reshape(-1, thr_keys.shape[-1])
  c_all = np.empty(t.shape, np.int32)
  c_pos = np.empty(t.shape, np.int32)

  def row(i):
    order = np.argsort(t[i], kind="stable")
    ts = t[i][order]  # sorted needles: numpy's binary search then reuses the previous position
    c_pos[i, order] = len(ts) - np.searchsorted(ts, ts, side="left")
    cand = s[i][s[i] >= ts[0]]  # a fresh array, sorted in place below
    cand.sort()
    c_all[i, order] = len(cand) - np.searchsorted(cand, ts, side="left")

  _rows(row, len(s))
  return c_all.reshape(thr_keys.shape), c_pos.reshape(thr_keys.shape)


def host_range_size(inside, area) -> tuple[np.ndarray, np.ndarray]:
  """(..., M) bool "cell in range", (M,) areas → (#cells int32, their area float32)."""
  inside = host_array(inside)
  area = host_array(area).astype(np.float32, copy=False).reshape(-1)
  s = inside.reshape(-1, inside.shape[-1])
  cells = np.empty(len(s), np.int32)
  km2 = np.empty(len(s), np.float32)

  def row(i):
    cells[i] = np.count_nonzero(s[i])
    km2[i] = np.dot(s[i].astype(np.float32), area)

  _rows(row, len(s))
  return cells.reshape(inside.shape[:-1]), km2.reshape(inside.shape[:-1])


# ---- XLA implementation -------------------------------------------------------------------------

def _xla_counts(keys, thr_keys):
  c_all = keys.shape[-1] - jnp.searchsorted(jax.lax.sort(keys), thr_keys, side="left")
  c_pos = thr_keys.shape[-1] - jnp.searchsorted(jax.lax.sort(thr_keys), thr_keys, side="left")
  return c_all.astype(jnp.int32), c_pos.astype(jnp.int32)


def _xla_range_size(keys, thr_key, area):
  inside = keys >= thr_key
  return jnp.sum(inside, dtype=jnp.int32), jnp.sum(jnp.where(inside, area, 0.0))


# ---- dispatch (written per species; vmap batches them, the callbacks receive whole blocks) ------

def counts(keys: jax.Array, thr_keys: jax.Array, impl: str) -> tuple[jax.Array, jax.Array]:
  """Per species: keys (M,), threshold keys (K,) → (c_all, c_pos), each (K,) int32.

  c_all[i] = #{j: keys[j] >= thr_keys[i]}, c_pos[i] = #{q: thr_keys[q] >= thr_keys[i]}.
  """
  if impl == "xla":
    return _xla_counts(keys, thr_keys)
  shape = jax.ShapeDtypeStruct(thr_keys.shape, jnp.int32)
  return jax.pure_callback(host_counts, (shape, shape), keys, thr_keys,
                           vmap_method="broadcast_all")


def range_size(keys: jax.Array, thr_key: jax.Array, area: jax.Array, impl: str):
  """Per species: keys (M,), threshold key (), areas (M,) → (#cells >= threshold, their area)."""
  if impl == "xla":
    return _xla_range_size(keys, thr_key, area)
  out = (jax.ShapeDtypeStruct(thr_key.shape, jnp.int32),
         jax.ShapeDtypeStruct(thr_key.shape, jnp.float32))
  # The comparison is one fused XLA pass; only 1 byte per cell crosses to the host (callback
  # arguments are copied), where the row sums run ~4× faster than XLA:CPU's reductions.
  return jax.pure_callback(host_range_size, out, keys >= thr_key, area, vmap_method="expand_dims")


def default_impl() -> str:
  return "host" if jax.default_backend() == "cpu" else "xla"
