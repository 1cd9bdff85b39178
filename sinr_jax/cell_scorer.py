"""CellScorer: location embeddings of a fixed set of cells, computed once and sharded over the mesh,
then species scored in blocks by one jitted computation that never holds a cells × species matrix.

Cells are split across the devices of the 1-d 'data' mesh (the embeddings are the big array: 572k
land cells at H3 res 5 × 256 × 4 bytes = 586 MB); every device holds all species of the block.
Per block, each device computes its cells' logits, and the rank counts of ranks.py add up over
devices (a psum of (B, K) integers), as do range sizes and areas. Logits rank like probabilities
(the sigmoid is monotone), so nothing is passed through a sigmoid, which would also create ties
where float32 sigmoids saturate.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ecorep.mesh import DATA_AXIS, data_mesh
from sinr_jax import coords, ranks
from sinr_jax.models import RangeModel

MIN_K = 64  # smallest padded positive-list length (one compilation per power of two above it)


def _shard_len(m: int, n_dev: int, chunk: int) -> tuple[int, int]:
  """(per-device cells, chunk) with per-device cells a multiple of chunk."""
  per = max(1, math.ceil(m / n_dev))
  chunk = min(chunk, per)
  return math.ceil(per / chunk) * chunk, chunk


class CellScorer:
  """Scores species over M cells. Build with `from_predictor` or from an (M, D) embedding array.

  cell_area_km2: optional (M,) areas (range_km2 is NaN without them).
  impl: rank-count implementation ('host' on CPU, 'xla' elsewhere by default; see ranks.py).
  """

  def __init__(self, emb, cell_area_km2=None, *, mesh=None, impl: str | None = None,
               _padded: tuple[jax.Array, int] | None = None):
    self.mesh = data_mesh() if mesh is None else mesh
    self.impl = impl or ranks.default_impl()
    if self.impl not in ranks.IMPLS:
      raise ValueError(f"unknown rank implementation {self.impl!r}; choose one of {ranks.IMPLS}")
    n_dev = self.mesh.devices.size
    self._rows = NamedSharding(self.mesh, P(DATA_AXIS))
    if _padded is None:
      emb = np.asarray(emb, np.float32)
      self.num_cells = len(emb)
      per, _ = _shard_len(self.num_cells, n_dev, 1 << 30)
      emb = np.pad(emb, ((0, per * n_dev - len(emb)), (0, 0)))
      self.emb = jax.device_put(emb, self._rows)
    else:
      self.emb, self.num_cells = _padded
    m_pad = self.emb.shape[0]
    area = np.zeros(m_pad, np.float32)
    self.has_area = cell_area_km2 is not None
    if self.has_area:
      area[:self.num_cells] = np.asarray(cell_area_km2, np.float32)
    self.area = jax.device_put(area, self._rows)
    self.valid = jax.device_put(np.arange(m_pad) < self.num_cells, self._rows)
    self._fns = _make_block_fns(self.mesh, self.impl)  # each compiles once per (B, K) shape

  @classmethod
  def from_predictor(cls, predictor, cell_lonlat: np.ndarray, cell_area_km2=None, *, mesh=None,
                     impl: str | None = None, chunk: int = 8192) -> "CellScorer":
    """Encodes the cells with the predictor's location encoder, on device, chunk by chunk."""
    mesh = data_mesh() if mesh is None else mesh
    n_dev = mesh.devices.size
    m = len(cell_lonlat)
    per, chunk = _shard_len(m, n_dev, chunk)
    lonlat = np.zeros((per * n_dev, 2), np.float32)
    lonlat[:m] = cell_lonlat
    lonlat = jax.device_put(lonlat, NamedSharding(mesh, P(DATA_AXIS)))
    emb = _encode_fn(predictor.model, mesh, chunk)(predictor.params, predictor.encoder, lonlat)
    return cls(None, cell_area_km2, mesh=mesh, impl=impl, _padded=(emb, m))

  # ---- per-block computation -------------------------------------------------------------------

  def score_block(self, weights: np.ndarray, positives: np.ndarray, num_pos: np.ndarray,
                  default_logit: float) -> dict:
    """Dispatches one block (asynchronously); `block_result` turns the output into numpy.

    weights (B, D) head rows; positives (B, K) int32 cell indices, real ones first, -1 padding;
    num_pos (B,) count of real positives (0 = no labels: threshold = default_logit).
    """
    fn = self._fns[bool(np.max(num_pos, initial=0) > 0)]
    return fn(self.emb, self.area, self.valid, jnp.asarray(weights, jnp.float32),
              jnp.asarray(positives, jnp.int32), jnp.asarray(num_pos, jnp.int32),
              jnp.float32(default_logit))

  @staticmethod
  def block_result(out: dict) -> dict:
    """numpy outputs with AP (float64, from the exact integer counts) added."""
    out = jax.device_get(out)
    n = out["num_pos"].astype(np.float64)
    k = out["c_all"].shape[1]
    real = np.arange(k)[None, :] < out["num_pos"][:, None]
    ratio = np.where(real, out["c_pos"] / np.maximum(out["c_all"], 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
      out["ap"] = np.where(n > 0, ratio.sum(axis=1) / n, np.nan)
      out["best_f1"] = np.where(n > 0, out["best_f1"].astype(np.float64), np.nan)
    return out

  def logits(self, weights: np.ndarray) -> np.ndarray:
    """(B, M) float32 logits of B species at every cell (for exporting range maps)."""
    out = _logits(self.emb, jnp.asarray(weights, jnp.float32))
    return np.asarray(out)[:, :self.num_cells]


@functools.lru_cache(maxsize=16)
def _encode_fn(model: RangeModel, mesh, chunk: int):
  def per_device(params, encoder, lonlat):
    def embed(ll):
      x = encoder(coords.normalize(ll))
      return model.apply({"params": params}, x, method=RangeModel.embed)
    out = jax.lax.map(embed, lonlat.reshape(-1, chunk, 2))  # bounded activations per chunk
    return out.reshape(lonlat.shape[0], -1)
  return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(DATA_AXIS)),
                               out_specs=P(DATA_AXIS)))


