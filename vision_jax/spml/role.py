"""ROLE's label estimator: one logit per (training example, class), trained jointly.

Three storage modes (config `role.mode`):
- "dense": the (N, L) logit matrix is a replicated parameter updated by the main Adam at 10× the
  learning rate, exactly as the reference (its Adam keeps moving rows that are not in the batch,
  through their momentum). Fine for small N·L.
- "sparse": the matrix lives row-sharded across the devices of the mesh (N/D rows each) and only
  the rows of each batch are read (`gather_rows`) and written (`sparse_adam`): a row-wise "lazy"
  Adam whose moments and bias-correction step count advance only when the row is in a batch.
  Memory per device is 3·N·L·4/D bytes (logits + two moments) and the work per step is O(B·L).
- "lowrank": logits = U_i·Vᵀ + s·[observed positive], with U (N, r) row-sharded and sparse like
  above, V (L, r) a small replicated parameter, and s = σ⁻¹(0.995) a fixed offset that keeps
  each observed positive at its initial value (it is known to be positive).

Initialisation (reference): σ⁻¹(0.995) for observed positives, σ⁻¹(0.005) for observed
negatives, U[σ⁻¹(0.4), σ⁻¹(0.6)] elsewhere. A row index outside [0, N_pad) (padding) reads zeros
and is never written.
"""
from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from ecorep.mesh import DATA_AXIS
from vision_jax.errors import VisionInputError

MODES = ("dense", "sparse", "lowrank")
INIT_POS = math.log(0.995 / 0.005)
INIT_NEG = -INIT_POS
INIT_HIGH = math.log(0.6 / 0.4)  # U[σ⁻¹(0.4), σ⁻¹(0.6)] = U[−INIT_HIGH, INIT_HIGH]
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8  # torch/optax defaults, as the reference


@flax.struct.dataclass
class Table:
  """A row-sharded (N_pad, C) table with row-wise Adam moments and step counts."""
  value: jax.Array
  mu: jax.Array
  nu: jax.Array
  count: jax.Array  # (N_pad,) int32


def padded_rows(num: int, mesh) -> int:
  d = mesh.devices.size
  return -(-num // d) * d


def row_sharding(mesh, ndim: int = 2) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS, *([None] * (ndim - 1))))


def init_dense_logits(key: jax.Array, observed) -> jax.Array:
  """The reference's initial (N, L) logit matrix for {−1, 0, 1} observed labels."""
  observed = jnp.asarray(observed)
  u = jax.random.uniform(key, observed.shape, jnp.float32, -INIT_HIGH, INIT_HIGH)
  return jnp.where(observed == 1, INIT_POS, jnp.where(observed == -1, INIT_NEG, u))


def init_table(key: jax.Array, observed: np.ndarray, mesh, *, mode: str, rank: int = 0) -> Table:
  """The row-sharded table of the "sparse" (full logits) or "lowrank" (U) mode.

  Generated under jit straight into its sharding, so no device holds more than its rows.
  """
  n, num_classes = observed.shape
  n_pad = padded_rows(n, mesh)
  obs = np.zeros((n_pad, num_classes), np.int8)
  obs[:n] = observed
  if mode == "sparse":
    make = lambda k, o: init_dense_logits(k, o)
    width = num_classes
  elif mode == "lowrank":
    if rank < 1:
      raise VisionInputError(f"role.rank must be ≥ 1 for the lowrank mode, got {rank}",
                             field="role.rank")
    make = lambda k, o: lowrank_scale(rank) * jax.random.normal(k, (n_pad, rank), jnp.float32)
    width = rank
  else:
    raise VisionInputError(f"role.mode '{mode}' has no sharded table", field="role.mode")
  rows = row_sharding(mesh)

  def build(k, o):
    value = make(k, o)
    zeros = jnp.zeros((n_pad, width), jnp.float32)
    return Table(value=value, mu=zeros, nu=zeros, count=jnp.zeros((n_pad,), jnp.int32))

  out = Table(value=rows, mu=rows, nu=rows, count=row_sharding(mesh, 1))
  return jax.jit(build, out_shardings=out)(key, obs)


def lowrank_scale(rank: int) -> float:
  """Std of U and V entries so that U_i·V_j has the std of U[−INIT_HIGH, INIT_HIGH]."""
  target_std = INIT_HIGH / math.sqrt(3.0)
  return (target_std ** 2 / rank) ** 0.25


def init_lowrank_v(key: jax.Array, num_classes: int, rank: int) -> jax.Array:
  return lowrank_scale(rank) * jax.random.normal(key, (num_classes, rank), jnp.float32)


