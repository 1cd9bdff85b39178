"""Supervised cross-entropy on the first augmented view: the baseline the self-supervised
objectives are compared with. The classifier is a linear `head` on the pooled features, so the
backbone's parameters have the same layout as every other objective's."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vision_jax.heads import LinearHead
from vision_jax.resnet import ResNet
from vision_jax.ssl.base import Siamese, apply_train, init_network, softmax_cross_entropy, top1


@dataclasses.dataclass(frozen=True)
class Supervised:
  backbone: ResNet
  num_classes: int = 1000
  label_smoothing: float = 0.0

  name = "supervised"
  uses_labels = True

  def network(self) -> Siamese:
    return Siamese(backbone=self.backbone, head=LinearHead(self.num_classes))

  def init(self, key, image_shape):
    params, batch_stats = init_network(self.network(), key, image_shape)
    return params, batch_stats, {}

  def loss(self, params, batch_stats, extra, views, labels, key, step):
    del key, step
    (logits, _), batch_stats = apply_train(self.network(), params, batch_stats, views[:, 0])
    nll = softmax_cross_entropy(logits, labels)
    if self.label_smoothing:  # (1 − ε)·NLL + ε·mean over classes of −log p
      uniform = -jnp.mean(jax.nn.log_softmax(logits.astype(jnp.float32), axis=1), axis=1)
      nll = (1 - self.label_smoothing) * nll + self.label_smoothing * uniform
    return jnp.mean(nll), (batch_stats, extra, {"top1": top1(logits, labels)})

  def after_update(self, params, extra, step):
    return extra