@jax.jit
def _logits(emb, w):
  return w @ emb.T


@functools.lru_cache(maxsize=8)
def _make_block_fns(mesh, impl: str) -> dict:
  """The jitted, sharded block computation; per-species code vmapped over the block.

  Logits are made as (B, m) = w @ embᵀ and turned into order keys in the same fused pass (making
  (m, B) and transposing cost ~1.5× more on XLA:CPU at B = 64); all later steps use the keys.
  """
  def per_device(emb, area, valid, w, pos, num_pos, default_logit, with_labels):
    m, k = emb.shape[0], pos.shape[1]
    keys = ranks.sortable_keys(jnp.where(valid[None, :], w @ emb.T, -jnp.inf))  # pads: -inf
    if with_labels:
      local = pos - jax.lax.axis_index(DATA_AXIS) * m
      mine = (pos >= 0) & (local >= 0) & (local < m)
      t = jnp.take_along_axis(keys, jnp.clip(local, 0, m - 1), axis=1)
      t = jax.lax.psum(jnp.where(mine, t, 0), DATA_AXIS)  # each positive lives on one device
      t = jnp.where(pos >= 0, t, ranks.PAD_KEY)
      c_all, c_pos = jax.vmap(lambda s, ti: ranks.counts(s, ti, impl))(keys, t)
      c_all = jax.lax.psum(c_all, DATA_AXIS)
    else:  # no species of the block has labels: thresholds are the default, no counts needed
      t = jnp.full(pos.shape, ranks.PAD_KEY)
      c_all = c_pos = jnp.zeros(pos.shape, jnp.int32)
    default_key = ranks.sortable_keys(default_logit)

    def species_threshold(ti, ca, cp, n):
      cp = cp - (k - n)  # the padding thresholds counted themselves as positives
      real = jnp.arange(k) < n
      f1 = jnp.where(real, 2.0 * cp / (n + ca).astype(jnp.float32), -1.0)
      best = jnp.max(f1)
      # Among equal F1 (up to float32 rounding), the highest threshold: the smallest range.
      t_best = jnp.max(jnp.where(real & (f1 == best), ti, jnp.iinfo(jnp.int32).min))
      return jnp.where(n > 0, t_best, default_key), best, cp

    thr, best_f1, c_pos = jax.vmap(species_threshold)(t, c_all, c_pos, num_pos)
    cells, km2 = jax.vmap(lambda s, th: ranks.range_size(s, th, area, impl))(keys, thr)
    return {"c_all": c_all, "c_pos": c_pos, "threshold_logit": ranks.keys_to_float(thr),
            "best_f1": best_f1, "range_cells": jax.lax.psum(cells, DATA_AXIS),
            "range_km2": jax.lax.psum(km2, DATA_AXIS), "num_pos": num_pos}

  cells, rep = P(DATA_AXIS), P()
  fns = {}
  for with_labels in (False, True):
    body = functools.partial(per_device, with_labels=with_labels)
    # check_vma off: c_pos comes out of a host callback on every device (identical values).
    fns[with_labels] = jax.jit(jax.shard_map(
        body, mesh=mesh, in_specs=(cells, cells, cells, rep, rep, rep, rep), out_specs=rep,
        check_vma=False))
  return fns
