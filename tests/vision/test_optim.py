"""Optimisers against hand-written float64 numpy updates; schedules against their formulas."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ecorep.errors import ConfigError
from vision_jax import optim
from vision_jax.heads import SimCLRProjection
from vision_jax.resnet import ResNet


def _cfg(**kw):
  base = {"name": "lars", "base_lr": 0.5, "lr_scaling": "none", "weight_decay": 0.01,
          "momentum": 0.9, "nesterov": False, "trust_coefficient": 1e-3, "exclude_bn_bias": True,
          "warmup_epochs": 0.0, "warmup_steps": 0}
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_decay_mask_selects_kernels_only():
  model = ResNet(depth=10, base_width=2, small_stem=True)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)),
                                             train=False))["params"]
  head = jax.eval_shape(lambda: SimCLRProjection(2, 8, 4).init(
      jax.random.key(0), jnp.zeros((2, 16)), train=False))["params"]
  mask = optim.decay_mask({"backbone": params, "head": head})
  flat = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert flat["['backbone']['stem_conv']['kernel']"] is True
  assert flat["['backbone']['stem_bn']['scale']"] is False
  assert flat["['backbone']['stem_bn']['bias']"] is False
  assert flat["['head']['Dense_1']['kernel']"] is True
  assert flat["['head']['BatchNorm_1']['scale']"] is False
  n_kernels = sum(k.endswith("['kernel']") for k in flat)
  # stem + 4 blocks × 2 convs + 3 projection shortcuts (stages 2-4) + 2 dense layers
  assert sum(flat.values()) == n_kernels == 1 + 8 + 3 + 2


def numpy_lars(params, grads_seq, lr, wd, momentum, eta, decayed):
  """SimCLR's LARS: g += wd·w; g *= eta·‖w‖/‖g‖; v = m·v + lr·g; w -= v (decayed leaves only
  get wd and the trust ratio)."""
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  velocity = {k: np.zeros_like(v) for k, v in params.items()}
  for grads in grads_seq:
    for k in params:
      g = np.asarray(grads[k], np.float64)
      if decayed[k]:
        g = g + wd * params[k]
        g = g * eta * np.linalg.norm(params[k]) / np.linalg.norm(g)
      velocity[k] = momentum * velocity[k] + lr * g
      params[k] = params[k] - velocity[k]
  return params


def test_lars_matches_the_reference_update_and_excludes_bn_and_bias():
  rng = np.random.default_rng(0)
  params = {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,)),
            "scale": rng.normal(size=(4,))}
  grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(3)]
  tree = lambda d: {"dense": {"kernel": jnp.asarray(d["kernel"], jnp.float32),
                              "bias": jnp.asarray(d["bias"], jnp.float32)},
                    "bn": {"scale": jnp.asarray(d["scale"], jnp.float32)}}
  tx, schedule = optim.make_optimizer(_cfg(), batch_size=64, total_steps=10**6,
                                      steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.5)  # no warm-up; cosine has barely moved
  p = tree(params)
  state = tx.init(p)
  for g in grads_seq:
    updates, state = tx.update(tree(g), state, p)
    p = optax.apply_updates(p, updates)
  want = numpy_lars(params, grads_seq, 0.5, 0.01, 0.9, 1e-3,
                    {"kernel": True, "bias": False, "scale": False})
  np.testing.assert_allclose(p["dense"]["kernel"], want["kernel"], rtol=1e-5)
  np.testing.assert_allclose(p["dense"]["bias"], want["bias"], rtol=1e-5)
  np.testing.assert_allclose(p["bn"]["scale"], want["scale"], rtol=1e-5)


def test_sgd_decays_every_parameter_unless_excluded():
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
  grads = jax.tree.map(jnp.zeros_like, params)
  for exclude, bias_after in ((False, 1 - 0.1 * 0.5), (True, 1.0)):
    tx, _ = optim.make_optimizer(_cfg(name="sgd", weight_decay=0.5, base_lr=0.1,
                                      exclude_bn_bias=exclude),
                                 batch_size=256, total_steps=10**6, steps_per_epoch=1)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert float(new["dense"]["kernel"][0, 0]) == pytest.approx(1 - 0.1 * 0.5, rel=1e-5)
    assert float(new["dense"]["bias"][0]) == pytest.approx(bias_after, rel=1e-5)


def test_warmup_cosine_schedule_and_peak_scaling():
  peak, warm, total = 4.8, 10, 110
  sched = optim.warmup_cosine(peak, warm, total)
  for t in (0, 3, 10, 35, 60, 109, 110):
    want = peak * t / warm if t < warm else peak * 0.5 * (1 + math.cos(math.pi * (t - warm) /
                                                                       (total - warm)))
    assert float(sched(t)) == pytest.approx(want, abs=1e-6)
  assert optim.peak_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
  assert optim.peak_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
  assert optim.peak_learning_rate(0.3, 4096, "none") == 0.3
  assert optim.warmup_steps(_cfg(warmup_steps=-1, warmup_epochs=2.5), 40) == 100
  with pytest.raises(ConfigError, match="lr_scaling"):
    optim.peak_learning_rate(0.3, 256, "quadratic")
  with pytest.raises(ConfigError, match="optim.name"):
    optim.make_optimizer(_cfg(name="lamb"), batch_size=8, total_steps=10, steps_per_epoch=1)
  for name in ("adam", "adamw"):
    tx, _ = optim.make_optimizer(_cfg(name=name), batch_size=8, total_steps=10, steps_per_epoch=1)
    p = {"w": {"kernel": jnp.ones(3)}}
    assert np.isfinite(np.asarray(tx.update(p, tx.init(p), p)[0]["w"]["kernel"])).all()


# ------------------------------------------- one SimCLR step against the TF reference, float64

class _TinySimCLRNet(nn.Module):
  """conv (kernel only) → BN → ReLU → mean pool → dense (kernel + bias): one leaf of each
  LARS group (adapted kernels; BN scale/bias; dense bias)."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3), padding="VALID", use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5, name="bn")(x)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    return nn.Dense(3, name="dense")(x)


