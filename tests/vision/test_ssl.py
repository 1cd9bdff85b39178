"""Objectives against float64 numpy references and hand-computed cases; device-count invariance;
BYOL's stop-gradient and EMA schedule; MoCo's queue; the objective registry."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ecorep.errors import ConfigError
from ecorep.mesh import batch_sharding, data_mesh
from vision_jax import ssl
from vision_jax.resnet import ResNet
from vision_jax.ssl import base, byol, moco, simclr

TINY = ResNet(depth=10, base_width=4, small_stem=True)


def numpy_nt_xent(z1, z2, tau):
  """float64 NT-Xent: (TF's form = the sum of the two directions' means, top-1, the mean over
  the 2N anchors)."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  sim = z @ z.T / tau
  losses, hits = [], []
  for i in range(n2):
    j = (i + n2 // 2) % n2
    others = [k for k in range(n2) if k != i]
    row = sim[i, others]
    losses.append(np.log(np.exp(row - row.max()).sum()) + row.max() - sim[i, j])
    hits.append(others[int(np.argmax(row))] == j)
  losses = np.asarray(losses)
  tf_form = losses[: n2 // 2].mean() + losses[n2 // 2:].mean()
  return tf_form, np.mean(hits), losses.mean()


def test_nt_xent_matches_float64_numpy_in_the_tf_form():
  rng = np.random.default_rng(0)
  z1 = rng.normal(size=(16, 8)).astype(np.float32)
  z2 = (z1 + 0.8 * rng.normal(size=(16, 8))).astype(np.float32)
  for tau in (0.1, 0.5):
    loss, top1 = simclr.nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau)
    want, want_top1, mean_2n = numpy_nt_xent(z1, z2, tau)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 2 * mean_2n, rtol=1e-5)
    assert float(top1) == pytest.approx(want_top1)


def test_nt_xent_hand_computed_cases():
  # One pair: the positive is the only candidate -> loss 0, top-1 1.
  loss, top1 = simclr.nt_xent(jnp.ones((1, 3)), 2 * jnp.ones((1, 3)), 0.1)
  assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(top1) == 1.0
  # Two orthogonal pairs, identical views: each anchor sees its positive at cos 1, two at cos 0;
  # TF's form sums the two directions.
  e = jnp.eye(2)
  loss, _ = simclr.nt_xent(e, e, 0.5)
  assert float(loss) == pytest.approx(2 * math.log(1 + 2 * math.exp(-2.0)), rel=1e-6)


def test_nt_xent_negatives_span_all_devices():
  rng = np.random.default_rng(1)
  z1, z2 = (rng.normal(size=(32, 16)).astype(np.float32) for _ in range(2))
  fn = jax.jit(lambda a, b: simclr.nt_xent(a, b, 0.2))
  rows = batch_sharding(data_mesh())
  one = fn(*(jax.device_put(z, jax.devices()[0]) for z in (z1, z2)))
  eight = fn(*(jax.device_put(z, rows) for z in (z1, z2)))
  # Not exact: the reductions are partitioned differently on 1 and 8 devices.
  np.testing.assert_allclose(np.asarray(eight), np.asarray(one), rtol=1e-5)
  np.testing.assert_allclose(float(eight[0]), numpy_nt_xent(z1, z2, 0.2)[0], rtol=1e-5)
  # Per-device negatives (4 pairs per device) would give a different, smaller loss.
  per_device = np.mean([numpy_nt_xent(z1[i:i + 4], z2[i:i + 4], 0.2)[0] for i in range(0, 32, 4)])
  assert float(eight[0]) > per_device + 0.5


def test_simclr_objective_loss_is_the_same_on_1_and_8_devices():
  objective = ssl.SimCLR(backbone=TINY, temperature=0.2, hidden_dim=16, out_dim=8)
  params, stats, extra = jax.jit(lambda k: objective.init(k, (16, 16, 3)))(base.init_key(0))
  views = np.random.default_rng(2).uniform(0, 1, (16, 2, 16, 16, 3)).astype(np.float32)
  fn = jax.jit(lambda p, s, v: objective.loss(p, s, extra, v, None, None, 0))
  one = fn(params, stats, jax.device_put(views, jax.devices()[0]))
  eight = fn(params, stats, jax.device_put(views, batch_sharding(data_mesh())))
  for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
  assert np.isfinite(float(one[0])) and float(one[0]) > 0


