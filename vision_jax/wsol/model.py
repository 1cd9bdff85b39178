"""The WSOL network: a ResNet whose last stage keeps its resolution, and a head on top.

Parameters are {"backbone": ResNet params, "head": LinearHead {kernel (C, K), bias}} and the BN
statistics {"backbone": ...}: the layout of every encoder run of this project, so a WSOL run
initialises from one (vision_jax.encoder.load_encoder: a SimCLR/supervised run, or ImageNet
weights converted by `python -m vision_jax.port_torch`) and is itself one (its model.json).

The classifier head sits on the pooled features, logits = mean_hw(F) @ W + b, so the class
activation map of class c, CAM_c = F @ W[:, c] (vision_jax.wsol.cam), averages to logit_c − b_c:
the CAM is read off the very path that was trained. FSL-Seg's mask head is a LinearHead per
feature-map pixel (a 1x1 convolution) giving one mask logit per location.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.heads import LinearHead
from vision_jax.resnet import ResNet, build_resnet
from vision_jax.ssl.base import init_key


class WsolNet(nn.Module):
  """`(images, train) -> (outputs, extras)`: class logits (B, K), or with `mask_head` mask
  logits (B, h, w); extras are the backbone's ("pre_logits", "feature_map")."""
  backbone: ResNet
  num_classes: int
  mask_head: bool = False

  @nn.compact
  def __call__(self, images, train: bool):
    features, extras = self.backbone(images, train=train)
    if self.mask_head:
      return LinearHead(1, name="mask_head")(extras["feature_map"])[..., 0], extras
    return LinearHead(self.num_classes, name="head")(features), extras


def build(backbone_spec, num_classes: int, *, mask_head: bool = False,
          section: str = "model") -> WsolNet:
  """The network for a config's model section or an encoder's model.json "backbone" entry."""
  backbone = build_resnet(backbone_spec, layer4_stride=1, section=section)
  return WsolNet(backbone, int(num_classes), mask_head)


@functools.lru_cache(maxsize=8)
def _jitted_init(net: WsolNet, image_size: int):
  return jax.jit(lambda key: net.init(key, jnp.zeros((1, image_size, image_size, 3)),
                                      train=False))


def init_variables(net: WsolNet, image_size: int, seed: int, encoder=None) -> tuple[Any, Any]:
  """(params, batch_stats): random (an 'unsafe_rbg' key, cheap to compile), then the
  encoder's backbone variables when one is given; heads start at zero."""
  variables = _jitted_init(net, int(image_size))(init_key(seed))
  params, stats = dict(variables["params"]), dict(variables["batch_stats"])
  if encoder is not None:
    params["backbone"] = jax.tree.map(jnp.array, encoder.variables["params"])
    stats["backbone"] = jax.tree.map(jnp.array, encoder.variables["batch_stats"])
  return params, stats


def backbone_spec(net: WsolNet) -> dict:
  b = net.backbone
  return {"depth": b.depth, "width_multiplier": b.width_multiplier, "small_stem": b.small_stem,
          "base_width": b.base_width}