def _numpy_forward(p, x):
  """float64 forward of _TinySimCLRNet (conv as a cross-correlation, BN with batch statistics)."""
  k = p["conv"]["kernel"]
  size = x.shape[1] - 2
  y = sum(np.einsum("nhwc,co->nhwo", x[:, i:i + size, j:j + size], k[i, j])
          for i in range(3) for j in range(3))
  mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
  y = (y - mean) / np.sqrt(var + 1e-5) * p["bn"]["scale"] + p["bn"]["bias"]
  return np.maximum(y, 0).mean(axis=(1, 2)) @ p["dense"]["kernel"] + p["dense"]["bias"]


def _tf_nt_xent(z, n, tau):
  """The TF reference's add_contrastive_loss: labels over [logits_ab, logits_aa] (self masked
  with −1e9), loss = mean(loss_a + loss_b)."""
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  a, b = z[:n], z[n:]
  mask = np.eye(n) * 1e9
  ce = lambda logits: (np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))  # noqa
                       + logits.max(1) - np.diag(logits[:, :n]))
  loss_a = ce(np.concatenate([a @ b.T / tau, a @ a.T / tau - mask], 1))
  loss_b = ce(np.concatenate([b @ a.T / tau, b @ b.T / tau - mask], 1))
  return np.mean(loss_a + loss_b)


def _numpy_grad(f, params, eps=1e-6):
  """Central differences of a float64 function of a {layer: {name: array}} tree."""
  grads = {}
  for layer, leaves in params.items():
    grads[layer] = {}
    for name, w in leaves.items():
      g = np.zeros_like(w)
      for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        up = f(params)
        w[i] = old - eps
        down = f(params)
        w[i] = old
        g[i] = (up - down) / (2 * eps)
      grads[layer][name] = g
  return grads