def test_byol_target_gets_no_gradient_and_follows_the_ema_schedule():
  objective = ssl.BYOL(backbone=TINY, total_steps=100, hidden_dim=16, out_dim=8)
  params, stats, extra = jax.jit(lambda k: objective.init(k, (16, 16, 3)))(base.init_key(1))
  views = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (8, 2, 16, 16, 3)), jnp.float32)

  @jax.jit
  def grads(params, extra):
    return jax.grad(lambda p, e: objective.loss(p, stats, e, views, None, None, 0)[0],
                    argnums=(0, 1))(params, extra)

  g_online, g_extra = grads(params, extra)
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_extra["target_params"]))
  assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(g_online["predictor"])) > 0
  assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(g_online["backbone"])) > 0

  K = 100
  for k in (0, 13, 50, 77, 100):
    want = 1 - (1 - 0.996) * (math.cos(math.pi * k / K) + 1) / 2
    assert float(byol.target_decay(k, K)) == pytest.approx(want, abs=1e-7)
  assert float(byol.target_decay(0, K)) == pytest.approx(0.996)
  assert float(byol.target_decay(K, K)) == pytest.approx(1.0)
  moved = jax.tree.map(lambda p: p + 1.0, params)
  updated = objective.after_update(moved, extra, 13)
  tau = 1 - 0.004 * (math.cos(math.pi * 0.13) + 1) / 2
  for t_new, t_old, online in zip(jax.tree.leaves(updated["target_params"]),
                                  jax.tree.leaves(extra["target_params"]),
                                  jax.tree.leaves({k: moved[k] for k in ("backbone", "head")})):
    np.testing.assert_allclose(t_new, tau * np.asarray(t_old, np.float64)
                               + (1 - tau) * np.asarray(online, np.float64), rtol=1e-6,
                               atol=1e-7)


def test_byol_regression_loss_is_2_minus_2_cosine():
  rng = np.random.default_rng(4)
  p, z = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
  cos = np.sum(p * z, 1) / np.linalg.norm(p, axis=1) / np.linalg.norm(z, axis=1)
  np.testing.assert_allclose(byol.regression_loss(jnp.asarray(p), jnp.asarray(z)), 2 - 2 * cos,
                             rtol=1e-5)


