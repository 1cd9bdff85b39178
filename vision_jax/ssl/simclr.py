"""SimCLR: NT-Xent over two views with the projection head of v1 (2 layers) or v2 (3 layers).

NT-Xent form used here: the TF reference's, mean_i [ℓ(a_i → b_i) + ℓ(b_i → a_i)] with
ℓ = −log softmax(sim/τ)[positive] over the 2N − 1 others, i.e. the sum of the two directions'
means = 2× the mean over all 2N anchors. The form matters beyond the logged value: LARS's trust
ratio cancels a constant factor on adapted kernels (except against weight decay), but BN
parameters and biases are not adapted, so with the mean-over-2N form they would take half the
reference's step at the same learning rate (as would everything under plain SGD/Adam).

Negatives come from the whole global batch: under `jax.jit` the (2N, 2N) similarity of a
batch-sharded z is a global computation (XLA gathers z), so no explicit all-gather is written.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vision_jax.heads import SimCLRProjection
from vision_jax.resnet import ResNet, feature_dim
from vision_jax.ssl.base import (Siamese, apply_train, flatten_views, init_network,
                                 l2_normalize, softmax_cross_entropy)

MASK_VALUE = -1e9  # a similarity that softmax turns into exactly zero weight


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """(loss, contrastive top-1) for paired projections z1[i] ↔ z2[i], each (N, d).

  loss: TF's form, 2× the mean over the 2N anchors (module docstring).
  top-1: the fraction of the 2N anchors whose most similar other sample is their positive.
  """
  n = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), MASK_VALUE, logits)
  positives = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  loss = 2.0 * jnp.mean(softmax_cross_entropy(logits, positives))
  accuracy = jnp.mean((jnp.argmax(logits, axis=1) == positives).astype(jnp.float32))
  return loss, accuracy


@dataclasses.dataclass(frozen=True)
class SimCLR:
  backbone: ResNet
  temperature: float = 0.1
  head_layers: int = 2
  hidden_dim: int = 0      # 0: the backbone's feature dimension (as the reference)
  out_dim: int = 128

  name = "simclr"
  uses_labels = False

  def network(self) -> Siamese:
    hidden = self.hidden_dim or feature_dim(self.backbone.depth, self.backbone.width_multiplier,
                                            self.backbone.base_width)
    return Siamese(backbone=self.backbone,
                   head=SimCLRProjection(self.head_layers, hidden, self.out_dim))

  def init(self, key, image_shape):
    params, batch_stats = init_network(self.network(), key, image_shape)
    return params, batch_stats, {}

  def loss(self, params, batch_stats, extra, views, labels, key, step):
    del labels, key, step
    batch, num_views = views.shape[:2]
    # Both views in one forward: BN statistics over all 2N images, as the reference.
    (z, _), batch_stats = apply_train(self.network(), params, batch_stats, flatten_views(views))
    z = z.reshape(batch, num_views, -1)
    loss, accuracy = nt_xent(z[:, 0], z[:, 1], self.temperature)
    return loss, (batch_stats, extra, {"contrastive_top1": accuracy})

  def after_update(self, params, extra, step):
    return extra