def _tf_lars_update(params, grads, velocity, lr, wd, eta, momentum):
  """SimCLR's LARSOptimizer (classic momentum): kernels get weight decay and the trust ratio;
  BN parameters and biases neither."""
  updates = {}
  for layer, leaves in params.items():
    updates[layer] = {}
    for name, w in leaves.items():
      g = grads[layer][name]
      scaled_lr = lr
      if name == "kernel":
        g = g + wd * w
        scaled_lr = lr * eta * np.linalg.norm(w) / np.linalg.norm(g)
      velocity[layer][name] = momentum * velocity[layer][name] + scaled_lr * g
      updates[layer][name] = -velocity[layer][name]
  return updates


def test_simclr_lars_steps_equal_the_tf_reference_for_every_parameter_group():
  """Two steps of SimCLR's NT-Xent + LARS (η 1e-3, momentum 0.9) against float64 numpy of the
  TF reference's loss and optimiser: conv and dense kernels (decayed, adapted), BN scale and
  bias, dense bias (neither). The mean-over-2N loss would halve the BN and bias steps."""
  from vision_jax.ssl.simclr import nt_xent
  n, tau, lr, wd = 6, 0.5, 0.8, 0.05  # wd large enough that the kernels see the loss scale too
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (2 * n, 5, 5, 2)).astype(np.float32)
  net = _TinySimCLRNet()
  variables = jax.jit(net.init)(jax.random.key(0), jnp.asarray(x))
  params = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(np.float32),
                        variables["params"])  # BN scale/bias away from 1/0

  def loss_fn(p):
    z, _ = net.apply({"params": p, "batch_stats": variables["batch_stats"]}, jnp.asarray(x),
                     mutable=["batch_stats"])
    return nt_xent(z[:n], z[n:], tau)[0]

  tx, _ = optim.make_optimizer(_cfg(base_lr=lr, weight_decay=wd, trust_coefficient=1e-3,
                                    momentum=0.9), batch_size=2 * n, total_steps=10**6,
                               steps_per_epoch=1)
  step_fn = jax.jit(lambda p, s: tx.update(jax.grad(loss_fn)(p), s, p))
  x64 = x.astype(np.float64)
  ref = {k: {m: np.asarray(v, np.float64) for m, v in d.items()} for k, d in params.items()}
  velocity = jax.tree.map(np.zeros_like, ref)
  ref_loss = lambda p, scale=1.0: scale * _tf_nt_xent(_numpy_forward(p, x64), n, tau)  # noqa
  assert float(jax.jit(loss_fn)(params)) == pytest.approx(ref_loss(ref), rel=1e-5)
  state = jax.jit(tx.init)(params)
  for step in range(2):
    updates, state = step_fn(params, state)
    params = jax.jit(optax.apply_updates)(params, updates)
    ref_grads = _numpy_grad(ref_loss, ref)
    if step == 0:  # the mean-over-2N form: what this test must tell apart
      half = _tf_lars_update(ref, _numpy_grad(lambda p: ref_loss(p, 0.5), ref),
                             jax.tree.map(np.zeros_like, ref), lr, wd, 1e-3, 0.9)
    want = _tf_lars_update(ref, ref_grads, velocity, lr, wd, 1e-3, 0.9)
    for layer, name in (("conv", "kernel"), ("bn", "scale"), ("bn", "bias"), ("dense", "kernel"),
                        ("dense", "bias")):
      got, expected = np.asarray(updates[layer][name]), want[layer][name]
      scale = np.abs(expected).max()
      np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale,
                                 err_msg=f"step {step} {layer}/{name}")
      if step == 0:
        assert np.abs(got - half[layer][name]).max() > 1e-2 * scale, (layer, name)
    ref = jax.tree.map(lambda w, u: w + u, ref, want)
