"""ROLE's label estimator on 8 simulated devices: the row-sharded sparse gather / row-wise Adam
equals the dense computation, initial values, the low-rank variant and the memory statement."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ecorep.mesh import data_mesh, shard_batch
from vision_jax.spml import losses, role
from vision_jax.spml import step as step_lib
from vision_jax.spml.models import Classifier

N, L, D, B = 37, 6, 5, 8


@pytest.fixture(scope="module")
def mesh():
  m = data_mesh()
  assert m.devices.size == 8
  return m


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  y = (rng.random((N, L)) < 0.35).astype(np.uint8)
  y[np.arange(N), rng.integers(0, L, N)] = 1
  obs = np.zeros((N, L), np.int8)
  for i in range(N):
    obs[i, rng.choice(np.flatnonzero(y[i]))] = 1
  x = rng.normal(size=(N, D)).astype(np.float32)
  return x, y, obs


def numpy_lazy_adam(value, mu, nu, count, rows, grads, lr):
  """Float64 reference: Adam on the listed rows only, per-row bias correction."""
  b1, b2, eps = 0.9, 0.999, 1e-8
  for r, g in zip(rows, grads):
    count[r] += 1
    mu[r] = b1 * mu[r] + (1 - b1) * g
    nu[r] = b2 * nu[r] + (1 - b2) * g * g
    m_hat = mu[r] / (1 - b1 ** count[r])
    v_hat = nu[r] / (1 - b2 ** count[r])
    value[r] -= lr * m_hat / (np.sqrt(v_hat) + eps)


def test_initial_estimates(problem, mesh):
  _, _, obs = problem
  obs = obs.copy()
  obs[0, np.flatnonzero(obs[0] == 0)[0]] = -1
  dense = np.asarray(role.init_dense_logits(jax.random.key(0), obs))
  assert np.allclose(dense[obs == 1], math.log(0.995 / 0.005))
  assert np.allclose(dense[obs == -1], math.log(0.005 / 0.995))
  rest = dense[obs == 0]
  lo, hi = math.log(0.4 / 0.6), math.log(0.6 / 0.4)
  assert rest.min() >= lo and rest.max() <= hi and rest.std() > 0.15
  table = role.init_table(jax.random.key(0), obs, mesh, mode="sparse")
  assert table.value.shape == (40, L)  # padded to a multiple of 8 devices
  assert table.value.sharding.spec == jax.P("data", None)
  assert len(table.value.addressable_shards) == 8
  assert table.value.addressable_shards[0].data.shape == (5, L)


def test_gather_and_row_adam_equal_dense_numpy(mesh):
  rng = np.random.default_rng(1)
  n_pad, c = 40, 3
  value = rng.normal(size=(n_pad, c))
  table = role.Table(value=jnp.asarray(value, jnp.float32), mu=jnp.zeros((n_pad, c)),
                     nu=jnp.zeros((n_pad, c)), count=jnp.zeros((n_pad,), jnp.int32))
  table = jax.device_put(table, role.Table(*(role.row_sharding(mesh),) * 3,
                                           role.row_sharding(mesh, 1)))
  ref = [value.copy(), np.zeros((n_pad, c)), np.zeros((n_pad, c)), np.zeros(n_pad, np.int64)]
  gather = jax.jit(lambda v, i: role.gather_rows(v, i, mesh))
  update = jax.jit(lambda t, i, g, m: role.sparse_adam(t, i, g, m, 0.05, mesh))
  for step in range(4):
    idx = rng.permutation(n_pad)[:B].astype(np.int32)
    idx[-1] = -1                      # padding: reads zeros, never written
    valid = idx >= 0
    got = np.asarray(gather(table.value, jnp.asarray(idx)))
    want = np.where(valid[:, None], ref[0][np.maximum(idx, 0)], 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    grads = rng.normal(size=(B, c))
    table = update(table, jnp.asarray(idx), jnp.asarray(grads, jnp.float32), jnp.asarray(valid))
    numpy_lazy_adam(*ref, idx[valid], grads[valid], 0.05)
    np.testing.assert_allclose(np.asarray(table.value), ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(table.count), ref[3])
  assert table.value.sharding.spec == jax.P("data", None)


def _role_step(mode, mesh, obs, k=2.0):
  model = Classifier(num_classes=L, feature_dim=D)
  params, stats = model.init(jax.random.key(1))
  est, table = step_lib.init_estimator(jax.random.key(2), obs, mesh, mode=mode, rank=3)
  if est:
    params["est"] = est
  tx = step_lib.make_optimizer(params)
  state = step_lib.place_state(step_lib.new_state(params, stats, tx, table, 1e-2), mesh)
  fn = step_lib.make_train_step(model, losses.get_loss("role", k=k), tx, mode=mode, lr_mult=10.0,
                                mesh=mesh)
  return state, jax.jit(fn), model


def _batch(x, y, obs, idx, mesh):
  valid = idx >= 0
  safe = np.maximum(idx, 0)
  return shard_batch({"x": x[safe], "observed": obs[safe], "true": y[safe], "idx": idx,
                      "mask": valid.astype(np.float32)}, mesh)


def test_sparse_train_step_equals_dense_update(problem, mesh):
  """8 devices. (1) One step from the same start: the reference's dense mode (full-matrix Adam)
  and the sparse mode give the same classifier and estimates (Adam's first step from zero
  moments moves only rows with a gradient). (2) Over several steps, the sparse table equals the
  float64 row-wise Adam driven by the dense gradient ∂loss/∂(full N×L matrix)."""
  x, y, obs = problem
  dense, dense_step, model = _role_step("dense", mesh, obs)
  sparse, sparse_step, _ = _role_step("sparse", mesh, obs)
  start = np.asarray(dense.params["est"]["table"])
  sparse = sparse.replace(extra={**sparse.extra, "table": sparse.extra["table"].replace(
      value=jax.device_put(np.pad(start, ((0, 3), (0, 0))), role.row_sharding(mesh)))})
  rng = np.random.default_rng(3)
  key = jax.random.key(0)
  loss_fn = losses.get_loss("role", k=2.0)

  def dense_grad(params, table, batch):
    def f(t):
      logits, _ = model.logits(params, {}, batch["x"], train=False)
      est = t[jnp.maximum(batch["idx"], 0)]
      return loss_fn(logits, batch["observed"], mask=batch["mask"], est_logits=est)[0]
    return np.asarray(jax.grad(f)(jnp.asarray(table, jnp.float32)), np.float64)

  ref = [np.pad(start, ((0, 3), (0, 0))).astype(np.float64), np.zeros((40, L)),
         np.zeros((40, L)), np.zeros(40, np.int64)]
  for step in range(3):
    idx = rng.permutation(N)[:B].astype(np.int32)
    if step == 2:
      idx[-2:] = -1
    batch = _batch(x, y, obs, idx, mesh)
    g = dense_grad(sparse.params, np.asarray(sparse.extra['table'].value)[:N], batch)
    touched = idx[idx >= 0]
    assert np.abs(np.delete(g, touched, axis=0)).max() == 0.0
    numpy_lazy_adam(*ref, touched, g[touched], 1e-2 * 10.0)
    if step == 0:
      dense, _ = dense_step(dense, batch, key)
    sparse, metrics = sparse_step(sparse, batch, key)
    assert np.isfinite(float(metrics["loss"]))
    np.testing.assert_allclose(np.asarray(sparse.extra['table'].value), ref[0], rtol=1e-5, atol=2e-6)
    if step == 0:
      np.testing.assert_allclose(np.asarray(sparse.extra['table'].value)[:N],
                                 np.asarray(dense.params["est"]["table"]), atol=2e-6)
      for a, b in zip(jax.tree.leaves(sparse.params["head"]), jax.tree.leaves(dense.params["head"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_lowrank_estimator_moves_only_batch_rows(problem, mesh):
  x, y, obs = problem
  state, step_fn, _ = _role_step("lowrank", mesh, obs)
  u0 = np.asarray(state.extra['table'].value)
  v0 = np.asarray(state.params["est"]["v"])
  logits = role.estimated_logits("lowrank", state.extra["table"], state.params["est"], obs)
  np.testing.assert_allclose(logits, u0[:N] @ v0.T + role.INIT_POS * (obs == 1), rtol=1e-5,
                             atol=1e-5)
  spread = (u0[:N] @ v0.T)[obs == 0]
  assert 0.1 < spread.std() < 0.5  # about U[σ⁻¹(0.4), σ⁻¹(0.6)]'s std 0.234
  idx = np.arange(B, dtype=np.int32) * 3
  state, _ = step_fn(state, _batch(x, y, obs, idx, mesh), jax.random.key(0))
  moved = np.flatnonzero(np.abs(np.asarray(state.extra['table'].value) - u0).max(1) > 0)
  np.testing.assert_array_equal(moved, idx)
  assert np.abs(np.asarray(state.params["est"]["v"]) - v0).max() > 0


def test_memory_for_one_million_by_ten_thousand():
  dense = role.memory_bytes(10**6, 10**4, mode="dense")
  assert dense["total"] == 1.2e11 and dense["per_device"] == 1.2e11     # 120 GB everywhere
  sparse = role.memory_bytes(10**6, 10**4, mode="sparse", devices=64)
  assert sparse["per_device"] == pytest.approx((1.2e11 + 4e6) / 64)      # 1.9 GB per device
  low = role.memory_bytes(10**6, 10**4, mode="lowrank", rank=64, devices=8)
  assert low["total"] == pytest.approx(12 * 64e6 + 4e6 + 12 * 64e4)       # 0.78 GB