def test_moco_loss_queue_and_momentum_encoder():
  rng = np.random.default_rng(5)
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  q, k, queue = (unit(rng.normal(size=s)) for s in ((4, 8), (4, 8), (12, 8)))
  loss, top1 = moco.queue_contrastive_loss(*(jnp.asarray(a, jnp.float32) for a in (q, k, queue)),
                                           0.2)
  logits = np.concatenate([np.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / 0.2
  want = np.mean(np.log(np.exp(logits).sum(1)) - logits[:, 0])
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert float(top1) == pytest.approx(np.mean(np.argmax(logits, 1) == 0))
  new_queue, ptr = moco.enqueue(jnp.asarray(queue), jnp.int32(8), jnp.asarray(k))
  np.testing.assert_allclose(new_queue[8:], k, rtol=1e-6)
  np.testing.assert_array_equal(new_queue[:8], queue[:8].astype(np.float32))
  assert int(ptr) == 0  # wraps around

  objective = ssl.MoCo(backbone=TINY, queue_size=16, hidden_dim=16, out_dim=8, momentum=0.9)
  params, stats, extra = jax.jit(lambda k: objective.init(k, (16, 16, 3)))(base.init_key(2))
  views = jnp.asarray(rng.uniform(0, 1, (8, 2, 16, 16, 3)), jnp.float32)
  moved = jax.tree.map(lambda p: p + 0.5, params)
  loss, (_, new_extra, metrics) = jax.jit(
      lambda p: objective.loss(p, stats, extra, views, None, None, 0))(moved)
  assert int(new_extra["queue_ptr"]) == 8 and np.isfinite(float(loss))
  np.testing.assert_array_equal(new_extra["queue"][8:], extra["queue"][8:])
  np.testing.assert_allclose(np.linalg.norm(new_extra["queue"][:8], axis=1), 1.0, rtol=1e-5)
  for new, old, online in zip(jax.tree.leaves(new_extra["key_params"]),
                              jax.tree.leaves(extra["key_params"]), jax.tree.leaves(moved)):
    np.testing.assert_allclose(new, 0.9 * np.asarray(old) + 0.1 * np.asarray(online), rtol=1e-5,
                               atol=1e-6)
  assert 0 <= float(metrics["contrastive_top1"]) <= 1


def test_supervised_cross_entropy_with_label_smoothing():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(6, 5))
  labels = rng.integers(0, 5, 6)
  logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  np.testing.assert_allclose(base.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                             -logp[np.arange(6), labels], rtol=1e-5)
  objective = ssl.Supervised(backbone=TINY, num_classes=5, label_smoothing=0.1)
  params, stats, extra = jax.jit(lambda k: objective.init(k, (16, 16, 3)))(base.init_key(3))
  views = jnp.asarray(rng.uniform(0, 1, (8, 2, 16, 16, 3)), jnp.float32)
  loss, (_, _, metrics) = jax.jit(lambda p: objective.loss(
      p, stats, extra, views, jnp.zeros(8, jnp.int32), None, 0))(params)
  assert float(loss) == pytest.approx(math.log(5), rel=1e-5)  # zero-initialised classifier


def test_recipe_configs_follow_their_references(repo_root):
  """SimCLR: TF crops; MoCo v2: torchvision crops of 20-100%; BYOL: additive brightness
  (DeepMind's), the rest of its jitter as before."""
  import os

  from ecorep.config import load_config
  from vision_jax import augment
  load = lambda name: load_config(os.path.join(repo_root, f"configs/{name}.py"), [])  # noqa
  simclr_cfg, moco_cfg, byol_cfg = load("simclr"), load("moco"), load("byol")
  assert simclr_cfg.data.crop_sampler == "tf" and tuple(simclr_cfg.data.crop_scale) == (0.08, 1.0)
  assert augment.crop_fn(simclr_cfg.data).keywords["sampler"] == "tf"
  demo = load_config(os.path.join(repo_root, "configs/simclr.py:demo"), [])
  assert demo.data.crop_sampler == "torchvision" and tuple(demo.data.crop_scale) == (0.2, 1.0)
  assert moco_cfg.data.crop_sampler == "torchvision"
  assert augment.crop_fn(moco_cfg.data).keywords["scale"] == (0.2, 1.0)
  policy = augment.Policy.from_config(byol_cfg.augment)
  assert not policy.multiplicative_brightness
  assert (policy.brightness, policy.contrast, policy.saturation, policy.hue) == (0.4, 0.4, 0.2,
                                                                                 0.1)
  assert policy == augment.byol_policy()
  assert augment.Policy.from_config(moco_cfg.augment).multiplicative_brightness  # ColorJitter
  assert augment.Policy.from_config(simclr_cfg.augment).multiplicative_brightness  # v2


def _cfg(method, **objective):
  c = ml_collections.ConfigDict({"train": {"loss": method}, "objective": objective, "model": {
      "depth": 10, "width_multiplier": 1, "small_stem": True, "base_width": 4,
      "dtype": "float32"}})
  return c


def test_registry_builds_by_name_and_rejects_bad_configs():
  assert isinstance(ssl.build_objective(_cfg("simclr", temperature=0.3), total_steps=5,
                                        global_batch_size=8), ssl.SimCLR)
  assert ssl.build_objective(_cfg("byol"), total_steps=7, global_batch_size=8).total_steps == 7
  assert ssl.build_objective(_cfg("supervised"), total_steps=1, global_batch_size=8,
                             num_classes=4).num_classes == 4
  with pytest.raises(ConfigError, match="unknown objective 'simclrr'.*did you mean 'simclr'"):
    ssl.build_objective(_cfg("simclrr"), total_steps=1, global_batch_size=8)
  with pytest.raises(ConfigError, match="objective.temprature"):
    ssl.build_objective(_cfg("simclr", temprature=0.1), total_steps=1, global_batch_size=8)
  with pytest.raises(ConfigError, match="queue_size 100 must be a multiple of the batch size 8"):
    ssl.build_objective(_cfg("moco", queue_size=100), total_steps=1, global_batch_size=8)
  with pytest.raises(ConfigError, match="num_classes"):
    ssl.build_objective(_cfg("supervised"), total_steps=1, global_batch_size=8)