def lowrank_logits(u_rows: jax.Array, v: jax.Array, observed_rows: jax.Array) -> jax.Array:
  return u_rows @ v.T + INIT_POS * (observed_rows == 1).astype(u_rows.dtype)


def _owned(idx: jax.Array, shard_rows: int) -> tuple[jax.Array, jax.Array]:
  lo = jax.lax.axis_index(DATA_AXIS) * shard_rows
  local = idx - lo
  return local, (local >= 0) & (local < shard_rows)


def gather_rows(value: jax.Array, idx: jax.Array, mesh) -> jax.Array:
  """Rows `idx` (B,) of the row-sharded `value` (N_pad, C) as a replicated (B, C) array.

  Each device reads the rows it owns (zeros elsewhere) and a psum assembles them: only B·C
  numbers cross devices, never the table.
  """
  def local(tab, idx):
    loc, own = _owned(idx, tab.shape[0])
    rows = tab.at[jnp.where(own, loc, tab.shape[0])].get(mode="fill", fill_value=0)
    return jax.lax.psum(rows, DATA_AXIS)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(DATA_AXIS, None), P()),
                       out_specs=P(), check_vma=False)(value, idx)


def sparse_adam(table: Table, idx: jax.Array, grads: jax.Array, valid: jax.Array, lr,
                mesh) -> Table:
  """One row-wise Adam step on rows `idx` (B,) with gradients `grads` (B, C).

  Rows with `valid` False (padding) are neither moved nor counted. Indices within a batch must
  be distinct (each epoch is a permutation), so a scatter-add of the step is exact.
  """
  def local(value, mu, nu, count, idx, g, valid, lr):
    s = value.shape[0]
    loc, own = _owned(idx, s)
    loc = jnp.where(own & valid, loc, s)  # s is out of range: gathers fill, scatters drop
    get = lambda a: a.at[loc].get(mode="fill", fill_value=0)
    c = get(count) + 1
    m = ADAM_B1 * get(mu) + (1.0 - ADAM_B1) * g
    v = ADAM_B2 * get(nu) + (1.0 - ADAM_B2) * g * g
    cf = c.astype(g.dtype)[:, None]
    m_hat = m / (1.0 - ADAM_B1 ** cf)
    v_hat = v / (1.0 - ADAM_B2 ** cf)
    step = -lr * m_hat / (jnp.sqrt(v_hat) + ADAM_EPS)
    return (value.at[loc].add(step, mode="drop"), mu.at[loc].set(m, mode="drop"),
            nu.at[loc].set(v, mode="drop"), count.at[loc].set(c, mode="drop"))

  rows, vec = P(DATA_AXIS, None), P(DATA_AXIS)
  value, mu, nu, count = jax.shard_map(
      local, mesh=mesh, in_specs=(rows, rows, rows, vec, P(), P(), P(), P()),
      out_specs=(rows, rows, rows, vec), check_vma=False)(
          table.value, table.mu, table.nu, table.count, idx, grads, valid, jnp.asarray(lr))
  return Table(value=value, mu=mu, nu=nu, count=count)


def estimated_logits(mode: str, table: Table | None, est_params: Any, observed: np.ndarray,
                     block: int = 65536) -> np.ndarray:
  """All N×L estimator logits on the host (for label-recovery metrics), block by block."""
  n = observed.shape[0]
  if mode == "dense":
    return np.asarray(jax.device_get(est_params["table"]))[:n]
  if mode == "sparse":
    return np.asarray(jax.device_get(table.value))[:n]
  u = np.asarray(jax.device_get(table.value))[:n]
  v = np.asarray(jax.device_get(est_params["v"]))
  out = np.empty(observed.shape, np.float32)
  for s in range(0, n, block):
    out[s:s + block] = u[s:s + block] @ v.T + INIT_POS * (observed[s:s + block] == 1)
  return out


def memory_bytes(num: int, num_classes: int, *, mode: str, rank: int = 64,
                 devices: int = 1) -> dict[str, float]:
  """Bytes the estimator needs: float32 logits (or U) + two Adam moments, int32 step counts.

  "dense" is replicated (every device holds all of it); "sparse" and "lowrank" split their
  tables over `devices`, and lowrank's V (L, r) is replicated.
  """
  if mode == "dense":
    total = 12.0 * num * num_classes
    return {"total": total, "per_device": total}
  if mode == "sparse":
    sharded, replicated = 12.0 * num * num_classes + 4.0 * num, 0.0
  elif mode == "lowrank":
    sharded, replicated = 12.0 * num * rank + 4.0 * num, 12.0 * num_classes * rank
  else:
    raise VisionInputError(f"unknown role.mode '{mode}'", field="role.mode")
  return {"total": sharded + replicated, "per_device": sharded / devices + replicated}
