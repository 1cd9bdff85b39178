"""MoCo v2: a momentum (key) encoder, a queue of past keys as negatives, τ = 0.2.

Per step, as the reference: the key encoder first moves toward the query encoder
(θ_k ← m·θ_k + (1 − m)·θ_q, m = 0.999), encodes view 2 into keys k (no gradient), the query
encoder encodes view 1 into q, and the loss is cross-entropy over [q·k₊, q·queue] / τ with the
positive first; then the global batch of keys replaces the oldest B entries of the queue.
The reference's shuffle-BN (per-GPU BN with shuffled keys) guards against BN leaking the
positive through per-device statistics; here BN is global over the batch on both encoders, the
remedy SimCLR argues for, and nothing is shuffled.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vision_jax.heads import MLPHead
from vision_jax.resnet import ResNet, feature_dim
from vision_jax.ssl.base import (Siamese, apply_train, ema, init_network, l2_normalize,
                                 softmax_cross_entropy)


def queue_contrastive_loss(q, k, queue, temperature: float):
  """(loss, top-1): cross-entropy of the positive q·k among [q·k, q·queue] / τ (rows of q, k
  and queue L2-normalised)."""
  logits = jnp.concatenate([jnp.sum(q * k, axis=1, keepdims=True), q @ queue.T], axis=1)
  logits = logits / temperature
  loss = jnp.mean(softmax_cross_entropy(logits, jnp.zeros((q.shape[0],), jnp.int32)))
  return loss, jnp.mean((jnp.argmax(logits, axis=1) == 0).astype(jnp.float32))


def enqueue(queue, ptr, keys):
  """Overwrites the B oldest keys (rows ptr..ptr+B) with `keys`; queue size is a multiple of B."""
  queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (ptr, 0))
  return queue, (ptr + keys.shape[0]) % queue.shape[0]


@dataclasses.dataclass(frozen=True)
class MoCo:
  backbone: ResNet
  temperature: float = 0.2
  momentum: float = 0.999
  queue_size: int = 65536
  hidden_dim: int = 0      # 0: the backbone's feature dimension (2048 for ResNet-50)
  out_dim: int = 128

  name = "moco"
  uses_labels = False

  def network(self) -> Siamese:
    hidden = self.hidden_dim or feature_dim(self.backbone.depth, self.backbone.width_multiplier,
                                            self.backbone.base_width)
    return Siamese(backbone=self.backbone,
                   head=MLPHead(hidden, self.out_dim, use_bn=False, out_bias=True))

  def init(self, key, image_shape):
    k_net, k_queue = jax.random.split(key)
    params, batch_stats = init_network(self.network(), k_net, image_shape)
    queue = l2_normalize(jax.random.normal(k_queue, (self.queue_size, self.out_dim)))
    extra = {"key_params": params, "key_batch_stats": batch_stats, "queue": queue,
             "queue_ptr": jnp.zeros((), jnp.int32)}
    return params, batch_stats, extra

  def loss(self, params, batch_stats, extra, views, labels, key, step):
    del labels, key, step
    net = self.network()
    key_params = ema(extra["key_params"], jax.lax.stop_gradient(params), self.momentum)
    (k, _), key_batch_stats = apply_train(net, key_params, extra["key_batch_stats"],
                                          views[:, 1])
    k = jax.lax.stop_gradient(l2_normalize(k))
    (q, _), batch_stats = apply_train(net, params, batch_stats, views[:, 0])
    loss, accuracy = queue_contrastive_loss(l2_normalize(q), k, extra["queue"],
                                            self.temperature)
    queue, ptr = enqueue(extra["queue"], extra["queue_ptr"], k)
    new_extra = {"key_params": key_params, "key_batch_stats": key_batch_stats,
                 "queue": queue, "queue_ptr": ptr}
    return loss, (batch_stats, new_extra, {"contrastive_top1": accuracy})

  def after_update(self, params, extra, step):
    return extra
