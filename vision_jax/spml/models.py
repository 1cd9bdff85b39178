"""The multi-label classifier f: a linear head on fixed features, or a ResNet + the same head.

Parameters are `{"head": {kernel, bias}}` (linear) or `{"backbone": ..., "head": ...}` (fine-tune),
so the head trained on fixed features is the head that fine-tuning starts from ("+LinearInit").
The head is initialised like `torch.nn.Linear` (U[±1/√fan_in] for kernel and bias), as the
reference's classifier.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.heads import LinearHead
from vision_jax.resnet import ResNet, build_resnet


@functools.lru_cache(maxsize=16)
def _jitted_init(module: nn.Module):
  """One compiled initialiser per (hashable) module: op-by-op initialisation of a ResNet would
  compile every layer separately, and a fresh jit per call would compile again."""
  return jax.jit(lambda k, x: module.init(k, x, **({"train": False} if isinstance(
      module, ResNet) else {})))


@dataclasses.dataclass(frozen=True)
class Classifier:
  """`logits(params, batch_stats, x, train)` -> (logits, new batch_stats); x is features (linear)
  or uint8/float images (fine-tune)."""
  num_classes: int
  feature_dim: int
  backbone: ResNet | None = None

  @property
  def head(self) -> LinearHead:
    return LinearHead(self.num_classes, initializer="torch")

  def init(self, key: jax.Array, image_shape: tuple[int, ...] | None = None) -> tuple[Any, Any]:
    k_head, k_body = jax.random.split(key)
    head = _jitted_init(self.head)(k_head, jnp.zeros((1, self.feature_dim)))
    params, batch_stats = {"head": head["params"]}, {}
    if self.backbone is not None:
      # XLA:CPU compiles each threefry draw slowly (~1 s per conv kernel); the backbone's
      # initial weights are drawn from an "rbg" key derived from `key` (same seed, same
      # weights on a given JAX version and backend).
      k_body = jax.random.wrap_key_data(jnp.tile(jax.random.key_data(k_body), 2), impl="rbg")
      variables = _jitted_init(self.backbone)(k_body, jnp.zeros((1, *image_shape), jnp.float32))
      params["backbone"] = variables["params"]
      batch_stats = variables["batch_stats"]
    return params, batch_stats

  def features(self, params, batch_stats, images, train: bool):
    """Pooled backbone features of images (uint8 in [0, 255] or float in [0, 1])."""
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
    variables = {"params": params["backbone"], "batch_stats": batch_stats}
    if train:
      (feats, _), updates = self.backbone.apply(variables, x, train=True,
                                                mutable=["batch_stats"])
      return feats, updates["batch_stats"]
    return self.backbone.apply(variables, x, train=False)[0], batch_stats

  def logits(self, params, batch_stats, x, train: bool):
    if self.backbone is not None:
      x, batch_stats = self.features(params, batch_stats, x, train)
    return self.head.apply({"params": params["head"]}, x), batch_stats


def make_classifier(model_cfg, num_classes: int, feature_dim: int | None = None,
                    backbone: ResNet | None = None) -> Classifier:
  """Linear classifier when `feature_dim` is given, else a ResNet (`backbone`, or one built per
  `model_cfg`) + head."""
  if feature_dim is not None:
    return Classifier(num_classes=num_classes, feature_dim=feature_dim)
  from vision_jax.resnet import feature_dim as resnet_dim
  backbone = build_resnet(model_cfg) if backbone is None else backbone
  return Classifier(num_classes=num_classes, backbone=backbone,
                    feature_dim=resnet_dim(backbone.depth, backbone.width_multiplier,
                                           backbone.base_width))
