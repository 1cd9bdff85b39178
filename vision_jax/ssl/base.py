"""What every objective shares: the backbone + head (+ predictor) network and small losses.

An objective is a frozen dataclass with
  init(key, image_shape) -> (params, batch_stats, extra)
  loss(params, batch_stats, extra, views, labels, key, step)
      -> (loss, (batch_stats, extra, metrics))        differentiated w.r.t. params only
  after_update(params, extra, step) -> extra           EMA targets, after the optimiser step
`params` and `batch_stats` are {'backbone': ..., 'head': ..., ['predictor': ...]}; `extra` holds
what is not trained by gradients (target/key networks, MoCo's queue). `views` are augmented float
images (B, V, H, W, 3); `labels` (B,) int32 class indices (used by the supervised objective).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class Siamese(nn.Module):
  """Backbone → head → optional predictor, as `(outputs, extras)`: outputs are the predictor's
  when there is one, else the head's (projections or logits); extras are the backbone's
  ("pre_logits", "feature_map") plus "projection", the head's output."""
  backbone: nn.Module
  head: nn.Module
  predictor: nn.Module | None = None

  def __call__(self, images, train: bool):
    features, extras = self.backbone(images, train=train)
    projection = self.head(features, train=train)
    extras = {**extras, "projection": projection}
    if self.predictor is None:
      return projection, extras
    return self.predictor(projection, train=train), extras


def init_key(seed: int) -> jax.Array:
  """The key parameters are initialised from. 'unsafe_rbg' (XLA's RngBitGenerator) because every
  threefry draw adds XLA compile time on CPUs: a ResNet's init compiles in ~3 s instead of ~45 s.
  Its values are fixed per seed and backend (a GPU draws different initial weights)."""
  return jax.random.key(seed, impl="unsafe_rbg")


def init_network(net: nn.Module, key: jax.Array, image_shape: tuple[int, int, int]):
  """(params, batch_stats) of `net` for (H, W, C) images."""
  variables = net.init(key, jnp.zeros((2, *image_shape), jnp.float32), train=False)
  return variables["params"], variables.get("batch_stats", {})


def apply_train(net: nn.Module, params: Any, batch_stats: Any, images: jax.Array):
  """Train-mode forward; returns (outputs, new batch_stats)."""
  outputs, updates = net.apply({"params": params, "batch_stats": batch_stats}, images,
                               train=True, mutable=["batch_stats"])
  return outputs, updates["batch_stats"]


def flatten_views(views: jax.Array) -> jax.Array:
  """(B, V, H, W, C) -> (B·V, H, W, C), example-major, so each device keeps its own rows."""
  return views.reshape((-1,) + views.shape[2:])


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-row −log softmax(logits)[label]."""
  logits = logits.astype(jnp.float32)
  picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  return jax.nn.logsumexp(logits, axis=1) - picked


def top1(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean((jnp.argmax(logits, axis=1) == labels).astype(jnp.float32))


def ema(target: Any, online: Any, decay) -> Any:
  """decay·target + (1 − decay)·online, leaf by leaf."""
  return jax.tree.map(lambda t, o: t + (1.0 - decay) * (o - t), target, online)
